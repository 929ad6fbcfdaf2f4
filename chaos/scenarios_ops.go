package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/postgres"
)

// The operations scenarios: the mail server goes away, a rolling restart,
// a migration that locks orders.

// smtpOutage: the mail server (the run's SMTP sink) goes away during
// checkouts: orders are placed, their confirmations wait in the outbox,
// the relay retries with backoff; once the server is back every
// confirmation arrives, once.
//
// outbox-oldest-pending alerts when the oldest unsent confirmation is over
// 30 minutes old: the outage must outlast that (full scale 32 min;
// compressed, where ages run 60 times faster, 33 s: the one long
// compressed scenario). The relay's backoff is bounded for the scenario
// (RELAY_BACKOFF_BASE=200ms, RELAY_BACKOFF_MAX=2s, and enough attempts that
// none goes dead): with production's (10 s doubling to 1 h, 12 attempts)
// the first retry after a 30-minute outage comes up to an hour later, and
// the mails would arrive long after any recovery phase. That bound is a
// property of the scenario, not of the fault: the outage, the retries and
// the alert are real.
func smtpOutage() *Scenario {
	return &Scenario{
		Name:       "smtp-outage",
		Incident:   "8, missing confirmation emails (symptom missing-emails)",
		Summary:    "the mail server goes away during checkouts; afterwards every confirmation arrives once",
		Full:       Phases{Healthy: time.Minute, Fault: 32 * time.Minute, Recovery: 8 * time.Minute},
		Compressed: Phases{Healthy: 3 * time.Second, Fault: 33 * time.Second, Recovery: 9 * time.Second},
		Shopd:      []string{"RELAY_BACKOFF_BASE=200ms", "RELAY_BACKOFF_MAX=2s", "RELAY_MAX_ATTEMPTS=100000"},
		Load:       []Load{healthy(10), buyers("buyers", 5, nil)},
		Fault: Fault{
			Inject: func(_ context.Context, e *Env) error {
				e.Sink.Stop()
				e.Note("+%s SMTP sink %s stopped: connections refused", e.sinceStart(), e.Sink.Addr())
				return nil
			},
			Heal: func(_ context.Context, e *Env) error {
				if err := e.Sink.Start(); err != nil {
					return err
				}
				e.Note("+%s SMTP sink back on %s (%d mails accepted so far)", e.sinceStart(), e.Sink.Addr(), e.Sink.Count())
				return nil
			},
		},
	}
}

// rollingRestart: two shopd behind a load balancer; the first is taken out
// of the balancer's service and sent SIGTERM while the second takes the
// load. shopd's graceful shutdown closes its listener and finishes the
// requests in flight; its relay hands back its claimed confirmations.
func rollingRestart() *Scenario {
	return &Scenario{
		Name:       "rolling-restart",
		Incident:   "8, service down (symptom service-down): a deploy without downtime",
		Summary:    "SIGTERM to one shopd under load while a second instance takes over behind a load balancer",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 2 * time.Minute, Recovery: 2 * time.Minute},
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 5 * time.Second, Recovery: 5 * time.Second},
		Balanced:   true,
		Load:       []Load{healthy(15), buyers("buyers", 10, nil)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error {
				old := e.Shopds()[0]
				next, err := e.StartShopd(ctx)
				if err != nil {
					return err
				}
				e.Note("+%s second shopd (pid %d) ready and in the balancer", e.sinceStart(), next.PID)
				// As a deploy does: the target leaves the balancer, then
				// gets SIGTERM; what it is serving then must finish.
				e.Drain(old)
				inFlight := e.InFlight(old)
				e.Note("+%s first shopd (pid %d) out of the balancer, SIGTERM with %d requests in flight", e.sinceStart(), old.PID, inFlight)
				start := time.Now()
				old.Stop() // waits for its exit: the in-flight requests finish first
				e.Note("+%s first shopd exited %s after its SIGTERM", e.sinceStart(), time.Since(start).Round(time.Millisecond))
				return nil
			},
		},
	}
}

// migrationLock: a migration in the style of the original draft of the
// users split: in one transaction, ADD COLUMN on orders and a full-table
// UPDATE, holding ACCESS EXCLUSIVE on orders (no lock_timeout) for the
// fault phase. Checkouts (which insert into orders) wait past their 2 s
// lock_timeout and get 503; order history waits on its statement timeout.
// The draft then fails late and rolls back.
func migrationLock() *Scenario {
	h := &holder{}
	return &Scenario{
		Name:       "migration-lock",
		Incident:   "7, dangerous user-table split migration (the draft's ACCESS EXCLUSIVE on orders)",
		Summary:    "a draft-style migration holds ACCESS EXCLUSIVE on orders under load (ADD COLUMN + full-table UPDATE in one transaction)",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 3 * time.Minute, Recovery: 6 * time.Minute},
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 7 * time.Second, Recovery: 9 * time.Second},
		Load:       []Load{healthy(15), buyers("buyers", 6, nil)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error {
				return h.hold(ctx, e, e.Phases.Fault, draftMigration)
			},
			Heal: func(context.Context, *Env) error { return h.release() },
		},
	}
}

// draftMigration is the original draft's way: one transaction, no
// lock_timeout, a new column and a full-table UPDATE of orders.
const draftMigration = `ALTER TABLE orders ADD COLUMN draft_buyer_id uuid;
UPDATE orders SET draft_buyer_id = customer_id`

// migrationLockSafe: the same change as migration-lock, done the shoplab
// way under the same load: a goose migration run by postgres.Migrator (what
// `shopd migrate` runs; kept in a version table of its own, so the
// schema's migrations are untouched) that takes its lock under
// lock_timeout and only adds the nullable column (a catalog change, at
// once), retried on 55P03 with a doubling pause, then a backfill in small
// batches of short transactions. No monitor fires.
func migrationLockSafe() *Scenario {
	var mu sync.Mutex
	var done chan struct{}
	return &Scenario{
		Name:       "migration-lock-safe",
		Incident:   "7, dangerous user-table split migration (the shoplab way: lock_timeout, retries, batches)",
		Summary:    "the same ADD COLUMN + backfill of orders as migration-lock, the shoplab way (Migrator with lock_timeout and retries, batched backfill), under the same load",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 3 * time.Minute, Recovery: 6 * time.Minute},
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 7 * time.Second, Recovery: 5 * time.Second},
		Load:       []Load{healthy(15), buyers("buyers", 6, nil)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error {
				mu.Lock()
				done = make(chan struct{})
				ch := done
				mu.Unlock()
				go func() {
					defer close(ch)
					if err := safeMigration(ctx, e); err != nil && ctx.Err() == nil {
						e.Note("+%s safe migration failed: %v", e.sinceStart(), err)
					}
				}()
				return nil
			},
			Heal: func(ctx context.Context, e *Env) error {
				mu.Lock()
				ch := done
				mu.Unlock()
				if ch != nil {
					<-ch
				}
				return nil
			},
		},
	}
}

// safeMigrationSQL is the change as a goose migration in shoplab's style
// (migrations/00011-00017): the lock taken under lock_timeout, nothing in
// the transaction that scans or rewrites the table.
const safeMigrationSQL = `-- +goose Up
SET LOCAL lock_timeout = '2s';
ALTER TABLE orders ADD COLUMN draft_buyer_id uuid;

-- +goose Down
SET LOCAL lock_timeout = '2s';
ALTER TABLE orders DROP COLUMN draft_buyer_id;
`

// safeBackfill fills the new column a batch at a time, each batch its own
// short transaction (row locks on a few orders, never the table).
const safeBackfill = `UPDATE orders SET draft_buyer_id = customer_id
WHERE id IN (SELECT id FROM orders WHERE draft_buyer_id IS NULL LIMIT 200)`

func safeMigration(ctx context.Context, e *Env) error {
	pool, err := pgxpool.New(ctx, e.DB.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	out := &noteWriter{e: e}
	m := postgres.Migrator{Pool: pool, Out: out, Backoff: 250 * time.Millisecond,
		FS: fstest.MapFS{"00001_orders_draft_buyer_id.sql": {Data: []byte(safeMigrationSQL)}}, Table: "chaos_goose_db_version"}
	start := time.Now()
	if err := m.Up(ctx); err != nil {
		return err
	}
	e.Note("+%s migration applied in %s", e.sinceStart(), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	var rows, batches int64
	for {
		tag, err := pool.Exec(ctx, safeBackfill)
		if err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
		if tag.RowsAffected() == 0 {
			break
		}
		rows += tag.RowsAffected()
		batches++
		time.Sleep(5 * time.Millisecond) // leave room to the load
	}
	e.Note("+%s backfill: %d orders in %d batches, %s", e.sinceStart(), rows, batches, time.Since(start).Round(time.Millisecond))
	return nil
}

// noteWriter turns the Migrator's lines into notes.
type noteWriter struct{ e *Env }

func (w *noteWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		w.e.Note("+%s migrate: %s", w.e.sinceStart(), line)
	}
	return len(p), nil
}

// sinceStart is how long ago the load started, for notes.
func (e *Env) sinceStart() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.start.IsZero() {
		return "0s"
	}
	return fmt.Sprint(time.Since(e.start).Round(100 * time.Millisecond))
}
