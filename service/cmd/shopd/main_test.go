package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
)

// lineWriter hands each complete output line to a channel and keeps them all.
type lineWriter struct {
	mu     sync.Mutex
	buf    strings.Builder
	lines  chan string
	all    []string
	closed bool
}

// snapshot returns the lines written so far.
func (w *lineWriter) snapshot() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.all...)
}

// stop stops recording and returns every line written.
func (w *lineWriter) stop() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return w.all
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	w.buf.Write(p)
	for {
		s := w.buf.String()
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		w.all = append(w.all, s[:i])
		select {
		case w.lines <- s[:i]:
		default:
		}
		w.buf.Reset()
		w.buf.WriteString(s[i+1:])
	}
	return len(p), nil
}

// startServe runs `shopd serve` with getenv until it has logged its
// address, and returns that base URL, the lines it writes, and stop: stop
// ends serve and returns serve's error, or an error when it did not return
// within 10 s. A serve the test did not stop is stopped at cleanup, which
// fails the test on such an error.
func startServe(t *testing.T, getenv func(string) string) (base string, logs *lineWriter, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	logs = &lineWriter{lines: make(chan string, 1000)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"shopd", "serve"}, getenv, logs, io.Discard) }()
	timeout := time.After(20 * time.Second)
	for base == "" {
		select {
		case line := <-logs.lines:
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				base = "http://" + l.Addr
			}
		case err := <-done:
			cancel()
			t.Fatalf("serve exited early: %v", err)
		case <-timeout:
			cancel()
			t.Fatal("serve never logged its address")
		}
	}
	var once sync.Once
	var stopErr error
	stopped := false
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(10 * time.Second):
				stopErr = errors.New("serve did not stop within 10s")
			}
		})
		stopped = true
		return stopErr
	}
	t.Cleanup(func() {
		if !stopped {
			if err := stop(); err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return base, logs, stop
}

// TestRunEndToEnd starts the real program on port 0 against a fresh
// database: setup (migrate + seed), serve, /health and a data endpoint,
// then a graceful shutdown when its context ends.
func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	env := map[string]string{
		"DATABASE_URL": dsn, "PORT": "0", "HOST": "127.0.0.1",
		// Tracing on with no Datadog agent anywhere: the agent is optional.
		"DD_TRACE_ENABLED": "true", "DD_AGENT_HOST": "127.0.0.1", "DD_TRACE_AGENT_PORT": "1", "DD_DOGSTATSD_PORT": "1",
		"BUYER_AUTH": "off", // checkouts and reports by id, as the original's clients do
		"LOG_LEVEL":  "info", "SHUTDOWN_TIMEOUT": "5s",
	}
	getenv := func(k string) string { return env[k] }
	ctx := t.Context()

	var first strings.Builder
	if err := run(ctx, []string{"shopd", "setup"}, getenv, &first, io.Discard); err != nil {
		t.Fatalf("setup: %v", err)
	}
	var out strings.Builder
	if err := run(ctx, []string{"shopd", "setup"}, getenv, &out, io.Discard); err != nil || !strings.Contains(out.String(), "not seeding") {
		t.Fatalf("second setup: %v %q", err, out.String())
	}
	// Both commands warn when the server's autovacuum is off (it is on
	// these machines), and only then.
	var autovacuum string
	if err := pgxConnectScalar(ctx, dsn, "SHOW autovacuum", &autovacuum); err != nil {
		t.Fatal(err)
	}
	const autovacuumWarning = "autovacuum is off on this PostgreSQL server"
	if got := strings.Contains(first.String(), "warning: "+autovacuumWarning); got != (autovacuum == "off") {
		t.Errorf("setup with autovacuum %s: warned %v:\n%s", autovacuum, got, first.String())
	}

	base, logs, stop := startServe(t, getenv)
	warned, warnedAutovacuum, warnedBuyers := false, false, false
	for _, line := range logs.snapshot() {
		var l struct{ Msg, Level string }
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "ADMIN_TOKEN is not set") && l.Level == "warn" {
			warned = true
		}
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "BUYER_AUTH=off") && l.Level == "warn" {
			warnedBuyers = true
		}
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, autovacuumWarning) && l.Level == "warn" {
			warnedAutovacuum = true
		}
	}
	if !warned {
		t.Error("serve did not warn that ADMIN_TOKEN is unset")
	}
	if !warnedBuyers {
		t.Error("serve did not warn that BUYER_AUTH is off")
	}
	if warnedAutovacuum != (autovacuum == "off") {
		t.Errorf("serve with autovacuum %s: warned %v", autovacuum, warnedAutovacuum)
	}
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
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if code := <-slow; code != 404 && code != 0 {
		t.Errorf("in-flight request got %d", code)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("still accepting after shutdown")
	}
	// run waited for the background work (samplers, cleanup, outbox) and
	// then closed every pool: no session of the service is left.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left []string
	if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(application_name), '{}') FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("sessions still open after serve returned: %v", left)
	}

	// Without an agent the service logs no error and at most a few
	// rate-limited tracer warnings.
	warnings := 0
	for _, line := range logs.stop() {
		var l struct{ Level, Msg, Logger string }
		_ = json.Unmarshal([]byte(line), &l)
		switch l.Level {
		case "error", "dpanic", "panic", "fatal":
			t.Errorf("error logged without an agent: %s", line)
		case "warn":
			if l.Logger == "ddtrace" { // the tracer's complaints about the missing agent
				warnings++
			}
		}
	}
	if warnings > 3 {
		t.Errorf("%d tracer warnings without an agent, want at most 3 (no log spam)", warnings)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"PORT": "x"}, {"DB_MAX_CONNS": "-1"}, {"CHECKOUT_LOCK_TIMEOUT": "soon"},
		{"CHECKOUT_ACQUIRE_TIMEOUT": "-1s"}, {"IDEMPOTENCY_KEY_TTL": "0s"}, {"IDEMPOTENCY_CLEANUP_INTERVAL": "daily"},
		{"MAX_IMPORT_ROWS": "0"}, {"MAX_IMPORT_BYTES": "lots"}, {"IMPORT_PROGRESS_ROWS": "-5"},
		{"SEARCH_STATEMENT_TIMEOUT": "-1s"}, {"PRODUCTS_V1_SUNSET": "next summer"}, {"PRODUCTS_V1_DEPRECATED_AT": "2027-13-01"},
		{"PRODUCTS_V1_DEPRECATED_AT": "2027-06-01", "PRODUCTS_V1_SUNSET": "2027-01-01"},
	} {
		if _, err := loadConfig(func(k string) string { return env[k] }); err == nil {
			t.Errorf("%v accepted", env)
		}
	}
	c, err := loadConfig(func(string) string { return "" })
	if err != nil || c.Addr != ":3000" || c.CheckoutAcquireTimeout != time.Second || c.CheckoutLockTimeout != 2*time.Second ||
		c.CheckoutStatementTimeout != 5*time.Second || c.IdempotencyKeyTTL != 24*time.Hour ||
		c.MaxImportRows < 100_000 || c.AdminToken != "" || c.production() ||
		c.SearchStatementTimeout != 2*time.Second || !c.ProductsV1Sunset.Equal(httpapi.DefaultConfig().ProductsV1Sunset) {
		t.Errorf("defaults: %+v %v", c, err)
	}
	env := map[string]string{"CHECKOUT_ACQUIRE_TIMEOUT": "250ms", "CHECKOUT_LOCK_TIMEOUT": "500ms", "CHECKOUT_STATEMENT_TIMEOUT": "3s",
		"IDEMPOTENCY_KEY_TTL": "1h", "IDEMPOTENCY_CLEANUP_INTERVAL": "30s"}
	c, err = loadConfig(func(k string) string { return env[k] })
	if err != nil || c.CheckoutAcquireTimeout != 250*time.Millisecond || c.CheckoutLockTimeout != 500*time.Millisecond ||
		c.CheckoutStatementTimeout != 3*time.Second || c.IdempotencyKeyTTL != time.Hour || c.IdempotencyCleanup != 30*time.Second {
		t.Errorf("from env: %+v %v", c, err)
	}
	env = map[string]string{"SEARCH_STATEMENT_TIMEOUT": "750ms", "PRODUCTS_V1_DEPRECATED_AT": "2026-12-01", "PRODUCTS_V1_SUNSET": "2027-06-01T12:00:00+02:00"}
	c, err = loadConfig(func(k string) string { return env[k] })
	if err != nil || c.SearchStatementTimeout != 750*time.Millisecond ||
		!c.ProductsV1DeprecatedAt.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) ||
		!c.ProductsV1Sunset.Equal(time.Date(2027, 6, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("configured: %+v %v", c, err)
	}
}

// TestServeRefusesOpenAdminInProduction: with APP_ENV=production and no
// ADMIN_TOKEN, serve exits with an error before listening.
func TestServeRefusesOpenAdminInProduction(t *testing.T) {
	t.Parallel()
	env := map[string]string{"APP_ENV": "production", "PORT": "0", "HOST": "127.0.0.1",
		"DATABASE_URL": "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", "DD_TRACE_ENABLED": "false"}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := run(ctx, []string{"shopd", "serve"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ADMIN_TOKEN") {
		t.Errorf("serve = %v, want a refusal naming ADMIN_TOKEN", err)
	}
}

// pgxConnectScalar reads one value with a connection of its own.
func pgxConnectScalar(ctx context.Context, dsn, sql string, dest any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dest)
}
