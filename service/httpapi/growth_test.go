package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/telemetry"
)

// The gate's sizes: the incident's (docs/incidents.md, row 1).
const (
	growthProducts   = 100_000   // imported through POST /admin/products/import
	growthOrderLines = 1_000_000 // other users' order lines, loaded directly
	growthRounds     = 41        // interleaved measurements per endpoint and database
	growthWarmup     = 12        // requests per endpoint and database before measuring: > 5, so pgx's cached statements have switched to generic plans where PostgreSQL would
	growthMaxRatio   = 1.5
)

// itemsCapture records the last text and arguments of the order-history
// items statement, as the store sent them, for EXPLAIN. It embeds the
// service's tracer, so every other trace keeps going to it.
type itemsCapture struct {
	*telemetry.QueryTracer
	mu   sync.Mutex
	sql  string
	args []any
}

func (c *itemsCapture) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(data.SQL, "-- name: orders.items_by_orders\n") {
		c.mu.Lock()
		c.sql, c.args = data.SQL, data.Args
		c.mu.Unlock()
	}
	return c.QueryTracer.TraceQueryStart(ctx, conn, data)
}

// TestReadCostDoesNotGrowWithUnrelatedData is the gate of issue 15's
// "cost that must not grow with unrelated data": every read endpoint
// answers the same request within growthMaxRatio of its latency on the
// seeded database once 100,000 products have been imported through the
// API and 1,000,000 order lines of other users loaded directly, as in the
// incident (autovacuum is off on these machines: nothing refreshes the
// planner's statistics unless shopd does). Latencies are medians of
// interleaved requests (seeded, big, big, seeded, ...) after a warm-up
// past PostgreSQL's switch to generic plans; a failing endpoint is
// measured once more before the test fails. The log shows every ratio.
// It also checks the order-history items statement's plans on the big
// database: no sequential scan of order_items, custom or generic.
func TestReadCostDoesNotGrowWithUnrelatedData(t *testing.T) {
	start := time.Now()
	small := newEnv(t)
	capture := &itemsCapture{}
	big := newEnv(t, func(c *pgxpool.Config) {
		capture.QueryTracer = c.ConnConfig.Tracer.(*telemetry.QueryTracer)
		c.ConnConfig.Tracer = capture
	})
	ctx := t.Context()

	importCatalogue(t, big, growthProducts)
	imported := time.Since(start)
	loadOrderLines(t, big, growthOrderLines)
	loaded := time.Since(start) - imported
	// What shopd serve's stale-statistics check (every minute while
	// autovacuum is off) does next, on both databases: the seeded one had
	// no statistics at all either.
	if _, err := small.db.AnalyzeStale(ctx); err != nil {
		t.Fatal(err)
	}
	analyzed, err := big.db.AnalyzeStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(analyzed, "order_items") || !slices.Contains(analyzed, "orders") {
		t.Errorf("AnalyzeStale analyzed %v after 1,000,000 order lines were loaded; want orders and order_items among them", analyzed)
	}
	t.Logf("stale-statistics check analyzed %v in %v", analyzed, (time.Since(start) - imported - loaded).Round(time.Millisecond))
	t.Logf("big database: %d products imported through the API in %v, %d order lines loaded directly in %v",
		big.scalar(t, `SELECT count(*) FROM products`), imported.Round(time.Millisecond),
		big.scalar(t, `SELECT count(*) FROM order_items`), loaded.Round(time.Millisecond))

	heavy := small.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	product := small.id(t, `SELECT id::text FROM products WHERE name = 'Wireless Headphones 1'`)
	endpoints := []struct{ name, path string }{
		{"products_first_page", "/products?limit=20"},
		{"product_by_id", "/products/" + product},
		{"order_history_heavy_user", "/orders/" + heavy},
		{"search", "/products?q=headphones"},
		{"low_inventory", "/admin/inventory/low"},
		{"report_summary", "/reports/orders/" + heavy},
	}
	// The same answers on both: the bulk data is unrelated to them.
	for _, ep := range endpoints {
		a, b := fetch(t, small, ep.path), fetch(t, big, ep.path)
		if ep.name != "products_first_page" && ep.name != "report_summary" && a != b {
			t.Fatalf("%s: the big database answers differently:\nseeded: %.300s\nbig:    %.300s", ep.name, a, b)
		}
	}

	for _, ep := range endpoints {
		for range growthWarmup {
			fetch(t, small, ep.path)
			fetch(t, big, ep.path)
		}
		var ratio float64
		var a, b time.Duration
		for attempt := 1; attempt <= 2; attempt++ {
			a, b = measureInterleaved(t, small, big, ep.path)
			ratio = float64(b) / float64(a)
			t.Logf("%-26s seeded %8v  big %8v  ratio %.2fx (attempt %d)", ep.name, a.Round(time.Microsecond), b.Round(time.Microsecond), ratio, attempt)
			if ratio <= growthMaxRatio {
				break
			}
		}
		if ratio > growthMaxRatio {
			t.Errorf("%s (GET %s): %.2fx the seeded database's latency (%v vs %v) with %d more products and %d more order lines; the gate allows %.1fx",
				ep.name, ep.path, ratio, b.Round(time.Microsecond), a.Round(time.Microsecond), growthProducts, growthOrderLines, growthMaxRatio)
		}
	}

	// The items statement as the store last ran it (the heavy user's first
	// page), explained on the big database.
	capture.mu.Lock()
	sql, args := capture.sql, capture.args
	capture.mu.Unlock()
	if sql == "" {
		t.Fatal("the order-history items statement was never traced")
	}
	ids, ok := args[0].([]string)
	if !ok || len(ids) == 0 {
		t.Fatalf("items statement arguments %#v", args)
	}
	literal := "'{" + strings.Join(ids, ",") + "}'"
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		plan := explainExecute(ctx, t, big.db.Pool, mode, sql, literal)
		if strings.Contains(plan, "Seq Scan on order_items") {
			t.Errorf("%s plan of the order-history items statement scans order_items:\n%s", mode, plan)
		}
	}
	t.Logf("whole gate: %v", time.Since(start).Round(time.Millisecond))
}

// fetch GETs path and returns the body; anything but a 200 fails the test.
func fetch(t *testing.T, e *testEnv, path string) string {
	t.Helper()
	res, err := e.srv.Client().Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %.300s", path, res.StatusCode, err, b)
	}
	return string(b)
}

// measureInterleaved times growthRounds requests of path on each env,
// alternating which goes first, and returns both medians.
func measureInterleaved(t *testing.T, a, b *testEnv, path string) (time.Duration, time.Duration) {
	t.Helper()
	var da, db []time.Duration
	timed := func(e *testEnv) time.Duration {
		s := time.Now()
		fetch(t, e, path)
		return time.Since(s)
	}
	for i := range growthRounds {
		if i%2 == 0 {
			da, db = append(da, timed(a)), append(db, timed(b))
		} else {
			db, da = append(db, timed(b)), append(da, timed(a))
		}
	}
	return median(da), median(db)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// importCatalogue imports n products through POST /admin/products/import
// as CSV, streamed, with names and descriptions that share no word with
// the seed's and stock above the low-inventory threshold, so the seeded
// answers stay the same.
func importCatalogue(t *testing.T, e *testEnv, n int) {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		w := io.Writer(pw)
		fmt.Fprintln(w, "name,description,price,inventory")
		for i := range n {
			fmt.Fprintf(w, "Catalogue item %06d,Bulk catalogue entry %d.,%d.%02d,%d\n", i, i, 1+i%500, i%100, 500+i%1000)
		}
		pw.Close()
	}()
	req, err := http.NewRequestWithContext(t.Context(), "POST", e.srv.URL+"/admin/products/import", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/csv")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("import: %d %s", res.StatusCode, b)
	}
}

// loadOrderLines loads n order lines of 1,000 other customers (n/4 orders
// of 4 lines over the whole catalogue) in one INSERT ... SELECT from
// generate_series, on a connection that skips the foreign-key triggers
// (session_replication_role = replica) to keep the load fast. Nothing
// analyzes afterwards: that is the point.
func loadOrderLines(t *testing.T, e *testEnv, n int) {
	t.Helper()
	ctx := t.Context()
	conn, err := e.db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, sql := range []string{
		`SET session_replication_role = replica`,
		`INSERT INTO customers (email, name) SELECT 'bulk' || g || '@example.com', 'Bulk ' || g FROM generate_series(1, 1000) g`,
		fmt.Sprintf(`WITH p AS MATERIALIZED (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM products),
np AS (SELECT count(*) AS n FROM p),
c AS MATERIALIZED (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM customers WHERE email LIKE 'bulk%%@example.com'),
o AS MATERIALIZED (SELECT gen_random_uuid() AS id, g FROM generate_series(1, %d) g),
ins AS (
    INSERT INTO orders (id, customer_id, status, total, created_at)
    SELECT o.id, c.id, 'completed', 10, now() - o.g * interval '1 second' FROM o JOIN c ON c.i = o.g %% 1000
)
INSERT INTO order_items (order_id, product_id, quantity, price)
SELECT l.id, p.id, 1, 2.50
FROM (SELECT o.id, (o.g * 4 + k) %% np.n AS i FROM o, np, generate_series(0, 3) k) l JOIN p ON p.i = l.i`, n/4),
		`RESET session_replication_role`,
		// Report this session's changes to the cumulative statistics now
		// (a backend otherwise may wait up to 10 s), as shopd's check reads
		// them.
		`SELECT pg_stat_force_next_flush()`,
		`SELECT 1`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%.80s: %v", sql, err)
		}
	}
}

// explainExecute prepares sql, then explains its execution with the
// literal argument under plan_cache_mode mode.
func explainExecute(ctx context.Context, t *testing.T, pool *pgxpool.Pool, mode, sql, arg string) string {
	t.Helper()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	defer conn.Exec(context.WithoutCancel(ctx), `RESET plan_cache_mode`) //nolint:errcheck
	defer conn.Exec(context.WithoutCancel(ctx), `DEALLOCATE explained`)  //nolint:errcheck
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `PREPARE explained AS `+sql); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE explained(`+arg+`)`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
