package postgres

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/shop"
)

// The users split (docs/schema-split.md): `shopd backfill users-split`
// copies what existed before the sync triggers of migration 00012 into
// customers, merchants and orders.customer_id, and `shopd verify
// users-split` compares old and new before the contract step.

// DefaultBackfillBatch is the rows per batch of a backfill whose
// BackfillOptions.BatchSize is zero.
const DefaultBackfillBatch = 1000

// BackfillOptions tune a backfill run.
type BackfillOptions struct {
	// BatchSize is the number of rows per batch and transaction (default
	// DefaultBackfillBatch).
	BatchSize int
	// Pause is the throttle: a sleep after each batch, which leaves the
	// database to the service (default none).
	Pause time.Duration
	// Restart ignores a saved position and starts from the first row.
	Restart bool
	// Out receives progress lines (at most one a second per phase, and
	// the last of each phase).
	Out io.Writer
}

// BackfillStats counts what a backfill run read and changed.
type BackfillStats struct {
	Users, UsersChanged   int64
	Orders, OrdersChanged int64
	Batches               int
}

const backfillStateSQL = `-- name: usersplit.state
SELECT to_regprocedure('users_split_sync_user(uuid)') IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = to_regclass('orders') AND attname = 'user_id' AND NOT attisdropped)`

const backfillResumeSQL = `-- name: usersplit.resume
SELECT phase, after_id::text FROM users_split_backfill`

const backfillTotalsSQL = `-- name: usersplit.totals
SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders)`

// backfillUsersSQL brings one batch of users (keyset by id) into customers
// and merchants with the same function as the trigger, so both follow one
// mapping. It returns each id and whether anything changed for it.
const backfillUsersSQL = `-- name: usersplit.backfill_users lock
SELECT u.id::text, users_split_sync_user(u.id)
FROM (SELECT id FROM users WHERE id > $1::uuid ORDER BY id LIMIT $2) u
ORDER BY u.id`

// backfillOrdersSQL sets customer_id on one batch of orders (keyset by id);
// the orders trigger of 00012 fires on it and makes the buyer a customer
// when it was not one. Rows already right are not written again.
const backfillOrdersSQL = `-- name: usersplit.backfill_orders lock
WITH batch AS (
    SELECT id FROM orders WHERE id > $1::uuid ORDER BY id LIMIT $2
), changed AS (
    UPDATE orders o SET customer_id = o.user_id
    FROM batch b
    WHERE o.id = b.id AND o.customer_id IS DISTINCT FROM o.user_id
    RETURNING 1
)
SELECT (SELECT id::text FROM batch ORDER BY id DESC LIMIT 1),
       (SELECT count(*) FROM batch),
       (SELECT count(*) FROM changed)`

const backfillSaveSQL = `-- name: usersplit.save_position
INSERT INTO users_split_backfill (phase, after_id) VALUES ($1, $2::uuid)
ON CONFLICT (phase) DO UPDATE SET after_id = EXCLUDED.after_id, updated_at = now()`

const backfillDoneSQL = `-- name: usersplit.done
DELETE FROM users_split_backfill`

const backfillAnalyzeSQL = `-- name: usersplit.analyze
ANALYZE orders, customers, merchants`

// zeroUUID sorts before every other uuid: the keyset start.
const zeroUUID = "00000000-0000-0000-0000-000000000000"

// backfillTimeouts bound one batch: a batch waits for row locks of users
// being updated or orders being written, never long.
var backfillTimeouts = Timeouts{Lock: 5 * time.Second, Statement: time.Minute}

// BackfillUsersSplit copies users into customers and merchants and sets
// orders.customer_id, in batches of opt.BatchSize rows, each its own short
// transaction that also records the position reached: an interrupted run
// resumes there, and a run over data already copied changes nothing. It
// needs migration 00012 (whose triggers keep every later write in step)
// and refuses after the contract step. Errors: ECONFLICT (wrong schema
// step), EUNAVAILABLE, EINTERNAL.
func (db *DB) BackfillUsersSplit(ctx context.Context, opt BackfillOptions) (BackfillStats, error) {
	if opt.BatchSize <= 0 {
		opt.BatchSize = DefaultBackfillBatch
	}
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	var st BackfillStats
	if err := db.checkBackfillStep(ctx); err != nil {
		return st, err
	}
	after, err := db.backfillPositions(ctx, opt)
	if err != nil {
		return st, err
	}
	var totalUsers, totalOrders int64
	if err := db.Pool.QueryRow(ctx, backfillTotalsSQL).Scan(&totalUsers, &totalOrders); err != nil {
		return st, wrapErr(err)
	}
	phases := []backfillPhase{
		{name: "users", total: totalUsers, read: &st.Users, changed: &st.UsersChanged, batch: backfillUsersBatch},
		{name: "orders", total: totalOrders, read: &st.Orders, changed: &st.OrdersChanged, batch: backfillOrdersBatch},
	}
	for _, ph := range phases {
		if err := db.runBackfillPhase(ctx, opt, ph, after[ph.name], &st.Batches); err != nil {
			return st, err
		}
	}
	if _, err := db.Pool.Exec(ctx, backfillDoneSQL); err != nil {
		return st, wrapErr(err)
	}
	// The planner will read orders by customer_id after the contract step:
	// give it statistics of the column just filled.
	if _, err := db.Pool.Exec(ctx, backfillAnalyzeSQL); err != nil {
		return st, wrapErr(err)
	}
	fmt.Fprintf(opt.Out, "backfill users-split: done: %d users (%d changed), %d orders (%d changed) in %d batches\n",
		st.Users, st.UsersChanged, st.Orders, st.OrdersChanged, st.Batches)
	return st, nil
}

// checkBackfillStep refuses a backfill before migration 00012 or after the
// contract step (ECONFLICT).
func (db *DB) checkBackfillStep(ctx context.Context) error {
	var synced, legacy bool
	if err := db.Pool.QueryRow(ctx, backfillStateSQL).Scan(&synced, &legacy); err != nil {
		return wrapErr(err)
	}
	switch {
	case !legacy:
		return shop.Errorf(shop.ECONFLICT, "The users split is already contracted: orders.user_id is gone; nothing to backfill.")
	case !synced:
		return shop.Errorf(shop.ECONFLICT, "The sync triggers are not installed: apply migration 00012 first (shopd migrate up-to 12).")
	}
	return nil
}

// backfillPositions returns where each phase starts: after the id an
// interrupted run saved, or at the first row (opt.Restart forgets what was
// saved).
func (db *DB) backfillPositions(ctx context.Context, opt BackfillOptions) (map[string]string, error) {
	after := map[string]string{"users": zeroUUID, "orders": zeroUUID}
	if opt.Restart {
		if _, err := db.Pool.Exec(ctx, backfillDoneSQL); err != nil {
			return nil, wrapErr(err)
		}
		return after, nil
	}
	rows, err := db.Pool.Query(ctx, backfillResumeSQL)
	if err != nil {
		return nil, wrapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var phase, id string
		if err := rows.Scan(&phase, &id); err != nil {
			return nil, wrapErr(err)
		}
		after[phase] = id
		fmt.Fprintf(opt.Out, "backfill users-split: resuming %s after id %s\n", phase, id)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr(err)
	}
	return after, nil
}

// backfillPhase is one table's pass: its batch statement and its counters.
type backfillPhase struct {
	name          string
	total         int64
	read, changed *int64
	// batch brings the rows after id `after` in and returns the last id,
	// how many rows it read and how many it changed.
	batch func(ctx context.Context, tx pgx.Tx, after string, size int) (last string, n, changed int64, err error)
}

// runBackfillPhase runs ph's batches from pos to the end of its table, each
// in its own transaction with its position saved, retried on lock
// timeouts, with a progress line at most once a second and the pause
// between batches.
func (db *DB) runBackfillPhase(ctx context.Context, opt BackfillOptions, ph backfillPhase, pos string, batches *int) error {
	start, lastPrint := time.Now(), time.Time{}
	for {
		var last string
		var n, changed int64
		err := db.retryLockTimeout(ctx, opt.Out, func() error {
			return inTx(ctx, db.Pool, backfillTimeouts.setLocal(), func(tx pgx.Tx) error {
				var err error
				last, n, changed, err = ph.batch(ctx, tx, pos, opt.BatchSize)
				if err != nil || n == 0 {
					return err
				}
				_, err = tx.Exec(ctx, backfillSaveSQL, ph.name, last)
				return err
			})
		})
		if err != nil {
			return wrapErr(err)
		}
		*ph.read += n
		*ph.changed += changed
		if n > 0 {
			*batches++
			pos = last
		}
		done := n < int64(opt.BatchSize)
		if done || time.Since(lastPrint) >= time.Second {
			lastPrint = time.Now()
			fmt.Fprintf(opt.Out, "backfill users-split: %s %d/%d (%s), %d changed, %.0f rows/s\n",
				ph.name, *ph.read, ph.total, percent(*ph.read, ph.total), *ph.changed,
				float64(*ph.read)/max(time.Since(start).Seconds(), 1e-3))
		}
		if done {
			return nil
		}
		if opt.Pause > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(opt.Pause):
			}
		}
	}
}

// backfillUsersBatch syncs the next users after `after` into customers and
// merchants.
func backfillUsersBatch(ctx context.Context, tx pgx.Tx, after string, size int) (last string, n, changed int64, err error) {
	rows, err := tx.Query(ctx, backfillUsersSQL, after, size)
	if err != nil {
		return "", 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var ch bool
		if err := rows.Scan(&last, &ch); err != nil {
			return "", 0, 0, err
		}
		n++
		if ch {
			changed++
		}
	}
	return last, n, changed, rows.Err()
}

// backfillOrdersBatch sets customer_id on the next orders after `after`.
func backfillOrdersBatch(ctx context.Context, tx pgx.Tx, after string, size int) (string, int64, int64, error) {
	var last *string
	var n, changed int64
	err := tx.QueryRow(ctx, backfillOrdersSQL, after, size).Scan(&last, &n, &changed)
	if last == nil {
		return "", n, changed, err
	}
	return *last, n, changed, err
}

// retryLockTimeout retries fn a few times, with a growing pause, when it
// failed on a lock or statement timeout or a deadlock: a batch is one
// transaction, rolled back whole.
func (db *DB) retryLockTimeout(ctx context.Context, out io.Writer, fn func() error) error {
	return retryBackoff(ctx, 5, 200*time.Millisecond, retryable, func(attempt int, err error, pause time.Duration) {
		fmt.Fprintf(out, "backfill users-split: batch failed (%v); retry %d/5 in %s\n", err, attempt, pause)
	}, fn)
}

func retryable(err error) bool {
	e := wrapErr(err)
	return e.RetryAfter > 0 && (e.Code == shop.EUNAVAILABLE || e.Code == shop.ECONFLICT)
}

func percent(n, total int64) string {
	if total <= 0 {
		return "100%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(min(n, total))/float64(total))
}

// UsersSplitCheck is one comparison of the verification.
type UsersSplitCheck struct {
	Name        string
	Differences int64
	Example     string // the smallest id among the differing rows
}

// UsersSplitReport is what `shopd verify users-split` prints.
type UsersSplitReport struct {
	// Contracted: the contract step has run; there is no old schema to
	// compare with any more.
	Contracted bool
	// Users by type: NULL (typeless legacy accounts), customer, merchant;
	// MerchantBuyers are merchants who placed orders (they are customers too).
	Users, Typeless, CustomerUsers, MerchantUsers, MerchantBuyers int64
	Customers, Merchants, Orders                                  int64
	Checks                                                        []UsersSplitCheck
}

// OK reports whether every check found no difference.
func (r UsersSplitReport) OK() bool {
	for _, c := range r.Checks {
		if c.Differences != 0 {
			return false
		}
	}
	return true
}

// Write prints the report.
func (r UsersSplitReport) Write(w io.Writer) {
	if r.Contracted {
		fmt.Fprintln(w, "verify users-split: the contract step has run (users is now users_legacy, orders.user_id is gone);")
		fmt.Fprintln(w, "  it refused to run unless these checks passed; orders.customer_id is NOT NULL with a validated foreign key.")
		return
	}
	fmt.Fprintf(w, "verify users-split:\n")
	fmt.Fprintf(w, "  users            %8d  (customer %d, merchant %d, typeless %d: mapped to customers)\n", r.Users, r.CustomerUsers, r.MerchantUsers, r.Typeless)
	fmt.Fprintf(w, "  merchant-buyers  %8d  (merchants with orders: in merchants and in customers)\n", r.MerchantBuyers)
	fmt.Fprintf(w, "  customers        %8d  (expected %d)\n", r.Customers, r.CustomerUsers+r.Typeless+r.MerchantBuyers)
	fmt.Fprintf(w, "  merchants        %8d  (expected %d)\n", r.Merchants, r.MerchantUsers)
	fmt.Fprintf(w, "  orders           %8d\n", r.Orders)
	for _, c := range r.Checks {
		mark, ex := "ok  ", ""
		if c.Differences != 0 {
			mark = "FAIL"
			if c.Example != "" {
				ex = ", e.g. " + c.Example
			}
		}
		fmt.Fprintf(w, "  %s %-50s %d%s\n", mark, c.Name, c.Differences, ex)
	}
	if r.OK() {
		fmt.Fprintln(w, "verify users-split: old and new agree; the contract step may run")
	} else {
		fmt.Fprintln(w, "verify users-split: DIFFERENCES FOUND; run `shopd backfill users-split` and verify again")
	}
}

const verifyCountsSQL = `-- name: usersplit.verify_counts
SELECT count(*),
       count(*) FILTER (WHERE u.user_type IS NULL),
       count(*) FILTER (WHERE u.user_type = 'customer'),
       count(*) FILTER (WHERE u.user_type = 'merchant'),
       count(*) FILTER (WHERE u.user_type = 'merchant'
                          AND EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)),
       (SELECT count(*) FROM customers),
       (SELECT count(*) FROM merchants),
       (SELECT count(*) FROM orders)
FROM users u`

const verifyChecksSQL = `-- name: usersplit.verify_checks
SELECT check_name, differences, coalesce(example, '') FROM users_split_check()`

// VerifyUsersSplit compares users with customers and merchants and every
// order's user with its customer, in one read-only snapshot, with
// users_split_check() of migration 00012 (the checks the contract step
// requires), and adds the count comparisons. After the contract step it
// returns a report with Contracted set. Errors: ECONFLICT (before
// migration 00012), EUNAVAILABLE, EINTERNAL.
func (db *DB) VerifyUsersSplit(ctx context.Context) (UsersSplitReport, error) {
	var r UsersSplitReport
	var synced, legacy bool
	if err := db.Pool.QueryRow(ctx, backfillStateSQL).Scan(&synced, &legacy); err != nil {
		return r, wrapErr(err)
	}
	switch {
	case !legacy:
		r.Contracted = true
		return r, nil
	case !synced:
		return r, shop.Errorf(shop.ECONFLICT, "There is nothing to verify yet: apply migration 00012 first (shopd migrate up-to 12).")
	}
	tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return r, wrapErr(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	if err := tx.QueryRow(ctx, verifyCountsSQL).Scan(&r.Users, &r.Typeless, &r.CustomerUsers, &r.MerchantUsers,
		&r.MerchantBuyers, &r.Customers, &r.Merchants, &r.Orders); err != nil {
		return r, wrapErr(err)
	}
	rows, err := tx.Query(ctx, verifyChecksSQL)
	if err != nil {
		return r, wrapErr(err)
	}
	for rows.Next() {
		var c UsersSplitCheck
		if err := rows.Scan(&c.Name, &c.Differences, &c.Example); err != nil {
			rows.Close()
			return r, wrapErr(err)
		}
		r.Checks = append(r.Checks, c)
	}
	if err := rows.Err(); err != nil {
		return r, wrapErr(err)
	}
	abs := func(v int64) int64 { return max(v, -v) }
	r.Checks = append(r.Checks,
		UsersSplitCheck{Name: "customers count vs customer+typeless users+merchant-buyers", Differences: abs(r.Customers - (r.CustomerUsers + r.Typeless + r.MerchantBuyers))},
		UsersSplitCheck{Name: "merchants count vs merchant users", Differences: abs(r.Merchants - r.MerchantUsers)},
	)
	return r, nil
}
