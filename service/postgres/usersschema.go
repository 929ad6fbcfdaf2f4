package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The users split (docs/schema-split.md) changes, at its contract step,
// the names of who buys under the running service: before it, accounts are
// rows of users and orders.user_id names the buyer; after it, accounts are
// customers and merchants and orders.customer_id names the buyer. This file
// is the one place that knows both: statements write three tokens and
// usersSchema expands them for the schema the database has now.
//
//	{users}     every account as (id, email, name, user_type, created_at):
//	            users; after the split, merchants plus the customers that are
//	            not merchants (user_type 'merchant' or 'customer')
//	{customers} the table a new customer is inserted into, with (email,
//	            name[, id, created_at]): users (whose user_type defaults to
//	            customer); after the split, customers
//	{buyer_id}  the column of orders that names the buyer: user_id, then
//	            customer_id
//
// A merchant who buys becomes a customer: before the contract step the
// orders trigger of migration 00012 sees to it, after it the trigger of
// migration 00017, so checkout needs no branch.
//
// Which schema the database has is detected once (the first statement, or
// DetectUsersSchema at start) and again whenever a statement fails because
// a table or column it names does not exist (42P01, 42703): the public
// store method that ran it is then run once more, if the schema did change.
// Each store holds its own usersSchema and runs its public methods through
// its run: DB, and Reports, whose pool may be another (a read replica's).

// usersMode is the users schema a statement is written for.
type usersMode int32

const (
	usersUnknown    usersMode = iota
	usersLegacy               // users, orders.user_id: before the contract step
	usersContracted           // customers, merchants, orders.customer_id
)

// usersSplitAccounts is {users} after the contract step.
const usersSplitAccounts = `(SELECT m.id, m.email, m.name, 'merchant'::text AS user_type, m.created_at FROM merchants m
 UNION ALL
 SELECT c.id, c.email, c.name, 'customer'::text, c.created_at FROM customers c
 WHERE NOT EXISTS (SELECT 1 FROM merchants m WHERE m.id = c.id))`

var usersTokens = map[usersMode]*strings.Replacer{
	usersLegacy:     strings.NewReplacer("{users}", "users", "{customers}", "users", "{buyer_id}", "user_id"),
	usersContracted: strings.NewReplacer("{users}", usersSplitAccounts, "{customers}", "customers", "{buyer_id}", "customer_id"),
}

// detectUsersSQL tells the two schemas apart by the column orders names
// its buyer with.
const detectUsersSQL = `-- name: schema.detect_users
SELECT coalesce(bool_or(attname = 'user_id'), false), coalesce(bool_or(attname = 'customer_id'), false)
FROM pg_attribute
WHERE attrelid = to_regclass('orders') AND attname IN ('user_id', 'customer_id') AND NOT attisdropped`

// usersSchema holds the users schema the database has and the statements
// expanded for it. The zero value is ready: it detects on first use.
type usersSchema struct {
	mode     atomic.Int32
	expanded sync.Map // usersKey -> string
}

type usersKey struct {
	mode usersMode
	sql  string
}

// current returns the mode, detecting it when unknown.
func (s *usersSchema) current(ctx context.Context, pool *pgxpool.Pool) (usersMode, error) {
	if m := usersMode(s.mode.Load()); m != usersUnknown {
		return m, nil
	}
	return s.detect(ctx, pool)
}

// detect reads the schema from the database and remembers it.
func (s *usersSchema) detect(ctx context.Context, pool *pgxpool.Pool) (usersMode, error) {
	var userID, customerID bool
	if err := pool.QueryRow(ctx, detectUsersSQL).Scan(&userID, &customerID); err != nil {
		return usersUnknown, err
	}
	m := usersLegacy
	switch {
	case userID:
	case customerID:
		m = usersContracted
	default:
		// No orders table yet (an unmigrated database): statements will
		// fail anyway; detect again next time.
		return m, nil
	}
	s.mode.Store(int32(m))
	return m, nil
}

// sql expands the tokens of q for mode m.
func (s *usersSchema) sql(m usersMode, q string) string {
	if !strings.Contains(q, "{") {
		return q
	}
	k := usersKey{m, q}
	if v, ok := s.expanded.Load(k); ok {
		return v.(string)
	}
	r := usersTokens[m]
	if r == nil {
		r = usersTokens[usersLegacy]
	}
	v := r.Replace(q)
	s.expanded.Store(k, v)
	return v
}

// run calls fn with the current mode. When fn fails because a table or
// column is gone and the schema has indeed changed since, it calls fn
// once more with the new mode. fn must be safe to repeat: a whole
// transaction, or reads that have delivered nothing yet (a stream that
// has passed rows on returns its error through delivered, and is not
// repeated).
func (s *usersSchema) run(ctx context.Context, pool *pgxpool.Pool, fn func(m usersMode) error) error {
	m, err := s.current(ctx, pool)
	if err != nil {
		return err
	}
	err = fn(m)
	var d deliveredError
	if err == nil || !schemaGone(err) || errors.As(err, &d) {
		return err
	}
	now, derr := s.detect(ctx, pool)
	if derr != nil || now == m {
		return err
	}
	return fn(now)
}

// deliveredError is an error of a read that has already passed results on.
type deliveredError struct{ error }

func (e deliveredError) Unwrap() error { return e.error }

// delivered marks err, returned by run's fn, as one that struck after fn
// passed results on: run must not call fn again. The error still wraps
// err, so wrapErr maps it as usual.
func delivered(err error) error { return deliveredError{err} }

// schemaGone reports whether err says a table or column does not exist.
func schemaGone(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42703")
}

// q expands the tokens of sql for mode m (see usersSchema).
func (db *DB) q(m usersMode, sql string) string { return db.users.sql(m, sql) }

// DetectUsersSchema reads which users schema the database has, remembers
// it, and returns "users" (before the contract step of the users split) or
// "customers" (after it). Stores detect it by themselves; the service calls
// this at start to log it. Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) DetectUsersSchema(ctx context.Context) (string, error) {
	return db.users.detectName(ctx, db.Pool)
}

// detectName detects the schema on pool and names it as DetectUsersSchema
// does.
func (s *usersSchema) detectName(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	m, err := s.detect(ctx, pool)
	if err != nil {
		return "", wrapErr(err)
	}
	if m == usersContracted {
		return "customers", nil
	}
	return "users", nil
}
