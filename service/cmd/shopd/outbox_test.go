package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/internal/smtptest"
)

// TestOutboxCommands runs the real program: serve sends the confirmation of
// an order placed over HTTP; with RELAY_ENABLED=false it does not, and
// `shopd relay` does; `shopd outbox status|requeue-dead` report and requeue.
func TestOutboxCommands(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	srv := smtptest.New(t)
	env := map[string]string{
		"DATABASE_URL": dsn, "PORT": "0", "HOST": "127.0.0.1",
		"DD_TRACE_ENABLED": "false", "DD_AGENT_HOST": "127.0.0.1", "DD_DOGSTATSD_PORT": "1",
		"BUYER_AUTH": "off", // checkouts and reports by id, as the original's clients do
		"LOG_LEVEL":  "info", "SHUTDOWN_TIMEOUT": "5s",
		"SMTP_ADDR": srv.Addr(), "MAIL_FROM": "shoplab <orders@shop.test>", "RELAY_INTERVAL": "20ms",
	}
	getenv := func(k string) string { return env[k] }
	ctx := t.Context()
	if err := run(ctx, []string{"shopd", "setup"}, getenv, io.Discard, io.Discard); err != nil {
		t.Fatalf("setup: %v", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var user, product string
	if err := conn.QueryRow(ctx, `SELECT id::text FROM customers WHERE email = 'user1@example.com'`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT id::text FROM products WHERE inventory >= 10 ORDER BY id LIMIT 1`).Scan(&product); err != nil {
		t.Fatal(err)
	}
	checkout := func(base string) string {
		t.Helper()
		res, err := http.Post(base+"/orders/checkout", "application/json",
			strings.NewReader(`{"userId":"`+user+`","items":[{"productId":"`+product+`","quantity":1}]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var o struct{ ID string }
		_ = json.NewDecoder(res.Body).Decode(&o)
		if res.StatusCode != http.StatusCreated || o.ID == "" {
			t.Fatalf("checkout: %d", res.StatusCode)
		}
		return o.ID
	}
	shopd := func(args ...string) string {
		t.Helper()
		var out strings.Builder
		if err := run(ctx, append([]string{"shopd"}, args...), getenv, &out, io.Discard); err != nil {
			t.Fatalf("shopd %v: %v", args, err)
		}
		return out.String()
	}
	// The seed's 320 orders were not placed by checkout: they owe no mail.
	if out := shopd("outbox", "status"); !strings.Contains(out, "pending 0 (due now 0), dead 0") {
		t.Fatalf("status after setup: %q", out)
	}

	var first string
	t.Run("ServeSendsConfirmation", func(t *testing.T) {
		base, _, stop := startServe(t, getenv)
		first = checkout(base)
		msgs := srv.WaitFor(t, 1, 20*time.Second)
		stop()
		if len(msgs) != 1 || msgs[0].To[0] != "user1@example.com" || msgs[0].Header.Get("X-Shoplab-Order-Id") != first {
			t.Fatalf("messages: %+v", msgs)
		}
	})

	var second string
	t.Run("RelayDisabledInServe", func(t *testing.T) {
		env["RELAY_ENABLED"] = "false"
		defer delete(env, "RELAY_ENABLED")
		base, _, stop := startServe(t, getenv)
		second = checkout(base)
		time.Sleep(300 * time.Millisecond)
		stop()
		if n := len(srv.Messages()); n != 1 {
			t.Fatalf("%d messages; serve with RELAY_ENABLED=false sent mail", n)
		}
		if out := shopd("outbox", "status"); !strings.Contains(out, "pending 1 (due now 1), dead 0") || !strings.Contains(out, second) {
			t.Errorf("status: %q", out)
		}
	})

	runRelay := func(t *testing.T, want int) {
		t.Helper()
		rctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- run(rctx, []string{"shopd", "relay"}, getenv, io.Discard, io.Discard) }()
		srv.WaitFor(t, want, 20*time.Second)
		// Let it mark the event sent before stopping it.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(shopd("outbox", "status"), "pending 0") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("relay did not stop")
		}
	}

	t.Run("RelayCommand", func(t *testing.T) {
		runRelay(t, 2)
		msgs := srv.Messages()
		if len(msgs) != 2 || msgs[1].Header.Get("X-Shoplab-Order-Id") != second {
			t.Fatalf("messages: %+v", msgs)
		}
	})

	t.Run("RequeueDead", func(t *testing.T) {
		if _, err := conn.Exec(ctx, `UPDATE outbox SET status = 'dead', last_error = 'test' WHERE order_id = $1`, first); err != nil {
			t.Fatal(err)
		}
		if out := shopd("outbox", "status"); !strings.Contains(out, "dead 1") {
			t.Errorf("status: %q", out)
		}
		if out := shopd("outbox", "requeue-dead", first); !strings.Contains(out, "requeued 1") {
			t.Errorf("requeue-dead: %q", out)
		}
		runRelay(t, 3)
		if msgs := srv.Messages(); msgs[2].Header.Get("X-Shoplab-Order-Id") != first {
			t.Errorf("requeued mail: %+v", msgs[2].Header)
		}
		if err := run(ctx, []string{"shopd", "outbox", "requeue-dead", "not-an-id"}, getenv, io.Discard, io.Discard); err == nil {
			t.Error("requeue-dead accepted a bad order id")
		}
	})
}

func TestOutboxConfig(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"RELAY_BATCH_SIZE": "0"},
		{"RELAY_MAX_ATTEMPTS": "x"},
		{"RELAY_INTERVAL": "soon"},
		{"RELAY_ENABLED": "maybe"},
		{"RELAY_LEASE": "10s", "SMTP_TIMEOUT": "30s"},
		{"RELAY_BACKOFF_BASE": "2h"},
	} {
		if _, err := loadConfig(func(k string) string { return env[k] }); err == nil {
			t.Errorf("%v accepted", env)
		}
	}
	c, err := loadConfig(func(k string) string {
		return map[string]string{"SMTP_ADDR": "mail:587", "SMTP_TIMEOUT": "5s", "RELAY_BATCH_SIZE": "7", "RELAY_RETENTION": "0"}[k]
	})
	if err != nil || c.Mail.Addr != "mail:587" || c.Relay.SendTimeout != 5*time.Second || c.Relay.BatchSize != 7 || c.Relay.Retention != 0 || !c.RelayEnabled {
		t.Errorf("config %+v %v", c, err)
	}
}
