package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// generous are timeouts that a loaded test machine never reaches: the
// concurrency tests prove correctness under contention, and
// TestCheckoutBoundedWaits proves the bounds.
var generous = postgres.Timeouts{Acquire: 30 * time.Second, Lock: 30 * time.Second, Statement: 30 * time.Second}

// checkoutBody is a checkout request body.
func checkoutBody(user string, lines ...shop.CartLine) string {
	b, _ := json.Marshal(shop.CheckoutRequest{UserID: user, Items: lines})
	return string(b)
}

// post sends a JSON POST from any goroutine (it reports failures as an
// error instead of calling t.Fatal).
func (e *testEnv) post(path, body string, headers ...string) (response, error) {
	req, err := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}, err
}

// lowStockProducts inserts n products with stock 2..12 and returns their
// ids and initial stock.
func lowStockProducts(t *testing.T, e *testEnv, n int) ([]string, map[string]int) {
	t.Helper()
	ids := make([]string, n)
	stock := map[string]int{}
	for i := range ids {
		s := 2 + rand.IntN(11)
		ids[i] = e.id(t, `INSERT INTO products (name, price, inventory) VALUES ($1, $2, $3) RETURNING id::text`,
			fmt.Sprintf("Scarce Item %d", i), fmt.Sprintf("%d.25", 3+i), s)
		stock[ids[i]] = s
	}
	return ids, stock
}

// TestCheckoutRandomCartsNeverOversell: 64 goroutines buy random
// multi-item carts (lines in random order, some repeated) over 10 low-stock
// products. Every answer is a 201 or a 409 listing shortages (no deadlock,
// serialization failure or timeout reaches a client); no stock goes below
// zero; for every product the stock consumed equals the units in orders and
// in 201 answers; every 201 is exactly one order in the database.
func TestCheckoutRandomCartsNeverOversell(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *pgxpool.Config) { c.MaxConns = 16 })
	e.db.CheckoutTimeouts = generous
	products, initial := lowStockProducts(t, e, 10)
	const buyers, perBuyer = 64, 4
	users := make([]string, buyers)
	for i := range users {
		users[i] = e.id(t, `INSERT INTO customers (email, name) VALUES ($1, 'Racer') RETURNING id::text`, fmt.Sprintf("racer%d@example.com", i))
	}

	type result struct {
		status int
		order  shop.Order
		body   string
		err    error
	}
	results := make([][]result, buyers)
	var wg sync.WaitGroup
	for b := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perBuyer {
				var lines []shop.CartLine
				for _, i := range rand.Perm(len(products))[:1+rand.IntN(4)] {
					lines = append(lines, shop.CartLine{ProductID: products[i], Quantity: 1 + rand.IntN(3)})
				}
				if rand.IntN(4) == 0 { // the same product on two lines
					lines = append(lines, shop.CartLine{ProductID: lines[0].ProductID, Quantity: 1})
				}
				res, err := e.post("/orders/checkout", checkoutBody(users[b], lines...))
				r := result{status: res.status, body: string(res.body), err: err}
				if err == nil && res.status == http.StatusCreated {
					r.err = json.Unmarshal(res.body, &r.order)
				}
				results[b] = append(results[b], r)
			}
		}()
	}
	wg.Wait()

	sold := map[string]int{}
	orderIDs := map[string]bool{}
	counts := map[int]int{}
	for _, rs := range results {
		for _, r := range rs {
			if r.err != nil {
				t.Fatalf("request failed: %v", r.err)
			}
			counts[r.status]++
			switch r.status {
			case http.StatusCreated:
				if orderIDs[r.order.ID] {
					t.Errorf("order %s answered twice", r.order.ID)
				}
				orderIDs[r.order.ID] = true
				for _, it := range r.order.Items {
					sold[it.ProductID] += it.Quantity
				}
			case http.StatusConflict:
				if !strings.Contains(r.body, `"shortages"`) || !strings.Contains(r.body, "Insufficient inventory for ") {
					t.Errorf("409 without shortages (a lock conflict reached the client?): %s", r.body)
				}
			default:
				t.Errorf("status %d: %s", r.status, r.body)
			}
		}
	}
	t.Logf("answers: %v", counts)
	if counts[http.StatusCreated] == 0 || counts[http.StatusConflict] == 0 {
		t.Errorf("answers %v: want both orders and sold-out refusals", counts)
	}

	for _, p := range products {
		final := e.scalar(t, `SELECT inventory FROM products WHERE id = $1`, p)
		inOrders := e.scalar(t, `SELECT coalesce(sum(quantity), 0)::int FROM order_items WHERE product_id = $1`, p)
		if final < 0 {
			t.Errorf("product %s: stock %d below zero", p, final)
		}
		if consumed := initial[p] - final; consumed != inOrders || consumed != sold[p] {
			t.Errorf("product %s: stock %d -> %d (consumed %d), %d units in orders, %d in 201 answers",
				p, initial[p], final, consumed, inOrders, sold[p])
		}
	}
	if n := e.scalar(t, `SELECT count(*)::int FROM orders WHERE customer_id = ANY($1::uuid[])`, users); n != len(orderIDs) {
		t.Errorf("%d orders in the database, %d answered 201", n, len(orderIDs))
	}
	ids := make([]string, 0, len(orderIDs))
	for id := range orderIDs {
		ids = append(ids, id)
	}
	if n := e.scalar(t, `SELECT count(*)::int FROM orders WHERE id = ANY($1::uuid[])`, ids); n != len(ids) {
		t.Errorf("%d of the %d answered orders are in the database", n, len(ids))
	}
	if n := e.scalar(t, `SELECT count(*)::int FROM orders o WHERE o.customer_id = ANY($1::uuid[])
		AND o.total <> (SELECT sum(quantity * price) FROM order_items WHERE order_id = o.id)`, users); n != 0 {
		t.Errorf("%d orders whose total is not the sum of their lines", n)
	}

	for outcome, want := range map[string]int{"success": counts[201], "insufficient_stock": counts[409], "conflict": 0, "timeout": 0, "error": 0} {
		e.stats.WaitForSum(t, telemetrytest.Equals(float64(want)), telemetry.MetricCheckoutOutcomes, "outcome:"+outcome)
	}
}

// TestCheckoutOriginalConcurrencyScript is the original's
// tests/test-concurrent-checkouts.sh: take a low-stock product from
// /admin/inventory/low?threshold=5, fire 10 concurrent checkouts of
// quantity 2, and check successes <= stock/2 (here: exactly), final stock =
// initial - 2 x successes, never negative.
func TestCheckoutOriginalConcurrencyScript(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.db.CheckoutTimeouts = generous
	var low []shop.Product
	if res := e.get(t, "/admin/inventory/low?threshold=5"); res.status != 200 {
		t.Fatalf("low inventory: %d %s", res.status, res.body)
	} else {
		res.json(t, &low)
	}
	if len(low) == 0 {
		t.Fatal("no low-stock product")
	}
	product := low[len(low)-1] // the most stocked of the low ones, so that some buyers succeed
	initial := product.Inventory
	users := make([]string, 10)
	for i := range users {
		users[i] = e.id(t, `SELECT id::text FROM customers WHERE email = $1`, fmt.Sprintf("user%d@example.com", i+1))
	}
	statuses := make([]int, len(users))
	bodies := make([]string, len(users))
	errs := make([]error, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.post("/orders/checkout", checkoutBody(u, shop.CartLine{ProductID: product.ID, Quantity: 2}))
			statuses[i], bodies[i], errs[i] = res.status, string(res.body), err
		}()
	}
	wg.Wait()
	successes := 0
	for i, s := range statuses {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		switch s {
		case http.StatusCreated:
			successes++
		case http.StatusConflict:
			if !strings.Contains(bodies[i], "Insufficient inventory for "+product.Name+". Available: ") {
				t.Errorf("409 body %s", bodies[i])
			}
		default:
			t.Errorf("status %d: %s", s, bodies[i])
		}
	}
	final := e.scalar(t, `SELECT inventory FROM products WHERE id = $1`, product.ID)
	t.Logf("stock %d, %d successes, final stock %d", initial, successes, final)
	if successes != initial/2 {
		t.Errorf("%d successes, want stock/2 = %d", successes, initial/2)
	}
	if final != initial-2*successes || final < 0 {
		t.Errorf("final stock %d, want %d - 2 x %d", final, initial, successes)
	}
}

func TestCheckoutIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.db.CheckoutTimeouts = generous
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user2@example.com'`)
	newProduct := func(t *testing.T, stock int) string {
		return e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Idempotent Thing', 12.50, $1) RETURNING id::text`, stock)
	}
	stockOf := func(t *testing.T, p string) int {
		return e.scalar(t, `SELECT inventory FROM products WHERE id = $1`, p)
	}
	ordersOf := func(t *testing.T, p string) int {
		return e.scalar(t, `SELECT count(DISTINCT order_id)::int FROM order_items WHERE product_id = $1`, p)
	}
	key := func() string { return "key-" + fmt.Sprint(rand.Uint64()) }

	t.Run("ReplaySameOrder", func(t *testing.T) {
		t.Parallel()
		p, k := newProduct(t, 10), key()
		first := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 3}), "Idempotency-Key", k)
		if first.status != 201 || first.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first: %d %v %s", first.status, first.header, first.body)
		}
		again := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 3}), "Idempotency-Key", k)
		if again.status != 201 || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %v %s", again.status, again.header, again.body)
		}
		if string(again.body) != string(first.body) {
			t.Errorf("replay body differs:\n%s\n%s", first.body, again.body)
		}
		// The same request written differently: lines split and reordered.
		split := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 1}, shop.CartLine{ProductID: p, Quantity: 2}), "Idempotency-Key", k)
		if split.status != 201 || string(split.body) != string(first.body) {
			t.Errorf("same cart, other lines: %d %s", split.status, split.body)
		}
		if s, n := stockOf(t, p), ordersOf(t, p); s != 7 || n != 1 {
			t.Errorf("stock %d, %d orders; want 7 and 1", s, n)
		}
	})

	t.Run("ErrConflictingBody", func(t *testing.T) {
		t.Parallel()
		p, k := newProduct(t, 10), key()
		if res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 1}), "Idempotency-Key", k); res.status != 201 {
			t.Fatalf("first: %d %s", res.status, res.body)
		}
		res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 2}), "Idempotency-Key", k)
		if pd := checkProblem(t, res, http.StatusUnprocessableEntity); !strings.Contains(pd.Detail, "Idempotency-Key") {
			t.Errorf("detail %q", pd.Detail)
		}
		if s, n := stockOf(t, p), ordersOf(t, p); s != 9 || n != 1 {
			t.Errorf("stock %d, %d orders; want 9 and 1", s, n)
		}
	})

	t.Run("ConcurrentDuplicatesOneOrder", func(t *testing.T) {
		t.Parallel()
		p, k := newProduct(t, 10), key()
		const n = 12
		bodies := make([]string, n)
		statuses := make([]int, n)
		replayed := make([]bool, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := e.post("/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 2}), "Idempotency-Key", k)
				if err != nil {
					bodies[i] = err.Error()
					return
				}
				statuses[i], bodies[i], replayed[i] = res.status, string(res.body), res.header.Get("Idempotent-Replayed") == "true"
			}()
		}
		close(start)
		wg.Wait()
		firsts := 0
		for i := range n {
			if statuses[i] != 201 || bodies[i] != bodies[0] {
				t.Errorf("answer %d: %d %s (first: %s)", i, statuses[i], bodies[i], bodies[0])
			}
			if !replayed[i] {
				firsts++
			}
		}
		if firsts != 1 {
			t.Errorf("%d answers were not replays, want 1", firsts)
		}
		if s, c := stockOf(t, p), ordersOf(t, p); s != 8 || c != 1 {
			t.Errorf("stock %d, %d orders; want 8 and 1", s, c)
		}
	})

	t.Run("FailureIsNotRemembered", func(t *testing.T) {
		t.Parallel()
		p, k := newProduct(t, 1), key()
		body := checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 2})
		checkProblem(t, e.postJSON(t, "/orders/checkout", body, "Idempotency-Key", k), http.StatusConflict)
		e.scalar(t, `WITH u AS (UPDATE products SET inventory = 5 WHERE id = $1 RETURNING 1) SELECT count(*)::int FROM u`, p)
		if res := e.postJSON(t, "/orders/checkout", body, "Idempotency-Key", k); res.status != 201 {
			t.Errorf("retry after restock: %d %s", res.status, res.body)
		}
	})

	t.Run("ErrInvalidKey", func(t *testing.T) {
		t.Parallel()
		p := newProduct(t, 5)
		for _, k := range []string{strings.Repeat("k", 256), "bad\tkey"} {
			res := e.bad("Idempotency-Key too long or with a tab").postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 1}), "Idempotency-Key", k)
			if pd := checkProblem(t, res, 400); !hasField(pd, "Idempotency-Key", "invalid") {
				t.Errorf("key %.10q: %s", k, res.body)
			}
		}
		if s := stockOf(t, p); s != 5 {
			t.Errorf("stock %d after refused requests, want 5", s)
		}
	})

	t.Run("ExpiredKeyIsNewAndCleanedUp", func(t *testing.T) {
		t.Parallel()
		p, k := newProduct(t, 10), key()
		if res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 1}), "Idempotency-Key", k); res.status != 201 {
			t.Fatalf("first: %d %s", res.status, res.body)
		}
		expire := func(k string) {
			e.scalar(t, `WITH u AS (UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE idempotency_key = $1 RETURNING 1) SELECT count(*)::int FROM u`, k)
		}
		expire(k)
		// Expired: the key is free again, even for another request.
		res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: p, Quantity: 2}), "Idempotency-Key", k)
		if res.status != 201 || res.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("expired key: %d %s", res.status, res.body)
		}
		if s, n := stockOf(t, p), ordersOf(t, p); s != 7 || n != 2 {
			t.Errorf("stock %d, %d orders; want 7 and 2", s, n)
		}
		expire(k)
		n, err := e.db.DeleteExpiredIdempotencyKeys(t.Context())
		if err != nil || n < 1 {
			t.Fatalf("cleanup: %d, %v", n, err)
		}
		if left := e.scalar(t, `SELECT count(*)::int FROM idempotency_keys WHERE idempotency_key = $1`, k); left != 0 {
			t.Errorf("expired key still there")
		}
		if n := ordersOf(t, p); n != 2 {
			t.Errorf("cleanup removed orders: %d left", n)
		}
	})
}

// TestCheckoutBoundedWaits: a held row lock or an exhausted pool makes a
// checkout answer 503 with Retry-After within its timeout, never hang and
// never 500; the outcome is counted and logged.
func TestCheckoutBoundedWaits(t *testing.T) {
	t.Parallel()

	check503 := func(t *testing.T, e *testEnv, res response, elapsed, bound time.Duration) {
		t.Helper()
		checkProblem(t, res, http.StatusServiceUnavailable)
		if res.header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		if elapsed > bound {
			t.Errorf("answered after %s, want within %s", elapsed, bound)
		}
		e.stats.WaitForSum(t, telemetrytest.Equals(1), telemetry.MetricCheckoutOutcomes, "outcome:timeout")
		if e.logs.FilterMessage("checkout timeout").Len() != 1 {
			t.Error("the timeout was not logged")
		}
	}

	for name, timeouts := range map[string]postgres.Timeouts{
		"LockTimeout":      {Acquire: 30 * time.Second, Lock: 300 * time.Millisecond, Statement: 30 * time.Second},
		"StatementTimeout": {Acquire: 30 * time.Second, Statement: 300 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.db.CheckoutTimeouts = timeouts
			user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user3@example.com'`)
			product := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Hot Item', 9.99, 50) RETURNING id::text`)
			release := holdRowLock(t, e.db.Pool, product)
			start := time.Now()
			res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: product, Quantity: 1}))
			check503(t, e, res, time.Since(start), 300*time.Millisecond+3*time.Second)
			lw := e.stats.WaitFor(t, telemetry.MetricCheckoutLockWait, "outcome:timeout")
			if lw.Value < 250 {
				t.Errorf("checkout.lock_wait %vms, want about the 300ms waited", lw.Value)
			}
			release()
			if res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: product, Quantity: 1})); res.status != 201 {
				t.Errorf("after the lock is released: %d %s", res.status, res.body)
			}
		})
	}

	// A sold-out product is not locked at all: its buyers get their 409
	// at once, even while a lock on it is held.
	t.Run("SoldOutDoesNotQueue", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.db.CheckoutTimeouts = generous
		user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user3@example.com'`)
		product := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Sold Out', 9.99, 0) RETURNING id::text`)
		release := holdRowLock(t, e.db.Pool, product)
		defer release()
		start := time.Now()
		res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: product, Quantity: 1}))
		checkProblem(t, res, http.StatusConflict)
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("answered after %s: it waited for the lock", elapsed)
		}
	})

	// A buyer waiting for the lock sees the stock its holder left: here
	// none, so a 409 naming 0 available, and the stock stays 0.
	t.Run("StockGoneWhileWaiting", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.db.CheckoutTimeouts = generous
		user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user3@example.com'`)
		product := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Last Ones', 9.99, 5) RETURNING id::text`)
		tx, err := e.db.Pool.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(t.Context()) //nolint:errcheck
		if _, err := tx.Exec(t.Context(), `UPDATE products SET inventory = 0 WHERE id = $1`, product); err != nil {
			t.Fatal(err)
		}
		done := make(chan response, 1)
		go func() {
			res, _ := e.post("/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: product, Quantity: 2}))
			done <- res
		}()
		select {
		case res := <-done:
			t.Fatalf("answered while the stock's lock was held: %d %s", res.status, res.body)
		case <-time.After(300 * time.Millisecond):
		}
		if err := tx.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		res := <-done
		checkProblem(t, res, http.StatusConflict)
		if !strings.Contains(string(res.body), `"available":0`) {
			t.Errorf("409 body %s", res.body)
		}
		if s := e.scalar(t, `SELECT inventory FROM products WHERE id = $1`, product); s != 0 {
			t.Errorf("stock %d, want 0", s)
		}
	})

	t.Run("PoolAcquireTimeout", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(c *pgxpool.Config) { c.MaxConns = 1 })
		e.db.CheckoutTimeouts = postgres.Timeouts{Acquire: 200 * time.Millisecond, Lock: time.Second, Statement: time.Second}
		user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user3@example.com'`)
		product := e.id(t, `SELECT id::text FROM products WHERE inventory >= 10 LIMIT 1`)
		conn, err := e.db.Pool.Acquire(t.Context()) // the only connection
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: product, Quantity: 1}))
		check503(t, e, res, time.Since(start), 200*time.Millisecond+3*time.Second)
		pw := e.stats.WaitFor(t, telemetry.MetricCheckoutPoolWait, "outcome:timeout")
		if pw.Value < 150 {
			t.Errorf("checkout.pool_wait %vms, want about the 200ms waited", pw.Value)
		}
		conn.Release()
		if res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: product, Quantity: 1})); res.status != 201 {
			t.Errorf("after the connection is released: %d %s", res.status, res.body)
		}
	})
}

// TestCheckoutTelemetry: a checkout records its outcome, items, value and
// waits, and one span per step under the request's trace.
func TestCheckoutTelemetry(t *testing.T) {
	t.Parallel()
	mt := telemetrytest.MockTracer(t)
	e := newEnv(t)
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user4@example.com'`)
	a := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Traced A', 10.25, 5) RETURNING id::text`)
	b := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Traced B', 1.50, 5) RETURNING id::text`)
	e.stats.Reset()

	res := e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: b, Quantity: 2}, shop.CartLine{ProductID: a, Quantity: 1}), "Idempotency-Key", "telemetry-1")
	if res.status != 201 {
		t.Fatalf("checkout: %d %s", res.status, res.body)
	}
	e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: b, Quantity: 2}, shop.CartLine{ProductID: a, Quantity: 1}), "Idempotency-Key", "telemetry-1")
	e.postJSON(t, "/orders/checkout", checkoutBody(user, shop.CartLine{ProductID: a, Quantity: 9}))
	e.bad("empty cart").postJSON(t, "/orders/checkout", checkoutBody(user))

	t.Run("Metrics", func(t *testing.T) {
		for outcome, want := range map[string]float64{"success": 1, "idempotent_replay": 1, "insufficient_stock": 1, "rejected": 1} {
			e.stats.WaitForSum(t, telemetrytest.Equals(want), telemetry.MetricCheckoutOutcomes, "outcome:"+outcome)
		}
		if m := e.stats.WaitFor(t, telemetry.MetricCheckoutOrderItems); m.Value != 3 {
			t.Errorf("checkout.order.items = %v, want 3", m.Value)
		}
		if m := e.stats.WaitFor(t, telemetry.MetricCheckoutOrderLines); m.Value != 2 {
			t.Errorf("checkout.order.lines = %v, want 2", m.Value)
		}
		if m := e.stats.WaitFor(t, telemetry.MetricCheckoutOrderValue); m.Value != 13.25 {
			t.Errorf("checkout.order.value = %v, want 13.25", m.Value)
		}
		if n := len(e.stats.Find(telemetry.MetricCheckoutOrderValue)); n != 1 {
			t.Errorf("%d order values recorded, want 1 (replays and refusals place no order)", n)
		}
		e.stats.WaitFor(t, telemetry.MetricCheckoutLockWait, "outcome:success")
		e.stats.WaitFor(t, telemetry.MetricCheckoutPoolWait, "outcome:insufficient_stock")
		e.stats.WaitFor(t, telemetry.MetricCheckoutDuration, "outcome:rejected")
	})

	t.Run("SpansPerStep", func(t *testing.T) {
		// Other parallel tests make spans too: take the trace of this
		// test's first checkout request (its server's URL, earliest start).
		var trace uint64
		var first time.Time
		for _, s := range mt.FinishedSpans() {
			u, _ := s.Tag("http.url").(string)
			if strings.HasPrefix(u, e.srv.URL+"/orders/checkout") && (trace == 0 || s.StartTime().Before(first)) {
				trace, first = s.Context().TraceIDLower(), s.StartTime()
			}
		}
		if trace == 0 {
			t.Fatal("no span of this test's checkout requests")
		}
		got := map[string]int{}
		for _, s := range mt.FinishedSpans() {
			if s.Context().TraceIDLower() == trace {
				got[s.OperationName()]++
			}
		}
		for _, op := range []string{"checkout", "checkout.acquire", "checkout.lock", "checkout.place"} {
			if got[op] != 1 {
				t.Errorf("%d %s spans in the first checkout's trace, want 1 (spans: %v)", got[op], op, got)
			}
		}
	})
}
