package telemetry

import (
	"context"
	"errors"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/ext"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// Span operation names of the QueryTracer.
const (
	SpanQuery      = "pgx.query"        // Query, QueryRow, Exec
	SpanBatch      = "pgx.batch"        // SendBatch; one SpanBatchQuery child per statement
	SpanBatchQuery = "pgx.batch.query"  // one statement of a batch
	SpanCopyFrom   = "pgx.copy_from"    // CopyFrom
	SpanAcquire    = "pgx.pool.acquire" // a pool acquire that had to wait (see QueryTracer)
)

// acquireSpanThreshold: acquires faster than this get no span (they are still
// in the db.pool.acquire.duration distribution).
const acquireSpanThreshold = time.Millisecond

// QueryTracer times, traces and counts every statement run through a pgx
// connection or pool. Set it as pgxpool.Config.ConnConfig.Tracer (or combine it
// with others through MultiTracer). It implements pgx.QueryTracer,
// pgx.BatchTracer, pgx.CopyFromTracer and pgxpool.AcquireTracer.
//
// Per statement it starts a span (operation SpanQuery, service
// "<service>-postgres", resource and tag db.query.name = the statement's name
// from ParseQueryName, db.system=postgresql, db.pid = the backend pid; never
// SQL text or arguments), records MetricDBQueryDuration (tags query, outcome),
// counts MetricDBQueryErrors for outcomes other than ok, logs a "slow query"
// warning above Config.SlowQuery, and, for statements flagged " lock",
// records MetricDBLockWait (see below).
//
// Durations are measured from the start of the call to its end as pgx reports
// it: for Query that is when the rows are closed, so it includes the time the
// caller spends iterating the rows. A statement of a batch is timed from
// when pgx started reading its result; Postgres sends a pipelined batch's
// results only once it has run the whole batch, so the wait for them (the
// round trip, lock waits included) is charged to the batch's lock-flagged
// statement (the last one, when several), or to a statement that failed
// before it, instead of to the first statement read; the other statements
// of such a batch record ~0 (see batchTiming).
//
// Lock wait estimate. Postgres does not report how long a statement waited for
// locks, so for a " lock" statement the tracer subtracts a baseline from its
// duration: the fastest successful run of the same statement in the current or
// previous minute, i.e. its uncontended cost. wait = max(0, duration -
// baseline). The first run of a statement has no baseline and records its
// whole duration (an upper bound). The estimate over-counts when the statement
// is slow for other reasons (CPU, I/O, more rows) and under-counts by the
// smallest wait when every run in two minutes waited. SampleLockWaits gives the
// server's view (pg_locks.waitstart) to check it against.
type QueryTracer struct {
	t         *Telemetry
	dbService string
	pool      string
	baselines *baselines
}

var (
	_ pgx.QueryTracer       = (*QueryTracer)(nil)
	_ pgx.BatchTracer       = (*QueryTracer)(nil)
	_ pgx.CopyFromTracer    = (*QueryTracer)(nil)
	_ pgxpool.AcquireTracer = (*QueryTracer)(nil)
)

// NewQueryTracer returns a QueryTracer reporting to t. Its acquire metrics are
// tagged pool:main; use WithPoolName for other pools.
func NewQueryTracer(t *Telemetry) *QueryTracer {
	return &QueryTracer{
		t:         t,
		dbService: t.Config.Service + "-postgres",
		pool:      "main",
		baselines: newBaselines(),
	}
}

// WithPoolName returns a copy of q whose pool acquire metrics and spans are
// tagged pool:name (use one tracer per pool: "main", "reports").
func (q *QueryTracer) WithPoolName(name string) *QueryTracer {
	c := *q
	c.pool = name
	return &c
}

type queryCtxKey struct{}
type batchCtxKey struct{}
type acquireCtxKey struct{}

type queryState struct {
	info  QueryInfo
	start time.Time
	span  *tracer.Span
	pid   uint32
	// batch is the attribution state of a pipelined batch (nil otherwise).
	batch *batchTiming
}

// batchTiming charges the wait for a pipelined batch's results to the
// statement that can wait. pgx sends a batch as one pipeline ended by a
// single Sync, and Postgres sends the results only when it has run every
// statement up to it: the first result read waits for the whole batch (the
// round trip plus the server's time for all its statements, lock waits
// included), and the results after it are already there. When the batch
// has statements flagged " lock", that first wait is held back from the
// first statement read and charged to the last lock-flagged one, or to an
// earlier statement that failed (Postgres ran nothing after it).
type batchTiming struct {
	lockName string        // the last lock-flagged statement; "" when none
	reads    int           // statements read so far
	held     time.Duration // the first read's wait, not charged yet
}

// charge returns the duration and start to record for a statement of the
// batch named name, read from start for dur, that failed or not.
func (b *batchTiming) charge(name string, start time.Time, dur time.Duration, failed bool) (time.Time, time.Duration) {
	first := b.reads == 0
	b.reads++
	switch {
	case b.lockName == "":
	case first && name != b.lockName && !failed:
		// Its own share cannot be told apart from the batch's: ~0.
		b.held = dur
		return start.Add(dur), 0
	case b.held > 0 && (name == b.lockName || failed):
		start, dur = start.Add(-b.held), dur+b.held
		b.held = 0
	}
	return start, dur
}

func connPID(conn *pgx.Conn) uint32 {
	if conn == nil || conn.PgConn() == nil {
		return 0
	}
	return conn.PgConn().PID()
}

func (q *QueryTracer) startSpan(ctx context.Context, op, resource string, pid uint32, start time.Time) (*tracer.Span, context.Context) {
	opts := []tracer.StartSpanOption{
		tracer.ServiceName(q.dbService),
		tracer.ResourceName(resource),
		tracer.SpanType(ext.SpanTypeSQL),
		tracer.Tag(ext.DBSystem, ext.DBSystemPostgreSQL),
		tracer.Tag(ext.SpanKind, ext.SpanKindClient),
		tracer.Tag(ext.Component, "shoplab/telemetry"),
		tracer.Tag("db.query.name", resource),
		tracer.StartTime(start),
	}
	if pid != 0 {
		opts = append(opts, tracer.Tag("db.pid", pid))
	}
	return tracer.StartSpanFromContext(ctx, op, opts...)
}

// TraceQueryStart implements pgx.QueryTracer.
func (q *QueryTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	st := &queryState{info: ParseQueryName(data.SQL), start: time.Now(), pid: connPID(conn)}
	st.span, ctx = q.startSpan(ctx, SpanQuery, st.info.Name, st.pid, st.start)
	if st.span != nil && st.info.Lock {
		st.span.SetTag("db.lock", true)
	}
	return context.WithValue(ctx, queryCtxKey{}, st)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (q *QueryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	st, ok := ctx.Value(queryCtxKey{}).(*queryState)
	if !ok {
		return
	}
	q.finish(ctx, st, time.Since(st.start), data.CommandTag, data.Err)
}

// TraceBatchStart implements pgx.BatchTracer.
func (q *QueryTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	st := &queryState{info: QueryInfo{Name: "batch"}, start: time.Now(), pid: connPID(conn), batch: &batchTiming{}}
	st.span, ctx = q.startSpan(ctx, SpanBatch, "batch", st.pid, st.start)
	if data.Batch != nil {
		for _, qq := range data.Batch.QueuedQueries {
			if info := ParseQueryName(qq.SQL); info.Lock {
				st.batch.lockName = info.Name
			}
		}
		if st.span != nil {
			st.span.SetTag("db.batch.size", data.Batch.Len())
		}
	}
	return context.WithValue(ctx, batchCtxKey{}, st)
}

// TraceBatchQuery implements pgx.BatchTracer: each statement of a batch gets
// its own span, metrics (MetricDBLockWait too when it is flagged " lock")
// and slow-query line, timed from when pgx started reading its result, with
// the wait for the batch's results charged as batchTiming says: to the
// batch's lock statement, when it has one, instead of to the first
// statement read (a tx.begin in front of it).
func (q *QueryTracer) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	now := time.Now()
	start := data.ReadStartTime
	if start.IsZero() {
		start = now
	}
	dur := now.Sub(start)
	info := ParseQueryName(data.SQL)
	if b, ok := ctx.Value(batchCtxKey{}).(*queryState); ok && b.batch != nil {
		start, dur = b.batch.charge(info.Name, start, dur, data.Err != nil)
	}
	st := &queryState{info: info, start: start, pid: connPID(conn)}
	st.span, ctx = q.startSpan(ctx, SpanBatchQuery, st.info.Name, st.pid, st.start)
	if st.span != nil && st.info.Lock {
		st.span.SetTag("db.lock", true)
	}
	q.finish(ctx, st, dur, data.CommandTag, data.Err)
}

// TraceBatchEnd implements pgx.BatchTracer: it finishes the batch span.
func (q *QueryTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	st, ok := ctx.Value(batchCtxKey{}).(*queryState)
	if !ok {
		return
	}
	finishSpan(st.span, QueryOutcome(ctx, data.Err), data.Err)
}

// TraceCopyFromStart implements pgx.CopyFromTracer. The statement name is
// CopyName(table), e.g. "copy.products".
func (q *QueryTracer) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	st := &queryState{info: QueryInfo{Name: CopyName(data.TableName)}, start: time.Now(), pid: connPID(conn)}
	st.span, ctx = q.startSpan(ctx, SpanCopyFrom, st.info.Name, st.pid, st.start)
	return context.WithValue(ctx, queryCtxKey{}, st)
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (q *QueryTracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceCopyFromEndData) {
	st, ok := ctx.Value(queryCtxKey{}).(*queryState)
	if !ok {
		return
	}
	q.finish(ctx, st, time.Since(st.start), data.CommandTag, data.Err)
}

type acquireState struct{ start time.Time }

// TraceAcquireStart implements pgxpool.AcquireTracer.
func (q *QueryTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return context.WithValue(ctx, acquireCtxKey{}, acquireState{start: time.Now()})
}

// TraceAcquireEnd implements pgxpool.AcquireTracer: it records
// MetricDBPoolAcquireDuration (tags pool, outcome) and, when the acquire took
// a millisecond or more and ctx carries a span, a SpanAcquire child span.
func (q *QueryTracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	st, ok := ctx.Value(acquireCtxKey{}).(acquireState)
	if !ok {
		return
	}
	dur := time.Since(st.start)
	outcome := QueryOutcome(ctx, data.Err)
	_ = q.t.Metrics.Distribution(MetricDBPoolAcquireDuration, ms(dur), []string{"pool:" + q.pool, "outcome:" + outcome}, 1)
	if dur < acquireSpanThreshold {
		return
	}
	if _, ok := tracer.SpanFromContext(ctx); !ok {
		return
	}
	span, _ := tracer.StartSpanFromContext(ctx, SpanAcquire,
		tracer.ServiceName(q.dbService),
		tracer.ResourceName("acquire "+q.pool),
		tracer.SpanType(ext.SpanTypeSQL),
		tracer.Tag(ext.DBSystem, ext.DBSystemPostgreSQL),
		tracer.Tag("db.pool", q.pool),
		tracer.StartTime(st.start))
	finishSpan(span, outcome, data.Err)
}

// finish records the span, metrics, lock wait and slow-query line of one
// statement.
func (q *QueryTracer) finish(ctx context.Context, st *queryState, dur time.Duration, tag pgconn.CommandTag, err error) {
	outcome := QueryOutcome(ctx, err)
	name := st.info.Name
	tags := []string{"query:" + name, "outcome:" + outcome}
	m := q.t.Metrics
	_ = m.Distribution(MetricDBQueryDuration, ms(dur), tags, 1)
	if outcome != OutcomeOK {
		_ = m.Count(MetricDBQueryErrors, 1, tags, 1)
	}

	var wait time.Duration
	if st.info.Lock {
		var base time.Duration
		wait, base = q.baselines.lockWait(name, dur, outcome == OutcomeOK, st.start)
		_ = m.Distribution(MetricDBLockWait, ms(wait), tags, 1)
		if st.span != nil {
			st.span.SetTag("db.lock_wait_ms", ms(wait))
			st.span.SetTag("db.lock_wait.baseline_ms", ms(base))
		}
	}

	if st.span != nil {
		if err == nil {
			st.span.SetTag("db.row_count", tag.RowsAffected())
		}
		finishSpan(st.span, outcome, err)
	}

	if slow := q.t.Config.SlowQuery; slow > 0 && dur >= slow {
		fields := []zap.Field{
			zap.String("query", name),
			zap.Float64("duration_ms", ms(dur)),
			zap.String("outcome", outcome),
			zap.Uint32("db.pid", st.pid),
		}
		if st.info.Lock {
			fields = append(fields, zap.Float64("lock_wait_ms", ms(wait)))
		}
		Logger(ctx, q.t.Log).Warn("slow query", fields...)
	}
}

// finishSpan finishes span with the outcome and, on error, a sanitized error:
// the SQLSTATE and constraint of a Postgres error, never its message (which
// can quote values).
func finishSpan(span *tracer.Span, outcome string, err error) {
	if span == nil {
		return
	}
	span.SetTag("db.outcome", outcome)
	if err == nil || outcome == OutcomeOK {
		span.Finish()
		return
	}
	span.Finish(tracer.WithError(safeError(outcome, err)), tracer.NoDebugStack())
}

// queryError is the error recorded on spans: no message text from the server.
type queryError struct {
	outcome, code, constraint string
	cause                     error
}

// Error implements error.
func (e *queryError) Error() string {
	s := "postgres: " + e.outcome
	if e.code != "" {
		s += " (SQLSTATE " + e.code + ")"
	}
	if e.constraint != "" {
		s += " constraint " + e.constraint
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func safeError(outcome string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return &queryError{outcome: outcome, code: pgErr.Code, constraint: pgErr.ConstraintName}
	}
	// Driver and network errors (timeouts, closed connections) carry no
	// statement data.
	return &queryError{outcome: outcome, cause: err}
}

// MultiTracer returns a tracer that calls each of tracers in order (nil ones
// are skipped). It implements every optional pgx and pgxpool tracer interface
// (batch, copy, prepare, connect, acquire, release) and forwards each call to
// those of tracers that implement it. Set it as ConnConfig.Tracer to combine
// e.g. the QueryTracer with a statement-counting tracer in tests.
func MultiTracer(tracers ...pgx.QueryTracer) pgx.QueryTracer {
	var ts []pgx.QueryTracer
	for _, t := range tracers {
		if t != nil {
			ts = append(ts, t)
		}
	}
	return multitracer.New(ts...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
