package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/mocktracer"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

const itemsSchema = `
CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT generate_series(1, 10);`

const (
	qSelectOne = `-- name: test.select_one
SELECT $1::int + 1`
	qLockRow = `-- name: test.lock_row lock
SELECT n FROM items WHERE id = $1 FOR UPDATE`
	qBumpItem = `-- name: test.bump_item lock
UPDATE items SET n = n + 1 WHERE id = $1`
	qSleep = `-- name: test.sleep
SELECT pg_sleep($1::float8)`
)

func TestQueryTracer(t *testing.T) {
	t.Parallel()
	mt := telemetrytest.MockTracer(t)
	tel, capture, logs := telemetrytest.New(t)
	tel.Config.SlowQuery = 100 * time.Millisecond
	pool := newPool(t, tel, itemsSchema)

	t.Run("OK", func(t *testing.T) {
		parent, ctx := tracer.StartSpanFromContext(t.Context(), "test.parent")
		var n int
		if err := pool.QueryRow(ctx, qSelectOne, 41).Scan(&n); err != nil || n != 42 {
			t.Fatalf("query: %v %d", err, n)
		}
		parent.Finish()

		// Other parallel tests run test.select_one too: take this trace's.
		var spans []*mocktracer.Span
		for _, s := range spansNamed(mt, telemetry.SpanQuery, "test.select_one") {
			if s.TraceID() == parent.Context().TraceIDLower() {
				spans = append(spans, s)
			}
		}
		if len(spans) != 1 {
			t.Fatalf("want 1 pgx.query span with resource test.select_one in the trace, got %d", len(spans))
		}
		s := spans[0]
		if s.ParentID() != parent.Context().SpanID() {
			t.Errorf("span parent = %d, want the request span %d", s.ParentID(), parent.Context().SpanID())
		}
		for k, want := range map[string]any{
			"service.name":  "shoplab-postgres",
			"db.system":     "postgresql",
			"db.query.name": "test.select_one",
			"span.type":     "sql",
			"db.outcome":    "ok",
		} {
			if got := s.Tag(k); got != want {
				t.Errorf("span tag %s = %v, want %v", k, got, want)
			}
		}
		for k, v := range s.Tags() {
			if str := fmt.Sprint(v); strings.Contains(str, "SELECT") || str == "41" {
				t.Errorf("span tag %s = %q leaks SQL or arguments", k, str)
			}
		}
		m := capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:test.select_one", "outcome:ok")
		if m.Type != "d" || m.Value <= 0 {
			t.Errorf("duration sample = %v, want a positive distribution", m)
		}
		if !m.HasTags("env:test", "service:shoplab") {
			t.Errorf("missing global tags: %v", m.Tags)
		}
		capture.WaitFor(t, telemetry.MetricDBPoolAcquireDuration, "pool:main", "outcome:ok")
	})

	t.Run("Unnamed", func(t *testing.T) {
		if _, err := pool.Exec(t.Context(), "SELECT 'secret literal'"); err != nil {
			t.Fatal(err)
		}
		capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:unnamed", "outcome:ok")
		if len(spansNamed(mt, telemetry.SpanQuery, "unnamed")) == 0 {
			t.Error("no span with resource unnamed")
		}
		for _, m := range capture.Metrics() {
			if strings.Contains(strings.Join(m.Tags, ","), "secret") {
				t.Errorf("metric %v leaks a literal", m)
			}
		}
	})

	t.Run("ErrLockNotAvailable", func(t *testing.T) {
		ctx := t.Context()
		holder, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Rollback(ctx)
		if _, err := holder.Exec(ctx, qLockRow, 2); err != nil {
			t.Fatal(err)
		}
		waiter, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer waiter.Rollback(ctx)
		if _, err := waiter.Exec(ctx, "SET LOCAL lock_timeout = '50ms'"); err != nil {
			t.Fatal(err)
		}
		_, err = waiter.Exec(ctx, qBumpItem, 2)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
			t.Fatalf("want 55P03, got %v", err)
		}
		tags := []string{"query:test.bump_item", "outcome:lock_not_available"}
		capture.WaitFor(t, telemetry.MetricDBQueryErrors, tags...)
		capture.WaitFor(t, telemetry.MetricDBQueryDuration, tags...)
		capture.WaitFor(t, telemetry.MetricDBLockWait, tags...)
		var found bool
		for _, s := range spansNamed(mt, telemetry.SpanQuery, "test.bump_item") {
			if s.Tag("db.outcome") == "lock_not_available" {
				found = true
				if msg := fmt.Sprint(s.Tag("error.message")); !strings.Contains(msg, "55P03") || strings.Contains(msg, "items") {
					t.Errorf("error.message = %q, want the SQLSTATE and no server text", msg)
				}
			}
		}
		if !found {
			t.Error("no errored span for test.bump_item")
		}
	})

	t.Run("ErrStatementTimeout", func(t *testing.T) {
		ctx := t.Context()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '50ms'"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, qSleep, 2)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("want 57014, got %v", err)
		}
		capture.WaitFor(t, telemetry.MetricDBQueryErrors, "query:test.sleep", "outcome:timeout")
	})

	t.Run("ErrContextDeadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
		defer cancel()
		if _, err := pool.Exec(ctx, "-- name: test.sleep_deadline\nSELECT pg_sleep(2)"); err == nil {
			t.Fatal("want an error")
		}
		capture.WaitFor(t, telemetry.MetricDBQueryErrors, "query:test.sleep_deadline", "outcome:timeout")
	})

	t.Run("SlowQueryLog", func(t *testing.T) {
		parent, ctx := tracer.StartSpanFromContext(t.Context(), "test.parent")
		if _, err := pool.Exec(ctx, "-- name: test.slow\nSELECT pg_sleep(0.12)"); err != nil {
			t.Fatal(err)
		}
		parent.Finish()
		var found bool
		for _, e := range logs.FilterMessage("slow query").All() {
			f := e.ContextMap()
			if f["query"] != "test.slow" {
				continue
			}
			found = true
			if d, _ := f["duration_ms"].(float64); d < 120 {
				t.Errorf("duration_ms = %v, want >= 120", f["duration_ms"])
			}
			if f["dd.trace_id"] != telemetry.TraceID(parent.Context()) {
				t.Errorf("dd.trace_id = %v, want %s", f["dd.trace_id"], telemetry.TraceID(parent.Context()))
			}
			if e.Level.String() != "warn" {
				t.Errorf("level = %s, want warn", e.Level)
			}
			for k, v := range f {
				if strings.Contains(fmt.Sprint(v), "pg_sleep") {
					t.Errorf("field %s leaks SQL: %v", k, v)
				}
			}
		}
		if !found {
			t.Fatal("no slow query line for test.slow")
		}
		if n := len(logs.FilterMessage("slow query").FilterField(zap.String("query", "test.select_one")).All()); n != 0 {
			t.Errorf("fast query logged as slow %d times", n)
		}
	})

	t.Run("BatchAndCopy", func(t *testing.T) {
		ctx := t.Context()
		b := &pgx.Batch{}
		b.Queue(qSelectOne, 1)
		b.Queue("-- name: test.count_items\nSELECT count(*) FROM items")
		if err := pool.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		if len(spansNamed(mt, telemetry.SpanBatchQuery, "test.count_items")) != 1 {
			t.Error("no batch query span for test.count_items")
		}
		capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:test.count_items", "outcome:ok")

		rows := [][]any{{100, 1}, {101, 2}}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "n"}, pgx.CopyFromRows(rows)); err != nil {
			t.Fatal(err)
		}
		if len(spansNamed(mt, telemetry.SpanCopyFrom, "copy.items")) != 1 {
			t.Error("no copy span with resource copy.items")
		}
		capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:copy.items", "outcome:ok")
	})

	t.Run("Transactions", func(t *testing.T) {
		ctx := t.Context()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, qSelectOne, 1)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:tx.begin")
		capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:tx.commit")
	})
}

// TestLockWait holds a row lock for 600ms while a " lock" statement
// waits for it: db.lock_wait records at least 300ms, and the sampler sees the
// waiting session although the two sessions exhaust the pool.
func TestLockWait(t *testing.T) {
	t.Parallel()
	tel, capture, _ := telemetrytest.New(t)
	pool := newPoolWith(t, tel, itemsSchema, func(c *pgxpool.Config) { c.MaxConns = 2 })
	ctx := t.Context()

	// An uncontended run first, so that the tracer has a baseline.
	if _, err := pool.Exec(ctx, qBumpItem, 1); err != nil {
		t.Fatal(err)
	}

	sctx, stop := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		telemetry.SampleLockWaits(sctx, tel, pool, 25*time.Millisecond)
	}()
	defer func() { stop(); <-sampled }()
	// Before any wait the sampler reports none.
	capture.WaitForMatch(t, telemetry.MetricDBLocksWaiting, func(m telemetrytest.Metric) bool { return m.Value == 0 })

	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, qLockRow, 1); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := pool.Exec(ctx, qBumpItem, 1)
		done <- err
	}()

	capture.WaitForMatch(t, telemetry.MetricDBLocksWaiting, func(m telemetrytest.Metric) bool { return m.Value >= 1 })
	waitingSince := time.Now()
	if st := pool.Stat(); st.AcquiredConns() != 2 {
		t.Errorf("acquired %d connections, want the whole pool (2)", st.AcquiredConns())
	}
	s := capture.WaitFor(t, telemetry.MetricDBLockWaitSampled, "query:test.bump_item")
	if ev, _ := s.Tag("wait_event"); ev != "transactionid" && ev != "tuple" {
		t.Errorf("wait_event = %q, want transactionid or tuple", ev)
	}

	// Hold the lock 600ms from when the wait was seen (it began a little
	// earlier); the estimate subtracts the uncontended baseline (~1ms idle,
	// tens of ms on a loaded machine), so 300ms leaves ample margin.
	time.Sleep(600*time.Millisecond - time.Since(waitingSince))
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m := capture.WaitForMatch(t, telemetry.MetricDBLockWait,
		func(m telemetrytest.Metric) bool { return m.Value >= 300 },
		"query:test.bump_item", "outcome:ok")
	t.Logf("db.lock_wait = %.1fms; sampled %v", m.Value, s)
	if m.Value > 2000 {
		t.Errorf("lock wait %vms, want about 600ms", m.Value)
	}
	capture.Reset()
	capture.WaitForMatch(t, telemetry.MetricDBLocksWaiting, func(m telemetrytest.Metric) bool { return m.Value == 0 })
}

func TestReportPoolStats(t *testing.T) {
	t.Parallel()
	tel, capture, _ := telemetrytest.New(t)
	pool := newPool(t, tel, "")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		telemetry.ReportPoolStats(ctx, tel, "main", pool, 20*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()

	for i := 0; i < 3; i++ {
		if _, err := pool.Exec(ctx, qSelectOne, i); err != nil {
			t.Fatal(err)
		}
	}
	capture.WaitForMatch(t, telemetry.MetricDBPoolMax, func(m telemetrytest.Metric) bool { return m.Value == 6 }, "pool:main")
	capture.WaitForMatch(t, telemetry.MetricDBPoolTotal, func(m telemetrytest.Metric) bool { return m.Value >= 1 }, "pool:main")
	for _, name := range []string{telemetry.MetricDBPoolAcquired, telemetry.MetricDBPoolIdle, telemetry.MetricDBPoolConstructing,
		telemetry.MetricDBPoolEmptyAcquires, telemetry.MetricDBPoolAcquireWait, telemetry.MetricDBPoolEmptyAcquireWait,
		telemetry.MetricDBPoolCanceledAcquires, telemetry.MetricDBPoolNewConns} {
		capture.WaitFor(t, name, "pool:main")
	}
	eventually(t, "3 acquires counted", func() bool { return capture.Sum(telemetry.MetricDBPoolAcquires, "pool:main") >= 3 })
}

// countingTracer counts the statements it sees.
type countingTracer struct{ n atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestMultiTracer(t *testing.T) {
	t.Parallel()
	tel, capture, _ := telemetrytest.New(t)
	counter := &countingTracer{}
	pool := newPool(t, tel, "", counter)
	if _, ok := pool.Config().ConnConfig.Tracer.(pgxpool.AcquireTracer); !ok {
		t.Error("MultiTracer does not implement pgxpool.AcquireTracer")
	}
	if _, ok := pool.Config().ConnConfig.Tracer.(pgx.CopyFromTracer); !ok {
		t.Error("MultiTracer does not implement pgx.CopyFromTracer")
	}
	if _, err := pool.Exec(t.Context(), qSelectOne, 1); err != nil {
		t.Fatal(err)
	}
	if counter.n.Load() != 1 {
		t.Errorf("counting tracer saw %d statements, want 1", counter.n.Load())
	}
	capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:test.select_one")
	capture.WaitFor(t, telemetry.MetricDBPoolAcquireDuration, "pool:main")
}

// TestQueryTracerNoTracer runs the QueryTracer while no tracer is started
// (DD_TRACE_ENABLED=false): no spans, metrics as usual.
func TestQueryTracerNoTracer(t *testing.T) {
	t.Parallel()
	telemetrytest.LockTracer(t) // the global tracer is the no-op one while we hold it
	tel, capture, _ := telemetrytest.New(t)
	pool := newPool(t, tel, itemsSchema)
	ctx := t.Context()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qBumpItem, 3); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(qSelectOne, 1)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id"}, pgx.CopyFromRows([][]any{{200}}))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	capture.WaitFor(t, telemetry.MetricDBLockWait, "query:test.bump_item")
	capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:test.select_one")
	capture.WaitFor(t, telemetry.MetricDBQueryDuration, "query:copy.items")
}
