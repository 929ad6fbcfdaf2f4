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
//
// Reports read accounts and orders through the users-schema tokens
// (usersschema.go), like the DB store, so they work on either side of the
// users split's contract step; the store detects the schema on its own
// pool (which may be a replica) and follows it when it changes.
type Reports struct {
	Pool *pgxpool.Pool
	// StatementTimeout bounds every report statement (Postgres
	// statement_timeout, set per transaction); zero means the server's
	// default. For a download it bounds the whole stream, since the
	// statement runs until its last row is sent.
	StatementTimeout time.Duration
	// Gate, when set, is asked before each report reads anything: an error
	// (a *shop.Error, EUNAVAILABLE with RetryAfter) refuses the report
	// without touching the database. shopd refuses reports this way while
	// the replica the pool reads is too far behind or down
	// (REPORTS_MAX_REPLICA_LAG, docs/reports.md).
	Gate func() error
	// users knows which users schema the database has (usersschema.go).
	users usersSchema
}

// NewReports returns the report store on pool with the given statement
// timeout (zero: the server's default).
func NewReports(pool *pgxpool.Pool, statementTimeout time.Duration) *Reports {
	return &Reports{Pool: pool, StatementTimeout: statementTimeout}
}

// reportSettingsSQL tunes a report's transaction: one backend per report
// (no parallel workers), so that REPORTS_MAX_CONNS bounds the database
// processes reports can occupy; and plans made for the user at hand
// rather than a cached generic plan, which would assume a user's usual
// few orders for one with 100,000.
const reportSettingsSQL = `-- name: reports.settings
SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL plan_cache_mode = force_custom_plan`

// readOnly runs fn in a read-only transaction with the store's statement
// timeout and reportSettingsSQL; q expands a statement's users-schema
// tokens for the schema the database has. When a statement fails because
// the schema changed under it (the contract step), the whole transaction
// runs once more for the new schema, unless fn says it has delivered
// something (delivered). Gate, when set, is asked first.
func (r *Reports) readOnly(ctx context.Context, fn func(tx pgx.Tx, q func(string) string) error) error {
	if r.Gate != nil {
		if err := r.Gate(); err != nil {
			return err
		}
	}
	setup := append(Timeouts{Statement: r.StatementTimeout}.setLocal(), reportSettingsSQL)
	return r.users.run(ctx, r.Pool, func(m usersMode) error {
		q := func(sql string) string { return r.users.sql(m, sql) }
		return inTxWith(ctx, r.Pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, setup, func(tx pgx.Tx) error {
			return fn(tx, q)
		})
	})
}

// reportSummarySQL computes a report's figures in the database: counts and
// sums, and the byte lengths of the text of every printed field (for the
// report's size). No order is loaded into the service to count or add it.
// Lines are first grouped by (product, price, quantity), a few hundred
// groups however many orders, so that names and amounts are measured once
// per group rather than once per line. Money and quantities are measured
// as their text: numeric(12,2)::text prints cents with two places, as
// shop.Money.String does for amounts >= 0. $1 is used directly in each
// part (not through u.id), so that the planner sees the user's real order
// count. A group's product name is a correlated subquery (one
// products_pkey lookup per group, every product exists by the foreign
// key) rather than a join: with a sampled overestimate of the groups, a
// join was planned as a hash of the whole catalogue (a sequential scan of
// 100,000 products, 4.5x the summary's time) in some ANALYZE samples; a
// subquery cannot be, whatever the statistics.
const reportSummarySQL = `-- name: reports.summary
SELECT u.id::text, u.email, u.name, coalesce(u.user_type, ''), u.created_at,
       s.orders, s.cents, l.items,
       w.orders, l.lines, w.statuses, w.totals, l.names, l.quantities, l.prices, l.line_totals
FROM {users} u,
LATERAL (
    SELECT count(*) AS orders, coalesce((sum(o.total) * 100)::bigint, 0) AS cents
    FROM orders o WHERE o.{buyer_id} = $1
) s,
LATERAL (
    SELECT count(*) AS orders,
           coalesce(sum(octet_length(o.status)), 0)::bigint AS statuses,
           coalesce(sum(octet_length(o.total::text)), 0)::bigint AS totals
    FROM orders o
    WHERE o.{buyer_id} = $1 AND EXISTS (SELECT FROM order_items oi WHERE oi.order_id = o.id)
) w,
LATERAL (
    SELECT coalesce(sum(g.n * g.quantity), 0)::bigint AS items,
           coalesce(sum(g.n), 0)::bigint AS lines,
           coalesce(sum(g.n * octet_length((SELECT p.name FROM products p WHERE p.id = g.product_id))), 0)::bigint AS names,
           coalesce(sum(g.n * octet_length(g.quantity::text)), 0)::bigint AS quantities,
           coalesce(sum(g.n * octet_length(g.price::text)), 0)::bigint AS prices,
           coalesce(sum(g.n * octet_length((g.price * g.quantity)::text)), 0)::bigint AS line_totals
    FROM (
        SELECT oi.product_id, oi.price, oi.quantity, count(*) AS n
        FROM orders o JOIN order_items oi ON oi.order_id = o.id
        WHERE o.{buyer_id} = $1
        GROUP BY oi.product_id, oi.price, oi.quantity
    ) g
) l
WHERE u.id = $1`

// ReportSummary returns a user's report figures. Errors: ENOTFOUND,
// EUNAVAILABLE (database down, or the statement timeout struck),
// EINTERNAL, or ctx's error once ctx has ended.
func (r *Reports) ReportSummary(ctx context.Context, userID string) (shop.ReportSummary, error) {
	var s shop.ReportSummary
	var cents int64
	t := &s.Text
	err := r.readOnly(ctx, func(tx pgx.Tx, q func(string) string) error {
		return tx.QueryRow(ctx, q(reportSummarySQL), userID).Scan(
			&s.User.ID, &s.User.Email, &s.User.Name, &s.User.UserType, &s.User.CreatedAt,
			&s.OrderCount, &cents, &s.ItemsPurchased,
			&t.Orders, &t.Lines, &t.Statuses, &t.OrderTotals, &t.ProductNames, &t.Quantities, &t.UnitPrices, &t.LineTotals)
	})
	if err != nil {
		return s, userReadErr(ctx, err)
	}
	s.TotalSpent = shop.Money(cents)
	return s, nil
}

// userReadErr maps the error of a read about one user: ENOTFOUND for no
// such user, ctx's error once ctx has ended, wrapErr otherwise.
func userReadErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return shop.Errorf(shop.ENOTFOUND, "User not found")
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return wrapErr(err)
}

const reportUserSQL = `-- name: reports.user
SELECT u.id::text, u.email, u.name, coalesce(u.user_type, ''), u.created_at FROM {users} u WHERE u.id = $1`

// ReportUser returns the user a report is about. Errors: ENOTFOUND,
// EUNAVAILABLE, EINTERNAL, or ctx's error once ctx has ended.
func (r *Reports) ReportUser(ctx context.Context, userID string) (shop.User, error) {
	var u shop.User
	err := r.readOnly(ctx, func(tx pgx.Tx, q func(string) string) error {
		return tx.QueryRow(ctx, q(reportUserSQL), userID).Scan(&u.ID, &u.Email, &u.Name, &u.UserType, &u.CreatedAt)
	})
	if err != nil {
		return u, userReadErr(ctx, err)
	}
	return u, nil
}

// reportLinesFrom is the body of the line queries, newest order first.
const reportLinesFrom = `
SELECT o.id::text, o.status, o.created_at, (o.total * 100)::bigint,
       p.id::text, p.name, oi.quantity, (oi.price * 100)::bigint
FROM orders o
JOIN order_items oi ON oi.order_id = o.id
JOIN products p ON p.id = oi.product_id
WHERE o.{buyer_id} = $1
ORDER BY o.created_at DESC, o.id DESC, oi.id`

// reportCursorSQL declares the cursor a full report is fetched from. A
// cursor is planned for its first rows (cursor_tuple_fraction): a nested
// loop down orders_user_created_idx (orders_customer_created_idx after
// the users split) into order_items_order_id_idx with an
// incremental sort per order, where a plain query for 100,000 orders is
// planned as hash joins feeding one sort of every line, spilled to disk,
// that returns nothing until it has read everything. So rows leave the
// server as they are found and neither side ever holds the whole report.
const reportCursorSQL = `-- name: reports.lines
DECLARE report_lines NO SCROLL CURSOR FOR` + reportLinesFrom

// reportFetchSQL reads the next reportFetchBatch lines of the cursor.
const reportFetchSQL = `-- name: reports.fetch
FETCH 250 FROM report_lines`

// reportFetchBatch is the row count of reportFetchSQL: small enough that
// one fetch is a short burst of database CPU (measured with make
// bench-reports: batches of 1,000 lines pushed the p99 of /products past 2x
// idle on two cores, 250 kept it near 1.5x), large enough that round trips
// stay a small share of a download.
const reportFetchBatch = 250

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
	sent := 0
	call := func(l shop.ReportLine) error {
		if err := fn(l); err != nil {
			fnErr = err
			return err
		}
		sent++
		return nil
	}
	err := r.readOnly(ctx, func(tx pgx.Tx, q func(string) string) error {
		err := streamLines(ctx, tx, q, call, userID, limit)
		if err != nil && sent > 0 {
			// Lines went out: never run the report again.
			return delivered(err)
		}
		return err
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

// streamLines reads the report's lines in tx: the first limit with
// reportHeadSQL, or all of them through the cursor.
func streamLines(ctx context.Context, tx pgx.Tx, q func(string) string, fn func(shop.ReportLine) error, userID string, limit int) error {
	if limit > 0 {
		_, err := scanLines(ctx, tx, fn, q(reportHeadSQL), userID, limit)
		return err
	}
	if _, err := tx.Exec(ctx, q(reportCursorSQL), userID); err != nil {
		return err
	}
	for {
		n, err := scanLines(ctx, tx, fn, reportFetchSQL)
		if err != nil || n < reportFetchBatch {
			return err
		}
	}
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
