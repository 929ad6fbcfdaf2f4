package httpapi_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/mocktracer"
	"github.com/gorilla/mux"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// budgetCases are the requests whose costs are budgeted: at least one per
// route of routes.go (TestBudgetsCoverEveryRoute), several where the cost
// could grow with the request (page sizes, cart lines, rows, users).
func budgetCases(t *testing.T, e *budgetEnv) []reqCase {
	t.Helper()
	ctx := t.Context()
	id := func(q string, args ...any) string {
		var s string
		if err := e.db.Pool.QueryRow(ctx, q, args...).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	count := func(q string, args ...any) int {
		var n int
		if err := e.db.Pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	heavy := id(`SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	user1 := id(`SELECT id::text FROM customers WHERE email = 'user1@example.com'`)
	user1Orders := count(`SELECT count(*) FROM orders WHERE customer_id = $1`, user1)
	buyer := id(`INSERT INTO customers (email, name) VALUES ('budget.buyer@example.com', 'Buyer') RETURNING id::text`) // checkouts: user1's history stays as seeded
	idle := id(`INSERT INTO customers (email, name) VALUES ('budget.idle@example.com', 'No Orders') RETURNING id::text`)
	heavyLines := count(`SELECT count(*) FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.customer_id = $1`, heavy)
	const unknown = "00000000-0000-4000-8000-000000000000"
	endless := make([]string, 5)
	for i := range endless {
		endless[i] = id(`INSERT INTO products (name, price, inventory) VALUES ($1, 1, 1000000000) RETURNING id::text`, fmt.Sprintf("Endless %d", i))
	}
	soldOut := id(`INSERT INTO products (name, price, inventory) VALUES ('Sold Out', 1, 0) RETURNING id::text`)
	product := endless[0]

	// The keyset pages' cursors come from the first pages' Link headers.
	next := func(c reqCase) string {
		l := e.serve(t, c, 0).header.Get("Link")
		if l == "" {
			t.Fatalf("%s [%s]: no Link", c.endpoint, c.name)
		}
		return strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
	}
	get := func(endpoint, name, path string, status int) reqCase {
		return reqCase{endpoint: endpoint, name: name, method: "GET", path: path, status: status}
	}
	cart := func(user string, lines ...string) func(int) string {
		items := make([]string, len(lines))
		for i, p := range lines {
			items[i] = fmt.Sprintf(`{"productId":%q,"quantity":1}`, p)
		}
		body := fmt.Sprintf(`{"userId":%q,"items":[%s]}`, user, strings.Join(items, ","))
		return func(int) string { return body }
	}
	ndjson := func(n int, sku bool) func(int) string {
		return func(i int) string {
			var b strings.Builder
			for r := range n {
				fmt.Fprintf(&b, `{"name":"Imported %d-%d","price":1.5,"inventory":3`, i, r)
				if sku {
					fmt.Fprintf(&b, `,"sku":"BUDGET-%d"`, r)
				}
				b.WriteString("}\n")
			}
			return b.String()
		}
	}
	key := func(format string) func(i int) []string {
		return func(i int) []string { return []string{httpapi.IdempotencyKeyHeader, fmt.Sprintf(format, i)} }
	}

	orders := "GET /orders/{userId}"
	productsList := get("GET /products", "page=1&limit=20", "/products?page=1&limit=20", 200)
	productsList.allocs, productsList.telem = true, true
	firstKeyset := get("GET /products", "limit=20", "/products?limit=20", 200)
	heavy50 := get(orders, "heavy user (120 orders), limit=50", "/orders/"+heavy+"?limit=50", 200)

	cases := []reqCase{
		{endpoint: "GET /health", name: "ok", method: "GET", path: "/health", status: 200, telem: true},
		{endpoint: "HEAD /health", name: "ok", method: "HEAD", path: "/health", status: 200},
		{endpoint: "GET /ready", name: "ok", method: "GET", path: "/ready", status: 200, telem: true},
		{endpoint: "HEAD /ready", name: "ok", method: "HEAD", path: "/ready", status: 200},
		{endpoint: "GET /openapi.yaml", name: "ok", method: "GET", path: "/openapi.yaml", status: 200},
		{endpoint: "HEAD /openapi.yaml", name: "ok", method: "HEAD", path: "/openapi.yaml", status: 200},

		productsList,
		get("GET /products", "page=3&limit=30", "/products?page=3&limit=30", 200),
		get("GET /products", "page=1&limit=100", "/products?page=1&limit=100", 200),
		firstKeyset,
		get("GET /products", "keyset page 2, limit=20", next(firstKeyset), 200),
		get("GET /products", "search q=desk", "/products?q=desk", 200),
		{endpoint: "GET /products/{id}", name: "found", method: "GET", path: "/products/" + product, status: 200, allocs: true, telem: true},
		get("GET /products/{id}", "unknown", "/products/"+unknown, 404),
		{endpoint: "POST /products", name: "v1 without description", method: "POST", path: "/products", ctype: "application/json", status: 201, telem: true,
			body: func(i int) string { return fmt.Sprintf(`{"name":"Budget Fan %d","price":24.5,"inventory":7}`, i) }},
		{endpoint: "POST /products/v2", name: "ok", method: "POST", path: "/products/v2", ctype: "application/json", status: 201, telem: true,
			body: func(i int) string {
				return fmt.Sprintf(`{"name":"Budget Fan %d","description":"Quiet.","price":"24.50","inventory":7}`, i)
			}},
		{endpoint: "PATCH /products/{id}", name: "inventory", method: "PATCH", path: "/products/" + endless[4], ctype: "application/merge-patch+json", status: 200, telem: true,
			body: func(int) string { return `{"inventory":1000000000}` }},

		{endpoint: "POST /users", name: "customer", method: "POST", path: "/users", ctype: "application/json", status: 201, telem: true,
			body: func(i int) string { return fmt.Sprintf(`{"email":"budget%d@example.com","name":"Budget"}`, i) }},

		{endpoint: "POST /orders/checkout", name: "1 line", method: "POST", path: "/orders/checkout", ctype: "application/json", status: 201,
			body: cart(buyer, endless[0]), allocs: true, telem: true},
		{endpoint: "POST /orders/checkout", name: "5 lines", method: "POST", path: "/orders/checkout", ctype: "application/json", status: 201,
			body: cart(buyer, endless...)},
		{endpoint: "POST /orders/checkout", name: "1 line, new Idempotency-Key", method: "POST", path: "/orders/checkout", ctype: "application/json", status: 201,
			body: cart(buyer, endless[1]), header: key("budget-key-%d")},
		{endpoint: "POST /orders/checkout", name: "replay of a finished Idempotency-Key", method: "POST", path: "/orders/checkout", ctype: "application/json", status: 201,
			body: cart(buyer, endless[2]), header: func(int) []string { return []string{httpapi.IdempotencyKeyHeader, "budget-replay"} }},
		{endpoint: "POST /orders/checkout", name: "insufficient stock (409)", method: "POST", path: "/orders/checkout", ctype: "application/json", status: 409,
			body: cart(buyer, endless[3], soldOut)},

		get(orders, "heavy user (120 orders), limit=1", "/orders/"+heavy+"?limit=1", 200),
		func() reqCase {
			c := get(orders, "heavy user (120 orders), limit=20", "/orders/"+heavy+"?limit=20", 200)
			c.allocs, c.telem = true, true
			return c
		}(),
		heavy50,
		get(orders, "heavy user (120 orders), keyset page 2 of limit=50", next(heavy50), 200),
		get(orders, "heavy user (120 orders), default limit (all 120)", "/orders/"+heavy, 200),
		get(orders, "heavy user (120 orders), limit=1000", "/orders/"+heavy+"?limit=1000", 200),
		get(orders, fmt.Sprintf("user1 (%d orders)", user1Orders), "/orders/"+user1, 200),
		get(orders, "user without orders", "/orders/"+idle, 200),
		get(orders, "unknown user (404)", "/orders/"+unknown, 404),

		{endpoint: "POST /admin/products/import", name: "NDJSON, 10 rows", method: "POST", path: "/admin/products/import", ctype: "application/x-ndjson", status: 201,
			body: ndjson(10, false), telem: true},
		{endpoint: "POST /admin/products/import", name: "NDJSON, 1000 rows", method: "POST", path: "/admin/products/import", ctype: "application/x-ndjson", status: 201,
			body: ndjson(1000, false)},
		{endpoint: "POST /admin/products/import", name: "NDJSON with SKUs (upsert), 10 rows", method: "POST", path: "/admin/products/import", ctype: "application/x-ndjson", status: 201,
			body: ndjson(10, true)},
		{endpoint: "POST /admin/products/import", name: "NDJSON with SKUs (upsert), 1000 rows", method: "POST", path: "/admin/products/import", ctype: "application/x-ndjson", status: 201,
			body: ndjson(1000, true)},
		{endpoint: "GET /admin/inventory/low", name: "threshold=5", method: "GET", path: "/admin/inventory/low?threshold=5", status: 200, telem: true},
		{endpoint: "GET /admin/products/missing-description", name: "first page", method: "GET", path: "/admin/products/missing-description", status: 200, telem: true},
		{endpoint: "GET /admin/switches", name: "all off", method: "GET", path: "/admin/switches", status: 200, telem: true},
		{endpoint: "PUT /admin/switches/{name}", name: "n-plus-one off", method: "PUT", path: "/admin/switches/" + shop.SwitchNPlusOne, ctype: "application/json", status: 200, telem: true,
			body: func(int) string { return `{"on":false}` }},

		{endpoint: "GET /reports/orders/{userId}", name: "JSON summary, heavy user", method: "GET", path: "/reports/orders/" + heavy, status: 200, telem: true},
		get("GET /reports/orders/{userId}", fmt.Sprintf("csv download, heavy user (%d lines, 250 per fetch)", heavyLines), "/reports/orders/"+heavy+"?format=csv", 200),
		get("GET /reports/orders/{userId}", fmt.Sprintf("ndjson download, heavy user (%d lines, 250 per fetch)", heavyLines), "/reports/orders/"+heavy+"?format=ndjson", 200),
		get("GET /reports/orders/{userId}", fmt.Sprintf("txt download, heavy user (%d lines, 250 per fetch)", heavyLines), "/reports/orders/"+heavy+"?format=txt", 200),
		get("GET /reports/orders/{userId}", "unknown user (404)", "/reports/orders/"+unknown, 404),
	}
	return cases
}

// TestBudgets measures every budgeted cost of bench/budgets.json and fails
// on any over its max (README: Performance gates > Budgets). It is not
// parallel: allocations and heap are process-wide, so it runs while no
// other test of the package does (parallel tests start after it).
func TestBudgets(t *testing.T) {
	g := newBudgetGate(t)
	e := newBudgetEnv(t)
	cases := budgetCases(t, e)

	t.Run("Statements", func(t *testing.T) {
		for _, c := range cases {
			e.serve(t, c, 0) // warm: statement caches, the replay's first request
			var stmts, trips []int64
			for i := 1; i <= 2; i++ {
				s0, r0 := e.counter.snapshot()
				e.serve(t, c, i)
				s1, r1 := e.counter.snapshot()
				stmts, trips = append(stmts, s1-s0), append(trips, r1-r0)
			}
			if stmts[0] != stmts[1] || trips[0] != trips[1] {
				t.Errorf("%s [%s]: two runs differ: statements %v, round trips %v", c.endpoint, c.name, stmts, trips)
			}
			g.check(t, c.endpoint, metricStatements, c.name, float64(slices.Max(stmts)))
			g.check(t, c.endpoint, metricRoundTrips, c.name, float64(slices.Max(trips)))
		}
	})

	t.Run("Allocs", func(t *testing.T) {
		for _, c := range cases {
			if !c.allocs {
				continue
			}
			n := 0
			var runs []float64
			for range 3 {
				runs = append(runs, testing.AllocsPerRun(20, func() { n++; e.send(t, c, 1000+n, false) }))
			}
			slices.Sort(runs)
			t.Logf("%s [%s]: allocs per request over 3 runs of 20: %v", c.endpoint, c.name, runs)
			g.check(t, c.endpoint, metricAllocs, c.name+raceSuffix, runs[1])
		}
	})

	t.Run("Telemetry", func(t *testing.T) {
		mt := telemetrytest.MockTracer(t)
		const n = 20
		for _, c := range cases {
			if !c.telem {
				continue
			}
			e.serve(t, c, 2000) // warm
			// The client also flushes its aggregates every 2s on its own:
			// a window that a periodic flush cuts in two sends them twice.
			// The least of three windows is the one that was not cut.
			var lines int64 = math.MaxInt64
			spans := math.MaxInt
			for round := range 3 {
				e.stats.Flush()
				settle(e.stats)
				e.stats.Reset()
				mt.Reset()
				for i := range n {
					e.serve(t, c, 2001+round*n+i)
				}
				spans = min(spans, codeSpans(mt.FinishedSpans()))
				e.stats.Flush()
				raw, p := settle(e.stats)
				lines = min(lines, lineBytes(e.stats.Metrics()))
				// The bytes on the wire depend on how the client's packets
				// fell in time: logged, not gated (line bytes are the gate).
				t.Logf("%s [%s]: %d requests: %d DogStatsD bytes on the wire in %d packets, %d as lines, %d spans", c.endpoint, c.name, n, raw, p, lineBytes(e.stats.Metrics()), spans)
			}
			g.check(t, c.endpoint, metricStatsdLines, c.name, float64(lines/n))
			g.check(t, c.endpoint, metricSpans, c.name, float64(spans)/n)
		}
	})

	t.Run("Memory", func(t *testing.T) { testMemoryBudgets(t, g, e) })
}

// lineBytes is the DogStatsD traffic of samples counted line by line:
// each sample as its own "name:value|type|#tags\n" with an 8-character
// value. The wire packs several values of a distribution into one line
// and cuts packets by timing, and values' digits vary, so the raw bytes
// move by up to ~50% from run to run; this does not, and still grows
// with every new metric, sample or tag.
func lineBytes(samples []telemetrytest.Metric) int64 {
	var n int64
	for _, m := range samples {
		n += int64(len(m.Name) + 1 + 8 + 1 + len(m.Type) + 1)
		if len(m.Tags) > 0 {
			n += int64(2 + len(strings.Join(m.Tags, ",")))
		}
	}
	return n
}

// settle waits until no DogStatsD packet has arrived for 50ms (the
// flushed packets are on their way over loopback UDP) and returns the
// traffic received.
func settle(c *telemetrytest.StatsdCapture) (bytes, packets int64) {
	b, p := c.Traffic()
	for deadline := time.Now().Add(telemetrytest.WaitTimeout); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		b2, p2 := c.Traffic()
		if b2 == b && p2 == p {
			break
		}
		b, p = b2, p2
	}
	return b, p
}

// TestBudgetsCoverEveryRoute fails when a route of routes.go (chaos
// switches included) has no statements and round-trips budget, and when
// an entry of bench/budgets.json has no "why".
func TestBudgetsCoverEveryRoute(t *testing.T) {
	t.Parallel()
	f := readBudgets(t)
	has := map[string]bool{}
	for _, b := range f.Budgets {
		has[b.Endpoint+"|"+b.Metric] = true
		if strings.TrimSpace(b.Why) == "" {
			t.Errorf("%s: %s %s [%s] has no \"why\"", budgetsPath, b.Endpoint, b.Metric, b.Case)
		}
		if b.Measured > b.Max {
			t.Errorf("%s: %s %s [%s] measured %v over its max %v", budgetsPath, b.Endpoint, b.Metric, b.Case, b.Measured, b.Max)
		}
	}
	tel, _, _ := telemetrytest.New(t)
	sw := &switchBoardStub{}
	r := httpapi.Routes(httpapi.Deps{Telemetry: tel, Switches: sw})
	routes := 0
	err := r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil // the admin subrouter itself: no path of its own
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s has no methods", path)
			return nil
		}
		for _, m := range methods {
			routes++
			for _, metric := range []string{metricStatements, metricRoundTrips} {
				if !has[m+" "+path+"|"+metric] {
					t.Errorf("route %s %s has no %s budget in %s; add a case to budgetCases and %s", m, path, metric, budgetsPath, updateHint)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if routes < 15 {
		t.Errorf("walked %d routes: the walk misses some", routes)
	}
}

// switchBoardStub is a shop.SwitchBoard that is never called: the route
// walk only needs Deps.Switches set, to see the /admin/switches routes.
type switchBoardStub struct{ shop.SwitchBoard }

// codeSpans counts the spans the code makes whatever the timing: a
// pgx.pool.acquire span exists only when an acquire waited a millisecond
// or more, which a loaded machine decides, so it is left out.
func codeSpans(spans []*mocktracer.Span) int {
	n := 0
	for _, s := range spans {
		if s.OperationName() != telemetry.SpanAcquire {
			n++
		}
	}
	return n
}
