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
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/shop"
)

// DB is shoplab's database: a pgx pool and the stores built on it.
type DB struct {
	Pool *pgxpool.Pool
	// CheckoutTimeouts bound how long a checkout waits for a connection and
	// for locks, and how long its statements run.
	CheckoutTimeouts Timeouts
	// IdempotencyTTL is how long a checkout's idempotency key is honoured.
	IdempotencyTTL time.Duration
	// SearchTimeouts bound a product search (statement_timeout).
	SearchTimeouts Timeouts
	// AcquireTimeout bounds how long every other request-serving store call
	// (products, orders, users, imports) waits for a pool connection: past
	// it, EUNAVAILABLE with RetryAfter, so that an exhausted pool answers
	// 503 instead of hanging. Zero waits as long as ctx allows.
	AcquireTimeout time.Duration
	// ImportPool, when set, is the imports' own small pool: an import holds
	// a connection for as long as its upload lasts, so imports must not
	// take the connections of the other routes. Nil imports on Pool.
	ImportPool *pgxpool.Pool
	// Switches turn on the original's defects (docs/switches.md); nil
	// keeps them all off.
	Switches shop.Switches
	// users knows which users schema the database has (usersschema.go).
	users usersSchema
}

// Timeouts are per-transaction limits; zero means none (the server's
// default for Lock and Statement, an unbounded wait for Acquire).
type Timeouts struct {
	Acquire   time.Duration // wait for a pool connection
	Lock      time.Duration // Postgres lock_timeout
	Statement time.Duration // Postgres statement_timeout
}

// Defaults of New.
const (
	DefaultCheckoutAcquireTimeout   = time.Second
	DefaultCheckoutLockTimeout      = 2 * time.Second
	DefaultCheckoutStatementTimeout = 5 * time.Second
	DefaultIdempotencyTTL           = 24 * time.Hour
	DefaultSearchStatementTimeout   = 2 * time.Second
	DefaultAcquireTimeout           = time.Second
)

// New returns a DB on pool with the default timeouts and key expiry.
func New(pool *pgxpool.Pool) *DB {
	return &DB{
		Pool: pool,
		CheckoutTimeouts: Timeouts{
			Acquire:   DefaultCheckoutAcquireTimeout,
			Lock:      DefaultCheckoutLockTimeout,
			Statement: DefaultCheckoutStatementTimeout,
		},
		IdempotencyTTL: DefaultIdempotencyTTL,
		SearchTimeouts: Timeouts{Statement: DefaultSearchStatementTimeout},
		AcquireTimeout: DefaultAcquireTimeout,
	}
}

// conn takes a main-pool connection for one store call, waiting at most
// db.AcquireTimeout; the caller releases it. Errors: EUNAVAILABLE (no
// connection free in time), or ctx's error.
func (db *DB) conn(ctx context.Context) (*pgxpool.Conn, error) {
	return acquire(ctx, db.Pool, db.AcquireTimeout)
}

// importPool is the pool imports run on.
func (db *DB) importPool() *pgxpool.Pool {
	if db.ImportPool != nil {
		return db.ImportPool
	}
	return db.Pool
}

// querier is what a store's statements run on: an acquired connection,
// a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// on reports whether the chaos switch name is on for this request.
func (db *DB) on(ctx context.Context, name string) bool {
	return shop.SwitchOn(ctx, db.Switches, name)
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
		case "22021", "54000":
			// invalid byte sequence (NUL, bad UTF-8); program limit exceeded
			// (e.g. an over-long pattern). The request's text, not a bug.
			return &shop.Error{Code: shop.EINVALID, Message: "A value is not text the database can use.", Err: err}
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
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, pgconn.ErrConnClosed):
		// The connection went away mid-statement (reset, server gone):
		// the database is unreachable, not a bug. A write whose commit was
		// sent is in doubt; the client retries with its idempotency key.
		return unavailable(err)
	}
	return shop.Internal(err)
}

func unavailable(err error) *shop.Error {
	return &shop.Error{Code: shop.EUNAVAILABLE, Message: "The database is unavailable; retry shortly.", RetryAfter: 5 * time.Second, Err: err}
}

// beginner is what a transaction starts on: a *pgxpool.Pool or a
// *pgxpool.Conn already acquired.
type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// inTx runs fn in a transaction on db (a pool or an acquired connection)
// that it commits when fn returns nil and rolls back otherwise. setup
// statements (SET LOCAL ...) are sent with the BEGIN, in the same round trip.
func inTx(ctx context.Context, db beginner, setup []string, fn func(pgx.Tx) error) error {
	return inTxWith(ctx, db, pgx.TxOptions{}, setup, fn)
}

// inTxWith is inTx with transaction options (isolation level, read only).
func inTxWith(ctx context.Context, db beginner, opts pgx.TxOptions, setup []string, fn func(pgx.Tx) error) error {
	if len(setup) > 0 {
		begin := beginSQL
		if opts.IsoLevel != "" {
			begin += " ISOLATION LEVEL " + string(opts.IsoLevel)
		}
		if opts.AccessMode != "" {
			begin += " " + string(opts.AccessMode)
		}
		opts.BeginQuery = begin + ";\n" + strings.Join(setup, ";\n")
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit this is a no-op
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// setLocal returns the SET LOCAL statements for t's Postgres timeouts.
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

// batchTx is a transaction sent as pgx batches on one connection: BEGIN
// and the SET LOCAL timeouts ride in front of the first batch, COMMIT (or
// ROLLBACK) at the end of the last, and rollback ends whatever is still
// open. Compared with inTx, whose pgx.Tx spends a round trip on BEGIN and
// another on COMMIT, it saves two round trips, and row locks taken in the
// first batch are held for one round trip instead of two: what limits the
// throughput of a hot product (measured with make bench-checkout; see
// docs/incidents.md, row 4). Use inTx unless a hot path needs this.
type batchTx struct {
	conn  *pgx.Conn
	setup []string
	open  bool
}

const (
	beginSQL    = "-- name: tx.begin\nBEGIN"
	commitSQL   = "-- name: tx.commit\nCOMMIT"
	rollbackSQL = "-- name: tx.rollback\nROLLBACK"
)

func newBatchTx(conn *pgx.Conn, t Timeouts) *batchTx {
	return &batchTx{conn: conn, setup: t.setLocal()}
}

// send sends the statements queued by queue as one batch, preceded by BEGIN
// and the timeouts when the transaction is not open yet and followed by
// end (commitSQL, rollbackSQL or "" to keep it open), and calls read with
// the results of queue's statements. It returns the first error.
func (t *batchTx) send(ctx context.Context, end string, queue func(*pgx.Batch), read func(pgx.BatchResults) error) error {
	b := &pgx.Batch{}
	prefix := 0
	if !t.open {
		b.Queue(beginSQL)
		for _, s := range t.setup {
			b.Queue(s)
		}
		prefix = b.Len()
	}
	queue(b)
	if end != "" {
		b.Queue(end)
	}
	br := t.conn.SendBatch(ctx, b)
	var err error
	for range prefix {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if err == nil {
		err = read(br)
	}
	if err == nil && end != "" {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	// 'I': idle, no transaction; 'T' in one; 'E' in a failed one.
	t.open = t.conn.PgConn().TxStatus() != 'I'
	return err
}

// rollback ends the transaction if it is still open, even when ctx is
// canceled. When that fails, the pool discards the connection on release.
func (t *batchTx) rollback(ctx context.Context) {
	if !t.open || t.conn.IsClosed() {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := t.conn.Exec(rctx, rollbackSQL); err == nil {
		t.open = false
	}
}

// acquire takes a connection from pool, waiting at most timeout (when
// positive). When the wait times out it returns EUNAVAILABLE with
// RetryAfter: every connection is busy. A canceled ctx is returned as is.
func acquire(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration) (*pgxpool.Conn, error) {
	actx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	conn, err := pool.Acquire(actx)
	if err == nil {
		return conn, nil
	}
	if ctx.Err() == nil && actx.Err() != nil {
		return nil, &shop.Error{Code: shop.EUNAVAILABLE, RetryAfter: retryAfter,
			Message: "The service is busy: no database connection was free in time; retry shortly.",
			Err:     fmt.Errorf("pool acquire timed out after %s: %w", timeout, err)}
	}
	return nil, err
}
