package postgres

import (
	"context"
	"time"

	"github.com/shoplab/shoplab/service/shop"
)

// ordersByUserSQL reads one page of a user's orders through
// orders_user_created_idx (orders_customer_created_idx after the users split). The keyset ($2, $3) is the last order of the
// previous page; NULLs start at the newest.
const ordersByUserSQL = `-- name: orders.by_user
SELECT o.id::text, o.{buyer_id}::text, o.status, (o.total * 100)::bigint, o.created_at
FROM orders o
WHERE o.{buyer_id} = $1
  AND ($2::timestamptz IS NULL OR (o.created_at, o.id) < ($2, $3::uuid))
ORDER BY o.created_at DESC, o.id DESC
LIMIT $4`

// itemsByOrdersSQL reads every line of a page of orders, with its product,
// in one statement through order_items_order_id_idx.
const itemsByOrdersSQL = `-- name: orders.items_by_orders
SELECT ` + productCols + `,
       oi.id::text, oi.order_id::text, oi.quantity, (oi.price * 100)::bigint
FROM order_items oi
JOIN products p ON p.id = oi.product_id
WHERE oi.order_id = ANY($1::uuid[])
ORDER BY oi.order_id, oi.id`

const userExistsSQL = `-- name: users.exists
SELECT EXISTS (SELECT 1 FROM {users} u WHERE u.id = $1)`

// OrdersByUser returns a page of the user's orders, newest first, with
// items and products, in two statements whatever the page size (a third,
// cheap one only tells "no orders" from "no user"). Errors: ENOTFOUND,
// EUNAVAILABLE, EINTERNAL.
func (db *DB) OrdersByUser(ctx context.Context, userID string, page shop.OrderPage) ([]shop.Order, *shop.Cursor, error) {
	var afterAt *time.Time
	var afterID *string
	if page.After != nil {
		afterAt, afterID = &page.After.CreatedAt, &page.After.ID
	}
	var orders []shop.Order
	var exists bool
	c, err := db.conn(ctx)
	if err != nil {
		return nil, nil, wrapErr(err)
	}
	defer c.Release()
	err = db.users.run(ctx, db.Pool, func(m usersMode) error {
		// Read one more than asked to learn whether a next page exists.
		var err error
		orders, err = db.orderPage(ctx, c, m, userID, afterAt, afterID, page.Limit+1)
		if err != nil || len(orders) > 0 {
			return err
		}
		return c.QueryRow(ctx, db.q(m, userExistsSQL), userID).Scan(&exists)
	})
	if err != nil {
		return nil, nil, wrapErr(err)
	}
	if len(orders) == 0 {
		if !exists && page.After == nil {
			return nil, nil, shop.Errorf(shop.ENOTFOUND, "User not found")
		}
		return orders, nil, nil
	}

	var next *shop.Cursor
	if len(orders) > page.Limit {
		orders = orders[:page.Limit]
		last := orders[len(orders)-1]
		next = &shop.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	attach := db.attachItems
	if db.on(ctx, shop.SwitchNPlusOne) {
		attach = db.attachItemsNPlusOne
	}
	if err := attach(ctx, c, orders); err != nil {
		return nil, nil, wrapErr(err)
	}
	return orders, next, nil
}

// orderPage reads up to limit orders of the user, without their items.
func (db *DB) orderPage(ctx context.Context, q querier, m usersMode, userID string, afterAt *time.Time, afterID *string, limit int) ([]shop.Order, error) {
	rows, err := q.Query(ctx, db.q(m, ordersByUserSQL), userID, afterAt, afterID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	orders := []shop.Order{}
	for rows.Next() {
		var o shop.Order
		var cents int64
		if err := rows.Scan(&o.ID, &o.UserID, &o.Status, &cents, &o.CreatedAt); err != nil {
			return nil, err
		}
		o.Total = shop.Money(cents)
		o.Items = []shop.OrderItem{}
		orders = append(orders, o)
	}
	return orders, rows.Err()
}

// attachItems loads the lines of orders, with their products, in one
// statement.
func (db *DB) attachItems(ctx context.Context, q querier, orders []shop.Order) error {
	index := make(map[string]int, len(orders))
	ids := make([]string, len(orders))
	for i, o := range orders {
		index[o.ID] = i
		ids[i] = o.ID
	}
	rows, err := q.Query(ctx, itemsByOrdersSQL, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var it shop.OrderItem
		var cents int64
		if err := scanProduct(rows, &it.Product, &it.ID, &it.OrderID, &it.Quantity, &cents); err != nil {
			return err
		}
		it.ProductID = it.Product.ID
		it.Price = shop.Money(cents)
		o := &orders[index[it.OrderID]]
		o.Items = append(o.Items, it)
	}
	return rows.Err()
}

// itemsByOrderSQL reads the lines of one order: the statement the
// n-plus-one switch runs once per order.
const itemsByOrderSQL = `-- name: orders.items_by_order
SELECT ` + productCols + `,
       oi.id::text, oi.order_id::text, oi.quantity, (oi.price * 100)::bigint
FROM order_items oi
JOIN products p ON p.id = oi.product_id
WHERE oi.order_id = $1
ORDER BY oi.id`

// attachItemsNPlusOne is the original's defect behind the n-plus-one
// switch: one statement per order for its lines (1+N round trips for a
// page of N orders, where attachItems takes one).
func (db *DB) attachItemsNPlusOne(ctx context.Context, q querier, orders []shop.Order) error {
	for i := range orders {
		o := &orders[i]
		rows, err := q.Query(ctx, itemsByOrderSQL, o.ID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var it shop.OrderItem
			var cents int64
			if err := scanProduct(rows, &it.Product, &it.ID, &it.OrderID, &it.Quantity, &cents); err != nil {
				rows.Close()
				return err
			}
			it.ProductID = it.Product.ID
			it.Price = shop.Money(cents)
			o.Items = append(o.Items, it)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}
