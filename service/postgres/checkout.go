package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/shop"
)

const checkoutUserSQL = `-- name: checkout.user_exists
SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`

// lockProductsSQL locks the cart's products in id order. Every checkout
// locks in the same order, so two carts that share products wait for each
// other instead of deadlocking.
const lockProductsSQL = `-- name: checkout.lock_products lock
SELECT ` + productCols + `
FROM products p
WHERE p.id = ANY($1::uuid[])
ORDER BY p.id
FOR UPDATE`

// reserveStockSQL decrements stock only where enough is left; the CHECK
// (inventory >= 0) is the last line of defence behind it.
const reserveStockSQL = `-- name: checkout.reserve_stock
UPDATE products p SET inventory = p.inventory - r.qty
FROM unnest($1::uuid[], $2::int[]) AS r(id, qty)
WHERE p.id = r.id AND p.inventory >= r.qty`

const insertOrderSQL = `-- name: checkout.insert_order
INSERT INTO orders (user_id, status, total)
VALUES ($1, 'pending', $2::bigint / 100.0)
RETURNING id::text, status, created_at`

const insertItemsSQL = `-- name: checkout.insert_items
INSERT INTO order_items (order_id, product_id, quantity, price)
SELECT $1, r.id, r.qty, r.cents / 100.0
FROM unnest($2::uuid[], $3::int[], $4::bigint[]) WITH ORDINALITY AS r(id, qty, cents, n)
ORDER BY r.n
RETURNING id::text, product_id::text`

// Checkout validates the cart, then in one transaction locks its products
// in id order, checks and decrements stock, and inserts the order and its
// lines at the database's prices. It never oversells. Errors: EINVALID,
// ENOTFOUND (user or product), ECONFLICT (insufficient stock, with the
// shortages), EUNAVAILABLE (lock or statement timeout), EINTERNAL.
func (db *DB) Checkout(ctx context.Context, req shop.CheckoutRequest) (shop.Order, error) {
	req, err := req.Validate()
	if err != nil {
		return shop.Order{}, err
	}
	var order shop.Order
	err = inTx(ctx, db.Pool, db.CheckoutTimeouts.setLocal(), func(tx pgx.Tx) error {
		var err error
		order, err = checkout(ctx, tx, req)
		return err
	})
	if err != nil {
		return shop.Order{}, wrapErr(err)
	}
	return order, nil
}

func checkout(ctx context.Context, tx pgx.Tx, req shop.CheckoutRequest) (shop.Order, error) {
	var exists bool
	if err := tx.QueryRow(ctx, checkoutUserSQL, req.UserID).Scan(&exists); err != nil {
		return shop.Order{}, err
	}
	if !exists {
		return shop.Order{}, shop.Errorf(shop.ENOTFOUND, "User not found")
	}

	products, err := lockProducts(ctx, tx, req.Items)
	if err != nil {
		return shop.Order{}, err
	}
	ids := make([]string, len(req.Items))
	qtys := make([]int32, len(req.Items))
	prices := make([]int64, len(req.Items))
	var total shop.Money
	var short []shop.Shortage
	for i, l := range req.Items {
		p := products[i]
		if p.Inventory < l.Quantity {
			short = append(short, shop.Shortage{ProductID: p.ID, Name: p.Name, Requested: l.Quantity, Available: p.Inventory})
		}
		ids[i], qtys[i], prices[i] = l.ProductID, int32(l.Quantity), int64(p.Price)
		total += p.Price * shop.Money(l.Quantity)
	}
	if len(short) > 0 {
		return shop.Order{}, insufficientStock(short)
	}
	if total > shop.MaxMoney {
		return shop.Order{}, shop.Errorf(shop.EINVALID, "The order total is too large.")
	}

	tag, err := tx.Exec(ctx, reserveStockSQL, ids, qtys)
	if err != nil {
		return shop.Order{}, err
	}
	if tag.RowsAffected() != int64(len(ids)) {
		// Impossible while the rows are locked; refuse rather than oversell.
		return shop.Order{}, shop.Internal(fmt.Errorf("reserved %d of %d lines", tag.RowsAffected(), len(ids)))
	}

	order := shop.Order{UserID: req.UserID, Total: total, Items: make([]shop.OrderItem, len(ids))}
	if err := tx.QueryRow(ctx, insertOrderSQL, req.UserID, int64(total)).Scan(&order.ID, &order.Status, &order.CreatedAt); err != nil {
		return shop.Order{}, err
	}
	rows, err := tx.Query(ctx, insertItemsSQL, order.ID, ids, qtys, prices)
	if err != nil {
		return shop.Order{}, err
	}
	i := 0
	for rows.Next() {
		it := &order.Items[i]
		if err := rows.Scan(&it.ID, &it.ProductID); err != nil {
			rows.Close()
			return shop.Order{}, err
		}
		it.OrderID, it.Quantity, it.Price = order.ID, req.Items[i].Quantity, products[i].Price
		it.Product = products[i]
		it.Product.Inventory -= it.Quantity
		i++
	}
	if err := rows.Err(); err != nil {
		return shop.Order{}, err
	}
	if err := enqueueOrderConfirmation(ctx, tx, order); err != nil {
		return shop.Order{}, err
	}
	return order, nil
}

// lockProducts locks the lines' products and returns them in line order,
// or ENOTFOUND naming every unknown product.
func lockProducts(ctx context.Context, tx pgx.Tx, lines []shop.CartLine) ([]shop.Product, error) {
	ids := make([]string, len(lines))
	for i, l := range lines {
		ids[i] = l.ProductID
	}
	rows, err := tx.Query(ctx, lockProductsSQL, ids)
	if err != nil {
		return nil, err
	}
	found, err := collectProducts(rows)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]shop.Product, len(found))
	for _, p := range found {
		byID[p.ID] = p
	}
	out := make([]shop.Product, len(lines))
	var missing []string
	for i, l := range lines {
		p, ok := byID[l.ProductID]
		if !ok {
			missing = append(missing, l.ProductID)
		}
		out[i] = p
	}
	if len(missing) > 0 {
		e := shop.Errorf(shop.ENOTFOUND, "Product not found: %s", strings.Join(missing, ", "))
		e.Extensions = map[string]any{"missingProductIds": missing}
		return nil, e
	}
	return out, nil
}

func insufficientStock(short []shop.Shortage) *shop.Error {
	s := short[0]
	msg := fmt.Sprintf("Insufficient inventory for %s. Available: %d, Requested: %d", s.Name, s.Available, s.Requested)
	if len(short) > 1 {
		msg += fmt.Sprintf(" (and %d more lines)", len(short)-1)
	}
	return &shop.Error{Code: shop.ECONFLICT, Message: msg, Extensions: map[string]any{"shortages": short}}
}
