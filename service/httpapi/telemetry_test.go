package httpapi_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/mocktracer"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// spansOf returns the finished spans of one trace.
func spansOf(mt mocktracer.Tracer, traceID uint64) []*mocktracer.Span {
	var out []*mocktracer.Span
	for _, s := range mt.FinishedSpans() {
		if s.TraceID() == traceID {
			out = append(out, s)
		}
	}
	return out
}

// TestTelemetryPerEndpoint drives every endpoint through the real router
// and a real Postgres, each request carrying Datadog trace headers, and
// checks the three signals agree: a server span whose resource is the
// route template, child SQL spans named by their statement, the request
// metrics tagged by route template, and an access log line carrying the
// span's trace id.
func TestTelemetryPerEndpoint(t *testing.T) {
	mt := telemetrytest.MockTracer(t)
	e := newEnv(t)
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user2@example.com'`)
	product := e.id(t, `SELECT id::text FROM products WHERE inventory >= 10 ORDER BY id LIMIT 1`)
	productBody := `{"name":"Traced Lamp","description":"Bright","price":"9.99","inventory":3}`

	cases := []struct {
		method, path, body string
		route              string // the route template
		status             int
		query              string // one statement the request must run ("" for none)
	}{
		{"GET", "/health", "", "/health", 200, ""},
		{"GET", "/ready", "", "/ready", 200, "health.ping"},
		{"GET", "/products?limit=5", "", "/products", 200, "products.list"},
		{"GET", "/products/" + product, "", "/products/{id}", 200, "products.get"},
		{"POST", "/products", productBody, "/products", 201, "products.insert"},
		{"POST", "/products/v2", productBody, "/products/v2", 201, "products.insert"},
		{"GET", "/orders/" + heavy, "", "/orders/{userId}", 200, "orders.by_user"},
		{"POST", "/orders/checkout", fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product), "/orders/checkout", 201, "checkout.lock_products"},
		{"POST", "/admin/products/import", `{"products":[` + productBody + `]}`, "/admin/products/import", 201, "copy.products"},
		{"GET", "/admin/inventory/low?threshold=3", "", "/admin/inventory/low", 200, "products.low_inventory"},
		{"GET", "/reports/orders/" + heavy, "", "/reports/orders/{userId}", 200, "reports.summary"},
		{"GET", "/products/" + product + "/nope", "", telemetry.RouteUnmatched, 404, ""},
	}
	for i, c := range cases {
		t.Run(c.method+" "+c.route, func(t *testing.T) {
			traceID := uint64(7_000_000_000 + i)
			reqID := fmt.Sprintf("telemetry-%d", i)
			ct := ""
			if c.body != "" {
				ct = "application/json"
			}
			res := e.do(t, c.method, c.path, ct, c.body,
				"X-Datadog-Trace-Id", strconv.FormatUint(traceID, 10), "X-Datadog-Parent-Id", "42", "X-Request-Id", reqID)
			if res.status != c.status {
				t.Fatalf("status %d, want %d: %s", res.status, c.status, res.body)
			}

			// Spans: the server span continues the caller's trace.
			var server *mocktracer.Span
			names := map[string]bool{}
			deadline := time.Now().Add(5 * time.Second)
			for server == nil && time.Now().Before(deadline) {
				for _, s := range spansOf(mt, traceID) {
					switch s.OperationName() {
					case "http.request":
						server = s
					case telemetry.SpanQuery, telemetry.SpanCopyFrom, telemetry.SpanBatchQuery:
						names[fmt.Sprint(s.Tag("resource.name"))] = true
					}
				}
				if server == nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
			if server == nil {
				t.Fatalf("no server span in trace %d", traceID)
			}
			if server.ParentID() != 42 {
				t.Errorf("server span parent %d, want the caller's 42", server.ParentID())
			}
			if c.route != telemetry.RouteUnmatched {
				if got, want := server.Tag("resource.name"), c.method+" "+c.route; got != want {
					t.Errorf("server span resource %q, want %q", got, want)
				}
			}
			if c.query != "" && !names[c.query] {
				t.Errorf("no SQL span %q among %v", c.query, names)
			}
			for n := range names {
				if n == telemetry.UnnamedQuery || strings.ContainsAny(n, " '$") {
					t.Errorf("SQL span named %q: every statement needs a stable name", n)
				}
			}

			// Metrics: tagged by template, never by raw path.
			e.stats.WaitFor(t, telemetry.MetricHTTPRequests, "route:"+c.route, "method:"+c.method, fmt.Sprintf("status_class:%dxx", c.status/100))
			if c.query != "" {
				e.stats.WaitFor(t, telemetry.MetricDBQueryDuration, "query:"+c.query, "outcome:ok")
			}
			for _, m := range e.stats.Metrics() {
				for _, tag := range m.Tags {
					if strings.Contains(tag, heavy) || strings.Contains(tag, product) || strings.Contains(tag, user) {
						t.Errorf("metric %s carries an id tag %q", m.Name, tag)
					}
				}
			}

			// Logs: the access line carries the span's trace id.
			var found bool
			for _, l := range e.logs.FilterMessage("request").All() {
				if l.ContextMap()["request_id"] != reqID {
					continue
				}
				found = true
				if got, want := l.ContextMap()["dd.trace_id"], telemetry.TraceID(server.Context()); got != want {
					t.Errorf("access log dd.trace_id %v, span's %v", got, want)
				}
				if l.ContextMap()["route"] != c.route {
					t.Errorf("access log route %v, want %s", l.ContextMap()["route"], c.route)
				}
			}
			if !found {
				t.Error("no access log line for the request")
			}
		})
	}
}

// TestCheckoutLockWait holds a product's row lock in one transaction while
// a checkout of that product waits for it: the lock-wait metric and the
// lock statement's span record the wait, and the sampler sees the waiter.
func TestCheckoutLockWait(t *testing.T) {
	mt := telemetrytest.MockTracer(t)
	e := newEnv(t)
	ctx := t.Context()
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user3@example.com'`)
	product := e.id(t, `SELECT id::text FROM products WHERE inventory >= 10 ORDER BY id DESC LIMIT 1`)

	sampleCtx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	go telemetry.SampleLockWaits(sampleCtx, e.tel, e.db.Pool, 50*time.Millisecond)

	release := holdRowLock(t, e.db.Pool, product)
	defer release()
	const hold = 600 * time.Millisecond
	done := make(chan response, 1)
	go func() {
		done <- e.do(t, "POST", "/orders/checkout", "application/json",
			fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product),
			"X-Datadog-Trace-Id", "8000000001", "X-Datadog-Parent-Id", "1")
	}()
	e.stats.WaitForMatch(t, telemetry.MetricDBLocksWaiting, func(m telemetrytest.Metric) bool { return m.Value >= 1 })
	time.Sleep(hold)
	release()
	if res := <-done; res.status != 201 {
		t.Fatalf("checkout after the lock: %d %s", res.status, res.body)
	}

	m := e.stats.WaitFor(t, telemetry.MetricDBLockWait, "query:checkout.lock_products")
	if m.Value < float64(hold.Milliseconds()) {
		t.Errorf("db.lock_wait %.0f ms, want >= %d", m.Value, hold.Milliseconds())
	}
	var waited bool
	for _, s := range spansOf(mt, 8000000001) {
		// The lock statement's own span carries the wait, also when it
		// is sent in a pipelined batch.
		if s.Tag("resource.name") == "checkout.lock_products" {
			if ms, _ := s.Tag("db.lock_wait_ms").(float64); ms >= float64(hold.Milliseconds()) {
				waited = true
			}
		}
	}
	if !waited {
		t.Error("the lock statement's span does not show the wait")
	}
}
