package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/switches"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// newSwitchedEnv is newEnv with the chaos switches wired as shopd wires
// them outside production (all off), and the reports store wrapped by
// wrap when given.
func newSwitchedEnv(t *testing.T, wrap func(shop.ReportStore) shop.ReportStore) *testEnv {
	t.Helper()
	tel, stats, logs := telemetrytest.New(t)
	pool := pgtest.NewWithConfig(t, func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = telemetry.NewQueryTracer(tel)
		c.ConnConfig.RuntimeParams["application_name"] = tel.Config.AppName
	})
	db := postgres.New(pool)
	if _, err := db.Seed(context.Background()); err != nil {
		t.Fatal(err)
	}
	sw, err := switches.NewInMemory(context.Background(), switches.Off())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close(context.Background()) })
	db.Switches = sw
	var reports shop.ReportStore = postgres.NewReports(db.Pool, 0)
	if wrap != nil {
		reports = wrap(reports)
	}
	h := httpapi.NewServer(httpapi.Deps{Config: testConfig(), Telemetry: tel, Products: db, Orders: db,
		Reports: reports, Users: db, DB: db, Switches: sw})
	srv := newServer(t, h)
	return &testEnv{db: db, srv: srv, tel: tel, stats: stats, logs: logs}
}

// flip turns a switch on or off through PUT /admin/switches/{name}.
func (e *testEnv) flip(t *testing.T, name string, on bool) {
	t.Helper()
	res := e.do(t, "PUT", "/admin/switches/"+name, "application/json", fmt.Sprintf(`{"on":%t}`, on))
	if res.status != 200 || !strings.Contains(string(res.body), fmt.Sprintf(`"on":%t`, on)) {
		t.Fatalf("flip %s %t: %d %s", name, on, res.status, res.body)
	}
}

// statements counts the statements named query that the query tracer saw
// (db.query.duration samples) since the last Reset, polling until there
// are want of them (samples arrive in several packets) or
// telemetrytest.WaitTimeout has passed.
func (e *testEnv) statements(query string, want int) int {
	deadline := time.Now().Add(telemetrytest.WaitTimeout)
	for {
		e.stats.Flush()
		n := len(e.stats.Find(telemetry.MetricDBQueryDuration, "query:"+query))
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSwitchBoard(t *testing.T) {
	t.Parallel()
	e := newSwitchedEnv(t, nil)

	t.Run("ListAllOff", func(t *testing.T) {
		res := e.get(t, "/admin/switches")
		if res.status != 200 {
			t.Fatalf("%d %s", res.status, res.body)
		}
		for _, name := range shop.SwitchNames() {
			if !strings.Contains(string(res.body), fmt.Sprintf(`{"switch":%q,"on":false}`, name)) {
				t.Errorf("%s not listed off: %s", name, res.body)
			}
		}
	})
	t.Run("ErrUnknownSwitch", func(t *testing.T) {
		checkProblem(t, e.do(t, "PUT", "/admin/switches/no-such", "application/json", `{"on":true}`), 404)
	})
	t.Run("ErrMissingOn", func(t *testing.T) {
		checkProblem(t, e.bad("on missing").do(t, "PUT", "/admin/switches/raw-errors", "application/json", `{}`), 400)
	})
	t.Run("AbsentWithoutSwitches", func(t *testing.T) {
		plain := newEnv(t) // production wires no switch board
		checkProblem(t, plain.get(t, "/admin/switches"), 404)
	})
}

// TestSwitchNPlusOne: GET /orders/{heavy} reads the 120 orders' items in
// one statement; with n-plus-one on, in one statement per order.
func TestSwitchNPlusOne(t *testing.T) {
	t.Parallel()
	e := newSwitchedEnv(t, nil)
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	read := func() string {
		e.stats.Flush()
		e.stats.Reset()
		var orders []shop.Order
		res := e.get(t, "/orders/"+heavy)
		res.json(t, &orders)
		if len(orders) != 120 {
			t.Errorf("%d orders, want 120", len(orders))
		}
		e.stats.WaitFor(t, telemetry.MetricHTTPRequests, "route:/orders/{userId}")
		return string(res.body)
	}

	off := read()
	if batched, n := e.statements("orders.items_by_orders", 1), e.statements("orders.items_by_order", 0); n != 0 || batched != 1 {
		t.Fatalf("off: %d per-order and %d batched item statements, want 0 and 1", n, batched)
	}
	e.flip(t, shop.SwitchNPlusOne, true)
	on := read()
	if n, batched := e.statements("orders.items_by_order", 120), e.statements("orders.items_by_orders", 0); n != 120 || batched != 0 {
		t.Errorf("on: %d per-order and %d batched item statements, want 120 (one per order) and 0", n, batched)
	}
	if on != off {
		t.Errorf("on: not the same answer as off")
	}
	e.flip(t, shop.SwitchNPlusOne, false)
	read()
	if batched, n := e.statements("orders.items_by_orders", 1), e.statements("orders.items_by_order", 0); n != 0 || batched != 1 {
		t.Errorf("off again: %d per-order statements", n)
	}
}

// TestSwitchUnlockedStock is the original's concurrency script (10 buyers
// of 2 units of a product with 3) with unlocked-stock on: more than one
// buyer succeeds, more units are sold than there were, the stock
// arithmetic breaks, and the lost updates and negative-stock attempts are
// counted and logged. Off again, the invariant holds.
func TestSwitchUnlockedStock(t *testing.T) {
	t.Parallel()
	e := newSwitchedEnv(t, nil)
	e.db.CheckoutTimeouts = generous
	users := make([]string, 10)
	for i := range users {
		users[i] = e.id(t, `SELECT id::text FROM customers WHERE email = $1`, fmt.Sprintf("user%d@example.com", i+1))
	}
	// race returns the 201s of 10 concurrent buyers of 2 units of a new
	// product with 3, and its final stock.
	race := func() (successes, final int) {
		product := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Last Three', 10, 3) RETURNING id::text`)
		var wg sync.WaitGroup
		statuses := make([]int, len(users))
		for i, u := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.post("/orders/checkout", checkoutBody(u, shop.CartLine{ProductID: product, Quantity: 2}))
				if err != nil {
					t.Error(err)
				}
				statuses[i] = res.status
			}()
		}
		wg.Wait()
		for _, s := range statuses {
			switch s {
			case 201:
				successes++
			case 409:
			default:
				t.Errorf("status %d", s)
			}
		}
		if n := e.scalar(t, `SELECT count(*) FROM order_items WHERE product_id = $1`, product); n != successes {
			t.Errorf("%d orders of the product for %d answers 201", n, successes)
		}
		return successes, e.scalar(t, `SELECT inventory FROM products WHERE id = $1`, product)
	}

	e.flip(t, shop.SwitchUnlockedStock, true)
	oversold := false
	for round := 0; round < 10 && !oversold; round++ {
		successes, final := race()
		t.Logf("on, round %d: %d successes of 2 units from 3, final stock %d", round, successes, final)
		if final < 0 {
			t.Fatalf("stock went negative (%d): the CHECK must hold", final)
		}
		oversold = successes > 1 && final != 3-2*successes
	}
	if !oversold {
		t.Fatal("unlocked-stock never oversold in 10 races")
	}
	if n := e.stats.WaitForSum(t, func(v float64) bool { return v > 0 }, telemetry.MetricCheckoutStockOverwrites); n <= 0 {
		t.Errorf("no lost update counted")
	}
	if n := e.stats.WaitForSum(t, func(v float64) bool { return v > 0 }, telemetry.MetricCheckoutNegativeStockAttempts); n <= 0 {
		t.Errorf("no negative-stock attempt counted")
	}
	if e.logs.FilterMessage("stock overwritten without a lock").Len() == 0 {
		t.Error("no warning logged")
	}

	e.flip(t, shop.SwitchUnlockedStock, false)
	if successes, final := race(); successes != 1 || final != 1 {
		t.Errorf("off: %d successes, final stock %d; want 1 and 1", successes, final)
	}
}

// TestSwitchRawErrors: a product whose sku another product has is a 409
// problem without internals; with raw-errors on, a 500 whose body holds
// Postgres's text.
func TestSwitchRawErrors(t *testing.T) {
	t.Parallel()
	e := newSwitchedEnv(t, nil)
	body := `{"name":"Dup","description":"Twice","price":1,"inventory":1,"sku":"DUP-1"}`
	if res := e.postJSON(t, "/products/v2", body); res.status != 201 {
		t.Fatalf("first: %d %s", res.status, res.body)
	}
	checkProblem(t, e.postJSON(t, "/products/v2", body), 409)

	e.flip(t, shop.SwitchRawErrors, true)
	res := e.postJSON(t, "/products/v2", body, offContract, "raw-errors: the original's raw 500")
	if res.status != 500 || !strings.Contains(string(res.body), "SQLSTATE 23505") || leaks.Find(res.body) == nil {
		t.Errorf("on: %d %s; want a 500 with the driver's text", res.status, res.body)
	}
	e.stats.WaitFor(t, telemetry.MetricHTTPRequests, "route:/products/v2", "status_class:5xx")
	if e.logs.FilterMessage("internal error sent raw to the client").Len() == 0 {
		t.Error("no error logged")
	}
	// Validation errors have no internal cause: unchanged.
	checkProblem(t, e.bad("v2 without a description").postJSON(t, "/products/v2", `{"name":"x","price":1,"inventory":1}`), 400)

	e.flip(t, shop.SwitchRawErrors, false)
	checkProblem(t, e.postJSON(t, "/products/v2", body), 409)
}

// TestSwitchRowByRowImport: an import is a COPY whatever its size; with
// row-by-row-import on, one INSERT per row, with the same result.
func TestSwitchRowByRowImport(t *testing.T) {
	t.Parallel()
	e := newSwitchedEnv(t, nil)
	importN := func(prefix string, n int) {
		t.Helper()
		var rows []string
		for i := range n {
			sku := ""
			if i%2 == 1 {
				sku = fmt.Sprintf(`,"sku":"%s-%d"`, prefix, i)
			}
			rows = append(rows, fmt.Sprintf(`{"name":"%s %d","description":"Bulk","price":%d.99,"inventory":%d%s}`, prefix, i, 10+i, 10+i, sku))
		}
		e.stats.Flush()
		e.stats.Reset()
		res := e.postJSON(t, "/admin/products/import", `{"products":[`+strings.Join(rows, ",")+`]}`)
		if res.status != 201 || !strings.Contains(string(res.body), fmt.Sprintf(`"count":%d`, n)) {
			t.Fatalf("import of %d: %d %s", n, res.status, res.body)
		}
		if got := e.scalar(t, `SELECT count(*) FROM products WHERE name LIKE $1`, prefix+" %"); got != n {
			t.Errorf("%d products imported, want %d", got, n)
		}
		e.stats.WaitFor(t, telemetry.MetricImportDuration)
	}

	importN("Off", 40)
	if n := e.statements("products.import_row", 0); n != 0 {
		t.Errorf("off: %d row statements", n)
	}
	e.flip(t, shop.SwitchRowByRowImport, true)
	for _, n := range []int{20, 40} {
		importN(fmt.Sprintf("On%d", n), n)
		if got := e.statements("products.import_row", n); got != n {
			t.Errorf("on: %d row statements for %d rows, want one per row", got, n)
		}
	}
}

// reportTimer wraps a report store: it holds back the lines of a full
// report until the client has its first byte (or hold has passed), and
// notes when it handed over the last line.
type reportTimer struct {
	shop.ReportStore
	hold      time.Duration
	firstByte chan struct{}
	mu        sync.Mutex
	lastLine  time.Time
}

func (r *reportTimer) StreamReport(ctx context.Context, userID string, limit int, fn func(shop.ReportLine) error) error {
	if limit == 0 {
		select {
		case <-r.firstByte:
		case <-time.After(r.hold):
		}
	}
	err := r.ReportStore.StreamReport(ctx, userID, limit, fn)
	r.mu.Lock()
	r.lastLine = time.Now()
	r.mu.Unlock()
	return err
}

// TestSwitchReportInProcess: a download's first byte leaves before its
// first line is read; with report-in-process on, only after its last, and
// the bytes it held are recorded.
func TestSwitchReportInProcess(t *testing.T) {
	t.Parallel()
	var timer *reportTimer
	e := newSwitchedEnv(t, func(s shop.ReportStore) shop.ReportStore {
		timer = &reportTimer{ReportStore: s, hold: 500 * time.Millisecond}
		return timer
	})
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	download := func() (firstByte, lastLine time.Time, body string) {
		timer.firstByte = make(chan struct{})
		var once sync.Once
		trace := &httptrace.ClientTrace{GotFirstResponseByte: func() {
			firstByte = time.Now()
			once.Do(func() { close(timer.firstByte) })
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET",
			e.srv.URL+"/reports/orders/"+heavy+"?format=txt", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%d %s %v", res.StatusCode, b, err)
		}
		timer.mu.Lock()
		defer timer.mu.Unlock()
		return firstByte, timer.lastLine, string(b)
	}

	first, last, streamed := download()
	if !first.Before(last) {
		t.Errorf("off: first byte %v after the last line %v", first, last)
	}
	e.flip(t, shop.SwitchReportInProcess, true)
	first, last, built := download()
	if !first.After(last) {
		t.Errorf("on: first byte %v before the last line %v", first, last)
	}
	strip := func(s string) string { // the Generated: line differs
		lines := strings.Split(s, "\n")
		return strings.Join(append(lines[:2:2], lines[3:]...), "\n")
	}
	if strip(built) != strip(streamed) || !strings.Contains(built, "Order total") {
		t.Errorf("on: another report (%d bytes, %d streamed)", len(built), len(streamed))
	}
	m := e.stats.WaitFor(t, telemetry.MetricReportInProcessBytes, "format:txt")
	if int(m.Value) != len(built) {
		t.Errorf("%s = %v, want %d", telemetry.MetricReportInProcessBytes, m.Value, len(built))
	}
}
