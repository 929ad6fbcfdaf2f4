package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// slowUpload is an import whose CSV body the test writes a row at a time.
type slowUpload struct {
	w    *io.PipeWriter
	res  chan response
	err  chan error
	sent time.Time
}

// startSlowUpload posts a chunked CSV import to srv whose body sends a
// row every interval until the test closes it (or stop is closed).
func startSlowUpload(srv *httptest.Server, tag string, interval time.Duration, stop <-chan struct{}) *slowUpload {
	pr, pw := io.Pipe()
	u := &slowUpload{w: pw, res: make(chan response, 1), err: make(chan error, 1), sent: time.Now()}
	go func() {
		defer pw.Close()
		if _, err := io.WriteString(pw, "name,description,price,inventory\n"); err != nil {
			return
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if _, err := fmt.Fprintf(pw, "%s row %d,slow,1.00,1\n", tag, i); err != nil {
				return
			}
		}
	}()
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+"/admin/products/import", pr)
		req.Header.Set("Content-Type", "text/csv")
		res, err := srv.Client().Do(req)
		if err != nil {
			pr.CloseWithError(err)
			u.err <- err
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		pr.Close()
		u.res <- response{status: res.StatusCode, header: res.Header, body: b, closed: res.Close}
	}()
	return u
}

// admissionEnv serves a seeded database with a main pool of mainConns
// and imports on a pool of their own (importConns), as shopd does.
func admissionEnv(t *testing.T, mainConns, importConns int32, cfg httpapi.Config, stopping context.Context) *testEnv {
	t.Helper()
	tel, stats, logs := telemetrytest.New(t)
	db := newSeededDB(t, mainConns)
	pc, err := pgxpool.ParseConfig(db.Pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = importConns
	ip, err := pgxpool.NewWithConfig(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ip.Close)
	db.ImportPool = ip
	h := httpapi.NewServer(httpapi.Deps{Config: cfg, Telemetry: tel, Products: db, Orders: db,
		Reports: postgres.NewReports(db.Pool, 0), Users: db, DB: db, Stopping: stopping})
	srv := newServer(t, h)
	return &testEnv{db: db, srv: srv, tel: tel, stats: stats, logs: logs}
}

func newSeededDB(t *testing.T, maxConns int32) *postgres.DB {
	t.Helper()
	e := newEnv(t, func(c *pgxpool.Config) { c.MaxConns = maxConns })
	e.srv.Close()
	return e.db
}

// routeProbe is one request of every other route, and its bound.
type routeProbe struct {
	name, method, path, body string
}

func otherRoutes(t *testing.T, e *testEnv) []routeProbe {
	user := e.id(t, `SELECT customer_id::text FROM orders ORDER BY created_at LIMIT 1`)
	product := e.id(t, `SELECT id::text FROM products ORDER BY inventory DESC, id LIMIT 1`)
	return []routeProbe{
		{"GET /products", "GET", "/products", ""},
		{"GET /products/{id}", "GET", "/products/" + product, ""},
		{"GET /orders/{id}", "GET", "/orders/" + user, ""},
		{"POST /users", "POST", "/users", fmt.Sprintf(`{"email":"probe-%d@example.com","name":"Probe"}`, time.Now().UnixNano())},
		{"POST /orders/checkout", "POST", "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: product, Quantity: 1})},
		{"GET /health", "GET", "/health", ""},
		{"GET /ready", "GET", "/ready", ""},
	}
}

// TestSlowImportsDoNotStarveOtherRoutes reproduces the probe of issue 16:
// 24 slow chunked imports at once. Two are admitted (on the imports'
// own pool), the 22 others get 429 + Retry-After at once without their
// body being read, and every other route answers as usual meanwhile.
func TestSlowImportsDoNotStarveOtherRoutes(t *testing.T) {
	cfg := testConfig()
	cfg.ImportsMaxConcurrent = 2
	e := admissionEnv(t, 20, 2, cfg, nil)
	stop := make(chan struct{})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	uploads := make([]*slowUpload, 24)
	for i := range uploads {
		uploads[i] = startSlowUpload(e.srv, fmt.Sprintf("slow-%d", i), 100*time.Millisecond, stop)
	}
	refused := 0
	deadline := time.After(5 * time.Second)
	for refused < 22 {
		select {
		case <-deadline:
			t.Fatalf("%d of 24 slow imports refused within 5 s, want 22", refused)
		default:
		}
		for _, u := range uploads {
			select {
			case r := <-u.res:
				if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
					t.Fatalf("refused import: %d %q %s, want 429 with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
				}
				if d := time.Since(u.sent); d > 2*time.Second {
					t.Errorf("429 took %s", d)
				}
				refused++
			case err := <-u.err:
				t.Fatalf("import: %v", err)
			default:
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.scalar(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%COPY%' AND state = 'active' AND pid <> pg_backend_pid()`); n > 2 {
		t.Errorf("%d sessions in COPY, want at most 2 (the imports pool)", n)
	}
	// Every other route, while the two admitted uploads trickle on.
	const bound = 500 * time.Millisecond
	for _, p := range otherRoutes(t, e) {
		start := time.Now()
		r := e.do(t, p.method, p.path, "application/json", p.body)
		d := time.Since(start)
		t.Logf("%-22s %d in %s", p.name, r.status, d.Round(time.Millisecond))
		if r.status >= 300 || d > bound {
			t.Errorf("%s: %d in %s during 24 slow imports, want 2xx within %s: %s", p.name, r.status, d, bound, r.body)
		}
	}
	close(stop)
	for _, u := range uploads {
		select {
		case r := <-u.res:
			if r.status != http.StatusCreated {
				t.Errorf("admitted import: %d %s", r.status, r.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("admitted import did not answer")
		default: // refused above
		}
	}
}

// TestExhaustedPoolAnswers503 holds every connection of the main pool:
// every route that needs one answers 503 + Retry-After within its
// acquire bound instead of hanging; /health, which needs none, 200.
func TestExhaustedPoolAnswers503(t *testing.T) {
	e := admissionEnv(t, 3, 1, func() httpapi.Config { c := testConfig(); c.ReadyTimeout = 300 * time.Millisecond; return c }(), nil)
	e.db.AcquireTimeout = 300 * time.Millisecond
	e.db.CheckoutTimeouts.Acquire = 300 * time.Millisecond
	probes := otherRoutes(t, e)
	var held []*pgxpool.Conn
	for range 3 {
		c, err := e.db.Pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	const bound = 2 * time.Second // 300 ms of acquire wait, and slack for -race on a shared machine
	for _, p := range probes {
		start := time.Now()
		r := e.do(t, p.method, p.path, "application/json", p.body)
		d := time.Since(start)
		t.Logf("%-22s %d in %s (Retry-After %q)", p.name, r.status, d.Round(time.Millisecond), r.header.Get("Retry-After"))
		want := http.StatusServiceUnavailable
		if p.path == "/health" {
			want = http.StatusOK
		}
		if r.status != want || d > bound {
			t.Errorf("%s: %d in %s with the pool exhausted, want %d within %s: %s", p.name, r.status, d, want, bound, r.body)
		}
		if want == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", p.name)
		}
	}
}

// TestStalledUploadIsCut: an upload that stops sending is cut after the
// idle timeout with 408 + Connection: close, and its rows rolled back.
func TestStalledUploadIsCut(t *testing.T) {
	cfg := testConfig()
	cfg.UploadIdleTimeout = 300 * time.Millisecond
	e := admissionEnv(t, 5, 2, cfg, nil)
	stop := make(chan struct{})
	defer close(stop)
	u := startSlowUpload(e.srv, "stalled", time.Hour, stop) // the header row, then nothing
	select {
	case r := <-u.res:
		d := time.Since(u.sent)
		t.Logf("stalled upload: %d in %s, Connection: close %v", r.status, d.Round(time.Millisecond), r.closed)
		if r.status != http.StatusRequestTimeout || !r.closed || d > 3*time.Second {
			t.Errorf("stalled upload: %d (close %v) in %s, want 408 with Connection: close: %s", r.status, r.closed, d, r.body)
		}
	case err := <-u.err:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("stalled upload never answered")
	}
	t.Run("Slow", func(t *testing.T) {
		cfg := testConfig()
		cfg.UploadIdleTimeout = 300 * time.Millisecond
		cfg.UploadMinBytesPerSec = 10_000
		e := admissionEnv(t, 5, 2, cfg, nil)
		u := startSlowUpload(e.srv, "trickle", 100*time.Millisecond, stop)
		select {
		case r := <-u.res:
			if r.status != http.StatusRequestTimeout {
				t.Errorf("trickling upload: %d, want 408: %s", r.status, r.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("trickling upload never answered")
		}
		if n := e.scalar(t, `SELECT count(*) FROM products WHERE name LIKE 'trickle%'`); n != 0 {
			t.Errorf("%d rows of the cut upload stored, want 0", n)
		}
	})
	if n := e.scalar(t, `SELECT count(*) FROM products WHERE name LIKE 'stalled%'`); n != 0 {
		t.Errorf("%d rows stored", n)
	}
}

// TestShutdownCutsUploads: when the server begins to shut down, a running
// upload is answered at once with 503 + Retry-After + Connection: close
// and rolled back; a new import is refused with 503.
func TestShutdownCutsUploads(t *testing.T) {
	stopping, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	e := admissionEnv(t, 5, 2, testConfig(), stopping)
	stop := make(chan struct{})
	defer close(stop)
	u := startSlowUpload(e.srv, "shutdown", 50*time.Millisecond, stop)
	time.Sleep(500 * time.Millisecond)
	cut := time.Now()
	shutdown()
	select {
	case r := <-u.res:
		d := time.Since(cut)
		t.Logf("upload at shutdown: %d in %s after it began, Retry-After %q, Connection: close %v", r.status, d.Round(time.Millisecond), r.header.Get("Retry-After"), r.closed)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !r.closed || d > 2*time.Second {
			t.Errorf("upload at shutdown: %d in %s, want 503 + Retry-After + Connection: close at once: %s", r.status, d, r.body)
		}
	case err := <-u.err:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("upload never answered after the shutdown began")
	}
	if n := e.scalar(t, `SELECT count(*) FROM products WHERE name LIKE 'shutdown%'`); n != 0 {
		t.Errorf("%d rows of the cut upload stored, want 0", n)
	}
	r := e.do(t, "POST", "/admin/products/import", "text/csv", "name,description,price,inventory\nlate,x,1.00,1\n")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("import during shutdown: %d, want 503 with Retry-After: %s", r.status, r.body)
	}
}

// TestShutdownLetsReportSummaryFinish: a JSON report summary is a short
// request, which the shutdown lets finish (only downloads are ended): the
// summary waits on a lock held on orders, the server begins to stop, the
// lock is released, and the summary answers 200. It used to be cancelled
// with the downloads and answer 500, or nothing.
func TestShutdownLetsReportSummaryFinish(t *testing.T) {
	stopping, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	e := admissionEnv(t, 5, 2, testConfig(), stopping)
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	tx, err := e.db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(t.Context(), `LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := http.Get(e.srv.URL + "/reports/orders/" + user)
		if err != nil {
			done <- answer{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		done <- answer{status: res.StatusCode}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.scalar(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the report never waited on the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	shutdown()
	time.Sleep(100 * time.Millisecond) // the shutdown has begun while the summary waits
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-done:
		if a.err != nil || a.status != http.StatusOK {
			t.Errorf("report summary in flight at shutdown: %d (%v), want 200", a.status, a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the report never answered after the shutdown began")
	}
}
