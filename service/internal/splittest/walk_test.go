package splittest

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// account is what the test knows about a user: seeded or created through
// POST /users, and whether it has bought anything.
type account struct {
	id, email, name, userType string // userType "" for a typeless legacy account
	bought                    bool
}

// world is the test's own record of everything the writers did, to
// compare with the database at the end.
type world struct {
	mu       sync.Mutex
	accounts map[string]*account // by id
	ids      []string
	orders   map[string]string   // order id -> buyer id, every 201 checkout
	byBuyer  map[string][]string // buyer id -> its seeded orders and 201 checkouts
	reports  []reportSeen        // what every report read showed
	problems []string            // every answer a writer should never have had

	checkouts, created, reads atomic.Int64 // successful requests
	summaries, downloads      atomic.Int64 // successful report reads: JSON summaries, CSV downloads
	retries                   atomic.Int64 // 503s and retryable 409s, retried
}

// reportSeen is what one report of a buyer showed: its order count, and
// for a download the ids of its orders.
type reportSeen struct {
	buyer  string
	count  int
	orders []string
}

// known returns the orders of buyer that the test knows of now, and its
// email.
func (w *world) known(buyer string) ([]string, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.byBuyer[buyer]...), w.accounts[buyer].email
}

func (w *world) addOrder(id, buyer string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.orders[id] = buyer
	w.byBuyer[buyer] = append(w.byBuyer[buyer], id)
}

func (w *world) sawReport(r reportSeen) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reports = append(w.reports, r)
}

func (w *world) problem(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.problems) < 50 {
		w.problems = append(w.problems, fmt.Sprintf(format, args...))
	}
}

func (w *world) add(a *account) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.accounts[a.id] = a
	w.ids = append(w.ids, a.id)
}

func (w *world) randomAccount(r *rand.Rand) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ids[r.IntN(len(w.ids))]
}

// TestUsersSplitOnline is the users split under traffic. A database holds
// customers, merchants, merchants who bought, and typeless legacy users,
// with their orders. Goroutines check out (as every kind of user,
// including users created meanwhile), create customers and merchants with
// POST /users, and read order history and reports (the JSON summary and a
// CSV download, from a reports store on its own pool as shopd has it), all
// through the real router, retrying only what the API marks retryable
// (503, or 409 with Retry-After). Meanwhile every migration step goes up, every reversible
// one down and up again, the backfill runs after the sync step and the
// verification before the contract step; each step waits until the writers
// have made progress on it. At the end: no writer ever got another 5xx,
// every 201 checkout is an order with its buyer as customer, and no other
// order exists; customers and merchants hold exactly the accounts the
// mapping says; order history through the API returns every order; every
// report showed every order acknowledged before it and none of another
// buyer's.
func TestUsersSplitOnline(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.NewDatabaseAt(t, postgres.UsersSplitTables-1)
	check, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(check.Close)
	w := seed(t, check)
	products := strings.Split(scalar[string](t, check, `SELECT string_agg(id::text, ',') FROM products`), ",")
	seededOrders := scalar[int64](t, check, `SELECT count(*) FROM orders`)

	// The service: its own pool, the real router.
	tel, _, _ := telemetrytest.New(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db := postgres.New(pool)
	if mode, err := db.DetectUsersSchema(ctx); err != nil || mode != "users" {
		t.Fatalf("schema at start: %q %v, want users", mode, err)
	}
	// Reports on a pool of their own, as shopd runs them: their store
	// detects the schema, and follows its change, by itself.
	rcfg := cfg.Copy()
	rcfg.MaxConns = 2
	reportsPool, err := pgxpool.NewWithConfig(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reportsPool.Close)
	reports := postgres.NewReports(reportsPool, 5*time.Second)
	srv := httptest.NewServer(httpapi.NewServer(httpapi.Deps{Telemetry: tel, Products: db, Orders: db, Reports: reports, Users: db, DB: db}))
	t.Cleanup(srv.Close)

	// The writers, until stop.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); checkoutLoop(wctx, w, srv, products, uint64(i)) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); createLoop(wctx, w, srv) }()
	go func() { defer wg.Done(); readLoop(wctx, w, srv) }()

	// The walk.
	mig := postgres.Migrator{Pool: check, Out: logWriter{t}, Backoff: 50 * time.Millisecond, Retries: 10}
	step := func(name string, fn func() error) {
		t.Helper()
		c0, u0, s0, d0 := w.checkouts.Load(), w.created.Load(), w.summaries.Load(), w.downloads.Load()
		start := time.Now()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Let the writers and readers work on this step before the next one.
		deadline := time.Now().Add(time.Minute)
		for w.checkouts.Load() < c0+3 || w.created.Load() < u0+1 || w.summaries.Load() < s0+1 || w.downloads.Load() < d0+1 {
			if time.Now().After(deadline) {
				w.mu.Lock()
				problems := w.problems[:min(len(w.problems), 5)]
				w.mu.Unlock()
				t.Fatalf("%s: the clients made no progress in a minute (checkouts %d, users %d, report summaries %d, downloads %d); first problems: %q", name,
					w.checkouts.Load()-c0, w.created.Load()-u0, w.summaries.Load()-s0, w.downloads.Load()-d0, problems)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%-28s %6s  checkouts so far %4d, users created %3d, retried %3d", name,
			time.Since(start).Round(time.Millisecond), w.checkouts.Load(), w.created.Load(), w.retries.Load())
	}
	up := func(v int64) func() error { return func() error { return mig.UpTo(ctx, v) } }
	down := func(v int64) func() error { return func() error { return mig.DownTo(ctx, v) } }
	backfillDB := postgres.New(check)

	for _, v := range []int64{postgres.UsersSplitTables, postgres.UsersSplitSync} {
		step(fmt.Sprintf("up %d", v), up(v))
		step(fmt.Sprintf("down to %d", v-1), down(v-1))
		step(fmt.Sprintf("up %d again", v), up(v))
	}
	step("backfill users-split", func() error {
		_, err := backfillDB.BackfillUsersSplit(ctx, postgres.BackfillOptions{BatchSize: 40, Pause: 2 * time.Millisecond, Out: logWriter{t}})
		return err
	})
	for _, v := range []int64{postgres.UsersSplitIndex, postgres.UsersSplitConstraints, postgres.UsersSplitValidate, postgres.UsersSplitNotNull} {
		step(fmt.Sprintf("up %d", v), up(v))
		step(fmt.Sprintf("down to %d", v-1), down(v-1))
		step(fmt.Sprintf("up %d again", v), up(v))
	}
	step("verify users-split", func() error {
		r, err := backfillDB.VerifyUsersSplit(ctx)
		if err != nil {
			return err
		}
		var b strings.Builder
		r.Write(&b)
		t.Log(b.String())
		if !r.OK() {
			return fmt.Errorf("verify found differences under traffic")
		}
		if r.Typeless == 0 || r.MerchantBuyers == 0 {
			return fmt.Errorf("the report shows %d typeless users and %d merchant-buyers; the seed has both", r.Typeless, r.MerchantBuyers)
		}
		return nil
	})
	step("contract", up(postgres.UsersSplitContract))
	step("after contract", func() error { return nil })
	step("after contract, more", func() error { return nil })
	stop()
	wg.Wait()

	t.Run("NoWriterGotA5xx", func(t *testing.T) {
		for _, p := range w.problems {
			t.Error(p)
		}
		t.Logf("%d checkouts, %d users created, %d order-history reads, %d report summaries, %d report downloads, %d retried answers (503, or 409 with Retry-After)",
			w.checkouts.Load(), w.created.Load(), w.reads.Load(), w.summaries.Load(), w.downloads.Load(), w.retries.Load())
	})
	t.Run("SchemaSwitched", func(t *testing.T) {
		if mode, err := db.DetectUsersSchema(ctx); err != nil || mode != "customers" {
			t.Errorf("schema at the end: %q %v, want customers", mode, err)
		}
		if scalar[bool](t, check, `SELECT to_regclass('users') IS NULL AND to_regclass('users_legacy') IS NOT NULL`) != true {
			t.Error("users was not renamed to users_legacy")
		}
	})
	t.Run("NoOrderLost", func(t *testing.T) {
		total := scalar[int64](t, check, `SELECT count(*) FROM orders`)
		if want := seededOrders + int64(len(w.orders)); total != want || int64(len(w.orders)) != w.checkouts.Load() {
			t.Errorf("orders: %d in the database, want %d seeded + %d checkouts answered 201", total, seededOrders, len(w.orders))
		}
		ids, buyers := make([]string, 0, len(w.orders)), make([]string, 0, len(w.orders))
		for id, b := range w.orders {
			ids, buyers = append(ids, id), append(buyers, b)
		}
		if n := scalar[int64](t, check, `SELECT count(*) FROM orders o JOIN unnest($1::uuid[], $2::uuid[]) AS w(id, buyer)
			ON w.id = o.id AND w.buyer = o.customer_id`, ids, buyers); n != int64(len(ids)) {
			t.Errorf("%d of the %d orders answered 201 exist with their buyer as customer", n, len(ids))
		}
	})
	t.Run("EveryOrderHasItsCustomer", func(t *testing.T) {
		if n := scalar[int64](t, check, `SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL`); n != 0 {
			t.Errorf("%d orders without a customer", n)
		}
	})
	t.Run("AccountsFollowTheMapping", func(t *testing.T) {
		for id := range w.orders {
			w.accounts[w.orders[id]].bought = true
		}
		wantCustomers, wantMerchants := map[string]string{}, map[string]string{}
		for _, a := range w.accounts {
			row := a.email + "|" + a.name
			if a.userType != "merchant" || a.bought {
				wantCustomers[a.id] = row
			}
			if a.userType == "merchant" {
				wantMerchants[a.id] = row
			}
		}
		compare(t, "customers", wantCustomers, rowsOf(t, check, `SELECT id::text, email || '|' || name FROM customers`))
		compare(t, "merchants", wantMerchants, rowsOf(t, check, `SELECT id::text, email || '|' || name FROM merchants`))
		kinds := map[string]int{}
		for _, a := range w.accounts {
			switch {
			case a.userType == "":
				kinds["typeless"]++
			case a.userType == "merchant" && a.bought:
				kinds["merchant-buyers"]++
			}
		}
		if kinds["typeless"] == 0 || kinds["merchant-buyers"] == 0 {
			t.Errorf("the run covered %v; it needs typeless users and merchant-buyers", kinds)
		}
	})
	t.Run("OrderHistoryHasEveryOrder", func(t *testing.T) {
		perBuyer := map[string]int64{}
		for _, r := range rowsOfCount(t, check, `SELECT customer_id::text, count(*) FROM orders GROUP BY 1`) {
			perBuyer[r.id] = r.n
		}
		var got int64
		for id, a := range w.accounts {
			res, err := http.Get(srv.URL + "/orders/" + id + "?limit=1000")
			if err != nil {
				t.Fatal(err)
			}
			var list []json.RawMessage
			err = json.NewDecoder(res.Body).Decode(&list)
			res.Body.Close()
			if res.StatusCode != 200 || err != nil || int64(len(list)) != perBuyer[id] {
				t.Errorf("GET /orders/%s (%s): %d, %d orders, want %d", id, a.email, res.StatusCode, len(list), perBuyer[id])
			}
			got += int64(len(list))
		}
		if want := seededOrders + w.checkouts.Load(); got != want {
			t.Errorf("order history returned %d orders in all, want %d", got, want)
		}
	})
	t.Run("ReportsShowTheirBuyersOrders", func(t *testing.T) {
		// Every account's report once more, now that the test knows every
		// order: each must hold all of its buyer's (readReports)...
		before := len(w.problems)
		for id := range w.accounts {
			readReports(w, srv, id)
		}
		for _, p := range w.problems[before:] {
			t.Error(p)
		}
		// ...and no report, during the walk or after it, counted more or
		// listed another buyer's.
		buyerOf := rowsOf(t, check, `SELECT id::text, customer_id::text FROM orders`)
		perBuyer := map[string]int{}
		for _, b := range buyerOf {
			perBuyer[b]++
		}
		for _, r := range w.reports {
			if r.count > perBuyer[r.buyer] {
				t.Errorf("a report of %s counted %d orders; the buyer has %d", r.buyer, r.count, perBuyer[r.buyer])
			}
			for _, o := range r.orders {
				if buyerOf[o] != r.buyer {
					t.Errorf("a report of %s listed order %s, whose buyer is %q", r.buyer, o, buyerOf[o])
				}
			}
		}
		t.Logf("%d report reads checked", len(w.reports))
	})
}

// seed fills the pre-split database: 20 products with ample stock; 30
// customers, 8 merchants (the first 4 have bought), 10 typeless users (the
// first 5 have bought); 3 orders per buyer, each of 2 lines.
func seed(t *testing.T, pool *pgxpool.Pool) *world {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO products (name, price, inventory) SELECT 'Product ' || g, g + 0.99, 100000000 FROM generate_series(1, 20) g`,
		`INSERT INTO users (email, name, user_type)
		 SELECT 'customer' || g || '@seed.test', 'Customer ' || g, 'customer' FROM generate_series(1, 30) g
		 UNION ALL SELECT 'merchant' || g || '@seed.test', 'Merchant ' || g, 'merchant' FROM generate_series(1, 8) g
		 UNION ALL SELECT 'typeless' || g || '@seed.test', 'Typeless ' || g, NULL FROM generate_series(1, 10) g`,
		`INSERT INTO orders (user_id, status, total, created_at)
		 SELECT u.id, 'completed', 3.98, now() - interval '1 day' FROM users u, generate_series(1, 3)
		 WHERE u.user_type = 'customer' OR u.email ~ '^(merchant[1-4]|typeless[1-5])@'`,
		`INSERT INTO order_items (order_id, product_id, quantity, price)
		 SELECT o.id, p.id, 1, p.price FROM orders o, (SELECT id, price FROM products ORDER BY name LIMIT 2) p`,
	} {
		if _, err := pool.Exec(t.Context(), q); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	w := &world{accounts: map[string]*account{}, orders: map[string]string{}, byBuyer: map[string][]string{}}
	rows, err := pool.Query(t.Context(), `SELECT u.id::text, u.email, u.name, coalesce(u.user_type, ''),
		EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id) FROM users u`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		a := &account{}
		if err := rows.Scan(&a.id, &a.email, &a.name, &a.userType, &a.bought); err != nil {
			t.Fatal(err)
		}
		w.add(a)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for order, buyer := range rowsOf(t, pool, `SELECT id::text, user_id::text FROM orders`) {
		w.byBuyer[buyer] = append(w.byBuyer[buyer], order)
	}
	return w
}

// send makes one request, retrying what the API marks retryable (503,
// 409 with Retry-After) with a short pause instead of the advised second,
// and records any other 5xx, and a 503 without Retry-After, as a problem.
// It returns the final status and body. A request once sent is always
// seen through, even when the test is stopping: an answer dropped on the
// way would be an order the test does not know of.
func send(w *world, srv *httptest.Server, method, path string, body any) (int, []byte) {
	var buf []byte
	if body != nil {
		buf, _ = json.Marshal(body)
	}
	for attempt := 1; ; attempt++ {
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(buf))
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			w.problem("%s %s: %v", method, path, err)
			return 0, nil
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			w.problem("%s %s: %d, the body was cut off after %d bytes: %v", method, path, res.StatusCode, len(b), err)
			return 0, nil
		}
		retryAfter := res.Header.Get("Retry-After")
		switch {
		case res.StatusCode == 503 && retryAfter == "":
			w.problem("%s %s: 503 without Retry-After: %s", method, path, b)
			return res.StatusCode, b
		case res.StatusCode == 503, res.StatusCode == 409 && retryAfter != "":
			w.retries.Add(1)
			if attempt == 50 {
				w.problem("%s %s: still %d after %d attempts: %s", method, path, res.StatusCode, attempt, b)
				return res.StatusCode, b
			}
			time.Sleep(time.Duration(min(attempt, 10)) * 20 * time.Millisecond)
			continue
		case res.StatusCode >= 500:
			w.problem("%s %s: %d: %s", method, path, res.StatusCode, b)
		}
		return res.StatusCode, b
	}
}

func checkoutLoop(ctx context.Context, w *world, srv *httptest.Server, products []string, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 9))
	for ctx.Err() == nil {
		buyer := w.randomAccount(r)
		a, b := products[r.IntN(len(products))], products[r.IntN(len(products))]
		body := map[string]any{"userId": buyer, "items": []map[string]any{
			{"productId": a, "quantity": 1 + r.IntN(3)}, {"productId": b, "quantity": 1},
		}}
		status, res := send(w, srv, "POST", "/orders/checkout", body)
		switch status {
		case 0:
		case 201:
			var o struct{ ID, UserID string }
			if err := json.Unmarshal(res, &o); err != nil || o.UserID != buyer {
				w.problem("checkout answered 201 with %s", res)
				continue
			}
			w.addOrder(o.ID, buyer)
			w.checkouts.Add(1)
		default:
			w.problem("checkout as %s: %d: %s", buyer, status, res)
		}
	}
}

func createLoop(ctx context.Context, w *world, srv *httptest.Server) {
	types := []string{"", "customer", "merchant"}
	for i := 0; ctx.Err() == nil; i++ {
		a := &account{email: fmt.Sprintf("new%d@walk.test", i), name: fmt.Sprintf("New %d", i), userType: types[i%3]}
		body := map[string]any{"email": strings.ToUpper(a.email[:1]) + a.email[1:], "name": " " + a.name + " "}
		if a.userType != "" {
			body["userType"] = a.userType
		} else {
			a.userType = "customer" // the default
		}
		status, res := send(w, srv, "POST", "/users", body)
		switch status {
		case 0:
		case 201:
			var u struct{ ID, Email, Name, UserType string }
			if err := json.Unmarshal(res, &u); err != nil || u.Email != a.email || u.Name != a.name || u.UserType != a.userType {
				w.problem("POST /users answered 201 with %s for %v", res, body)
				continue
			}
			a.id = u.ID
			w.add(a)
			w.created.Add(1)
		default:
			w.problem("POST /users %v: %d: %s", body, status, res)
		}
		if i%10 == 9 { // now and then, a duplicate: always 409, at every step
			dup := map[string]any{"email": a.email, "name": "Twin"}
			if status, res := send(w, srv, "POST", "/users", dup); status != 409 && status != 0 {
				w.problem("POST /users with a taken email: %d: %s", status, res)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func readLoop(ctx context.Context, w *world, srv *httptest.Server) {
	r := rand.New(rand.NewPCG(7, 7))
	for ctx.Err() == nil {
		id := w.randomAccount(r)
		path := "/orders/" + id + "?limit=5"
		status, res := send(w, srv, "GET", path, nil)
		if status != 200 && status != 0 {
			w.problem("GET %s: %d: %s", path, status, res)
		}
		if status == 200 {
			w.reads.Add(1)
		}
		readReports(w, srv, id)
	}
}

// readReports reads the report of buyer as the JSON summary (the user's
// email and order count, from the aggregate query and the first lines) and
// as a CSV download (every line, through the cursor). Each must hold every
// order the test knew of before it asked: those were acknowledged, so
// committed. What they showed is kept for the end, when the test knows
// every order.
func readReports(w *world, srv *httptest.Server, buyer string) {
	known, email := w.known(buyer)
	path := "/reports/orders/" + buyer
	switch status, res := send(w, srv, "GET", path, nil); status {
	case 0:
	case 200:
		var s struct {
			User       string
			OrderCount int
		}
		if err := json.Unmarshal(res, &s); err != nil || s.User != email || s.OrderCount < len(known) {
			w.problem("GET %s: %s; want %s with at least %d orders", path, res, email, len(known))
			break
		}
		w.summaries.Add(1)
		w.sawReport(reportSeen{buyer: buyer, count: s.OrderCount})
	default:
		w.problem("GET %s: %d: %s", path, status, res)
	}
	path += "?format=csv"
	switch status, res := send(w, srv, "GET", path, nil); status {
	case 0:
	case 200:
		rows, err := csv.NewReader(bytes.NewReader(res)).ReadAll()
		if err != nil || len(rows) == 0 || rows[0][0] != "order_id" {
			w.problem("GET %s: not a CSV report (%v): %.200s", path, err, res)
			break
		}
		seen := map[string]bool{}
		r := reportSeen{buyer: buyer}
		for _, row := range rows[1:] {
			if !seen[row[0]] {
				seen[row[0]] = true
				r.orders = append(r.orders, row[0])
			}
		}
		r.count = len(r.orders)
		missing := 0
		for _, o := range known {
			if !seen[o] {
				missing++
			}
		}
		if missing > 0 {
			w.problem("GET %s: %d of the %d orders acknowledged before it are missing", path, missing, len(known))
			break
		}
		w.downloads.Add(1)
		w.sawReport(r)
	default:
		w.problem("GET %s: %d: %s", path, status, res)
	}
}

func scalar[T any](t *testing.T, pool *pgxpool.Pool, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := pool.QueryRow(t.Context(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func rowsOf(t *testing.T, pool *pgxpool.Pool, sql string) map[string]string {
	t.Helper()
	rows, err := pool.Query(t.Context(), sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		m[k] = v
	}
	return m
}

type idCount struct {
	id string
	n  int64
}

func rowsOfCount(t *testing.T, pool *pgxpool.Pool, sql string) []idCount {
	t.Helper()
	rows, err := pool.Query(t.Context(), sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []idCount
	for rows.Next() {
		var r idCount
		if err := rows.Scan(&r.id, &r.n); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func compare(t *testing.T, table string, want, got map[string]string) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("%s holds %d rows, want %d", table, len(got), len(want))
	}
	bad := 0
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			if bad++; bad <= 5 {
				t.Errorf("%s %s: %q, want %q", table, id, g, w)
			}
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			if bad++; bad <= 10 {
				t.Errorf("%s %s (%s) should not be there", table, id, g)
			}
		}
	}
}

// logWriter sends output lines to the test log.
type logWriter struct{ t testing.TB }

func (l logWriter) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
