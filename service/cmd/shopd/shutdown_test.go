package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/internal/pgtest"
)

// TestShutdownWithWorkInFlight ends serve's context (what SIGTERM does)
// while a slow import uploads and checkouts run: the import gets 503 +
// Retry-After + Connection: close at once (not after SHUTDOWN_TIMEOUT),
// every checkout either completes or gets 503, serve returns well before
// SHUTDOWN_TIMEOUT, and no order is half-written.
func TestShutdownWithWorkInFlight(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	env := map[string]string{
		"DATABASE_URL": dsn, "PORT": "0", "HOST": "127.0.0.1", "DD_TRACE_ENABLED": "false",
		"DD_AGENT_HOST": "127.0.0.1", "DD_DOGSTATSD_PORT": "1", "LOG_LEVEL": "info",
		"SHUTDOWN_TIMEOUT": "15s", "SMTP_ADDR": "",
		"BUYER_AUTH": "off", // checkouts by id, as the original's clients do
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
	defer conn.Close(context.WithoutCancel(ctx))
	var user, product string
	if err := conn.QueryRow(ctx, `SELECT customer_id::text FROM orders ORDER BY created_at LIMIT 1`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `UPDATE products SET inventory = 1000000 WHERE id = (SELECT id FROM products ORDER BY id LIMIT 1) RETURNING id::text`).Scan(&product); err != nil {
		t.Fatal(err)
	}
	var ordersBefore int
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&ordersBefore)

	base, _, stop := startServe(t, getenv)
	client := &http.Client{Timeout: 30 * time.Second}

	// The slow import: a row every 50 ms, for as long as it is let.
	pr, pw := io.Pipe()
	uploadDone := make(chan struct{})
	go func() {
		defer pw.Close()
		_, _ = io.WriteString(pw, "name,description,price,inventory\n")
		for i := 0; ; i++ {
			select {
			case <-uploadDone:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(pw, "sigterm row %d,x,1.00,1\n", i); err != nil {
				return
			}
		}
	}()
	defer close(uploadDone)
	type answer struct {
		status     int
		retryAfter string
		closed     bool
		at         time.Time
		err        error
	}
	importAnswer := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/admin/products/import", pr)
		req.Header.Set("Content-Type", "text/csv")
		res, err := client.Do(req)
		if err != nil {
			importAnswer <- answer{err: err, at: time.Now()}
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		importAnswer <- answer{status: res.StatusCode, retryAfter: res.Header.Get("Retry-After"), closed: res.Close, at: time.Now()}
	}()

	// Checkout load: 6 buyers in a loop until the server stops answering.
	var mu sync.Mutex
	statuses := map[int]int{}
	clientErrors := 0
	var wg sync.WaitGroup
	body := fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				res, err := client.Post(base+"/orders/checkout", "application/json", strings.NewReader(body))
				mu.Lock()
				if err != nil {
					clientErrors++ // refused: the listener is closed
					mu.Unlock()
					return
				}
				statuses[res.StatusCode]++
				mu.Unlock()
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == http.StatusServiceUnavailable {
					return
				}
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	sigterm := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()

	var a answer
	select {
	case a = <-importAnswer:
	case <-time.After(10 * time.Second):
		t.Fatal("the import got no answer within 10 s of SIGTERM")
	}
	took := a.at.Sub(sigterm)
	t.Logf("import at SIGTERM: %d after %s, Retry-After %q, Connection: close %v (err %v)", a.status, took.Round(time.Millisecond), a.retryAfter, a.closed, a.err)
	if a.err != nil || a.status != http.StatusServiceUnavailable || a.retryAfter == "" || !a.closed || took > 2*time.Second {
		t.Errorf("import at SIGTERM: %d after %s (err %v), want 503 + Retry-After + Connection: close within 2 s", a.status, took, a.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve: %v", err)
	}
	exit := time.Since(sigterm)
	wg.Wait()
	t.Logf("serve returned %s after SIGTERM; checkouts: %v, refused connections %d", exit.Round(time.Millisecond), statuses, clientErrors)
	if exit > 5*time.Second {
		t.Errorf("serve took %s to stop, want well under SHUTDOWN_TIMEOUT (15 s)", exit)
	}
	for status, n := range statuses {
		if status != http.StatusCreated && status != http.StatusServiceUnavailable {
			t.Errorf("%d checkouts answered %d, want 201 or 503", n, status)
		}
	}
	if statuses[http.StatusCreated] == 0 {
		t.Error("no checkout completed before the shutdown")
	}

	// Nothing half-written: every new order has its lines and its total,
	// each 201 is an order, and the import left no row.
	var orders, bare, wrongTotal, imported int
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&orders)
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)`).Scan(&bare)
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM orders o WHERE o.total <> (SELECT sum(i.price * i.quantity) FROM order_items i WHERE i.order_id = o.id)`).Scan(&wrongTotal)
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM products WHERE name LIKE 'sigterm row%'`).Scan(&imported)
	if bare != 0 || wrongTotal != 0 {
		t.Errorf("%d orders without lines, %d with a total not their lines'", bare, wrongTotal)
	}
	if n := orders - ordersBefore; n < statuses[http.StatusCreated] || n > statuses[http.StatusCreated]+clientErrors {
		t.Errorf("%d new orders for %d checkouts answered 201 (%d client errors)", n, statuses[http.StatusCreated], clientErrors)
	}
	if imported != 0 {
		t.Errorf("%d rows of the cut import stored, want 0", imported)
	}
}
