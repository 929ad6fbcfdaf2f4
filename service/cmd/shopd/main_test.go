package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/internal/pgtest"
)

// lineWriter hands each complete output line to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   strings.Builder
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		s := w.buf.String()
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		select {
		case w.lines <- s[:i]:
		default:
		}
		w.buf.Reset()
		w.buf.WriteString(s[i+1:])
	}
	return len(p), nil
}

// TestRunEndToEnd starts the real program on port 0 against a fresh
// database: setup (migrate + seed), serve, /health and a data endpoint,
// then a graceful shutdown when its context ends.
func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	env := map[string]string{
		"DATABASE_URL": dsn, "PORT": "0", "HOST": "127.0.0.1",
		"DD_TRACE_ENABLED": "false", "DD_AGENT_HOST": "127.0.0.1", "DD_DOGSTATSD_PORT": "1",
		"LOG_LEVEL": "info", "SHUTDOWN_TIMEOUT": "5s",
	}
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()

	if err := run(ctx, []string{"shopd", "setup"}, getenv, io.Discard, io.Discard); err != nil {
		t.Fatalf("setup: %v", err)
	}
	var out strings.Builder
	if err := run(ctx, []string{"shopd", "setup"}, getenv, &out, io.Discard); err != nil || !strings.Contains(out.String(), "not seeding") {
		t.Fatalf("second setup: %v %q", err, out.String())
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	logs := &lineWriter{lines: make(chan string, 1000)}
	done := make(chan error, 1)
	go func() { done <- run(sctx, []string{"shopd", "serve"}, getenv, logs, io.Discard) }()

	var addr string
	timeout := time.After(20 * time.Second)
	for addr == "" {
		select {
		case line := <-logs.lines:
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				addr = l.Addr
			}
		case err := <-done:
			t.Fatalf("serve exited early: %v", err)
		case <-timeout:
			t.Fatal("serve never logged its address")
		}
	}
	base := "http://" + addr
	for i := 0; ; i++ {
		res, err := http.Get(base + "/health")
		if err == nil && res.StatusCode == 200 {
			res.Body.Close()
			break
		}
		if i > 50 {
			t.Fatalf("/health never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := http.Get(base + "/products?limit=5")
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Pagination struct{ Total int } }
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if body.Pagination.Total != 100 {
		t.Errorf("served %d products, want the 100 seeded", body.Pagination.Total)
	}

	// A request in flight when shutdown starts still completes.
	slow := make(chan int, 1)
	go func() {
		res, err := http.Get(base + "/reports/orders/" + "00000000-0000-4000-8000-000000000000")
		if err != nil {
			slow <- 0
			return
		}
		res.Body.Close()
		slow <- res.StatusCode
	}()
	time.Sleep(50 * time.Millisecond)
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within its shutdown timeout")
	}
	if code := <-slow; code != 404 && code != 0 {
		t.Errorf("in-flight request got %d", code)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"PORT": "x"}, {"DB_MAX_CONNS": "-1"}, {"CHECKOUT_LOCK_TIMEOUT": "soon"}, {"SEARCH_STATEMENT_TIMEOUT": "-1s"},
		{"PRODUCTS_V1_SUNSET": "next summer"}, {"PRODUCTS_V1_DEPRECATED_AT": "2027-13-01"},
		{"PRODUCTS_V1_DEPRECATED_AT": "2027-06-01", "PRODUCTS_V1_SUNSET": "2027-01-01"},
	} {
		if _, err := loadConfig(func(k string) string { return env[k] }); err == nil {
			t.Errorf("%v accepted", env)
		}
	}
	c, err := loadConfig(func(string) string { return "" })
	if err != nil || c.Addr != ":3000" || c.SearchStatementTimeout != 2*time.Second || !c.ProductsV1Sunset.IsZero() {
		t.Errorf("defaults: %+v %v", c, err)
	}
	env := map[string]string{"SEARCH_STATEMENT_TIMEOUT": "750ms", "PRODUCTS_V1_DEPRECATED_AT": "2026-12-01", "PRODUCTS_V1_SUNSET": "2027-06-01T12:00:00+02:00"}
	c, err = loadConfig(func(k string) string { return env[k] })
	if err != nil || c.SearchStatementTimeout != 750*time.Millisecond ||
		!c.ProductsV1DeprecatedAt.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) ||
		!c.ProductsV1Sunset.Equal(time.Date(2027, 6, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("configured: %+v %v", c, err)
	}
}
