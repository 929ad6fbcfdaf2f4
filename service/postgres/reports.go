package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/shop"
)

// Reports is the order-report store (shop.ReportStore). Give it its own
// small pool, so that however many reports run, they can never take the
// connections that checkout and the catalogue need; that pool may point at
// a read replica, since reports only read (in read-only transactions).
//
// When a report's context ends (its client went away), pgx abandons the
// connection and sends Postgres a cancel request, so the running statement
// stops in the database too, and the pool opens a fresh connection.
type Reports struct {
	Pool *pgxpool.Pool
	// StatementTimeout bounds every report statement (Postgres
	// statement_timeout, set per transaction); zero means the server's
	// default. For a download it bounds the whole stream, since the
	// statement runs until its last row is sent.
	StatementTimeout time.Duration
}

// NewReports returns the report store on pool with the given statement
// timeout (zero: the server's default).
func NewReports(pool *pgxpool.Pool, statementTimeout time.Duration) *Reports {
	return &Reports{Pool: pool, StatementTimeout: statementTimeout}
}

// readOnly runs fn in a read-only transaction with the store's statement
// timeout.
func (r *Reports) readOnly(ctx context.Context, fn func(pgx.Tx) error) error {
	setup := Timeouts{Statement: r.StatementTimeout}.setLocal()
	return inTxWith(ctx, r.Pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, setup, fn)
}

// reportSummarySQL computes a report's figures in the database, in one pass
// over the user's orders and lines: counts and sums, and the byte lengths
// of the text of every printed field (for the report's size). No order is
// loaded into the service to count or add it. Money and quantities are
// measured as their text: numeric(12,2)::text prints cents with two
// places, exactly as shop.Money.String does for amounts >= 0.
const reportSummarySQL = `-- name: reports.summary
SELECT u.id::text, u.email, u.name, u.user_type, u.created_at,
       coalesce(s.orders, 0), coalesce(s.cents, 0), coalesce(l.items, 0),
       coalesce(l.orders, 0), coalesce(l.lines, 0), coalesce(l.statuses, 0), coalesce(l.totals, 0),
       coalesce(l.names, 0), coalesce(l.quantities, 0), coalesce(l.prices, 0), coalesce(l.line_totals, 0)
FROM users u
LEFT JOIN LATERAL (
    SELECT count(*) AS orders, (sum(o.total) * 100)::bigint AS cents
    FROM orders o WHERE o.user_id = u.id
) s ON true
LEFT JOIN LATERAL (
    SELECT sum(po.items)::bigint AS items, count(*) AS orders, sum(po.lines)::bigint AS lines,
           sum(octet_length(po.status))::bigint AS statuses,
           sum(octet_length(po.total::text))::bigint AS totals,
           sum(po.names)::bigint AS names, sum(po.quantities)::bigint AS quantities,
           sum(po.prices)::bigint AS prices, sum(po.line_totals)::bigint AS line_totals
    FROM (
        SELECT o.status, o.total, sum(oi.quantity) AS items, count(*) AS lines,
               sum(octet_length(p.name)) AS names,
               sum(octet_length(oi.quantity::text)) AS quantities,
               sum(octet_length(oi.price::text)) AS prices,
               sum(octet_length((oi.price * oi.quantity)::text)) AS line_totals
        FROM orders o
        JOIN order_items oi ON oi.order_id = o.id
        JOIN products p ON p.id = oi.product_id
        WHERE o.user_id = u.id
        GROUP BY o.id
    ) po
) l ON true
WHERE u.id = $1`

// ReportSummary returns a user's report figures. Errors: ENOTFOUND,
// EUNAVAILABLE (database down, or the statement timeout struck),
// EINTERNAL, or ctx's error once ctx has ended.
func (r *Reports) ReportSummary(ctx context.Context, userID string) (shop.ReportSummary, error) {
	var s shop.ReportSummary
	var cents int64
	t := &s.Text
	err := r.readOnly(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, reportSummarySQL, userID).Scan(
			&s.User.ID, &s.User.Email, &s.User.Name, &s.User.UserType, &s.User.CreatedAt,
			&s.OrderCount, &cents, &s.ItemsPurchased,
			&t.Orders, &t.Lines, &t.Statuses, &t.OrderTotals, &t.ProductNames, &t.Quantities, &t.UnitPrices, &t.LineTotals)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return s, shop.Errorf(shop.ENOTFOUND, "User not found")
	case err != nil && ctx.Err() != nil:
		return s, ctx.Err()
	case err != nil:
		return s, wrapErr(err)
	}
	s.TotalSpent = shop.Money(cents)
	return s, nil
}

// reportLinesFrom is the body of the line queries, newest order first.
const reportLinesFrom = `
SELECT o.id::text, o.status, o.created_at, (o.total * 100)::bigint,
       p.id::text, p.name, oi.quantity, (oi.price * 100)::bigint
FROM orders o
JOIN order_items oi ON oi.order_id = o.id
JOIN products p ON p.id = oi.product_id
WHERE o.user_id = $1
ORDER BY o.created_at DESC, o.id DESC, oi.id`

// reportCursorSQL declares the cursor a full report is fetched from. A
// cursor is planned for its first rows (cursor_tuple_fraction): a nested
// loop down orders_user_created_idx into order_items_order_id_idx with an
// incremental sort per order, where a plain query for 100,000 orders is
// planned as hash joins feeding one sort of every line, spilled to disk,
// that returns nothing until it has read everything. So rows leave the
// server as they are found and neither side ever holds the whole report.
const reportCursorSQL = `-- name: reports.lines
DECLARE report_lines NO SCROLL CURSOR FOR` + reportLinesFrom

// reportFetchSQL reads the next reportFetchBatch lines of the cursor.
const reportFetchSQL = `-- name: reports.fetch
FETCH 1000 FROM report_lines`

// reportFetchBatch is the row count of reportFetchSQL.
const reportFetchBatch = 1000

// reportHeadSQL reads the first lines of a report (the JSON answer's
// preview).
const reportHeadSQL = `-- name: reports.head` + reportLinesFrom + `
LIMIT $2`

// StreamReport calls fn for each order line of the user, newest order
// first, at most limit lines (0: all). A full report is read through a
// cursor, reportFetchBatch lines at a time, each batch as fn consumes it,
// so memory stays flat whatever the order count; each statement is bound
// by the statement timeout. When ctx ends, the running statement is
// cancelled in the database and the transaction ends with the connection. Errors: EUNAVAILABLE (database down, or the
// statement timeout struck), EINTERNAL, ctx's error once ctx has ended, or
// fn's error unchanged.
func (r *Reports) StreamReport(ctx context.Context, userID string, limit int, fn func(shop.ReportLine) error) error {
	var fnErr error
	call := func(l shop.ReportLine) error {
		if err := fn(l); err != nil {
			fnErr = err
			return err
		}
		return nil
	}
	err := r.readOnly(ctx, func(tx pgx.Tx) error {
		if limit > 0 {
			_, err := scanLines(ctx, tx, call, reportHeadSQL, userID, limit)
			return err
		}
		if _, err := tx.Exec(ctx, reportCursorSQL, userID); err != nil {
			return err
		}
		for {
			n, err := scanLines(ctx, tx, call, reportFetchSQL)
			if err != nil || n < reportFetchBatch {
				return err
			}
		}
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return wrapErr(err)
}

// scanLines runs a line query and calls fn for each row; it returns how
// many rows it read.
func scanLines(ctx context.Context, tx pgx.Tx, fn func(shop.ReportLine) error, sql string, args ...any) (int, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var l shop.ReportLine
	var total, price int64
	n := 0
	for rows.Next() {
		if err := rows.Scan(&l.OrderID, &l.Status, &l.CreatedAt, &total, &l.ProductID, &l.ProductName, &l.Quantity, &price); err != nil {
			return n, err
		}
		n++
		l.OrderTotal, l.UnitPrice = shop.Money(total), shop.Money(price)
		if err := fn(l); err != nil {
			return n, err
		}
	}
	return n, rows.Err()
}
