package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/shop"
)

// reportSummarySQL computes a report's figures in the database: no order is
// loaded into the service to count or add it.
const reportSummarySQL = `-- name: reports.summary
SELECT u.id::text, u.email, u.name, coalesce(u.user_type, ''), u.created_at,
       coalesce(s.orders, 0), coalesce(s.cents, 0), coalesce(i.items, 0)
FROM users u
LEFT JOIN LATERAL (
    SELECT count(*) AS orders, (sum(o.total) * 100)::bigint AS cents
    FROM orders o WHERE o.user_id = u.id
) s ON true
LEFT JOIN LATERAL (
    SELECT sum(oi.quantity) AS items
    FROM orders o JOIN order_items oi ON oi.order_id = o.id
    WHERE o.user_id = u.id
) i ON true
WHERE u.id = $1`

// ReportSummary returns a user's report figures. Errors: ENOTFOUND,
// EUNAVAILABLE, EINTERNAL.
func (db *DB) ReportSummary(ctx context.Context, userID string) (shop.ReportSummary, error) {
	var s shop.ReportSummary
	var cents int64
	err := db.Pool.QueryRow(ctx, reportSummarySQL, userID).Scan(
		&s.User.ID, &s.User.Email, &s.User.Name, &s.User.UserType, &s.User.CreatedAt,
		&s.OrderCount, &cents, &s.ItemsPurchased)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, shop.Errorf(shop.ENOTFOUND, "User not found")
	}
	if err != nil {
		return s, wrapErr(err)
	}
	s.TotalSpent = shop.Money(cents)
	return s, nil
}

const reportLinesSQL = `-- name: reports.lines
SELECT o.id::text, o.status, o.created_at, (o.total * 100)::bigint,
       p.id::text, p.name, oi.quantity, (oi.price * 100)::bigint
FROM orders o
JOIN order_items oi ON oi.order_id = o.id
JOIN products p ON p.id = oi.product_id
WHERE o.user_id = $1
ORDER BY o.created_at DESC, o.id DESC, oi.id`

// StreamReport calls fn for each order line of the user, newest order
// first. Rows are read from the connection as fn consumes them, so memory
// stays flat whatever the order count. Errors: EUNAVAILABLE, EINTERNAL, or
// fn's error unchanged.
func (db *DB) StreamReport(ctx context.Context, userID string, fn func(shop.ReportLine) error) error {
	rows, err := db.Pool.Query(ctx, reportLinesSQL, userID)
	if err != nil {
		return wrapErr(err)
	}
	defer rows.Close()
	var l shop.ReportLine
	var total, price int64
	for rows.Next() {
		if err := rows.Scan(&l.OrderID, &l.Status, &l.CreatedAt, &total, &l.ProductID, &l.ProductName, &l.Quantity, &price); err != nil {
			return wrapErr(err)
		}
		l.OrderTotal, l.UnitPrice = shop.Money(total), shop.Money(price)
		if err := fn(l); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return wrapErr(err)
	}
	return nil
}
