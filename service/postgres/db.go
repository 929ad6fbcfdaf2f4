// Package postgres implements the shop stores on PostgreSQL with pgx.
// Money columns are NUMERIC(12,2); statements read them as integer cents
// ((price * 100)::bigint) and write them as $n::bigint / 100, so money
// never passes through a float.
// Every statement is a const beside the code that runs it; its first line
// names it ("-- name: orders.by_user") so that traces and metrics can say
// which statement ran without ever showing its text or arguments. Locking
// statements add the word "lock" to that line.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/shop"
)

// DB is shoplab's database: a pgx pool and the stores built on it.
type DB struct {
	Pool *pgxpool.Pool
	// CheckoutTimeouts bound how long a checkout waits for locks and runs.
	CheckoutTimeouts Timeouts
}

// Timeouts are per-transaction Postgres limits; zero means the server's default.
type Timeouts struct {
	Lock      time.Duration // lock_timeout
	Statement time.Duration // statement_timeout
}

// New returns a DB on pool.
func New(pool *pgxpool.Pool) *DB {
	return &DB{Pool: pool, CheckoutTimeouts: Timeouts{Lock: 2 * time.Second, Statement: 5 * time.Second}}
}

// PoolConfig parses dsn and sets shoplab's defaults: the application_name
// (so that pg_stat_activity shows whose sessions are whose) and tracer.
func PoolConfig(dsn, appName string, tracer pgx.QueryTracer) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if appName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = appName
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	return cfg, nil
}

const pingSQL = `-- name: health.ping
SELECT 1`

// Ping checks that the database answers a query. Errors: EUNAVAILABLE.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.Pool.QueryRow(ctx, pingSQL).Scan(&one); err != nil {
		e := wrapErr(err)
		if e.Code == shop.EINTERNAL {
			e.Code = shop.EUNAVAILABLE
			e.Message = "The database is unavailable."
		}
		return e
	}
	return nil
}

// retryAfter is what clients are told to wait after a transient failure.
const retryAfter = time.Second

// wrapErr maps pgx and Postgres errors to shop errors: constraint
// violations to EINVALID or ECONFLICT, lock and statement timeouts,
// serialization failures and deadlocks to retryable codes, and connection
// failures to EUNAVAILABLE. Anything else is EINTERNAL. A shop error passes
// through unchanged; so do context cancellations, which mean the client left.
func wrapErr(err error) *shop.Error {
	var se *shop.Error
	if errors.As(err, &se) {
		return se
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return &shop.Error{Code: shop.ECONFLICT, Message: "A record with the same unique value already exists.", Err: err}
		case "23503":
			return &shop.Error{Code: shop.EUNPROCESSABLE, Message: "The request refers to a record that does not exist.", Err: err}
		case "23514", "23502", "22003", "22001", "22P02":
			return &shop.Error{Code: shop.EINVALID, Message: "A value is out of its allowed range.", Err: err}
		case "40001", "40P01":
			return &shop.Error{Code: shop.ECONFLICT, Message: "The request conflicted with a concurrent one; retry it.", RetryAfter: retryAfter, Err: err}
		case "55P03":
			return &shop.Error{Code: shop.EUNAVAILABLE, Message: "The data is busy; retry shortly.", RetryAfter: retryAfter, Err: err}
		case "57014":
			return &shop.Error{Code: shop.EUNAVAILABLE, Message: "The request took too long; retry shortly.", RetryAfter: retryAfter, Err: err}
		case "53300", "57P01", "57P02", "57P03":
			return unavailable(err)
		}
		if len(pgErr.Code) == 5 && pgErr.Code[:2] == "08" {
			return unavailable(err)
		}
		return shop.Internal(err)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err) && !errors.Is(err, context.Canceled):
		return unavailable(err)
	case err.Error() == "closed pool":
		return unavailable(err)
	}
	return shop.Internal(err)
}

func unavailable(err error) *shop.Error {
	return &shop.Error{Code: shop.EUNAVAILABLE, Message: "The database is unavailable; retry shortly.", RetryAfter: 5 * time.Second, Err: err}
}

// inTx runs fn in a transaction that it commits when fn returns nil and
// rolls back otherwise. setup statements (SET LOCAL ...) run first.
func inTx(ctx context.Context, pool *pgxpool.Pool, setup []string, fn func(pgx.Tx) error) error {
	return inTxWith(ctx, pool, pgx.TxOptions{}, setup, fn)
}

// inTxWith is inTx with transaction options (e.g. read only).
func inTxWith(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, setup []string, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit this is a no-op
	for _, s := range setup {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// setLocal returns the SET LOCAL statements for t.
func (t Timeouts) setLocal() []string {
	var s []string
	if t.Lock > 0 {
		s = append(s, fmt.Sprintf("-- name: tx.set_lock_timeout\nSET LOCAL lock_timeout = %d", t.Lock.Milliseconds()))
	}
	if t.Statement > 0 {
		s = append(s, fmt.Sprintf("-- name: tx.set_statement_timeout\nSET LOCAL statement_timeout = %d", t.Statement.Milliseconds()))
	}
	return s
}
