package telemetry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestParseQueryName(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]QueryInfo{
		"-- name: orders.by_user\nSELECT 1":                  {Name: "orders.by_user"},
		"\n\t-- name: checkout.reserve_stock lock\nUPDATE x": {Name: "checkout.reserve_stock", Lock: true},
		"--name:a.b\nSELECT":                                 {Name: "a.b"},
		"-- name: reports.daily_sales lock other\n":          {Name: "reports.daily_sales", Lock: true},
		"-- name: Orders.ByUser\nSELECT":                     {Name: UnnamedQuery},
		"-- name: orders by user\nSELECT":                    {Name: "orders"},
		"-- name: 'x'; DROP\n":                               {Name: UnnamedQuery},
		"-- name:\nSELECT":                                   {Name: UnnamedQuery},
		"-- just a comment\nSELECT 1":                        {Name: UnnamedQuery},
		"SELECT * FROM users WHERE email = 'a@b.c'":          {Name: UnnamedQuery},
		"SELECT 1\n-- name: late.name":                       {Name: UnnamedQuery},
		"begin":                                              {Name: "tx.begin"},
		"begin isolation level serializable read only":       {Name: "tx.begin"},
		"commit":                     {Name: "tx.commit"},
		"rollback":                   {Name: "tx.rollback"},
		"savepoint sp_1":             {Name: "tx.savepoint"},
		"release savepoint sp_1":     {Name: "tx.release_savepoint"},
		"rollback to savepoint sp_1": {Name: "tx.rollback_to_savepoint"},
		"":                           {Name: UnnamedQuery},
		"-- name: a..b\n":            {Name: UnnamedQuery},
		"-- name: x.y\r\nSELECT":     {Name: "x.y"},
		"-- name: copy.products\nCOPY products FROM STDIN":          {Name: "copy.products"},
		"-- name: schema_2.v1_items\nSELECT":                        {Name: "schema_2.v1_items"},
		"/* name: not.supported */ SELECT":                          {Name: UnnamedQuery},
		"-- name: orders.by_user lock\n-- name: other.name\nSELECT": {Name: "orders.by_user", Lock: true},
	} {
		if got := ParseQueryName(sql); got != want {
			t.Errorf("ParseQueryName(%q) = %+v, want %+v", sql, got, want)
		}
	}
}

func TestCopyName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   pgx.Identifier
		want string
	}{
		{pgx.Identifier{"products"}, "copy.products"},
		{pgx.Identifier{"Public", "Order Items"}, "copy.public.order_items"},
		{pgx.Identifier{""}, "copy._"},
	} {
		if got := CopyName(c.in); got != c.want {
			t.Errorf("CopyName(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestQueryOutcome(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	bg := t.Context()
	pg := func(code string) error { return fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code}) }
	for _, c := range []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{bg, nil, OutcomeOK},
		{bg, pgx.ErrNoRows, OutcomeOK},
		{bg, pg("57014"), OutcomeTimeout},
		{canceled, pg("57014"), OutcomeCanceled},
		{bg, pg("40001"), OutcomeSerializationFailure},
		{bg, pg("40P01"), OutcomeDeadlock},
		{bg, pg("55P03"), OutcomeLockNotAvailable},
		{bg, pg("23505"), OutcomeError},
		{bg, context.DeadlineExceeded, OutcomeTimeout},
		{bg, fmt.Errorf("x: %w", context.Canceled), OutcomeCanceled},
		{canceled, errors.New("conn closed"), OutcomeCanceled},
		{bg, errors.New("conn closed"), OutcomeError},
	} {
		if got := QueryOutcome(c.ctx, c.err); got != c.want {
			t.Errorf("QueryOutcome(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

func TestLockWaitBaseline(t *testing.T) {
	t.Parallel()
	b := newBaselines()
	t0 := time.Now()
	ms := time.Millisecond
	step := func(at time.Duration, dur time.Duration, ok bool, wantWait time.Duration) {
		t.Helper()
		if wait, _ := b.lockWait("q", dur, ok, t0.Add(at)); wait != wantWait {
			t.Errorf("at %v dur %v: wait %v, want %v", at, dur, wait, wantWait)
		}
	}
	step(0, 5*ms, true, 5*ms)                 // no baseline yet: upper bound
	step(time.Second, 2*ms, true, 0)          // faster than the baseline: no wait
	step(2*time.Second, 302*ms, true, 300*ms) // contended
	step(3*time.Second, 1*ms, false, 0)       // failures do not lower the baseline
	step(4*time.Second, 12*ms, true, 10*ms)   // baseline still 2ms
	step(61*time.Second, 7*ms, true, 5*ms)    // new window: previous window's 2ms
	step(122*time.Second, 17*ms, true, 10*ms) // next window: previous is now 7ms
	if wait, _ := b.lockWait("other", 3*ms, true, t0); wait != 3*ms {
		t.Errorf("baselines are per statement: got %v", wait)
	}
}

func TestSafeError(t *testing.T) {
	t.Parallel()
	err := safeError(OutcomeError, &pgconn.PgError{Code: "23505", Message: `duplicate key value (email)=(a@b.c)`, ConstraintName: "users_email_key"})
	if got, want := err.Error(), "postgres: error (SQLSTATE 23505) constraint users_email_key"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestTrimDDPrefix(t *testing.T) {
	t.Parallel()
	if got := trimDDPrefix("Datadog Tracer v2.6.0 WARN: lost 3 traces: x"); got != "lost 3 traces: x" {
		t.Errorf("got %q", got)
	}
	if got := trimDDPrefix("plain"); got != "plain" {
		t.Errorf("got %q", got)
	}
}
