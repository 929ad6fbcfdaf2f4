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

// roundTrips counts what a pool sends: single statements and batches.
type roundTrips struct{ queries, batches atomic.Int64 }

func (c *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	return ctx
}
func (c *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.batches.Add(1)
	return ctx
}
func (c *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (c *roundTrips) reset()                                                              { c.queries.Store(0); c.batches.Store(0) }

// TestCheckoutRoundTrips: a checkout is two round trips (two batches), so
// that the cart's row locks are held for one; a refused one too; a replay
// is one batch and a rollback.
func TestCheckoutRoundTrips(t *testing.T) {
	t.Parallel()
	rt := &roundTrips{}
	pool := pgtest.NewWithConfig(t, func(c *pgxpool.Config) { c.ConnConfig.Tracer = rt; c.MaxConns = 1 })
	db := postgres.New(pool)
	ctx := t.Context()
	var user, product string
	if err := pool.QueryRow(ctx, `INSERT INTO customers (email, name) VALUES ('rt@example.com', 'RT') RETURNING id::text`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO products (name, price, inventory) VALUES ('RT', 1, 3) RETURNING id::text`).Scan(&product); err != nil {
		t.Fatal(err)
	}
	// The service reads which side of the users split the schema is on
	// once, at start (docs/schema-split.md); not part of a checkout.
	if _, err := db.DetectUsersSchema(ctx); err != nil {
		t.Fatal(err)
	}
	req := shop.CheckoutRequest{UserID: user, Items: []shop.CartLine{{ProductID: product, Quantity: 2}}, IdempotencyKey: "rt-1"}
	for _, c := range []struct {
		name             string
		req              shop.CheckoutRequest
		code             shop.Code
		queries, batches int64
	}{
		{"OK", req, "", 0, 2},
		{"Replay", req, "", 1, 1},
		{"ErrInsufficientStock", shop.CheckoutRequest{UserID: user, Items: req.Items}, shop.ECONFLICT, 0, 2},
	} {
		rt.reset()
		_, err := db.Checkout(ctx, c.req)
		if shop.ErrorCode(err) != c.code {
			t.Fatalf("%s: %v", c.name, err)
		}
		if q, b := rt.queries.Load(), rt.batches.Load(); q != c.queries || b != c.batches {
			t.Errorf("%s: %d statements and %d batches, want %d and %d", c.name, q, b, c.queries, c.batches)
		}
	}
}

// TestReserveStockRefusesShortfall: the decrement, sent with COMMIT behind
// it, fails in SQL when it cannot decrement every line, so that the
// transaction aborts instead of committing an order without its stock.
func TestReserveStockRefusesShortfall(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := t.Context()
	var a, b string
	if err := pool.QueryRow(ctx, `INSERT INTO products (name, price, inventory) VALUES ('A', 1, 5) RETURNING id::text`).Scan(&a); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO products (name, price, inventory) VALUES ('B', 1, 1) RETURNING id::text`).Scan(&b); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, postgres.ReserveStockSQL, []string{a}, []int32{2}).Scan(&n); err != nil || n != 1 {
		t.Fatalf("enough stock: %d, %v", n, err)
	}
	err := pool.QueryRow(ctx, postgres.ReserveStockSQL, []string{a, b}, []int32{1, 2}).Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "checkout reserved 1 of 2") {
		t.Fatalf("shortfall: %d, %v", n, err)
	}
	var stock int
	if err := pool.QueryRow(ctx, `SELECT inventory FROM products WHERE id = $1`, a).Scan(&stock); err != nil || stock != 3 {
		t.Errorf("stock of A %d after the failed statement, want 3 (%v)", stock, err)
	}
}
