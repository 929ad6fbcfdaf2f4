package telemetry_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// TestSampleLockWaitsThisDatabaseOnly: a session with the service's
// application_name waiting for a lock on another database of the same server
// (another shopd's) is not counted; one on the pool's database is.
func TestSampleLockWaitsThisDatabaseOnly(t *testing.T) {
	t.Parallel()
	tel, capture, _ := telemetrytest.New(t)
	pool := newPool(t, tel, itemsSchema)
	other := scratchDB(t) // another database on the same server
	ctx := t.Context()

	// connect opens a connection to the database of cfg with the service's
	// application_name, without the tracer.
	connect := func(cfg *pgx.ConnConfig) *pgx.Conn {
		t.Helper()
		cfg = cfg.Copy()
		cfg.Tracer = nil
		cfg.RuntimeParams["application_name"] = tel.Config.AppName
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	// waitOn makes a session wait for a row lock held by another session on
	// the database of cfg (after running setup there), until the test ends;
	// the waiting statement is named name.
	waitOn := func(cfg *pgx.ConnConfig, setup, name string) {
		t.Helper()
		holder, waiter := connect(cfg), connect(cfg)
		if setup != "" {
			if _, err := holder.Exec(ctx, setup); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := holder.Exec(ctx, `BEGIN; SELECT 1 FROM items WHERE id = 1 FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = waiter.Exec(wctx, "-- name: "+name+"\nSELECT 1 FROM items WHERE id = 1 FOR UPDATE")
		}()
		t.Cleanup(func() { cancel(); <-done })
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			var waiting bool
			if err := holder.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
				WHERE pid = $1 AND wait_event_type = 'Lock')`, waiter.PgConn().PID()).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never waited for the lock", name)
			}
		}
	}

	waitOn(other.ConnConfig, itemsSchema, "test.other_database_wait")
	waitOn(pool.Config().ConnConfig, "", "test.this_database_wait")

	sctx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		telemetry.SampleLockWaits(sctx, tel, pool, 20*time.Millisecond)
	}()
	capture.WaitForMatch(t, telemetry.MetricDBLocksWaiting, func(m telemetrytest.Metric) bool { return m.Value >= 1 })
	time.Sleep(150 * time.Millisecond) // a few more samples
	stop()
	<-stopped
	capture.Flush()

	// Gauges are aggregated client-side: one value (the last) per flush.
	gauges := capture.Find(telemetry.MetricDBLocksWaiting)
	for _, m := range gauges {
		if m.Value != 1 {
			t.Errorf("%s = %v, want 1: the session waiting on the other database was counted", telemetry.MetricDBLocksWaiting, m.Value)
			break
		}
	}
	if s := capture.Find(telemetry.MetricDBLockWaitSampled, "query:test.other_database_wait"); len(s) > 0 {
		t.Errorf("sampled the wait of a session on another database: %v", s)
	}
	if s := capture.Find(telemetry.MetricDBLockWaitSampled, "query:test.this_database_wait"); len(s) == 0 {
		t.Error("no sample of the wait on the pool's database")
	}
}
