package httpapi_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// reportEnv is a seeded database behind the real router with the reports
// on their own small pool, as shopd runs them.
type reportEnv struct {
	*testEnv
	reportsPool *pgxpool.Pool
	reportsApp  string // application_name of the reports pool's sessions
}

type reportOpts struct {
	maxConns         int32         // reports pool size (default 3)
	maxConcurrent    int           // httpapi.Config.ReportsMaxConcurrent (default 3)
	statementTimeout time.Duration // REPORTS_STATEMENT_TIMEOUT
	maxDuration      time.Duration // httpapi.Config.ReportMaxDuration
	linesPerSec      int           // httpapi.Config.ReportMaxLinesPerSec
	wrap             func(shop.ReportStore) shop.ReportStore
}

func newReportEnv(t *testing.T, o reportOpts) *reportEnv {
	t.Helper()
	if o.maxConns == 0 {
		o.maxConns = 3
	}
	ctx := t.Context()
	dsn := pgtest.NewDatabase(t)
	tel, stats, logs := telemetrytest.New(t)
	app := tel.Config.AppName

	mainCfg, err := postgres.PoolConfig(dsn, app, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, mainCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db := postgres.New(pool)
	if _, err := db.Seed(ctx); err != nil {
		t.Fatal(err)
	}

	reportsApp := app + ".reports"
	rcfg, err := postgres.PoolConfig(dsn, reportsApp, telemetry.NewQueryTracer(tel).WithPoolName("reports"))
	if err != nil {
		t.Fatal(err)
	}
	rcfg.MaxConns = o.maxConns
	rpool, err := pgxpool.NewWithConfig(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rpool.Close)
	var reports shop.ReportStore = postgres.NewReports(rpool, o.statementTimeout)
	if o.wrap != nil {
		reports = o.wrap(reports)
	}
	h := httpapi.NewServer(httpapi.Deps{
		Config:    httpapi.Config{ReportsMaxConcurrent: o.maxConcurrent, ReportMaxDuration: o.maxDuration, ReportMaxLinesPerSec: o.linesPerSec},
		Telemetry: tel, Products: db, Orders: db, Reports: reports, DB: db,
	})
	srv := newServer(t, h)
	return &reportEnv{
		testEnv:     &testEnv{db: db, srv: srv, tel: tel, stats: stats, logs: logs},
		reportsPool: rpool,
		reportsApp:  reportsApp,
	}
}

// bulkUser adds a user with n generated orders and returns its id.
func (e *reportEnv) bulkUser(t *testing.T, n int) string {
	t.Helper()
	id, err := e.db.SeedBulkUser(t.Context(), fmt.Sprintf("bulk%d@example.com", n), "Bulk User", n)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// reportFacts are a user's report figures as the database counts them.
type reportFacts struct {
	orders, ordersWithLines, lines, items int
}

func (e *reportEnv) facts(t *testing.T, userID string) reportFacts {
	t.Helper()
	var f reportFacts
	err := e.db.Pool.QueryRow(t.Context(), `
SELECT (SELECT count(*) FROM orders WHERE customer_id = $1),
       (SELECT count(DISTINCT o.id) FROM orders o JOIN order_items oi ON oi.order_id = o.id WHERE o.customer_id = $1),
       (SELECT count(*) FROM orders o JOIN order_items oi ON oi.order_id = o.id WHERE o.customer_id = $1),
       (SELECT coalesce(sum(oi.quantity), 0) FROM orders o JOIN order_items oi ON oi.order_id = o.id WHERE o.customer_id = $1)`,
		userID).Scan(&f.orders, &f.ordersWithLines, &f.lines, &f.items)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// reportSessions counts the reports pool's sessions on the test database
// that satisfy cond (SQL over pg_stat_activity).
func (e *reportEnv) reportSessions(t *testing.T, cond string) int {
	t.Helper()
	return e.scalar(t, `SELECT count(*)::int FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND `+cond, e.reportsApp)
}

// waitUntil polls cond every 20ms and fails the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hookedReports wraps a report store to observe or stall a report.
type hookedReports struct {
	shop.ReportStore
	beforeStream func(ctx context.Context) // runs before the lines are read
	onLine       func(ctx context.Context, n int) error
}

func (h hookedReports) StreamReport(ctx context.Context, userID string, limit int, fn func(shop.ReportLine) error) error {
	if h.beforeStream != nil {
		h.beforeStream(ctx)
	}
	n := 0
	return h.ReportStore.StreamReport(ctx, userID, limit, func(l shop.ReportLine) error {
		n++
		if h.onLine != nil {
			if err := h.onLine(ctx, n); err != nil {
				return err
			}
		}
		return fn(l)
	})
}

// gate stalls the lines of full reports at line `at` until opened (or the
// request ends).
type gate struct {
	at   int
	open chan struct{}
	once sync.Once
}

func newGate(at int) *gate { return &gate{at: at, open: make(chan struct{})} }

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// onLine stalls line g.at.
func (g *gate) onLine(ctx context.Context, n int) error {
	if n != g.at {
		return nil
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) wrap(s shop.ReportStore) shop.ReportStore {
	return hookedReports{ReportStore: s, onLine: g.onLine}
}

// reportJSON is the original's report answer.
type reportJSON struct {
	Message    string `json:"message"`
	User       string `json:"user"`
	OrderCount int    `json:"orderCount"`
	ReportSize int    `json:"reportSize"`
	Report     string `json:"report"`
}

var generatedLine = regexp.MustCompile(`Generated: \S+`)

// TestReportSummary: GET /reports/orders/{userId} keeps the original's
// JSON shape, and its reportSize and preview are those of the full text
// report, though it reads no more than the first lines.
func TestReportSummary(t *testing.T) {
	t.Parallel()
	var linesRead atomic.Int64 // by the last StreamReport call
	e := newReportEnv(t, reportOpts{wrap: func(s shop.ReportStore) shop.ReportStore {
		return hookedReports{ReportStore: s, onLine: func(_ context.Context, n int) error {
			linesRead.Store(int64(n))
			return nil
		}}
	}})
	ctx := t.Context()
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	bulk := e.bulkUser(t, 2000)

	// Multi-byte names, a two-digit quantity, an order without lines.
	odd := e.id(t, `INSERT INTO customers (email, name) VALUES ('zoe@example.com', 'Zoë Ünïcode') RETURNING id::text`)
	product := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Café ☕ crème', 3.05, 100) RETURNING id::text`)
	for _, q := range []string{
		`INSERT INTO orders (customer_id, status, total) VALUES ($1, 'pending', 0)`,
		`WITH o AS (INSERT INTO orders (customer_id, status, total) VALUES ($1, 'cancelled', 36.60) RETURNING id)
		 INSERT INTO order_items (order_id, product_id, quantity, price) SELECT o.id, $2, 12, 3.05 FROM o`,
	} {
		args := []any{odd}
		if strings.Contains(q, "$2") {
			args = append(args, product)
		}
		if _, err := e.db.Pool.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Shape", func(t *testing.T) {
		res := e.get(t, "/reports/orders/"+heavy)
		if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
			t.Fatalf("%d %s: %s", res.status, res.header.Get("Content-Type"), res.body)
		}
		var keys map[string]json.RawMessage
		res.json(t, &keys)
		for _, k := range []string{"message", "user", "orderCount", "reportSize", "report"} {
			if _, ok := keys[k]; !ok {
				t.Errorf("no %q in %s", k, res.body)
			}
		}
		if len(keys) != 5 {
			t.Errorf("%d members, want the original's 5: %s", len(keys), res.body)
		}
		var body reportJSON
		res.json(t, &body)
		f := e.facts(t, heavy)
		if body.Message != "Report generated successfully" || body.User != "heavy.user@example.com" || body.OrderCount != f.orders ||
			len(body.Report) != 503 || !strings.HasSuffix(body.Report, "...") ||
			!strings.HasPrefix(body.Report, "ORDER REPORT\nUser: Heavy User <heavy.user@example.com>\n") {
			t.Errorf("report %+v, want %d orders", body, f.orders)
		}
	})

	t.Run("SizeAndPreviewAreTheDownload's", func(t *testing.T) {
		merchant := e.id(t, `SELECT id::text FROM merchants WHERE email = 'merchant1@example.com'`)
		for name, user := range map[string]string{"heavy": heavy, "bulk": bulk, "unicode": odd, "noOrders": merchant} {
			var body reportJSON
			e.get(t, "/reports/orders/"+user).json(t, &body)
			dl := e.get(t, "/reports/orders/"+user+"?format=txt")
			if dl.status != 200 {
				t.Fatalf("%s: download %d", name, dl.status)
			}
			if body.ReportSize != len(dl.body) {
				t.Errorf("%s: reportSize %d, the text report has %d bytes", name, body.ReportSize, len(dl.body))
			}
			head := strings.TrimSuffix(body.Report, "...")
			if len(head) != min(len(dl.body), 500) {
				t.Errorf("%s: preview of %d bytes, report of %d", name, len(head), len(dl.body))
			}
			full := generatedLine.ReplaceAllString(string(dl.body), "Generated: T")
			preview := generatedLine.ReplaceAllString(head, "Generated: T")
			if !strings.HasPrefix(full, preview) {
				t.Errorf("%s: preview is not the report's head:\n%q\n%q", name, preview, full[:min(len(full), 600)])
			}
		}
	})

	t.Run("ReadsOnlyTheHead", func(t *testing.T) {
		if res := e.get(t, "/reports/orders/"+bulk); res.status != 200 {
			t.Fatal(res.status)
		}
		if n := linesRead.Load(); n <= 0 || n > 32 {
			t.Errorf("the summary read %d of 5,000 lines, want the preview's few", n)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		checkProblem(t, e.get(t, "/reports/orders/00000000-0000-4000-8000-000000000000"), 404)
		checkProblem(t, e.get(t, "/reports/orders/00000000-0000-4000-8000-000000000000?format=csv"), 404)
		checkProblem(t, e.get(t, "/reports/orders/not-a-uuid"), 404)
	})

	t.Run("ErrBadFormat", func(t *testing.T) {
		p := checkProblem(t, e.bad("unknown format").get(t, "/reports/orders/"+heavy+"?format=pdf"), 400)
		if !hasField(p, "format", "oneof") {
			t.Errorf("does not name the format: %+v", p)
		}
	})
}

// TestReportDownload: each format streams the complete report, every line
// of every order, newest first.
func TestReportDownload(t *testing.T) {
	t.Parallel()
	e := newReportEnv(t, reportOpts{})
	users := map[string]string{
		"heavy": e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`),
		"bulk":  e.bulkUser(t, 3000), // 7,500 lines: several fetches and flushes
	}
	totalLines := 0
	for _, u := range users {
		totalLines += e.facts(t, u).lines
	}

	download := func(t *testing.T, user, format, contentType string) response {
		t.Helper()
		res := e.get(t, "/reports/orders/"+user+"?format="+format)
		if res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		if ct := res.header.Get("Content-Type"); ct != contentType {
			t.Errorf("Content-Type %q, want %q", ct, contentType)
		}
		if cd, want := res.header.Get("Content-Disposition"), fmt.Sprintf(`attachment; filename="orders-%s.%s"`, user, format); cd != want {
			t.Errorf("Content-Disposition %q, want %q", cd, want)
		}
		return res
	}

	t.Run("Text", func(t *testing.T) {
		for name, user := range users {
			f := e.facts(t, user)
			body := string(download(t, user, "txt", "text/plain; charset=utf-8").body)
			lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
			var items, orders int
			for _, l := range lines {
				switch {
				case strings.HasPrefix(l, "  - "):
					items++
				case strings.HasPrefix(l, "Order "):
					orders++
				}
			}
			if items != f.lines || orders != f.ordersWithLines ||
				!strings.Contains(body, fmt.Sprintf("\nOrders: %d\n", f.orders)) ||
				!strings.HasSuffix(body, fmt.Sprintf("\nItems purchased: %d\n", f.items)) {
				t.Errorf("%s: %d lines in %d orders, want %d in %d (%d items); tail %q", name, items, orders, f.lines, f.ordersWithLines, f.items, lines[len(lines)-4:])
			}
		}
	})

	t.Run("CSV", func(t *testing.T) {
		for name, user := range users {
			f := e.facts(t, user)
			records, err := csv.NewReader(strings.NewReader(string(download(t, user, "csv", "text/csv; charset=utf-8").body))).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(records[0], ",") != "order_id,status,created_at,order_total,product_id,product_name,quantity,unit_price,line_total" {
				t.Errorf("header %v", records[0])
			}
			items, prev := 0, "9999"
			for _, r := range records[1:] {
				q, _ := strconv.Atoi(r[6])
				items += q
				if r[2] > prev {
					t.Fatalf("%s: %s after %s: not newest first", name, r[2], prev)
				}
				prev = r[2]
				unit, _ := shop.ParseMoney(r[7])
				if total, _ := shop.ParseMoney(r[8]); total != unit*shop.Money(q) {
					t.Errorf("line total %s != %s x %d", r[8], r[7], q)
				}
			}
			if len(records)-1 != f.lines || items != f.items {
				t.Errorf("%s: %d rows, %d items; want %d, %d", name, len(records)-1, items, f.lines, f.items)
			}
		}
	})

	t.Run("NDJSON", func(t *testing.T) {
		for name, user := range users {
			f := e.facts(t, user)
			sc := bufio.NewScanner(strings.NewReader(string(download(t, user, "ndjson", "application/x-ndjson").body)))
			rows, items := 0, 0
			for sc.Scan() {
				var l struct {
					OrderID, ProductID, ProductName string
					Quantity                        int
					UnitPrice, LineTotal            shop.Money
					CreatedAt                       time.Time
				}
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("line %d: %v: %s", rows+1, err, sc.Bytes())
				}
				if !shop.ValidID(l.OrderID) || !shop.ValidID(l.ProductID) || l.ProductName == "" || l.LineTotal != l.UnitPrice*shop.Money(l.Quantity) {
					t.Errorf("line %s", sc.Bytes())
				}
				rows++
				items += l.Quantity
			}
			if rows != f.lines || items != f.items {
				t.Errorf("%s: %d rows, %d items; want %d, %d", name, rows, items, f.lines, f.items)
			}
		}
	})

	t.Run("Telemetry", func(t *testing.T) {
		for _, format := range []string{"txt", "csv", "ndjson"} {
			waitUntil(t, 5*time.Second, format+": rows streamed differ from the lines", func() bool {
				return int(e.stats.Sum(telemetry.MetricReportRows, "format:"+format)) == totalLines
			})
			e.stats.WaitFor(t, telemetry.MetricReportDuration, "format:"+format, "outcome:ok")
		}
		e.stats.WaitForMatch(t, telemetry.MetricReportsInFlight, func(m telemetrytest.Metric) bool { return m.Value == 0 })
	})
}

// TestReportStreamsBeforeLastRow: a download reaches the client while the
// store is still reading lines: its first bytes before the first line,
// lines that trickle in within the flush interval, and thousands of lines
// before the last. The report is never built whole before it is sent.
func TestReportStreamsBeforeLastRow(t *testing.T) {
	t.Parallel()
	var hook atomic.Pointer[func(context.Context, int) error]
	e := newReportEnv(t, reportOpts{wrap: func(s shop.ReportStore) shop.ReportStore {
		return hookedReports{ReportStore: s, onLine: func(ctx context.Context, n int) error {
			if h := hook.Load(); h != nil {
				return (*h)(ctx, n)
			}
			return nil
		}}
	}})
	user := e.bulkUser(t, 2000) // 5,000 lines
	want := e.facts(t, user).lines

	// download starts a CSV download whose store runs h on every line,
	// and returns a reader of its rows.
	download := func(t *testing.T, h func(context.Context, int) error) *csv.Reader {
		t.Helper()
		hook.Store(&h)
		t.Cleanup(func() { hook.Store(nil) })
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/reports/orders/"+user+"?format=csv", nil)
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return csv.NewReader(bufio.NewReader(res.Body))
	}
	// expect reads n rows (after the header) while the store is stalled,
	// releases it, and checks that the rest completes the report.
	expect := func(t *testing.T, r *csv.Reader, n int, g *gate) {
		t.Helper()
		for i := -1; i < n; i++ {
			if _, err := r.Read(); err != nil {
				g.release()
				t.Fatalf("read %d of %d rows while the store waits at line %d: %v", i, n, g.at, err)
			}
		}
		g.release()
		rest, err := r.ReadAll()
		if err != nil || n+len(rest) != want {
			t.Errorf("%d rows (%v), want %d", n+len(rest), err, want)
		}
	}

	t.Run("HeaderBeforeFirstLine", func(t *testing.T) {
		g := newGate(1)
		expect(t, download(t, g.onLine), 0, g)
	})

	t.Run("LinesThatTrickleIn", func(t *testing.T) {
		// Line 6 comes 300 ms after line 5, then the store stalls at
		// line 10: the interval flush has sent lines 1-6 by then.
		g := newGate(10)
		expect(t, download(t, func(ctx context.Context, n int) error {
			if n == 6 {
				time.Sleep(300 * time.Millisecond)
			}
			return g.onLine(ctx, n)
		}), 6, g)
	})

	t.Run("LongBeforeTheLastLine", func(t *testing.T) {
		g := newGate(4500)
		expect(t, download(t, g.onLine), 4000, g)
	})
}

// TestReportClientGone: a client that goes away stops its report, in the
// database too: no report statement or transaction is left running.
func TestReportClientGone(t *testing.T) {
	t.Parallel()
	e := newReportEnv(t, reportOpts{})
	user := e.bulkUser(t, 20000) // 50,000 lines, about 3.5 MB of text
	busy := `(state <> 'idle' OR xact_start IS NOT NULL)`

	t.Run("MidStream", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.(*net.TCPConn).SetReadBuffer(4096) // stop reading soon
		fmt.Fprintf(conn, "GET /reports/orders/%s?format=txt HTTP/1.1\r\nHost: test\r\n\r\n", user)
		head := make([]byte, 2048)
		if _, err := io.ReadFull(conn, head); err != nil || !strings.HasPrefix(string(head), "HTTP/1.1 200") {
			t.Fatalf("%v: %q", err, head)
		}
		// The client reads no more: the report stalls mid-stream, its
		// transaction open in the database.
		waitUntil(t, 10*time.Second, "the report never showed in pg_stat_activity", func() bool {
			return e.reportSessions(t, busy) == 1
		})
		conn.Close()
		waitUntil(t, 10*time.Second, "a report statement or transaction is still open after the client left", func() bool {
			return e.reportSessions(t, busy) == 0
		})
		e.stats.WaitFor(t, telemetry.MetricReportCancellations, "format:txt")
		e.stats.WaitFor(t, telemetry.MetricReportDuration, "format:txt", "outcome:canceled")
	})

	t.Run("DuringQuery", func(t *testing.T) {
		// The summary waits for a lock that is held throughout: the
		// statement can only end if the cancellation reaches Postgres.
		ctx := t.Context()
		lock, err := e.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Rollback(ctx) //nolint:errcheck
		if _, err := lock.Exec(ctx, `LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(rctx, "GET", e.srv.URL+"/reports/orders/"+user, nil)
			res, err := e.srv.Client().Do(req)
			if err == nil {
				res.Body.Close()
			}
			done <- err
		}()
		waitUntil(t, 10*time.Second, "the summary never waited in pg_stat_activity", func() bool {
			return e.reportSessions(t, `state = 'active' AND wait_event_type = 'Lock' AND query LIKE '-- name: reports.summary%'`) == 1
		})
		cancel()
		<-done
		waitUntil(t, 10*time.Second, "the summary still runs in Postgres after the client left", func() bool {
			return e.reportSessions(t, busy) == 0
		})
		e.stats.WaitFor(t, telemetry.MetricReportCancellations, "format:json")
	})
}

// TestReportLimit: beyond REPORTS_MAX_CONCURRENT, clients get 429 with
// Retry-After at once, in the one error format; slots free up as reports
// end.
func TestReportLimit(t *testing.T) {
	t.Parallel()
	g := newGate(1)
	e := newReportEnv(t, reportOpts{maxConns: 2, maxConcurrent: 2, wrap: g.wrap})
	defer g.release()
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)

	// Two downloads take both slots and stall at their first line.
	var running []*http.Response
	for range 2 {
		res, err := e.srv.Client().Get(e.srv.URL + "/reports/orders/" + heavy + "?format=txt")
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%v %v", err, res)
		}
		defer res.Body.Close()
		running = append(running, res)
	}
	for _, path := range []string{"?format=txt", "?format=ndjson", ""} {
		p := checkProblem(t, e.get(t, "/reports/orders/"+heavy+path), http.StatusTooManyRequests)
		if p.Type != "https://shoplab.dev/problems/too-many-requests" {
			t.Errorf("type %s", p.Type)
		}
	}
	if ra := e.get(t, "/reports/orders/"+heavy).header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After %q, want 2", ra)
	}
	waitUntil(t, 5*time.Second, "rejections not counted", func() bool {
		return e.stats.Sum(telemetry.MetricReportRejections) == 4
	})

	g.release()
	for _, res := range running {
		b, err := io.ReadAll(res.Body)
		if err != nil || !strings.Contains(string(b), "\nItems purchased: ") {
			t.Errorf("stalled report did not complete: %v", err)
		}
	}
	if res := e.get(t, "/reports/orders/"+heavy); res.status != 200 {
		t.Errorf("after the others ended: %d %s", res.status, res.body)
	}
}

// TestReportPoolExhausted: with every report slot taken and every report
// connection held, checkout, the catalogue, /health and /ready answer as
// usual: they never wait on anything reports use.
func TestReportPoolExhausted(t *testing.T) {
	t.Parallel()
	e := newReportEnv(t, reportOpts{maxConns: 2, maxConcurrent: 2, maxDuration: 3 * time.Second})
	ctx := t.Context()
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user1@example.com'`)
	product := e.id(t, `SELECT id::text FROM products WHERE inventory >= 10 ORDER BY id LIMIT 1`)

	var held []*pgxpool.Conn
	for range 2 {
		c, err := e.reportsPool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	releaseAll := sync.OnceFunc(func() {
		for _, c := range held {
			c.Release()
		}
	})
	defer releaseAll()

	// Two reports are admitted and wait for a connection of the exhausted pool.
	results := make(chan int, 2)
	for _, path := range []string{"", "?format=csv"} {
		go func() {
			res, err := e.srv.Client().Get(e.srv.URL + "/reports/orders/" + heavy + path)
			if err != nil {
				results <- 0
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			results <- res.StatusCode
		}()
	}
	// Both hold their slot before the third asks for one.
	e.stats.WaitForMatch(t, telemetry.MetricReportsInFlight, func(m telemetrytest.Metric) bool { return m.Value == 2 })
	checkProblem(t, e.get(t, "/reports/orders/"+heavy), http.StatusTooManyRequests)

	client := &http.Client{Timeout: 5 * time.Second}
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s while reports are saturated: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/health", "", 200},
		{"GET", "/ready", "", 200},
		{"GET", "/products?limit=5", "", 200},
		{"POST", "/orders/checkout", fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product), 201},
		{"GET", "/orders/" + user, "", 200},
	} {
		if status, body := call(c.method, c.path, c.body); status != c.want {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, status, c.want, body)
		}
	}
	if n := e.reportSessions(t, "true"); n > 2 {
		t.Errorf("%d report sessions, more than the pool's 2", n)
	}

	releaseAll()
	for range 2 {
		if status := <-results; status != 200 {
			t.Errorf("queued report answered %d after the pool freed up", status)
		}
	}
}

// TestReportTimeouts: a report statement that runs past
// REPORTS_STATEMENT_TIMEOUT, or a report past REPORTS_MAX_DURATION, ends:
// with 503 + Retry-After before the first byte, by cutting the response
// off after it (never a short file that looks complete).
func TestReportTimeouts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var mu sync.Mutex
	var locker *pgxpool.Pool
	var lockTx pgx.Tx
	// lock takes an ACCESS EXCLUSIVE lock on table until unlock.
	lock := func(table string) {
		mu.Lock()
		defer mu.Unlock()
		if locker == nil || lockTx != nil {
			return
		}
		tx, err := locker.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`)
		}
		if err != nil {
			if tx != nil {
				_ = tx.Rollback(ctx) // else its connection stays out and the pool's Close waits forever
			}
			t.Errorf("lock %s: %v", table, err)
			return
		}
		lockTx = tx
	}
	unlock := func() {
		mu.Lock()
		defer mu.Unlock()
		if lockTx != nil {
			_ = lockTx.Rollback(ctx)
			lockTx = nil
		}
	}
	defer unlock()
	e := newReportEnv(t, reportOpts{statementTimeout: 300 * time.Millisecond, wrap: func(s shop.ReportStore) shop.ReportStore {
		return hookedReports{ReportStore: s, beforeStream: func(context.Context) { lock("orders") }}
	}})
	mu.Lock()
	locker = e.db.Pool
	mu.Unlock()
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)

	t.Run("BeforeFirstByte", func(t *testing.T) {
		// Every report starts by reading the user, whose table is locked.
		lock("customers")
		defer unlock()
		for _, format := range []string{"json", "txt", "csv", "ndjson"} {
			res := e.get(t, "/reports/orders/"+heavy+"?format="+strings.TrimPrefix(format, "json"))
			checkProblem(t, res, http.StatusServiceUnavailable)
			if res.header.Get("Retry-After") == "" {
				t.Errorf("%s: no Retry-After", format)
			}
			e.stats.WaitFor(t, telemetry.MetricReportDuration, "format:"+format, "outcome:unavailable")
		}
	})

	t.Run("MidStream", func(t *testing.T) {
		// The summary runs, the header is sent, then the lines wait for
		// the lock on orders that beforeStream takes, past the timeout.
		defer unlock()
		res, err := e.srv.Client().Get(e.srv.URL + "/reports/orders/" + heavy + "?format=txt")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if res.StatusCode != 200 || err == nil {
			t.Errorf("status %d, read error %v after %d bytes: want a cut-off body", res.StatusCode, err, len(b))
		}
		if !strings.HasPrefix(string(b), "ORDER REPORT\n") || strings.Contains(string(b), "SUMMARY") {
			t.Errorf("body %q", b)
		}
		e.stats.WaitFor(t, telemetry.MetricReportDuration, "format:txt", "outcome:unavailable")
	})
}

// TestReportMaxDuration: a report past REPORTS_MAX_DURATION is cut off.
func TestReportMaxDuration(t *testing.T) {
	t.Parallel()
	g := newGate(1) // never opened: the report waits until its deadline
	e := newReportEnv(t, reportOpts{maxDuration: 300 * time.Millisecond, wrap: g.wrap})
	defer g.release()
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	res, err := e.srv.Client().Get(e.srv.URL + "/reports/orders/" + heavy + "?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.ReadAll(res.Body); res.StatusCode != 200 || err == nil {
		t.Errorf("status %d, read error %v: want a cut-off body", res.StatusCode, err)
	}
	e.stats.WaitFor(t, telemetry.MetricReportDuration, "format:ndjson", "outcome:unavailable")
	e.stats.WaitForMatch(t, telemetry.MetricReportsInFlight, func(m telemetrytest.Metric) bool { return m.Value == 0 })
}

// TestReportSlowClient: a client that stops reading cannot hold a report
// slot or its transaction beyond REPORTS_MAX_DURATION: the write deadline
// frees them.
func TestReportSlowClient(t *testing.T) {
	t.Parallel()
	e := newReportEnv(t, reportOpts{maxDuration: time.Second})
	user := e.bulkUser(t, 5000) // 12,500 lines, about 4 MB of NDJSON
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /reports/orders/%s?format=ndjson HTTP/1.1\r\nHost: test\r\n\r\n", user)
	head := make([]byte, 1024)
	if _, err := io.ReadFull(conn, head); err != nil || !strings.HasPrefix(string(head), "HTTP/1.1 200") {
		t.Fatalf("%v: %q", err, head)
	}
	// The client keeps its connection open and reads nothing more.
	e.stats.WaitForMatch(t, telemetry.MetricReportsInFlight, func(m telemetrytest.Metric) bool { return m.Value == 1 })
	waitUntil(t, 10*time.Second, "the stalled report still holds its slot", func() bool {
		e.stats.Flush()
		f := e.stats.Find(telemetry.MetricReportsInFlight)
		return len(f) > 0 && f[len(f)-1].Value == 0
	})
	// The slot is released as the handler unwinds; the connection's
	// rollback may finish a moment after the gauge says 0.
	waitUntil(t, 5*time.Second, "a report transaction still open", func() bool {
		return e.reportSessions(t, `(state <> 'idle' OR xact_start IS NOT NULL)`) == 0
	})
}

// TestReportPaced: ReportMaxLinesPerSec is one budget that all downloads
// share, so two downloads at once take as long as the budget allows for
// their lines together (twice as long as one would alone), and both are
// complete.
func TestReportPaced(t *testing.T) {
	t.Parallel()
	const (
		perSec = 2000
		batch  = 250 // the pace's burst: a download reserves its lines a flush (at most 250) at a time
	)
	e := newReportEnv(t, reportOpts{linesPerSec: perSec})
	user := e.bulkUser(t, 400) // 1,000 lines
	lines := e.facts(t, user).lines
	path := e.srv.URL + "/reports/orders/" + user + "?format=csv"

	start := time.Now()
	// Both downloads are admitted and have sent their header before either
	// body is read, so they run at the same time.
	var bodies [2]io.ReadCloser
	for i := range bodies {
		res, err := e.srv.Client().Get(path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("download %d: status %d", i, res.StatusCode)
		}
		bodies[i] = res.Body
	}
	var wg sync.WaitGroup
	var got [2][]byte
	var errs [2]error
	for i, b := range bodies {
		wg.Go(func() { got[i], errs[i] = io.ReadAll(b) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i := range got {
		if n := strings.Count(string(got[i]), "\n"); errs[i] != nil || n != 1+lines {
			t.Fatalf("download %d: %v, %d lines, want %d", i, errs[i], n-1, lines)
		}
	}

	// Each download waits at each flush (every 250 lines at most) until the
	// pace admits the lines sent since the last: by the end, the lines up to
	// each download's last full batch were admitted. Beyond the first burst
	// the budget admits perSec lines a second, for both downloads together.
	// (Paced each on its own, the two would take half as long.)
	admitted := 2 * (lines / batch * batch)
	if min := time.Duration(admitted-batch) * time.Second / perSec; elapsed < min {
		t.Errorf("2 x %d lines in %v at %d lines/s shared, want at least %v", lines, elapsed, perSec, min)
	}
}
