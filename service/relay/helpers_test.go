package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/internal/smtptest"
	shopmail "github.com/shoplab/shoplab/service/mail"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/relay"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// env is a fresh database (the real postgres store) with three buyers and
// three products, a real SMTP server and a telemetry capture.
type env struct {
	db       *postgres.DB
	smtp     *smtptest.Server
	tel      *telemetry.Telemetry
	stats    *telemetrytest.StatsdCapture
	logs     *observer.ObservedLogs
	buyers   []buyer
	fan      string // 24.50, 1000 in stock
	cable    string // 9.99, 1000 in stock, a name that needs HTML escaping
	lamp     string // 35.00, 2 in stock
	products map[string]string
}

type buyer struct{ id, email, name string }

const mailFrom = "shoplab <orders@shop.test>"

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{db: postgres.New(pgtest.New(t)), smtp: smtptest.New(t), products: map[string]string{}}
	e.tel, e.stats, e.logs = telemetrytest.New(t)
	for i := range 3 {
		b := buyer{email: fmt.Sprintf("buyer%d@example.com", i), name: fmt.Sprintf("Buyer %d", i)}
		if err := e.db.Pool.QueryRow(ctx, `INSERT INTO customers (email, name) VALUES ($1, $2) RETURNING id::text`, b.email, b.name).Scan(&b.id); err != nil {
			t.Fatal(err)
		}
		e.buyers = append(e.buyers, b)
	}
	for _, p := range []struct {
		dst   *string
		name  string
		price string
		stock int
	}{
		{&e.fan, "Desk Fan", "24.50", 1000},
		{&e.cable, "Cable <b>& Co</b>", "9.99", 1000},
		{&e.lamp, "Lamp", "35.00", 2},
	} {
		if err := e.db.Pool.QueryRow(ctx, `INSERT INTO products (name, price, inventory) VALUES ($1, $2::numeric, $3) RETURNING id::text`,
			p.name, p.price, p.stock).Scan(p.dst); err != nil {
			t.Fatal(err)
		}
		e.products[*p.dst] = p.name
	}
	return e
}

// relay returns a relay on the postgres store and the test's SMTP server,
// with test timings (polls every 10ms, backoff 10-100ms).
func (e *env) relay(t *testing.T, name string, tune ...func(*relay.Config)) *relay.Relay {
	t.Helper()
	sender, err := shopmail.NewSender(shopmail.Config{Addr: e.smtp.Addr(), From: mailFrom, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := relay.Config{
		Name: name, BatchSize: 10, Interval: 10 * time.Millisecond, Lease: 10 * time.Second, SendTimeout: 2 * time.Second,
		MaxAttempts: 1000, BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		StatsInterval: 50 * time.Millisecond, Retention: 24 * time.Hour,
	}
	for _, f := range tune {
		f(&cfg)
	}
	r, err := relay.New(e.db, sender, e.tel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run starts r.Run in the background; the returned stop cancels it and
// fails the test unless Run returns nil promptly.
func run(t *testing.T, r *relay.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("relay Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *env) checkout(t *testing.T, ctx context.Context, b buyer, lines ...shop.CartLine) shop.Order {
	t.Helper()
	o, err := e.db.Checkout(ctx, shop.CheckoutRequest{UserID: b.id, Items: lines})
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	return o.Order
}

func line(product string, qty int) shop.CartLine {
	return shop.CartLine{ProductID: product, Quantity: qty}
}

func (e *env) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitUntil polls cond every 10ms for up to d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// textPart returns the decoded text/plain and HTML parts of a received
// message.
func textPart(t *testing.T, m smtptest.Message) (text, html string) {
	t.Helper()
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(m.Body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return text, html
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
			text = string(b)
		} else {
			html = string(b)
		}
	}
}

// byOrder indexes messages by their X-Shoplab-Order-Id and fails on a
// second message for one order or a Message-ID that is not the order's.
func byOrder(t *testing.T, msgs []smtptest.Message) map[string]smtptest.Message {
	t.Helper()
	out := map[string]smtptest.Message{}
	for _, m := range msgs {
		id := m.Header.Get("X-Shoplab-Order-Id")
		if _, dup := out[id]; dup {
			t.Errorf("order %s was mailed twice", id)
		}
		if want := shopmail.MessageID(id, "shop.test"); m.MessageID() != want {
			t.Errorf("Message-ID %q, want %q", m.MessageID(), want)
		}
		out[id] = m
	}
	return out
}
