// Package moncheck is the engine of `make monitors-check` and `make
// dashboards-preview`: it runs a healthy mixed load against a fresh shopd
// while a ddquery.Recorder captures its DogStatsD stream (Run), evaluates
// every monitor of monitors/*.json over the capture with the monitor's own
// thresholds and options (Evaluate), and renders every dashboard widget from
// the capture into one static HTML page (RenderPreview). The programs under
// bench/ and the test of this package call the same functions, at different
// scales.
//
// It sits at the module root's internal/ beside benchkit, which it starts
// shopd and its database through, so that bench/ and chaos/ both use it.
package moncheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// Config says how to run the healthy load.
type Config struct {
	// Shopd is the shopd binary (see benchkit.ShopdPath).
	Shopd string
	// Server is the PostgreSQL server to create the database on
	// (benchkit.DefaultServer()).
	Server string
	// Duration is how long the load runs.
	Duration time.Duration
	// Rate is requests per second, over all kinds of request.
	Rate int
	// Settle is how long, after the load, the run waits for the outbox to
	// send the confirmations and the periodic gauges to report once more,
	// before shopd is stopped (which flushes its DogStatsD client).
	Settle time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Env is the env tag of the shopd the check starts (DD_ENV).
const Env = "monitors-check"

// Capture is what a run recorded.
type Capture struct {
	// From is when the load started, To when the capture ended (after
	// shopd stopped and its last packets arrived).
	From, To time.Time
	// LoadEnd is when the load stopped.
	LoadEnd time.Time
	// Samples are the DogStatsD samples shopd sent, from its start.
	Samples []ddquery.Sample
	// Requests counts the load's responses by kind of request and status
	// code ("checkout" -> "201" -> n; code "0" is a transport error).
	Requests map[string]map[string]int
	// Mails is how many messages the SMTP sink accepted.
	Mails int64
}

// kind is one kind of request of the load, with its weight in the mix.
type kind struct {
	name   string
	weight int
	target func(n int64, t *vegeta.Target)
}

// fixture is what the load needs from the seeded database.
type fixture struct {
	heavy    string       // the heavy user's id
	users    []string     // customers to check out as and report on
	products []string     // in-stock products
	replays  atomic.Int64 // checkouts sent again with the same Idempotency-Key
}

// Run creates and seeds a fresh database, starts an SMTP sink, a
// DogStatsD recorder and shopd pointed at both, runs the mixed load for
// cfg.Duration at cfg.Rate, lets the outbox drain for cfg.Settle, stops
// shopd and returns the capture. Everything it started is stopped and the
// database dropped before it returns. It fails on any setup error, and when
// the load's requests fail at the transport level or with 5xx: a healthy
// run is what the monitors are checked against.
func Run(ctx context.Context, cfg Config) (*Capture, error) {
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	if cfg.Duration <= 0 || cfg.Rate <= 0 {
		return nil, errors.New("moncheck: duration and rate must be positive")
	}
	bin, err := benchkit.ShopdPath(cfg.Shopd)
	if err != nil {
		return nil, err
	}
	db, err := benchkit.CreateDatabase(ctx, cfg.Server, "moncheck")
	if err != nil {
		return nil, err
	}
	defer db.Drop()
	fx, err := seed(ctx, db.URL)
	if err != nil {
		return nil, fmt.Errorf("moncheck: seed: %w", err)
	}
	logf("database %s seeded (%d customers, %d in-stock products)", db.Name, len(fx.users), len(fx.products))

	sink, err := startSMTPSink()
	if err != nil {
		return nil, err
	}
	defer sink.close()
	rec, err := ddquery.NewRecorder()
	if err != nil {
		return nil, fmt.Errorf("moncheck: dogstatsd recorder: %w", err)
	}
	defer rec.Close()

	const adminToken = "monitors-check-admin"
	shopd, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{
		Bin:         bin,
		DatabaseURL: db.URL,
		Env: []string{
			"DD_DOGSTATSD_URL=udp://" + rec.Addr(),
			"DD_ENV=" + Env, "DD_SERVICE=shoplab", "DD_VERSION=check",
			"SMTP_ADDR=" + sink.addr, "SMTP_TLS=none", "RELAY_INTERVAL=200ms",
			"ADMIN_TOKEN=" + adminToken,
		},
		LogPath: filepath.Join(os.TempDir(), fmt.Sprintf("moncheck-shopd-%d.log", os.Getpid())),
	})
	if err != nil {
		return nil, err
	}
	defer shopd.Stop()
	logf("shopd pid %d on %s, DogStatsD to %s, SMTP sink %s", shopd.PID, shopd.URL, rec.Addr(), sink.addr)

	c := &Capture{From: time.Now(), Requests: map[string]map[string]int{}}
	logf("load: %d req/s for %s", cfg.Rate, cfg.Duration)
	if err := attack(ctx, shopd.URL, adminToken, fx, cfg, c.Requests); err != nil {
		return nil, err
	}
	c.LoadEnd = time.Now()
	checkouts := -int(fx.replays.Load()) // a replay creates no order and no mail
	for code, n := range c.Requests["checkout"] {
		if code == "201" {
			checkouts += n
		}
	}
	// Let the relay send the confirmations and the gauges report again.
	settle, cancel := context.WithTimeout(ctx, cfg.Settle)
	for settle.Err() == nil && sink.count.Load() < int64(checkouts) {
		select {
		case <-settle.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if settle.Err() == nil { // mails done: give the gauges one more report
		select {
		case <-settle.Done():
		case <-time.After(min(cfg.Settle, 11*time.Second)):
		}
	}
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	shopd.Stop() // SIGTERM: shopd closes its DogStatsD client, which flushes
	time.Sleep(300 * time.Millisecond)
	c.To = time.Now()
	c.Samples = rec.Samples()
	c.Mails = sink.count.Load()
	logf("captured %d DogStatsD samples; the SMTP sink accepted %d of %d confirmations", len(c.Samples), c.Mails, checkouts)

	var bad []string
	for _, k := range sortedKeys(c.Requests) {
		for code, n := range c.Requests[k] {
			if code == "0" || code >= "500" {
				bad = append(bad, fmt.Sprintf("%s: %d x %s", k, n, code))
			}
		}
	}
	if len(bad) > 0 {
		return c, fmt.Errorf("moncheck: the load was not healthy: %s (shopd log: %s)", strings.Join(bad, "; "), shopd.LogPath)
	}
	return c, nil
}

// seed loads the demo data and picks the load's users and products; the
// products get ample stock, so that checkouts succeed all run long.
func seed(ctx context.Context, dsn string) (*fixture, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := postgres.New(pool).Seed(ctx); err != nil {
		return nil, err
	}
	fx := &fixture{}
	if err := pool.QueryRow(ctx, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`).Scan(&fx.heavy); err != nil {
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
		fx.users = append(fx.users, id)
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
		fx.products = append(fx.products, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(fx.users) == 0 || len(fx.products) == 0 {
		return nil, errors.New("the seed has no customers or products")
	}
	return fx, nil
}

// mix is the healthy load: reads dominate, checkouts steady, and a trickle
// of imports, reports and sign-ups. Reports are rare on purpose: shopd runs
// few at once (REPORTS_MAX_CONCURRENT) and answers 429 beyond.
func mix(base, adminToken string, fx *fixture) []kind {
	var mu sync.Mutex
	var lastKey string
	var lastBody []byte
	jsonHdr := func() http.Header { return http.Header{"Content-Type": {"application/json"}} }
	terms := []string{"cable", "desk", "lamp", "mouse", "zzzz-no-such-product"}
	return []kind{
		{"list products", 20, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", fmt.Sprintf("%s/products?page=%d", base, 1+n%3)
		}},
		{"get product", 20, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/products/"+fx.products[n%int64(len(fx.products))]
		}},
		{"search", 12, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/products?q="+terms[n%int64(len(terms))]
		}},
		{"order history", 10, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/orders/"+fx.heavy+"?limit=50"
		}},
		{"checkout", 20, func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Header = "POST", base+"/orders/checkout", jsonHdr()
			mu.Lock()
			defer mu.Unlock()
			if n%10 == 9 && lastKey != "" { // a client retrying: an idempotent replay
				t.Header.Set("Idempotency-Key", lastKey)
				t.Body = lastBody
				fx.replays.Add(1)
				return
			}
			lastKey = fmt.Sprintf("moncheck-%d-%d", time.Now().UnixNano(), n)
			lastBody = fmt.Appendf(nil, `{"userId":%q,"items":[{"productId":%q,"quantity":%d},{"productId":%q,"quantity":1}]}`,
				fx.users[n%int64(len(fx.users))], fx.products[n%int64(len(fx.products))], 1+n%3,
				fx.products[(n+7)%int64(len(fx.products))])
			t.Header.Set("Idempotency-Key", lastKey)
			t.Body = lastBody
		}},
		{"import", 2, func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Header = "POST", base+"/admin/products/import", jsonHdr()
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
			t.Method, t.URL = "GET", base+"/reports/orders/"+fx.heavy
		}},
		{"report download", 1, func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+"/reports/orders/"+fx.users[n%int64(len(fx.users))]+"?format=csv"
		}},
		{"create user", 4, func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Header = "POST", base+"/users", jsonHdr()
			t.Body = fmt.Appendf(nil, `{"email":"check.%d.%d@example.com","name":"Check User %d"}`, time.Now().UnixNano(), n, n)
		}},
	}
}

// attack runs the mix with vegeta and counts the responses by kind and
// status code into out.
func attack(ctx context.Context, base, adminToken string, fx *fixture, cfg Config, out map[string]map[string]int) error {
	kinds := mix(base, adminToken, fx)
	var wheel []int // index into kinds, spread by weight
	for i, k := range kinds {
		for range k.weight {
			wheel = append(wheel, i)
		}
	}
	// Interleave: stride through the wheel with a step coprime to its length.
	step := 7
	for gcd(step, len(wheel)) != 1 {
		step++
	}
	var seq atomic.Int64
	perKind := make([]atomic.Int64, len(kinds)) // each kind numbers its own requests
	var mu sync.Mutex
	names := map[string]string{} // "METHOD URL" of in-flight targets -> kind; URLs repeat, kinds agree
	tr := func(t *vegeta.Target) error {
		n := seq.Add(1) - 1
		// One of each kind first, so that a short run has them all.
		i := int(n % int64(len(kinds)))
		if n >= int64(len(kinds)) {
			i = wheel[(n*int64(step))%int64(len(wheel))]
		}
		k := kinds[i]
		*t = vegeta.Target{}
		k.target(perKind[i].Add(1)-1, t)
		mu.Lock()
		names[t.Method+" "+t.URL] = k.name
		mu.Unlock()
		return nil
	}
	atk := vegeta.NewAttacker(
		vegeta.Timeout(30*time.Second), vegeta.Workers(4), vegeta.MaxWorkers(64),
		vegeta.KeepAlive(true), vegeta.Redirects(0), vegeta.HTTP2(false),
	)
	results := atk.Attack(tr, vegeta.ConstantPacer{Freq: cfg.Rate, Per: time.Second}, cfg.Duration, "monitors-check")
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
			name := names[r.Method+" "+r.URL]
			mu.Unlock()
			if name == "" {
				name = r.Method + " " + r.URL
			}
			if out[name] == nil {
				out[name] = map[string]int{}
			}
			out[name][fmt.Sprint(r.Code)]++
		}
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// smtpSink is an SMTP server on 127.0.0.1 that accepts every message and
// counts it, so that shopd's outbox relay has somewhere to deliver.
type smtpSink struct {
	srv   *smtp.Server
	addr  string
	count atomic.Int64
	done  chan struct{}
}

func startSMTPSink() (*smtpSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("moncheck: smtp sink: %w", err)
	}
	s := &smtpSink{addr: l.Addr().String(), done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }))
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(l) // ends with Close
	}()
	return s, nil
}

func (s *smtpSink) close() {
	_ = s.srv.Close()
	<-s.done
}

type sinkSession struct{ sink *smtpSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.sink.count.Add(1)
	return nil
}

// WriteCapture writes the samples to path as JSON lines, one
// ddquery.Sample each, creating the directory if need be.
func WriteCapture(path string, samples []ddquery.Sample) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, s := range samples {
		if err := enc.Encode(s); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadCapture reads a file written by WriteCapture. It fails on a line
// that is not a sample and on an empty file.
func ReadCapture(path string) ([]ddquery.Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []ddquery.Sample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var s ddquery.Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no samples", path)
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
