package httpapi_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// nPlusOneOrders serves order history the way the original did: one query
// for the orders, then one per order for its items (121 round trips for
// the heavy user). It exists only as the benchmark's baseline.
type nPlusOneOrders struct {
	shop.OrderStore
	db *postgres.DB
}

func (s nPlusOneOrders) OrdersByUser(ctx context.Context, userID string, page shop.OrderPage) ([]shop.Order, *shop.Cursor, error) {
	rows, err := s.db.Pool.Query(ctx, `-- name: baseline.orders
SELECT id::text, customer_id::text, status, (total * 100)::bigint, created_at FROM orders WHERE customer_id = $1 ORDER BY created_at DESC`, userID)
	if err != nil {
		return nil, nil, err
	}
	var orders []shop.Order
	for rows.Next() {
		var o shop.Order
		if err := rows.Scan(&o.ID, &o.UserID, &o.Status, &o.Total, &o.CreatedAt); err != nil {
			return nil, nil, err
		}
		orders = append(orders, o)
	}
	rows.Close()
	for i := range orders {
		rows, err := s.db.Pool.Query(ctx, `-- name: baseline.items
SELECT oi.id::text, oi.order_id::text, oi.quantity, (oi.price * 100)::bigint,
       p.id::text, p.name, p.description, (p.price * 100)::bigint, p.inventory, p.created_at
FROM order_items oi JOIN products p ON p.id = oi.product_id WHERE oi.order_id = $1`, orders[i].ID)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var it shop.OrderItem
			if err := rows.Scan(&it.ID, &it.OrderID, &it.Quantity, &it.Price, &it.Product.ID, &it.Product.Name,
				&it.Product.Description, &it.Product.Price, &it.Product.Inventory, &it.Product.CreatedAt); err != nil {
				return nil, nil, err
			}
			it.ProductID = it.Product.ID
			orders[i].Items = append(orders[i].Items, it)
		}
		rows.Close()
	}
	return orders, nil, nil
}

// BenchmarkOrderHistory serves GET /orders/{heavy user} (120 orders) through
// the real router twice in one run: with the two-query store and with the
// original's query-per-order loop. Compare the two ns/op for the speed-up.
func BenchmarkOrderHistory(b *testing.B) {
	e := newEnv(b)
	heavy := e.id(b, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	tel, _, _ := telemetrytest.New(b)
	baseline := httptest.NewServer(httpapi.NewServer(httpapi.Deps{Telemetry: tel, Products: e.db, Orders: nPlusOneOrders{db: e.db}, Reports: postgres.NewReports(e.db.Pool, 0), DB: e.db}))
	defer baseline.Close()

	for _, c := range []struct {
		name string
		env  *testEnv
	}{
		{"batched", e},
		{"n_plus_one", &testEnv{db: e.db, srv: baseline}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if res := c.env.get(b, "/orders/"+heavy); res.status != 200 || len(res.body) < 10000 {
					b.Fatalf("status %d, %d bytes", res.status, len(res.body))
				}
			}
		})
	}
}
