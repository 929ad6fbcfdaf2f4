package postgres_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// queryCounter counts the statements a pool runs.
type queryCounter struct{ n atomic.Int64 }

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func seeded(t *testing.T) (*postgres.DB, *queryCounter) {
	t.Helper()
	qc := &queryCounter{}
	pool := pgtest.NewWithConfig(t, func(c *pgxpool.Config) { c.ConnConfig.Tracer = qc })
	db := postgres.New(pool)
	if _, err := db.Seed(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db, qc
}

func heavyUserID(t *testing.T, db *postgres.DB) string {
	t.Helper()
	var id string
	if err := db.Pool.QueryRow(t.Context(), `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSeed(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()
	st, err := db.Seed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (postgres.SeedStats{}) {
		t.Errorf("re-run inserted %+v, want nothing", st)
	}
	for _, c := range []struct {
		query string
		want  int
	}{
		{"SELECT count(*) FROM products", 100},
		{"SELECT count(*) FROM products WHERE description IS NULL", 20},
		{"SELECT count(*) FROM products WHERE inventory BETWEEN 1 AND 3", 10},
		{"SELECT count(*) FROM customers", 31},
		{"SELECT count(*) FROM merchants", 5},
		{"SELECT count(*) FROM orders", 320},
		{"SELECT count(*) FROM orders o JOIN customers u ON u.id = o.customer_id WHERE u.email = 'heavy.user@example.com'", 120},
	} {
		var n int
		if err := db.Pool.QueryRow(ctx, c.query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("%s = %d, want %d", c.query, n, c.want)
		}
	}
	// Every order's total is the sum of its lines, exactly.
	var bad int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM orders o WHERE o.total <> (SELECT sum(quantity * price) FROM order_items WHERE order_id = o.id)`).Scan(&bad); err != nil || bad != 0 {
		t.Errorf("orders whose total is not the sum of their lines: %d (%v)", bad, err)
	}
}

func TestOrdersByUser(t *testing.T) {
	t.Parallel()
	db, qc := seeded(t)
	ctx := t.Context()
	id := heavyUserID(t, db)

	t.Run("HeavyUserInTwoQueries", func(t *testing.T) {
		before := qc.n.Load()
		orders, next, err := db.OrdersByUser(ctx, id, shop.OrderPage{Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		if got := qc.n.Load() - before; got > 2 {
			t.Errorf("ran %d queries, want at most 2", got)
		}
		if len(orders) != 120 || next != nil {
			t.Fatalf("got %d orders (next %v), want 120 and no next page", len(orders), next)
		}
		for i, o := range orders {
			if i > 0 && o.CreatedAt.After(orders[i-1].CreatedAt) {
				t.Fatalf("order %d is newer than order %d", i, i-1)
			}
			if len(o.Items) < 2 || len(o.Items) > 5 {
				t.Fatalf("order %s has %d items, want 2-5", o.ID, len(o.Items))
			}
			var sum shop.Money
			for _, it := range o.Items {
				if it.Product.ID != it.ProductID || it.Product.Name == "" {
					t.Fatalf("item %s lacks its product", it.ID)
				}
				sum += it.Price * shop.Money(it.Quantity)
			}
			if sum != o.Total {
				t.Fatalf("order %s total %s, lines add to %s", o.ID, o.Total, sum)
			}
		}
	})

	t.Run("Pages", func(t *testing.T) {
		var all []shop.Order
		page := shop.OrderPage{Limit: 50}
		for {
			orders, next, err := db.OrdersByUser(ctx, id, page)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, orders...)
			if next == nil {
				break
			}
			page.After = next
		}
		seen := map[string]bool{}
		for _, o := range all {
			seen[o.ID] = true
		}
		if len(all) != 120 || len(seen) != 120 {
			t.Errorf("paged %d orders (%d distinct), want 120", len(all), len(seen))
		}
	})

	t.Run("ErrUserNotFound", func(t *testing.T) {
		_, _, err := db.OrdersByUser(ctx, "00000000-0000-4000-8000-000000000000", shop.OrderPage{Limit: 10})
		if shop.ErrorCode(err) != shop.ENOTFOUND {
			t.Errorf("got %v, want ENOTFOUND", err)
		}
	})

	t.Run("UsesIndexesOnALargeTable", func(t *testing.T) {
		// Grow the tables to 40,000 orders and 120,000 lines so that the
		// planner would pick a sequential scan if an index were missing.
		for _, q := range []string{
			`INSERT INTO customers (email, name) SELECT 'bulk' || g || '@example.com', 'Bulk' FROM generate_series(1, 2000) g`,
			`INSERT INTO orders (customer_id, status, total, created_at)
			 SELECT u.id, 'completed', 10, now() - g * interval '1 minute'
			 FROM (SELECT id, row_number() OVER () AS n FROM customers WHERE email LIKE 'bulk%') u, generate_series(1, 20) g`,
			`INSERT INTO order_items (order_id, product_id, quantity, price)
			 SELECT o.id, p.a[1 + (abs(hashtext(o.id::text)) + k) % 100], 1, 10
			 FROM orders o, (SELECT array_agg(id ORDER BY id) AS a FROM products) p, generate_series(0, 2) k
			 WHERE o.total = 10`,
			`ANALYZE`,
		} {
			if _, err := db.Pool.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		orders, _, err := db.OrdersByUser(ctx, id, shop.OrderPage{Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(orders))
		for i, o := range orders {
			ids[i] = o.ID
		}
		for _, c := range []struct {
			sql  string
			args []any
		}{
			{postgres.OrdersByUserSQL, []any{id, nil, nil, 51}},
			{postgres.ItemsByOrdersSQL, []any{ids}},
		} {
			sql, err := db.Expand(ctx, c.sql)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := db.Pool.Query(ctx, "EXPLAIN "+sql, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			var plan strings.Builder
			for rows.Next() {
				var line string
				_ = rows.Scan(&line)
				plan.WriteString(line + "\n")
			}
			if strings.Contains(plan.String(), "Seq Scan on order") {
				t.Errorf("plan scans orders or order_items sequentially:\n%s", plan.String())
			}
		}
	})
}
