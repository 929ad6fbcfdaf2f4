package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/switches"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// The deterministic performance budgets (README "Performance gates",
// "Budgets"): what one request of each endpoint may cost in statements,
// round trips, allocations, heap, DogStatsD bytes and spans. The figures
// live in bench/budgets.json; TestBudgets measures and compares them,
// TestBudgetsCoverEveryRoute checks that every route of routes.go has one.

var (
	updateBudgets = flag.Bool("update-budgets", false,
		"TestBudgets: write the values measured by this run into bench/budgets.json as \"measured\" (adding missing entries); each \"max\" is kept unless -raise")
	raiseBudgets = flag.Bool("raise", false,
		"with -update-budgets: also set each measured entry's \"max\" from this run (exact for counts, with headroom for allocations, bytes and heap)")
)

// budgetsPath is bench/budgets.json, from this package's directory.
const budgetsPath = "../../bench/budgets.json"

// updateHint is how to change a budget on purpose; every failure says it.
const updateHint = "if the change is intended, run `go test ./service/httpapi -run 'TestBudgets$' -update-budgets -raise`, " +
	"say why in the entry's \"why\" in bench/budgets.json, and commit the file (README: Performance gates > Budgets)"

// The budget metrics.
const (
	metricStatements  = "statements"
	metricRoundTrips  = "round_trips"
	metricAllocs      = "allocs"
	metricStatsdLines = "statsd_line_bytes"
	metricSpans       = "spans"
	metricHeapGrowth  = "heap_live_growth_bytes"
)

// headroom is the max that -raise (or a new entry) sets for a measurement:
// counts that do not depend on the machine get none, the others a margin
// above the noise observed (README: Budgets).
func headroom(metric string, measured float64) float64 {
	switch metric {
	case metricAllocs:
		return math.Ceil(measured * 1.25)
	case metricStatsdLines:
		return math.Ceil(measured * 1.1)
	case metricHeapGrowth:
		// At least 16 MiB: the Go heap's own pacing moves the peak by a few MiB.
		return math.Max(16<<20, math.Ceil(measured*2/(1<<20))*(1<<20))
	}
	return measured
}

// budgetFile is bench/budgets.json.
type budgetFile struct {
	About   []string `json:"about"`
	Budgets []budget `json:"budgets"`
}

// budget is one entry: what a request of endpoint in case costs in metric.
type budget struct {
	Endpoint string  `json:"endpoint"` // "GET /orders/{userId}", as routes.go has it
	Metric   string  `json:"metric"`
	Case     string  `json:"case"`
	Measured float64 `json:"measured"`
	Max      float64 `json:"max"`
	Why      string  `json:"why"`
}

func (b budget) key() string { return b.Endpoint + "|" + b.Metric + "|" + b.Case }

func readBudgets(t testing.TB) *budgetFile {
	t.Helper()
	raw, err := os.ReadFile(budgetsPath)
	if errors.Is(err, os.ErrNotExist) && *updateBudgets {
		return &budgetFile{}
	}
	if err != nil {
		t.Fatal(err)
	}
	var f budgetFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", budgetsPath, err)
	}
	return &f
}

// budgetGate compares measurements with the budgets file, or records them
// with -update-budgets.
type budgetGate struct {
	mu    sync.Mutex
	file  *budgetFile
	dirty bool
}

func newBudgetGate(t *testing.T) *budgetGate {
	g := &budgetGate{file: readBudgets(t)}
	seen := map[string]bool{}
	for _, b := range g.file.Budgets {
		if seen[b.key()] {
			t.Fatalf("%s: two entries for %s %s [%s]", budgetsPath, b.Endpoint, b.Metric, b.Case)
		}
		seen[b.key()] = true
	}
	t.Cleanup(func() {
		if !*updateBudgets || !g.dirty {
			return
		}
		order := []string{metricStatements, metricRoundTrips, metricAllocs, metricHeapGrowth, metricStatsdLines, metricSpans}
		slices.SortStableFunc(g.file.Budgets, func(a, b budget) int {
			if c := strings.Compare(a.Endpoint, b.Endpoint); c != 0 {
				return c
			}
			return slices.Index(order, a.Metric) - slices.Index(order, b.Metric)
		})
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(g.file); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(budgetsPath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", budgetsPath)
	})
	return g
}

// check compares what a request of endpoint in kase measured in metric
// with its budget: above max is a failure naming all four and how to
// update the budget. With -update-budgets it records measured instead
// (and max too with -raise, or for a new entry).
func (g *budgetGate) check(t testing.TB, endpoint, metric, kase string, measured float64) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	want := budget{Endpoint: endpoint, Metric: metric, Case: kase}
	i := slices.IndexFunc(g.file.Budgets, func(b budget) bool { return b.key() == want.key() })
	if *updateBudgets {
		if i < 0 {
			want.Max = headroom(metric, measured)
			g.file.Budgets = append(g.file.Budgets, want)
			i = len(g.file.Budgets) - 1
		}
		b := &g.file.Budgets[i]
		if *raiseBudgets {
			b.Max = headroom(metric, measured)
		}
		b.Measured = measured
		g.dirty = true
		if measured > b.Max {
			t.Errorf("budget %s %s [%s]: measured %v is over max %v, kept without -raise", endpoint, metric, kase, measured, b.Max)
		}
		return
	}
	if i < 0 {
		t.Errorf("no budget for %s %s [%s] (measured %v) in %s; %s", endpoint, metric, kase, measured, budgetsPath, updateHint)
		return
	}
	b := g.file.Budgets[i]
	if measured > b.Max {
		t.Errorf("over budget: %s %s [%s] measured %v, max %v (%v when last recorded; why: %s); %s",
			endpoint, metric, kase, measured, b.Max, b.Measured, b.Why, updateHint)
		return
	}
	if measured < b.Measured && (metric == metricStatements || metricRoundTrips == metric || metric == metricSpans) {
		t.Logf("under budget: %s %s [%s] measured %v, recorded %v: consider lowering it (-update-budgets -raise)", endpoint, metric, kase, measured, b.Measured)
	}
}

// dbCounter counts what the service asks of PostgreSQL, as a pgx tracer
// on the pool (README: Budgets, for the definitions):
//
//   - statements: every statement pgx runs for the service: each Query,
//     QueryRow and Exec (BEGIN and COMMIT included; a simple-protocol
//     string of several commands is one), each statement of a batch, and
//     each COPY;
//   - round trips: every exchange in which the service waits for the
//     server's answer: each Query, QueryRow and Exec, each batch (one
//     pipeline, however many statements), and each COPY.
//
// Statement preparation (pgx's per-connection statement cache: once per
// connection and statement) and the pool's liveness pings are not counted:
// budgets describe a warm pool, which is what a running service has.
type dbCounter struct {
	statements, roundTrips atomic.Int64
}

var (
	_ pgx.QueryTracer    = (*dbCounter)(nil)
	_ pgx.BatchTracer    = (*dbCounter)(nil)
	_ pgx.CopyFromTracer = (*dbCounter)(nil)
)

func (c *dbCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.statements.Add(1)
	c.roundTrips.Add(1)
	return ctx
}
func (c *dbCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *dbCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.roundTrips.Add(1)
	return ctx
}
func (c *dbCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.statements.Add(1)
}
func (c *dbCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
func (c *dbCounter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	c.statements.Add(1)
	c.roundTrips.Add(1)
	return ctx
}
func (c *dbCounter) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

// snapshot returns the counts so far.
func (c *dbCounter) snapshot() (statements, roundTrips int64) {
	return c.statements.Load(), c.roundTrips.Load()
}

// budgetEnv is the service's handler (the real router, chaos switches
// wired and off, the service's query tracer plus dbCounter on the pool)
// on a seeded fresh database, called in-process: a request is over when
// ServeHTTP returns, so everything it cost is counted by then.
type budgetEnv struct {
	h       http.Handler
	db      *postgres.DB
	counter *dbCounter
	stats   *telemetrytest.StatsdCapture
	tel     *telemetry.Telemetry
}

func newBudgetEnv(t *testing.T) *budgetEnv {
	t.Helper()
	tel, stats, _ := telemetrytest.New(t)
	counter := &dbCounter{}
	pool := pgtest.NewWithConfig(t, func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = telemetry.MultiTracer(telemetry.NewQueryTracer(tel), counter)
		c.ConnConfig.RuntimeParams["application_name"] = tel.Config.AppName
	})
	db := postgres.New(pool)
	if _, err := db.Seed(t.Context()); err != nil {
		t.Fatal(err)
	}
	sw, err := switches.NewInMemory(context.Background(), switches.Off())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close(context.Background()) })
	db.Switches = sw
	h := httpapi.NewServer(httpapi.Deps{Config: testConfig(), Telemetry: tel, Products: db, Orders: db,
		Reports: postgres.NewReports(db.Pool, 0), Users: db, DB: db, Switches: sw})
	return &budgetEnv{h: h, db: db, counter: counter, stats: stats, tel: tel}
}

// sink is a ResponseWriter that counts the body and keeps only its first
// 64 KiB, so that a large download costs the test no memory.
type sink struct {
	header http.Header
	status int
	n      int64
	head   bytes.Buffer
}

func newSink() *sink { return &sink{header: http.Header{}} }

func (s *sink) Header() http.Header { return s.header }
func (s *sink) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
}
func (s *sink) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	s.n += int64(len(p))
	if room := 64<<10 - s.head.Len(); room > 0 {
		s.head.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
func (s *sink) Flush() {}

// reqCase is one request of an endpoint whose costs are budgeted.
type reqCase struct {
	endpoint string // "METHOD /route/{template}" as routes.go declares it
	name     string // the case: what is special about this request
	method   string
	path     string
	ctype    string
	header   func(i int) []string // the i-th request's header: name, value, ...
	body     func(i int) string   // the i-th request's body (nil: none)
	status   int                  // the answer the case is about
	allocs   bool                 // a hot endpoint: budget its allocations
	telem    bool                 // budget its DogStatsD bytes and spans
}

// serve sends the i-th request of c through the handler, and holds the
// exchange to the API's document (contract_test.go).
func (e *budgetEnv) serve(t testing.TB, c reqCase, i int) *sink {
	t.Helper()
	return e.send(t, c, i, true)
}

// send sends the i-th request of c through the handler; check holds the
// exchange to the document (not in allocation counts: validating
// allocates too; every case is checked by its other requests).
func (e *budgetEnv) send(t testing.TB, c reqCase, i int, check bool) *sink {
	t.Helper()
	var body string
	if c.body != nil {
		body = c.body(i)
	}
	req, err := http.NewRequest(c.method, c.path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	if c.header != nil {
		h := c.header(i)
		for j := 0; j+1 < len(h); j += 2 {
			req.Header.Set(h[j], h[j+1])
		}
	}
	w := newSink()
	e.h.ServeHTTP(w, req)
	if check {
		checkServed(t, req, []byte(body), w.status, w.header, w.head.Bytes(), w.n == int64(w.head.Len()))
	}
	if w.status != c.status {
		t.Fatalf("%s [%s] %s %s: status %d, want %d: %s", c.endpoint, c.name, c.method, c.path, w.status, c.status, w.head.String())
	}
	return w
}
