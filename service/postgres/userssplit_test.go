package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// preSplit returns a pool on a fresh database migrated up to just before
// the users split, holding the mix that the draft migration got wrong:
// customers, merchants, merchants who placed orders, typeless users (some
// with orders), and a product to buy.
func preSplit(t *testing.T) (*pgxpool.Pool, postgres.Migrator) {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), pgtest.NewDatabaseAt(t, postgres.UsersSplitTables-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	mustExec(t, pool, `INSERT INTO users (email, name, user_type)
		SELECT 'c' || g || '@example.com', 'Customer ' || g, 'customer' FROM generate_series(1, 40) g
		UNION ALL SELECT 'm' || g || '@example.com', 'Merchant ' || g, 'merchant' FROM generate_series(1, 10) g
		UNION ALL SELECT 't' || g || '@example.com', 'Typeless ' || g, NULL FROM generate_series(1, 7) g`)
	mustExec(t, pool, `INSERT INTO products (name, price, inventory) VALUES ('Widget', 9.99, 1000000)`)
	// Every customer, the first four merchants and the first three typeless users buy.
	mustExec(t, pool, `INSERT INTO orders (user_id, status, total)
		SELECT u.id, 'completed', 9.99 FROM users u, generate_series(1, 3)
		WHERE u.user_type = 'customer' OR u.email IN ('m1@example.com','m2@example.com','m3@example.com','m4@example.com',
		                                               't1@example.com','t2@example.com','t3@example.com')`)
	mustExec(t, pool, `INSERT INTO order_items (order_id, product_id, quantity, price)
		SELECT o.id, p.id, 1, 9.99 FROM orders o, products p`)
	return pool, postgres.Migrator{Pool: pool, Out: testWriter{t}, Backoff: 100e6}
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// testWriter sends output lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestUsersSplitBackfillVerifyContract walks the steps without traffic:
// verify fails until the backfill has run; the validate step refuses before
// it; the backfill maps every kind of user as decided and is idempotent;
// the contract step leaves customers, merchants and orders.customer_id.
func TestUsersSplitBackfillVerifyContract(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, mig := preSplit(t)
	db := postgres.New(pool)

	if err := mig.UpTo(ctx, postgres.UsersSplitSync); err != nil {
		t.Fatal(err)
	}
	t.Run("VerifyFailsBeforeBackfill", func(t *testing.T) {
		r, err := db.VerifyUsersSplit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.OK() {
			t.Fatalf("verify passed before the backfill")
		}
	})
	t.Run("ValidateRefusesBeforeBackfill", func(t *testing.T) {
		err := mig.UpTo(ctx, postgres.UsersSplitValidate)
		if err == nil || !strings.Contains(err.Error(), "have no customer_id yet") {
			t.Fatalf("validate step: %v, want a refusal naming the missing customer_id", err)
		}
		if err := mig.DownTo(ctx, postgres.UsersSplitSync); err != nil {
			t.Fatal(err)
		}
	})

	var out strings.Builder
	st, err := db.BackfillUsersSplit(ctx, postgres.BackfillOptions{BatchSize: 16, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	if st.Users != 57 || st.Orders != 3*(40+4+3) || st.Batches < 4 {
		t.Errorf("backfill read %+v, want 57 users and 141 orders in several batches", st)
	}
	if !strings.Contains(out.String(), "users 57/57 (100.0%)") || !strings.Contains(out.String(), "orders 141/141 (100.0%)") {
		t.Errorf("progress output lacks the totals:\n%s", out.String())
	}

	t.Run("VerifyReport", func(t *testing.T) {
		r, err := db.VerifyUsersSplit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		r.Write(&b)
		if !r.OK() {
			t.Fatalf("verify failed after the backfill:\n%s", b.String())
		}
		want := postgres.UsersSplitReport{Users: 57, Typeless: 7, CustomerUsers: 40, MerchantUsers: 10, MerchantBuyers: 4,
			Customers: 40 + 7 + 4, Merchants: 10, Orders: 141, Checks: r.Checks}
		if fmt.Sprint(r) != fmt.Sprint(want) {
			t.Errorf("report %+v, want %+v", r, want)
		}
		for _, s := range []string{"typeless 7", "merchant-buyers         4", "old and new agree"} {
			if !strings.Contains(b.String(), s) {
				t.Errorf("report lacks %q:\n%s", s, b.String())
			}
		}
	})

	t.Run("BackfillIsIdempotent", func(t *testing.T) {
		st, err := db.BackfillUsersSplit(ctx, postgres.BackfillOptions{BatchSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if st.UsersChanged != 0 || st.OrdersChanged != 0 {
			t.Errorf("second run changed %+v, want nothing", st)
		}
	})

	t.Run("BackfillResumes", func(t *testing.T) {
		// Orders as they were before the trigger existed, and a run
		// interrupted before it reached them that left its position behind.
		mustExec(t, pool, `ALTER TABLE orders DISABLE TRIGGER users_split_sync`)
		mustExec(t, pool, `UPDATE orders SET customer_id = NULL WHERE id IN (SELECT id FROM orders ORDER BY id DESC LIMIT 5)`)
		mustExec(t, pool, `ALTER TABLE orders ENABLE TRIGGER users_split_sync`)
		mustExec(t, pool, `INSERT INTO users_split_backfill (phase, after_id)
			VALUES ('users', 'ffffffff-ffff-ffff-ffff-ffffffffffff'), ('orders', (SELECT id FROM orders ORDER BY id DESC OFFSET 10 LIMIT 1))`)
		var out strings.Builder
		st, err := db.BackfillUsersSplit(ctx, postgres.BackfillOptions{Out: &out})
		if err != nil {
			t.Fatal(err)
		}
		if st.Users != 0 || st.Orders != 10 || st.OrdersChanged != 5 || !strings.Contains(out.String(), "resuming orders after id") {
			t.Errorf("resumed run %+v:\n%s", st, out.String())
		}
		if n := count(t, pool, `SELECT count(*) FROM users_split_backfill`); n != 0 {
			t.Errorf("a finished run left %d positions", n)
		}
	})

	t.Run("TriggersKeepWritesInStep", func(t *testing.T) {
		mustExec(t, pool, `INSERT INTO users (email, name, user_type) VALUES ('late@example.com', 'Late', 'merchant')`)
		mustExec(t, pool, `UPDATE users SET name = 'Renamed' WHERE email = 'c1@example.com'`)
		mustExec(t, pool, `UPDATE users SET user_type = 'merchant' WHERE email = 'c2@example.com'`) // has orders: stays a customer too
		mustExec(t, pool, `UPDATE users SET user_type = 'customer' WHERE email = 'm9@example.com'`)
		mustExec(t, pool, `INSERT INTO orders (user_id, total) SELECT id, 1 FROM users WHERE email = 'm10@example.com'`) // a merchant's first order
		mustExec(t, pool, `DELETE FROM users WHERE email = 't7@example.com'`)
		r, err := db.VerifyUsersSplit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() {
			var b strings.Builder
			r.Write(&b)
			t.Fatalf("verify after writes:\n%s", b.String())
		}
		if n := count(t, pool, `SELECT count(*) FROM customers c JOIN merchants m USING (id) WHERE c.email IN ('c2@example.com', 'm10@example.com')`); n != 2 {
			t.Errorf("%d of the 2 merchant-buyers are in both tables", n)
		}
	})

	t.Run("ContractRefusesOnDifference", func(t *testing.T) {
		if err := mig.UpTo(ctx, postgres.UsersSplitNotNull); err != nil {
			t.Fatal(err)
		}
		mustExec(t, pool, `UPDATE customers SET name = 'Drifted' WHERE email = 'c3@example.com'`)
		err := mig.UpTo(ctx, postgres.UsersSplitContract)
		if err == nil || !strings.Contains(err.Error(), "refusing to contract") || !strings.Contains(err.Error(), "email, name or created_at differ: 1") {
			t.Fatalf("contract: %v, want a refusal naming the difference", err)
		}
		if _, err := db.BackfillUsersSplit(ctx, postgres.BackfillOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	if err := mig.UpTo(ctx, postgres.UsersSplitContract); err != nil {
		t.Fatal(err)
	}
	t.Run("AfterContract", func(t *testing.T) {
		if n := count(t, pool, `SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id`); n != 141+1 {
			t.Errorf("%d orders joined to their customer, want 142", n)
		}
		if n := count(t, pool, `SELECT count(*) FROM users_legacy`); n != 57 {
			t.Errorf("users_legacy holds %d users, want 57", n)
		}
		r, err := db.VerifyUsersSplit(ctx)
		if err != nil || !r.Contracted {
			t.Errorf("verify after contract: %+v %v", r, err)
		}
		if _, err := db.BackfillUsersSplit(ctx, postgres.BackfillOptions{}); shop.ErrorCode(err) != shop.ECONFLICT {
			t.Errorf("backfill after contract: %v, want ECONFLICT", err)
		}
		err = mig.Down(ctx)
		if err == nil || !strings.Contains(err.Error(), "irreversible") {
			t.Errorf("down from contract: %v, want irreversible", err)
		}
	})
}

// TestUsersSchemaSwitch proves that every store method notices the contract
// step by itself: each runs first on a store (DB or Reports) that detected
// the old schema, after the contract step has run, and succeeds on the new
// one (its first statement fails with undefined table/column, the store
// re-detects and runs it again).
func TestUsersSchemaSwitch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, mig := preSplit(t)
	if err := mig.UpTo(ctx, postgres.UsersSplitSync); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.New(pool).BackfillUsersSplit(ctx, postgres.BackfillOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := mig.UpTo(ctx, postgres.UsersSplitNotNull); err != nil {
		t.Fatal(err)
	}
	var merchant, merchantBuyer, customer, typeless, product string
	if err := pool.QueryRow(ctx, `SELECT (SELECT id::text FROM users WHERE email = 'm9@example.com'),
		(SELECT id::text FROM users WHERE email = 'm1@example.com'), (SELECT id::text FROM users WHERE email = 'c1@example.com'),
		(SELECT id::text FROM users WHERE email = 't1@example.com'), (SELECT id::text FROM products LIMIT 1)`).Scan(
		&merchant, &merchantBuyer, &customer, &typeless, &product); err != nil {
		t.Fatal(err)
	}
	// A store that has detected the schema before the contract step, and
	// the operation to run on it after.
	type switcher interface {
		DetectUsersSchema(ctx context.Context) (string, error)
		Expand(ctx context.Context, sql string) (string, error)
	}
	type op struct {
		store switcher
		run   func() error
	}
	onDB := func(f func(*postgres.DB) error) op {
		db := postgres.New(pool)
		return op{db, func() error { return f(db) }}
	}
	onReports := func(f func(*postgres.Reports) error) op {
		r := postgres.NewReports(pool, 5*time.Second)
		return op{r, func() error { return f(r) }}
	}
	lines := func(r *postgres.Reports, user string, limit, want int) error {
		n := 0
		err := r.StreamReport(ctx, user, limit, func(shop.ReportLine) error { n++; return nil })
		if err == nil && n != want {
			err = fmt.Errorf("%d lines, want %d", n, want)
		}
		return err
	}
	ops := map[string]op{
		"Checkout": onDB(func(db *postgres.DB) error {
			// A merchant's first purchase: it becomes a customer too.
			_, err := db.Checkout(ctx, shop.CheckoutRequest{UserID: merchant, Items: []shop.CartLine{{ProductID: product, Quantity: 1}}})
			return err
		}),
		"OrdersByUser": onDB(func(db *postgres.DB) error {
			orders, _, err := db.OrdersByUser(ctx, customer, shop.OrderPage{Limit: 10})
			if err == nil && len(orders) != 3 {
				err = fmt.Errorf("%d orders, want 3", len(orders))
			}
			return err
		}),
		"CreateUser": onDB(func(db *postgres.DB) error {
			_, err := db.CreateUser(ctx, shop.NewUser{Email: "after@example.com", Name: "After", UserType: "merchant"})
			return err
		}),
		"SeedBulkUser": onDB(func(db *postgres.DB) error {
			id, err := db.SeedBulkUser(ctx, "bulk@example.com", "Bulk", 4)
			if err == nil {
				if n := count(t, pool, `SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = $1`, id); n != 4 {
					err = fmt.Errorf("the bulk customer has %d orders, want 4", n)
				}
			}
			return err
		}),
		"ReportSummary": onReports(func(r *postgres.Reports) error {
			s, err := r.ReportSummary(ctx, customer)
			if err == nil && (s.OrderCount != 3 || s.ItemsPurchased != 3 || s.User.UserType != "customer") {
				err = fmt.Errorf("summary %+v", s)
			}
			return err
		}),
		"ReportSummaryOfMerchantBuyer": onReports(func(r *postgres.Reports) error {
			s, err := r.ReportSummary(ctx, merchantBuyer)
			if err == nil && (s.OrderCount != 3 || s.User.UserType != "merchant") {
				err = fmt.Errorf("summary %+v", s)
			}
			return err
		}),
		"ReportUser": onReports(func(r *postgres.Reports) error {
			u, err := r.ReportUser(ctx, typeless)
			if err == nil && (u.Email != "t1@example.com" || u.UserType != "customer") {
				err = fmt.Errorf("user %+v, want t1 as a customer", u)
			}
			return err
		}),
		"StreamReport":     onReports(func(r *postgres.Reports) error { return lines(r, merchantBuyer, 0, 3) }),
		"StreamReportHead": onReports(func(r *postgres.Reports) error { return lines(r, customer, 2, 2) }),
	}
	for name, o := range ops {
		if mode, err := o.store.DetectUsersSchema(ctx); err != nil || mode != "users" {
			t.Fatalf("%s before contract: %q %v", name, mode, err)
		}
	}
	if err := mig.UpTo(ctx, postgres.UsersSplitContract); err != nil {
		t.Fatal(err)
	}
	for name, o := range ops {
		t.Run(name, func(t *testing.T) {
			if err := o.run(); err != nil {
				t.Fatalf("first call after the contract step: %v", err)
			}
			sql, _ := o.store.Expand(ctx, "{buyer_id}")
			if sql != "customer_id" {
				t.Errorf("the store still writes %q for the buyer", sql)
			}
		})
	}
	if n := count(t, pool, `SELECT count(*) FROM customers c JOIN merchants m USING (id) WHERE m.email = 'm9@example.com'`); n != 1 {
		t.Errorf("the merchant who bought after the contract step is not a customer too")
	}
}
