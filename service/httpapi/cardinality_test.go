package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/mocktracer"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zapcore"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/relay"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// customMetricsBudget bounds the custom metrics (Datadog's billing unit) one
// shopd produces under TestMetricCardinality's workload, counted as Datadog counts them
// (see billable): every distinct (metric name, tag set) of a count or gauge
// is one, of a distribution ten (count, sum, min, max, avg and, with
// percentiles on, p50, p75, p90, p95, p99).
//
// Measured when it was set: 1,152 custom metrics from 189 series (82
// counts and gauges, 107 distributions); docs/observability-cost.md has
// the breakdown. The budget is that plus about 20% headroom, so that a new
// outcome or statement name passes but a new tag, or a tag that starts
// taking request values, fails.
//
// To raise it on purpose: run
//
//	go test -count=1 -run '^TestMetricCardinality$' -v ./service/httpapi/
//
// read the "custom metrics" line and the top metrics it logs, update this
// constant and the figures of docs/observability-cost.md (series, budget,
// cost table) in the same commit, and say in the commit message what the
// new series buy.
const customMetricsBudget = 1400

// tagValueLimits is, for every tag key shoplab's metrics may carry, how many
// distinct values the workload may produce across all metrics. A key not
// listed fails the test: add it here, with its bound, when adding a tag.
var tagValueLimits = map[string]int{
	"env": 1, "service": 1, "version": 1, // global tags
	"route":        20, // the path templates of routes.go, plus unmatched
	"method":       10, // GET... and other
	"status_class": 5,
	"query":        60, // statement names (-- name: lines, tx.*, copy.*)
	"outcome":      15, // the union of the metrics' outcome values
	"pool":         2,
	"format":       4,
	"result":       2,
	"api_version":  2,
	"client":       6, // telemetry.ClientFamily values
	"description":  2,
	"has_results":  2,
	"reason":       12, // products.query.rejected and outbox reasons
	"wait_event":   12,
	"level":        5,
}

var (
	uuidLike    = regexp.MustCompile(`(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}`)
	longNumeric = regexp.MustCompile(`[0-9]{5,}`)
	hexRun      = regexp.MustCompile(`(?i)[0-9a-f]{16,}`)
	// routeSegment is one segment of a route template: a literal word or
	// a {variable}.
	routeSegment = regexp.MustCompile(`^([a-z][a-z0-9-]*|\{[A-Za-z]+\})$`)
)

// tagProblem says what is wrong with a tag's value, or "".
func tagProblem(key, value string) string {
	switch {
	case uuidLike.MatchString(value):
		return "looks like a uuid"
	case strings.Contains(value, "@"):
		return "looks like an email"
	case longNumeric.MatchString(value):
		return "has a long number"
	case hexRun.MatchString(value):
		return "has a long hex run (a key or token?)"
	case strings.ContainsAny(value, "?=& "):
		return "has query-string or free-text characters"
	case len(value) > 64:
		return "is longer than 64 characters"
	}
	if key == "route" && value != telemetry.RouteUnmatched {
		if !strings.HasPrefix(value, "/") {
			return "is neither a path template nor unmatched"
		}
		for _, seg := range strings.Split(value[1:], "/") {
			if !routeSegment.MatchString(seg) {
				return fmt.Sprintf("has segment %q: not a template (raw path?)", seg)
			}
		}
	}
	return ""
}

// seriesKey is a metric's identity in Datadog: its name and its tags, order
// ignored.
func seriesKey(m telemetrytest.Metric) string {
	tags := slices.Clone(m.Tags)
	sort.Strings(tags)
	return m.Name + "{" + strings.Join(tags, ",") + "}"
}

// billable is how many custom metrics one series of type typ counts as,
// per https://docs.datadoghq.com/account_management/billing/custom_metrics/
// (Distribution tab): five for a distribution's count, sum, min, max and
// avg, five more with percentile aggregations (which the monitors and SLOs
// use: p99:...); one for a count, rate or gauge.
func billable(typ string) int {
	if typ == "d" {
		return 10
	}
	return 1
}

// cardinality is the measured size of a capture.
type cardinality struct {
	series, distributions, custom int
	byMetric                      map[string]int // custom metrics per metric name
	values                        map[string]map[string]bool
}

func measure(samples []telemetrytest.Metric) cardinality {
	c := cardinality{byMetric: map[string]int{}, values: map[string]map[string]bool{}}
	seen := map[string]bool{}
	for _, m := range samples {
		for _, tag := range m.Tags {
			k, v, _ := strings.Cut(tag, ":")
			if c.values[k] == nil {
				c.values[k] = map[string]bool{}
			}
			c.values[k][v] = true
		}
		key := seriesKey(m)
		if seen[key] {
			continue
		}
		seen[key] = true
		c.series++
		if m.Type == "d" {
			c.distributions++
		}
		c.custom += billable(m.Type)
		c.byMetric[m.Name] += billable(m.Type)
	}
	return c
}

// top lists the n metrics with the most custom metrics.
func (c cardinality) top(n int) string {
	names := make([]string, 0, len(c.byMetric))
	for name := range c.byMetric {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		if c.byMetric[names[i]] != c.byMetric[names[j]] {
			return c.byMetric[names[i]] > c.byMetric[names[j]]
		}
		return names[i] < names[j]
	})
	var b strings.Builder
	for i, name := range names {
		if i == n {
			break
		}
		fmt.Fprintf(&b, "\n  %5d  %s", c.byMetric[name], name)
	}
	return b.String()
}

// TestMetricCardinality drives a mixed workload through every endpoint of
// the real router on a real database (successes, 4xx, 404s of unmatched
// routes, 409 checkouts, a 503 checkout), with hostile inputs that would
// make an unbounded tag show (random ids in paths, unknown routes with
// random segments, random query strings, Idempotency-Keys, emails and
// User-Agents), plus the pool, lock-wait and outbox reporters, and counts
// the DogStatsD capture as Datadog bills it. It fails when the count exceeds
// customMetricsBudget, or when a tag takes request values: ids, uuids,
// emails, raw paths, or more distinct values than tagValueLimits allows.
// docs/observability-cost.md is written from its log (go test -v).
func TestMetricCardinality(t *testing.T) {
	mt := telemetrytest.MockTracer(t)
	tel, stats, logs := telemetrytest.New(t)
	pool := pgtest.NewWithConfig(t, func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = telemetry.NewQueryTracer(tel)
		c.ConnConfig.RuntimeParams["application_name"] = tel.Config.AppName
	})
	db := postgres.New(pool)
	// A short lock timeout, so that the workload's 503 checkout is quick.
	db.CheckoutTimeouts.Lock = 200 * time.Millisecond
	ctx := t.Context()
	if _, err := db.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	e := serve(t, db, testConfig(), tel, stats, logs)
	w := newWorkload(t, e)
	// Seeding and the test's own queries are not the service's: count
	// from here (once their buffered samples have arrived).
	stats.WaitFor(t, telemetry.MetricDBQueryDuration, "query:seed.products")
	time.Sleep(50 * time.Millisecond)
	stats.Reset()
	mt.Reset()
	logs.TakeAll()

	// The reporters shopd runs beside the router.
	bg, stop := context.WithCancel(ctx)
	defer stop()
	// shopd has two pools, main and reports; here both report this one.
	go telemetry.ReportPoolStats(bg, tel, "main", pool, 200*time.Millisecond)
	go telemetry.ReportPoolStats(bg, tel, "reports", pool, 200*time.Millisecond)
	go telemetry.SampleLockWaits(bg, tel, pool, 100*time.Millisecond)
	if _, err := relay.ReportStats(ctx, db, tel); err != nil {
		t.Fatal(err)
	}

	const rounds = 3
	for range rounds {
		w.round(t)
	}
	w.checkoutTimeout(t)
	time.Sleep(300 * time.Millisecond) // a pool report and a lock sample after the load
	stop()

	stats.WaitForSum(t, telemetrytest.Equals(float64(w.requests)), telemetry.MetricHTTPRequests)
	stats.Flush()
	time.Sleep(100 * time.Millisecond)
	c := measure(stats.Metrics())

	// Volumes per 1,000 requests, for docs/observability-cost.md.
	var spans, spanBytes int
	for _, s := range mt.FinishedSpans() {
		spans++
		spanBytes += spanSize(s)
	}
	var lines, logBytes int
	for _, l := range logs.All() {
		if l.Level < zapcore.InfoLevel { // shopd logs at info by default
			continue
		}
		lines++
		buf, err := zapcore.NewJSONEncoder(telemetry.EncoderConfig()).EncodeEntry(l.Entry, l.Context)
		if err != nil {
			t.Fatal(err)
		}
		logBytes += buf.Len()
		buf.Free()
	}
	per := func(n int) float64 { return float64(n) * 1000 / float64(w.requests) }
	t.Logf("workload: %d requests; status classes %v", w.requests, w.classes)
	t.Logf("series: %d distinct (metric, tag set), %d of them distributions; custom metrics (Datadog billing): %d; budget %d",
		c.series, c.distributions, c.custom, customMetricsBudget)
	t.Logf("per 1,000 requests: %.0f spans (~%.0f KB), %.0f log lines at info or above (%.0f KB of JSON)",
		per(spans), per(spanBytes)/1024, per(lines), per(logBytes)/1024)
	t.Logf("custom metrics by metric:%s", c.top(100))
	for _, k := range slices.Sorted(maps.Keys(c.values)) {
		t.Logf("tag %s: %d values (limit %d): %s", k, len(c.values[k]), tagValueLimits[k], strings.Join(slices.Sorted(maps.Keys(c.values[k])), " "))
	}

	if c.custom > customMetricsBudget {
		t.Errorf("%d custom metrics (%d series), over the budget of %d (customMetricsBudget says how to raise it on purpose); the top metrics:%s",
			c.custom, c.series, customMetricsBudget, c.top(10))
	}
	for _, k := range slices.Sorted(maps.Keys(c.values)) {
		limit, ok := tagValueLimits[k]
		if !ok {
			t.Errorf("tag %q is not in tagValueLimits: add it with the number of values it may take", k)
			continue
		}
		if n := len(c.values[k]); n > limit {
			t.Errorf("tag %q took %d distinct values, over its limit of %d: %v", k, n, limit, slices.Sorted(maps.Keys(c.values[k])))
		}
		for v := range c.values[k] {
			if p := tagProblem(k, v); p != "" {
				t.Errorf("tag %s:%s %s; tags must take a bounded set of values", k, v, p)
			}
		}
	}
	for _, route := range []string{"/products/{id}", "/orders/{userId}", "/reports/orders/{userId}", telemetry.RouteUnmatched} {
		if !c.values["route"][route] {
			t.Errorf("the workload never produced route:%s (does it still reach every endpoint?)", route)
		}
	}
	for _, class := range []string{"2xx", "4xx", "5xx"} {
		if !c.values["status_class"][class] {
			t.Errorf("the workload never produced status_class:%s", class)
		}
	}
}

// TestTagProblem checks the rules on known bad values, so that the
// cardinality test cannot pass by checking nothing.
func TestTagProblem(t *testing.T) {
	bad := [][2]string{
		{"route", "/products/0b6f2c4e-8d1a-4c3e-9f7a-2b5d6e8f9a01"},
		{"route", "/orders/12345"},
		{"route", "/nope/x7Kq"},
		{"route", "products"},
		{"outcome", "ada@example.com"},
		{"query", "select 1 where id = 9"},
		{"client", "curl/8.5.0?x=1"},
		{"reason", "0123456789abcdef0123"},
	}
	for _, tv := range bad {
		if tagProblem(tv[0], tv[1]) == "" {
			t.Errorf("%s:%s passes the rules", tv[0], tv[1])
		}
	}
	for _, tv := range [][2]string{{"route", "/orders/{userId}"}, {"route", "unmatched"}, {"route", "/admin/products/missing-description"}, {"query", "checkout.lock_products"}, {"status_class", "4xx"}} {
		if p := tagProblem(tv[0], tv[1]); p != "" {
			t.Errorf("%s:%s: %s", tv[0], tv[1], p)
		}
	}
}

// spanSize approximates the bytes a span costs on the wire: the JSON of
// its tags plus its operation name and ~64 bytes of ids, times and flags.
func spanSize(s *mocktracer.Span) int {
	b, _ := json.Marshal(s.Tags())
	return len(b) + len(s.OperationName()) + 64
}

// workload issues the requests of the cardinality test and counts them.
type workload struct {
	e        *testEnv
	rng      *rand.Rand
	users    []string
	products []string
	requests int
	agent    int
	classes  map[string]int
}

func newWorkload(t *testing.T, e *testEnv) *workload {
	w := &workload{e: e, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13)), classes: map[string]int{}}
	w.users = w.ids(t, `SELECT id::text FROM customers ORDER BY email LIMIT 5`)
	w.products = w.ids(t, `SELECT id::text FROM products WHERE inventory BETWEEN 50 AND 999 ORDER BY id LIMIT 5`)
	if len(w.users) < 2 || len(w.products) < 2 {
		t.Fatalf("seed: %d users, %d products", len(w.users), len(w.products))
	}
	return w
}

func (w *workload) ids(t *testing.T, query string) []string {
	rows, err := w.e.db.Pool.Query(t.Context(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func (w *workload) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[w.rng.IntN(len(digits))]
	}
	return string(b)
}

func (w *workload) uuid() string {
	h := w.hex(32)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

func (w *workload) pick(s []string) string { return s[w.rng.IntN(len(s))] }

// do sends one request and checks its status is one of want (none: any).
func (w *workload) do(t *testing.T, method, path, contentType, body string, want []int, headers ...string) response {
	t.Helper()
	res := w.e.do(t, method, path, contentType, body, headers...)
	w.requests++
	w.classes[fmt.Sprintf("%dxx", res.status/100)]++
	if len(want) > 0 && !slices.Contains(want, res.status) {
		t.Errorf("%s %s: status %d, want %v: %.300s", method, path, res.status, want, res.body)
	}
	return res
}

func codes(c ...int) []int { return c }

// round is one pass over every endpoint with fresh random inputs.
func (w *workload) round(t *testing.T) {
	t.Helper()
	const js = "application/json"
	user, product := w.pick(w.users), w.pick(w.products)
	agents := []string{"curl/8.5.0", "python-requests/2.32", "Go-http-client/1.1", "node-fetch/3", "Mozilla/5.0 (X11)", "bot-" + w.hex(12) + "/" + w.hex(6)}
	ua := func() []string { // every client family, in turn
		w.agent++
		return []string{"User-Agent", agents[w.agent%len(agents)]}
	}

	// Health.
	w.do(t, "GET", "/health", "", "", codes(200))
	w.do(t, "HEAD", "/health", "", "", codes(200))
	w.do(t, "GET", "/ready", "", "", codes(200))

	// Catalog reads, good and bad, with random query strings.
	w.do(t, "GET", "/products?limit=5", "", "", codes(200))
	w.do(t, "GET", "/products?page=2&limit=3", "", "", codes(200))
	w.do(t, "GET", "/products?q=lamp", "", "", codes(200))
	w.do(t, "GET", "/products?q="+w.hex(10), "", "", codes(200))
	w.do(t, "GET", fmt.Sprintf("/products?%s=%s", w.hex(6), w.hex(20)), "", "", nil)
	w.do(t, "GET", "/products?cursor="+w.hex(24), "", "", codes(400))
	w.do(t, "GET", "/products?q=%ZZ"+w.hex(4), "", "", codes(400))
	w.do(t, "GET", "/products?q=a%00b", "", "", codes(400))
	w.do(t, "GET", "/products?q="+strings.Repeat("x", 300), "", "", codes(400), invalidRequest, "search term too long")
	w.do(t, "GET", "/products?limit=99999", "", "", codes(400), invalidRequest, "limit out of range")
	w.do(t, "GET", "/products/"+product, "", "", codes(200))
	w.do(t, "GET", "/products/"+w.uuid(), "", "", codes(404))
	w.do(t, "GET", fmt.Sprintf("/products/%d", w.rng.Int64()), "", "", codes(400, 404))

	// Catalog writes: v1 and v2, with and without description, odd clients.
	name := "Cardinality Lamp " + w.hex(8)
	w.do(t, "POST", "/products", js, fmt.Sprintf(`{"name":%q,"price":"9.99","inventory":3}`, name), codes(201), ua()...)
	w.do(t, "POST", "/products", js, fmt.Sprintf(`{"name":%q,"description":"d","price":"9.99","inventory":3}`, name+"b"), codes(201), ua()...)
	w.do(t, "POST", "/products/v2", js, fmt.Sprintf(`{"name":%q,"description":"Bright","price":"19.99","inventory":2}`, name+"c"), codes(201), ua()...)
	w.do(t, "POST", "/products/v2", js, fmt.Sprintf(`{"name":%q,"price":"19.99","inventory":2}`, name+"d"), codes(400, 422), "User-Agent", "curl/8.5.0", invalidRequest, "v2 without a description")
	w.do(t, "POST", "/products", js, fmt.Sprintf(`{"name":%q,"price":"-1","%s":1}`, name, w.hex(5)), codes(400, 422), "User-Agent", "curl/8.5.0", invalidRequest, "negative price, unknown field")
	w.do(t, "PATCH", "/products/"+product, "application/merge-patch+json", `{"description":"patched `+w.hex(4)+`"}`, codes(200))
	w.do(t, "PATCH", "/products/"+w.uuid(), "application/merge-patch+json", `{"inventory":1}`, codes(404))

	// Users: random emails, a duplicate, an invalid one.
	email := "buyer." + w.hex(10) + "@example.com"
	w.do(t, "POST", "/users", js, fmt.Sprintf(`{"email":%q,"name":"Buyer %s"}`, email, w.hex(4)), codes(201))
	w.do(t, "POST", "/users", js, fmt.Sprintf(`{"email":%q,"name":"Again"}`, email), codes(409))
	w.do(t, "POST", "/users", js, fmt.Sprintf(`{"email":"not-an-email-%s","name":"X"}`, w.hex(6)), codes(400, 422))

	// Checkouts: placed, replayed, key reused, out of stock, unknown user,
	// malformed; each with a random Idempotency-Key.
	key := w.uuid()
	cart := fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product)
	w.do(t, "POST", "/orders/checkout", js, cart, codes(201), "Idempotency-Key", key)
	w.do(t, "POST", "/orders/checkout", js, cart, codes(201), "Idempotency-Key", key)
	w.do(t, "POST", "/orders/checkout", js, fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":2}]}`, user, product), codes(409, 422), "Idempotency-Key", key)
	w.do(t, "POST", "/orders/checkout", js, fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1000}]}`, user, product), codes(409), "Idempotency-Key", w.hex(32))
	w.do(t, "POST", "/orders/checkout", js, fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, w.uuid(), product), codes(400, 404, 422))
	w.do(t, "POST", "/orders/checkout", js, `{"userId":"`+w.hex(7)+`","items":[]}`, codes(400, 422), invalidRequest, "empty cart")

	// Order history.
	w.do(t, "GET", "/orders/"+user, "", "", codes(200))
	w.do(t, "GET", "/orders/"+w.uuid(), "", "", codes(200, 404))
	w.do(t, "GET", "/orders/"+w.hex(9)+"?limit=2", "", "", codes(400, 404))

	// Admin: imports in every format, refused ones, listings.
	row := func(n string) string {
		return fmt.Sprintf(`{"name":%q,"description":"Imported","price":"4.50","inventory":7}`, n)
	}
	w.do(t, "POST", "/admin/products/import", js, `{"products":[`+row("Imp "+w.hex(6))+`]}`, codes(201))
	w.do(t, "POST", "/admin/products/import", "application/x-ndjson", row("Nd "+w.hex(6))+"\n", codes(201))
	w.do(t, "POST", "/admin/products/import", "text/csv", "name,description,price,inventory\nCsv "+w.hex(6)+",Imported,4.50,7\n", codes(201))
	w.do(t, "POST", "/admin/products/import", js, `{"products":[{"name":"","price":"x"}]}`, codes(400, 422), invalidRequest, "a bad row")
	w.do(t, "POST", "/admin/products/import", "text/plain", "name,price\n", codes(415), invalidRequest, "unsupported Content-Type")
	w.do(t, "GET", "/admin/inventory/low?threshold=3", "", "", codes(200))
	w.do(t, "GET", "/admin/products/missing-description", "", "", codes(200))

	// Reports in every format, for someone and for nobody.
	w.do(t, "GET", "/reports/orders/"+user, "", "", codes(200))
	for _, f := range []string{"csv", "txt", "ndjson"} {
		w.do(t, "GET", "/reports/orders/"+user+"?format="+f, "", "", codes(200))
	}
	w.do(t, "GET", "/reports/orders/"+w.uuid(), "", "", codes(404))
	w.do(t, "GET", "/reports/orders/"+user+"?format="+w.hex(5), "", "", codes(400), invalidRequest, "unknown format")

	// No route: random paths, a wrong method, an odd method.
	w.do(t, "GET", "/"+w.hex(6)+"/"+w.uuid(), "", "", codes(404))
	w.do(t, "GET", "/products/"+product+"/"+w.hex(4), "", "", codes(404))
	w.do(t, "GET", "/wp-login.php?u="+w.hex(8), "", "", codes(404))
	w.do(t, "DELETE", "/products/"+product, "", "", codes(405))
	w.do(t, "BREW", "/orders/"+user, "", "", codes(405))
}

// checkoutTimeout holds a product's row lock while a checkout of it waits
// past the lock timeout: a 503 with outcome:timeout.
func (w *workload) checkoutTimeout(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	// A connection of its own, without the service's query tracer: the
	// test's statement is not the service's.
	cfg := w.e.db.Pool.Config().ConnConfig.Copy()
	cfg.Tracer = nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	product := w.products[0]
	if _, err := tx.Exec(ctx, `SELECT 1 FROM products WHERE id = $1 FOR UPDATE`, product); err != nil {
		t.Fatal(err)
	}
	w.do(t, "POST", "/orders/checkout", "application/json",
		fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, w.users[0], product), codes(503),
		"Idempotency-Key", w.uuid())
}
