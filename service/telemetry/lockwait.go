package telemetry

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// lockBaselineWindow is the window over which a lock statement's fastest run
// is remembered (the baseline spans the current and the previous window).
const lockBaselineWindow = time.Minute

// baselines holds, per statement name, the uncontended duration estimate used
// to turn the duration of a " lock" statement into a lock wait estimate.
type baselines struct {
	m sync.Map // name -> *baseline
}

type baseline struct {
	mu          sync.Mutex
	windowStart time.Time
	cur, prev   time.Duration // fastest successful run in the window; 0 = none
}

func newBaselines() *baselines { return &baselines{} }

// lockWait returns the estimated lock wait of a run of name that took dur and
// the baseline it subtracted (0 when there was none yet), then, if ok, lets
// the run update the baseline.
func (b *baselines) lockWait(name string, dur time.Duration, ok bool, now time.Time) (wait, base time.Duration) {
	v, found := b.m.Load(name)
	if !found {
		v, _ = b.m.LoadOrStore(name, &baseline{windowStart: now})
	}
	bl := v.(*baseline)
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if now.Sub(bl.windowStart) >= lockBaselineWindow {
		if bl.cur != 0 {
			bl.prev = bl.cur
		}
		bl.cur = 0
		bl.windowStart = now
	}
	base = bl.cur
	if base == 0 || (bl.prev != 0 && bl.prev < base) {
		base = bl.prev
	}
	wait = dur - base
	if wait < 0 {
		wait = 0
	}
	if ok && dur > 0 && (bl.cur == 0 || dur < bl.cur) {
		bl.cur = dur
	}
	return wait, base
}

// lockWaitsSQL lists the sessions of one application on the current database
// waiting for a heavyweight lock, with how long they have waited: from
// pg_locks.waitstart (PostgreSQL 14+, set when the wait begins), falling back
// to the state change of the session for the brief moment before waitstart is
// filled in.
const lockWaitsSQL = `-- name: telemetry.lock_waits
SELECT coalesce(a.wait_event, '') AS wait_event,
       left(coalesce(a.query, ''), 256) AS query,
       (extract(epoch FROM clock_timestamp() - coalesce(l.waitstart, a.state_change, a.query_start)) * 1000)::float8 AS wait_ms
FROM pg_stat_activity a
LEFT JOIN LATERAL (
    SELECT min(waitstart) AS waitstart FROM pg_locks WHERE pid = a.pid AND NOT granted
) l ON true
WHERE a.application_name = $1
  AND a.datname = current_database()
  AND a.wait_event_type = 'Lock'
  AND a.pid <> pg_backend_pid()`

// SampleLockWaits samples, every interval until ctx is done, the sessions of
// the service (application_name = t.Config.AppName, connected to the
// database pool connects to: sessions of the same name on other databases of
// the server are not counted) that are waiting for a lock, and emits
// MetricDBLocksWaiting (gauge: how many) and, per waiting session,
// MetricDBLockWaitSampled (distribution: ms waited so far, from
// pg_locks.waitstart) tagged wait_event:<relation|tuple|transactionid|...> and
// query:<name parsed from the "-- name:" line of the waiting statement>. A
// wait is seen only if it lasts across a sample, so choose interval well below
// the waits of interest (1s in production is cheap: one small catalog query).
//
// It samples over a dedicated connection made from pool's configuration
// (application_name AppName + ".lock_sampler", no tracer), not through the
// pool, so that it keeps working when lock waits have exhausted the pool. It
// blocks: run it in its own goroutine. The role must see the sessions' query
// text (same role, or pg_read_all_stats). Failures are logged (the first,
// then every 60th in a row) and sampling goes on, reconnecting as needed.
func SampleLockWaits(ctx context.Context, t *Telemetry, pool *pgxpool.Pool, interval time.Duration) {
	sampleOwnConn(ctx, t, ownConnSampler{
		what: "lock wait sampler", appSuffix: ".lock_sampler", interval: interval, timeout: interval,
		sample: func(ctx context.Context, conn *pgx.Conn) error { return sampleLockWaits(ctx, t, conn) },
	}, pool)
}

// ownConnSampler is a sampler that runs on a connection of its own (see
// sampleOwnConn).
type ownConnSampler struct {
	what      string        // its name in the log: "lock wait sampler"
	appSuffix string        // appended to AppName for application_name
	interval  time.Duration // how often it samples
	timeout   time.Duration // the bound of one sample, connecting included
	fields    []zap.Field   // more fields of its log lines
	// sample takes one sample on conn; a non-nil error closes conn (the
	// next sample reconnects).
	sample func(ctx context.Context, conn *pgx.Conn) error
	// failed, when set, is told of each failed sample.
	failed func(err error)
}

// sampleOwnConn runs s every s.interval until ctx ends, on a connection of
// its own made from pool's settings (application_name AppName +
// s.appSuffix, no tracer) rather than through the pool, so that a pool
// that is exhausted does not delay it. A sample that fails closes the
// connection, and the next one reconnects; failures are logged (the
// first, then every 60th in a row), and so is the recovery.
func sampleOwnConn(ctx context.Context, t *Telemetry, s ownConnSampler, pool *pgxpool.Pool) {
	connCfg := pool.Config().ConnConfig.Copy()
	connCfg.Tracer = nil
	connCfg.RuntimeParams["application_name"] = t.Config.AppName + s.appSuffix
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = conn.Close(cctx)
			cancel()
		}
	}()
	failures := 0
	every(ctx, s.interval, func() {
		sctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		var err error
		if conn == nil {
			conn, err = pgx.ConnectConfig(sctx, connCfg)
		}
		if err == nil {
			err = s.sample(sctx, conn)
		}
		switch {
		case err == nil:
			if failures > 0 {
				t.Log.Info(s.what+" recovered", append(s.fields, zap.Int("failures", failures))...)
			}
			failures = 0
			return
		case ctx.Err() != nil:
			return
		case failures%60 == 0:
			t.Log.Warn(s.what+" failed", append(s.fields, zap.Error(err), zap.Int("failures", failures+1))...)
		}
		failures++
		if s.failed != nil {
			s.failed(err)
		}
		if conn != nil {
			_ = conn.Close(sctx)
			conn = nil
		}
	})
}

func sampleLockWaits(ctx context.Context, t *Telemetry, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, lockWaitsSQL, t.Config.AppName)
	if err != nil {
		return err
	}
	defer rows.Close()
	type sample struct {
		tags []string
		ms   float64
	}
	var samples []sample
	for rows.Next() {
		var event, query string
		var waitMS float64
		if err := rows.Scan(&event, &query, &waitMS); err != nil {
			return err
		}
		samples = append(samples, sample{
			tags: []string{"query:" + ParseQueryName(query).Name, "wait_event:" + tagValue(event)},
			ms:   waitMS,
		})
	}
	if err := rows.Err(); err != nil {
		return err
	}
	_ = t.Metrics.Gauge(MetricDBLocksWaiting, float64(len(samples)), nil, 1)
	for _, s := range samples {
		_ = t.Metrics.Distribution(MetricDBLockWaitSampled, s.ms, s.tags, 1)
	}
	return nil
}

// tagValue lowercases v and keeps [a-z0-9_.-], for tag values from the server.
func tagValue(v string) string {
	if v == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, v)
}

// every runs fn now and then every interval until ctx is done.
func every(ctx context.Context, interval time.Duration, fn func()) {
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if ctx.Err() != nil {
			return
		}
		fn()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
