package telemetry_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

const (
	qBatchFirst = `-- name: test.batch_first
SELECT 1`
	qLockItem = `-- name: test.lock_item lock
SELECT n FROM items WHERE id = $1 FOR UPDATE`
	qWaitItem = `-- name: test.wait_item
SELECT n FROM items WHERE id = $1 FOR UPDATE`
	qLockOther = `-- name: test.lock_other lock
SELECT n FROM items WHERE id = $1 FOR UPDATE`
)

// holdRow locks row id of items from another connection until the returned
// function is called (or the test ends).
func holdRow(t *testing.T, pool *pgxpool.Pool, id int) (release func()) {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM items WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	// t.Context() is done by the time cleanups run.
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Error(err)
		}
	}
}

// TestBatchLockWaitCharged: Postgres sends a pipelined batch's results only
// once it has run all of it, so the first result read waits for the whole
// batch. The tracer charges that wait to the batch's lock statement (or to a
// statement that failed before it), not to the first statement read.
func TestBatchLockWaitCharged(t *testing.T) {
	t.Parallel()
	tel, capture, logs := telemetrytest.New(t)
	tel.Config.SlowQuery = 100 * time.Millisecond
	pool := newPoolWith(t, tel, itemsSchema, func(c *pgxpool.Config) { c.MaxConns = 3 })
	ctx := t.Context()
	const hold = 300 * time.Millisecond

	// sendBatch runs queries (each with arg 1 if it takes one) as one batch
	// in a transaction with setup run first, and returns the batch's error.
	sendBatch := func(setup string, queries ...string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if setup != "" {
				if _, err := tx.Exec(ctx, setup); err != nil {
					return err
				}
			}
			b := &pgx.Batch{}
			for _, q := range queries {
				if q == qBatchFirst {
					b.Queue(q)
				} else {
					b.Queue(q, 1)
				}
			}
			return tx.SendBatch(ctx, b).Close()
		})
	}
	durations := func(name string) []float64 {
		var v []float64
		for _, m := range capture.Find(telemetry.MetricDBQueryDuration, "query:"+name) {
			v = append(v, m.Value)
		}
		return v
	}

	t.Run("LockStatementWaits", func(t *testing.T) {
		// Uncontended, for the baseline.
		if err := sendBatch("", qBatchFirst, qLockItem); err != nil {
			t.Fatal(err)
		}
		capture.WaitFor(t, telemetry.MetricDBLockWait, "query:test.lock_item")
		capture.Reset()
		logs.TakeAll()

		release := holdRow(t, pool, 1)
		released := make(chan struct{})
		go func() { time.Sleep(hold); release(); close(released) }()
		err := sendBatch("", qBatchFirst, qLockItem)
		<-released
		if err != nil {
			t.Fatal(err)
		}
		d := capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:test.lock_item", "outcome:ok")
		if d.Value < float64(hold.Milliseconds())*0.9 {
			t.Errorf("test.lock_item took %.1f ms, want about %v", d.Value, hold)
		}
		w := capture.WaitFor(t, telemetry.MetricDBLockWait, "query:test.lock_item", "outcome:ok")
		if w.Value < float64(hold.Milliseconds())*0.9 {
			t.Errorf("test.lock_item lock wait %.1f ms, want about %v", w.Value, hold)
		}
		for _, v := range durations("test.batch_first") {
			if v >= 50 {
				t.Errorf("test.batch_first took %.1f ms, want ~0: it did not wait", v)
			}
		}
		slow := logs.FilterMessage("slow query").All()
		if len(slow) != 1 || slow[0].ContextMap()["query"] != "test.lock_item" {
			t.Fatalf("slow query lines %v, want one for test.lock_item", slow)
		}
		if ms, _ := slow[0].ContextMap()["lock_wait_ms"].(float64); ms < float64(hold.Milliseconds())*0.9 {
			t.Errorf("slow query lock_wait_ms = %v, want about %v", slow[0].ContextMap()["lock_wait_ms"], hold)
		}
	})

	t.Run("EarlierStatementFails", func(t *testing.T) {
		capture.Reset()
		release := holdRow(t, pool, 1)
		defer release()
		// test.wait_item (not flagged) waits for the lock until lock_timeout;
		// Postgres runs nothing after it, so the wait is its own.
		err := sendBatch("SET LOCAL lock_timeout = 200", qBatchFirst, qWaitItem, qLockOther)
		if err == nil {
			t.Fatal("the batch did not time out")
		}
		d := capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:test.wait_item", "outcome:"+telemetry.OutcomeLockNotAvailable)
		if d.Value < 180 {
			t.Errorf("test.wait_item took %.1f ms, want about 200 (its lock_timeout)", d.Value)
		}
		for _, name := range []string{"test.batch_first", "test.lock_other"} {
			for _, v := range durations(name) {
				if v >= 50 {
					t.Errorf("%s took %.1f ms, want ~0", name, v)
				}
			}
		}
	})
}
