package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"

	"github.com/shoplab/shoplab/migrations"
)

// Migrator applies and reverts the embedded goose migrations one at a
// time. A migration that fails because it could not get a lock within its
// lock_timeout (SQLSTATE 55P03, lock_not_available) rolled back whole, so it
// is retried after a pause that doubles each time, Retries times at most;
// each retry is printed to Out.
type Migrator struct {
	// Pool gives the connection settings. Migrations run on a connection
	// of their own, opened and closed by each call, so that what a
	// migration SETs never reaches the pool's connections.
	Pool *pgxpool.Pool
	// Out receives one line per migration applied or reverted and per retry.
	Out io.Writer
	// Retries bounds the retries of one migration (default 5; negative: none).
	Retries int
	// Backoff is the first pause before a retry (default 1s); it doubles.
	Backoff time.Duration
	// FS and Table, when both set, are other migrations and the table
	// that records them, kept apart from the schema's own (a one-off
	// change, e.g. chaos's migration-lock-safe); by default the embedded
	// migrations and goose's table.
	FS    fs.FS
	Table string
}

// Migrate runs a goose command with the embedded migrations and the default
// retries, printing what it did to out: "up", "down" (one), "status", or
// "up-to" / "down-to" followed by a version ("up-to 12").
func Migrate(ctx context.Context, pool *pgxpool.Pool, command string, out io.Writer) error {
	m := Migrator{Pool: pool, Out: out}
	var v int64
	switch {
	case command == "up":
		return m.Up(ctx)
	case command == "down":
		return m.Down(ctx)
	case command == "status":
		return m.Status(ctx)
	case scanVersion(command, "up-to %d", &v):
		return m.UpTo(ctx, v)
	case scanVersion(command, "down-to %d", &v):
		return m.DownTo(ctx, v)
	}
	return fmt.Errorf("unknown migrate command %q (want up, up-to VERSION, down, down-to VERSION or status)", command)
}

func scanVersion(s, format string, v *int64) bool {
	n, err := fmt.Sscanf(s, format, v)
	return err == nil && n == 1 && *v >= 0
}

// Up applies every pending migration.
func (m Migrator) Up(ctx context.Context) error { return m.UpTo(ctx, math.MaxInt64) }

// UpTo applies the pending migrations up to and including version.
func (m Migrator) UpTo(ctx context.Context, version int64) error {
	return m.run(ctx, func(p *goose.Provider) error {
		applied := 0
		for {
			next, err := nextPending(ctx, p)
			if err != nil {
				return err
			}
			if next == nil || next.Version > version {
				break
			}
			var res *goose.MigrationResult
			err = m.retry(ctx, next.Path, func() error {
				var err error
				res, err = p.UpByOne(ctx)
				return err
			})
			if err != nil {
				return fmt.Errorf("migrate up %s: %w", next.Path, err)
			}
			fmt.Fprintf(m.Out, "migrated up %s (%s)\n", res.Source.Path, res.Duration.Round(time.Millisecond))
			applied++
		}
		if applied == 0 {
			fmt.Fprintln(m.Out, "schema is up to date")
		}
		return nil
	})
}

// Down reverts the last applied migration.
func (m Migrator) Down(ctx context.Context) error {
	return m.run(ctx, func(p *goose.Provider) error {
		cur, err := p.GetDBVersion(ctx)
		if err != nil {
			return err
		}
		if cur == 0 {
			return fmt.Errorf("migrate down: no migration is applied")
		}
		return m.downOne(ctx, p, cur)
	})
}

// DownTo reverts applied migrations newer than version, newest first.
func (m Migrator) DownTo(ctx context.Context, version int64) error {
	return m.run(ctx, func(p *goose.Provider) error {
		for {
			cur, err := p.GetDBVersion(ctx)
			if err != nil {
				return err
			}
			if cur <= version {
				return nil
			}
			if err := m.downOne(ctx, p, cur); err != nil {
				return err
			}
		}
	})
}

func (m Migrator) downOne(ctx context.Context, p *goose.Provider, cur int64) error {
	var res *goose.MigrationResult
	err := m.retry(ctx, fmt.Sprintf("version %d", cur), func() error {
		var err error
		res, err = p.Down(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate down from version %d: %w", cur, err)
	}
	fmt.Fprintf(m.Out, "migrated down %s (%s)\n", res.Source.Path, res.Duration.Round(time.Millisecond))
	return nil
}

// Status prints every migration and when it was applied.
func (m Migrator) Status(ctx context.Context) error {
	return m.run(ctx, func(p *goose.Provider) error {
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		for _, s := range st {
			at := "pending"
			if s.State == goose.StateApplied {
				at = "applied " + s.AppliedAt.Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(m.Out, "%-40s %s\n", s.Source.Path, at)
		}
		return nil
	})
}

// Version returns the newest applied migration's version (0: none).
func (m Migrator) Version(ctx context.Context) (int64, error) {
	var v int64
	err := m.run(ctx, func(p *goose.Provider) error {
		var err error
		v, err = p.GetDBVersion(ctx)
		return err
	})
	return v, err
}

// run opens a connection of the migrations' own, builds the provider and
// calls fn.
func (m Migrator) run(ctx context.Context, fn func(*goose.Provider) error) error {
	if m.Out == nil {
		m.Out = io.Discard
	}
	db := stdlib.OpenDB(*m.Pool.Config().ConnConfig.Copy())
	defer db.Close()
	db.SetMaxOpenConns(2) // one for goose's session, one spare
	var p *goose.Provider
	var err error
	if m.FS != nil && m.Table != "" {
		var store database.Store
		if store, err = database.NewStore(database.DialectPostgres, m.Table); err == nil {
			p, err = goose.NewProvider(goose.DialectCustom, db, m.FS, goose.WithStore(store))
		}
	} else {
		p, err = goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	}
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return fn(p)
}

// nextPending returns the oldest pending migration, or nil.
func nextPending(ctx context.Context, p *goose.Provider) (*goose.Source, error) {
	st, err := p.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range st {
		if s.State == goose.StatePending {
			return s.Source, nil
		}
	}
	return nil, nil
}

// retry calls fn until it succeeds, fails with anything but a lock
// timeout, or has been retried m.Retries times.
func (m Migrator) retry(ctx context.Context, what string, fn func() error) error {
	retries, pause := m.Retries, m.Backoff
	if retries == 0 {
		retries = 5
	}
	if pause <= 0 {
		pause = time.Second
	}
	return retryBackoff(ctx, retries, pause, isLockTimeout, func(attempt int, _ error, pause time.Duration) {
		fmt.Fprintf(m.Out, "migrate: %s could not get its lock within lock_timeout (55P03); retry %d/%d in %s\n", what, attempt, retries, pause)
	}, fn)
}

// retryBackoff calls fn until it succeeds, fails with an error that
// retryable refuses, or has been retried retries times, doubling the pause
// after each retry; onRetry is told of each one before its pause. An end of
// ctx during a pause ends it with fn's last error joined to ctx's.
func retryBackoff(ctx context.Context, retries int, pause time.Duration, retryable func(error) bool,
	onRetry func(attempt int, err error, pause time.Duration), fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt > retries || !retryable(err) {
			return err
		}
		onRetry(attempt, err, pause)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(pause):
		}
		pause *= 2
	}
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available.
func isLockTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// The migrations of the users split (docs/schema-split.md), in order.
const (
	UsersSplitTables      int64 = 11 // expand 1: customers, merchants
	UsersSplitSync        int64 = 12 // expand 2: orders.customer_id, sync triggers, users_split_check()
	UsersSplitIndex       int64 = 13 // expand 3: index on orders.customer_id, CONCURRENTLY
	UsersSplitConstraints int64 = 14 // expand 4: foreign key and CHECK, NOT VALID
	UsersSplitValidate    int64 = 15 // expand 5a: VALIDATE both
	UsersSplitNotNull     int64 = 16 // expand 5b: SET NOT NULL
	UsersSplitContract    int64 = 17 // contract: irreversible
)
