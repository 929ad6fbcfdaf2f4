package moncheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/service/postgres"
)

// This file is the plumbing that `make monitors-check` (Run) and the chaos
// engine (chaos/) share: the seed and its fixture, the healthy mix, the
// vegeta attack, shopd's telemetry and mail environment, and an SMTP sink
// that can go away and come back.

// Fixture is what a load needs from the seeded database.
type Fixture struct {
	// Heavy is the heavy user's id (the seed's customer with many orders).
	Heavy string
	// Users are customers to check out as and report on.
	Users []string
	// Products are in-stock products (1,000,000 each after Seed).
	Products []string
	// Replays counts the checkouts sent again with the same
	// Idempotency-Key: they create no order and no mail.
	Replays atomic.Int64
}

// Seed loads the demo data into the database dsn names (postgres.Seed) and
// picks 20 customers and 20 products for the load; the products get ample
// stock, so that checkouts succeed all run long. It fails when the seed
// fails or has no customers or products.
func Seed(ctx context.Context, dsn string) (*Fixture, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := postgres.New(pool).Seed(ctx); err != nil {
		return nil, err
	}
	fx := &Fixture{}
	if err := pool.QueryRow(ctx, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`).Scan(&fx.Heavy); err != nil {
		return nil, fmt.Errorf("heavy user: %w", err)
	}
	rows, err := pool.Query(ctx, `SELECT id::text FROM customers WHERE email <> 'heavy.user@example.com' ORDER BY email LIMIT 20`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		fx.Users = append(fx.Users, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = pool.Query(ctx, `UPDATE products SET inventory = 1000000
WHERE id IN (SELECT id FROM products ORDER BY name, id LIMIT 20) RETURNING id::text`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		fx.Products = append(fx.Products, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(fx.Users) == 0 || len(fx.Products) == 0 {
		return nil, errors.New("the seed has no customers or products")
	}
	return fx, nil
}

// ShopdEnv is the environment that points shopd's DogStatsD stream at the
// recorder recAddr and its mail at the SMTP sink sinkAddr (plain SMTP, the
// relay polling every 200ms), tags its metrics env:<env>, service:shoplab,
// and sets its admin token.
func ShopdEnv(recAddr, sinkAddr, env, adminToken string) []string {
	return []string{
		"DD_DOGSTATSD_URL=udp://" + recAddr,
		"DD_ENV=" + env, "DD_SERVICE=shoplab", "DD_VERSION=check",
		"SMTP_ADDR=" + sinkAddr, "SMTP_TLS=none", "RELAY_INTERVAL=200ms",
		"ADMIN_TOKEN=" + adminToken,
	}
}

// Kind is one kind of request of a load, with its weight in the mix.
type Kind struct {
	Name   string
	Weight int
	// Target fills t for the kind's n-th request (n from 0).
	Target func(n int64, t *vegeta.Target)
}

// JSONHeader is a header with Content-Type: application/json.
func JSONHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// CheckoutBody is a checkout of quantity units of product, plus one of
// extra when it is not empty, by user.
func CheckoutBody(user, product string, quantity int64, extra string) []byte {
	if extra == "" {
		return fmt.Appendf(nil, `{"userId":%q,"items":[{"productId":%q,"quantity":%d}]}`, user, product, quantity)
	}
	return fmt.Appendf(nil, `{"userId":%q,"items":[{"productId":%q,"quantity":%d},{"productId":%q,"quantity":1}]}`,
		user, product, quantity, extra)
}

// HealthyMix is the healthy load: reads dominate, checkouts steady, and a
// trickle of imports, reports and sign-ups. Reports are rare on purpose:
// shopd runs few at once (REPORTS_MAX_CONCURRENT) and answers 429 beyond.
// Every 10th checkout replays the previous one's Idempotency-Key (counted
// in fx.Replays).
func HealthyMix(base, adminToken string, fx *Fixture) []Kind {
	var mu sync.Mutex
	var lastKey string
	var lastBody []byte
	terms := []string{"cable", "desk", "lamp", "mouse", "zzzz-no-such-product"}
	return []Kind{
		{"list products", 20, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", fmt.Sprintf("%s/products?page=%d", base, 1+n%3)
		}},
		{"get product", 20, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/products/"+fx.Products[n%int64(len(fx.Products))]
		}},
		{"search", 12, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/products?q="+terms[n%int64(len(terms))]
		}},
		{"order history", 10, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/orders/"+fx.Heavy+"?limit=50"
		}},
		{"checkout", 20, func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Header = "POST", base+"/orders/checkout", JSONHeader()
			mu.Lock()
			defer mu.Unlock()
			if n%10 == 9 && lastKey != "" { // a client retrying: an idempotent replay
				t.Header.Set("Idempotency-Key", lastKey)
				t.Body = lastBody
				fx.Replays.Add(1)
				return
			}
			lastKey = fmt.Sprintf("moncheck-%d-%d", time.Now().UnixNano(), n)
			lastBody = CheckoutBody(fx.Users[n%int64(len(fx.Users))], fx.Products[n%int64(len(fx.Products))], 1+n%3,
				fx.Products[(n+7)%int64(len(fx.Products))])
			t.Header.Set("Idempotency-Key", lastKey)
			t.Body = lastBody
		}},
		{"import", 2, func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Header = "POST", base+"/admin/products/import", JSONHeader()
			t.Header.Set("Authorization", "Bearer "+adminToken)
			var b bytes.Buffer
			b.WriteString(`{"products":[`)
			for i := range 5 {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"name":"Check import %d-%d","description":"from monitors-check","price":%d.50,"inventory":%d}`, n, i, 3+i, 10+i)
			}
			b.WriteString(`]}`)
			t.Body = b.Bytes()
		}},
		{"report summary", 1, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/reports/orders/"+fx.Heavy
		}},
		{"report download", 1, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/reports/orders/"+fx.Users[n%int64(len(fx.Users))]+"?format=csv"
		}},
		{"create user", 4, func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Header = "POST", base+"/users", JSONHeader()
			t.Body = fmt.Appendf(nil, `{"email":"check.%d.%d@example.com","name":"Check User %d"}`, time.Now().UnixNano(), n, n)
		}},
	}
}

// Attack runs kinds with vegeta at rate requests per second for dur (until
// ctx ends, then it returns ctx's error), interleaved by weight with one of
// each kind first, and calls each, from one goroutine, with every result and
// the name of its kind. name names the attack in vegeta's results. It fails
// when kinds is empty or rate or dur is not positive.
func Attack(ctx context.Context, kinds []Kind, rate int, dur time.Duration, name string, each func(kind string, r *vegeta.Result)) error {
	if len(kinds) == 0 || rate <= 0 || dur <= 0 {
		return errors.New("moncheck: an attack needs kinds, a positive rate and a positive duration")
	}
	var wheel []int // index into kinds, spread by weight
	for i, k := range kinds {
		for range k.Weight {
			wheel = append(wheel, i)
		}
	}
	if len(wheel) == 0 {
		return errors.New("moncheck: every kind of the attack has weight 0")
	}
	// Interleave: stride through the wheel with a step coprime to its length.
	step := 7
	for gcd(step, len(wheel)) != 1 {
		step++
	}
	var seq atomic.Int64
	perKind := make([]atomic.Int64, len(kinds)) // each kind numbers its own requests
	var mu sync.Mutex
	names := map[string]string{} // "METHOD URL" of targets -> kind; URLs repeat, kinds agree
	tr := func(t *vegeta.Target) error {
		n := seq.Add(1) - 1
		// One of each kind first, so that a short run has them all.
		i := int(n % int64(len(kinds)))
		if n >= int64(len(kinds)) {
			i = wheel[(n*int64(step))%int64(len(wheel))]
		}
		k := kinds[i]
		*t = vegeta.Target{}
		k.Target(perKind[i].Add(1)-1, t)
		mu.Lock()
		names[t.Method+" "+t.URL] = k.Name
		mu.Unlock()
		return nil
	}
	atk := vegeta.NewAttacker(
		vegeta.Timeout(30*time.Second), vegeta.Workers(4), vegeta.MaxWorkers(256),
		vegeta.KeepAlive(true), vegeta.Redirects(0), vegeta.HTTP2(false),
	)
	results := atk.Attack(tr, vegeta.ConstantPacer{Freq: rate, Per: time.Second}, dur, name)
	for {
		select {
		case <-ctx.Done():
			atk.Stop()
			for range results {
			}
			return ctx.Err()
		case r, ok := <-results:
			if !ok {
				return nil
			}
			mu.Lock()
			k := names[r.Method+" "+r.URL]
			mu.Unlock()
			if k == "" {
				k = r.Method + " " + r.URL
			}
			each(k, r)
		}
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// SMTPSink is an SMTP server on 127.0.0.1 that accepts every message and
// counts it, so that shopd's outbox relay has somewhere to deliver. Stop
// takes it away (connections are refused) and Start brings it back on the
// same address: a mail server outage.
type SMTPSink struct {
	addr  string
	count atomic.Int64
	idsMu sync.Mutex
	ids   map[string]int // messages by Message-ID

	mu   sync.Mutex
	srv  *smtp.Server
	done chan struct{}
}

// StartSMTPSink starts a sink on a free port of 127.0.0.1. The caller must
// Close it.
func StartSMTPSink() (*SMTPSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("moncheck: smtp sink: %w", err)
	}
	s := &SMTPSink{addr: l.Addr().String()}
	s.serve(l)
	return s, nil
}

func (s *SMTPSink) serve(l net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }))
	srv.Domain = "localhost"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	done := make(chan struct{})
	s.srv, s.done = srv, done
	go func() {
		defer close(done)
		_ = srv.Serve(l) // ends with Close
	}()
}

// Addr is the sink's host:port.
func (s *SMTPSink) Addr() string { return s.addr }

// Count is how many messages the sink has accepted.
func (s *SMTPSink) Count() int64 { return s.count.Load() }

// MessageIDs counts the accepted messages by their Message-ID header (the
// confirmation of an order has one of its own, the same on every attempt):
// a count above 1 is a mail received twice.
func (s *SMTPSink) MessageIDs() map[string]int {
	s.idsMu.Lock()
	defer s.idsMu.Unlock()
	out := make(map[string]int, len(s.ids))
	for k, v := range s.ids {
		out[k] = v
	}
	return out
}

// Stop closes the listener and every connection: until Start, connections
// to Addr are refused. Stopping a stopped sink does nothing.
func (s *SMTPSink) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	<-s.done
	s.srv = nil
}

// Start listens on Addr again after Stop. It fails when the port was
// taken meanwhile. Starting a running sink does nothing.
func (s *SMTPSink) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("moncheck: smtp sink back on %s: %w", s.addr, err)
	}
	s.serve(l)
	return nil
}

// Close stops the sink for good.
func (s *SMTPSink) Close() { s.Stop() }

type sinkSession struct{ sink *SMTPSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *sinkSession) Data(r io.Reader) error {
	var id string
	if m, err := mail.ReadMessage(r); err == nil {
		id = m.Header.Get("Message-Id")
		r = m.Body
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.sink.count.Add(1)
	if id != "" {
		s.sink.idsMu.Lock()
		if s.sink.ids == nil {
			s.sink.ids = map[string]int{}
		}
		s.sink.ids[id]++
		s.sink.idsMu.Unlock()
	}
	return nil
}
