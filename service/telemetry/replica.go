package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// replicaLagSQL reads a server's replication state: whether it is a
// standby (in recovery), the WAL it has received but not replayed, whether
// its WAL receiver streams, and the time since the commit of the last
// transaction it replayed. On a primary the last three are 0, false, 0.
// pg_stat_wal_receiver shows its status only to superusers and members of
// pg_read_all_stats (pg_monitor): to other roles a standby never looks
// like it streams.
const replicaLagSQL = `-- name: telemetry.replica_lag
SELECT pg_is_in_recovery(),
       coalesce(greatest(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0), 0)::bigint,
       coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
       coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0)::float8`

// ReplicaReading is one sample of SampleReplicaLag.
type ReplicaReading struct {
	// At is when the sample was taken; zero before the first.
	At time.Time
	// Err is why the sample failed (the database did not answer), or nil.
	Err error
	// Standby says the database is a standby (pg_is_in_recovery()); the
	// fields below are zero when it is not.
	Standby bool
	// Streaming says its WAL receiver streams from the primary.
	Streaming bool
	// Lag is how far behind the primary it is (see SampleReplicaLag).
	Lag time.Duration
	// Bytes is the WAL received but not yet replayed.
	Bytes int64
}

// ReplicaLag holds the last reading of SampleReplicaLag. The zero value is
// ready; it is safe for concurrent use.
type ReplicaLag struct {
	mu   sync.Mutex
	last ReplicaReading
	// caughtUp is when a sample last found the standby streaming with
	// nothing left to replay.
	caughtUp time.Time
}

// Last returns the last reading (zero before the first sample).
func (l *ReplicaLag) Last() ReplicaReading {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// record turns a sample into a reading and keeps it. The lag of a standby
// that is streaming and has replayed all it received is 0. Otherwise it is
// the time since the last replayed commit, bounded by the time since the
// standby was last seen caught up: a primary idle for an hour leaves an
// hour-old replay timestamp, but when its next write arrives the standby
// was caught up a sample ago, so that write's replay cannot read as an
// hour of lag. A standby that stops streaming lags more every second from
// the moment it was last caught up, whatever its primary does (it cannot
// know).
func (l *ReplicaLag) record(now time.Time, standby, streaming bool, bytes int64, sinceReplay float64) ReplicaReading {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := ReplicaReading{At: now, Standby: standby}
	if standby {
		r.Streaming, r.Bytes = streaming, bytes
		if streaming && bytes == 0 {
			l.caughtUp = now
		} else {
			r.Lag = time.Duration(sinceReplay * float64(time.Second))
			if !l.caughtUp.IsZero() {
				r.Lag = min(r.Lag, now.Sub(l.caughtUp))
			}
		}
	}
	l.last = r
	return r
}

// fail records a failed sample.
func (l *ReplicaLag) fail(now time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = ReplicaReading{At: now, Err: err}
}

// sampleTimeout is the least time a sample may take.
const sampleTimeout = 2 * time.Second

// SampleReplicaLag samples, every interval until ctx is done, the
// replication state of the database pool connects to, keeps each reading in
// lag and, when that database is a standby, emits the gauges
// MetricDBReplicaLagSeconds, MetricDBReplicaLagBytes and
// MetricDBReplicaStreaming tagged pool:name. On a primary it emits nothing.
//
// It samples over a dedicated connection made from pool's configuration
// (application_name AppName + ".replica_sampler", no tracer), not through
// the pool, so that reports holding every connection of the pool do not
// delay it. Each sample is bounded by interval, or sampleTimeout when
// that is longer (a connection takes a while on a loaded host). A failed sample (the
// standby is down) is kept as a reading with its error; failures are
// logged (the first, then every 60th in a row) and sampling goes on,
// reconnecting as needed. It blocks: run it in its own goroutine.
func SampleReplicaLag(ctx context.Context, t *Telemetry, name string, pool *pgxpool.Pool, lag *ReplicaLag, interval time.Duration) {
	tags := []string{"pool:" + name}
	sampleOwnConn(ctx, t, ownConnSampler{
		what: "replica lag sampler", appSuffix: ".replica_sampler", interval: interval,
		timeout: max(interval, sampleTimeout), fields: []zap.Field{zap.String("pool", name)},
		sample: func(ctx context.Context, conn *pgx.Conn) error {
			var standby, streaming bool
			var bytes int64
			var sinceReplay float64
			if err := conn.QueryRow(ctx, replicaLagSQL).Scan(&standby, &bytes, &streaming, &sinceReplay); err != nil {
				return err
			}
			r := lag.record(time.Now(), standby, streaming, bytes, sinceReplay)
			if standby {
				m := t.Metrics
				_ = m.Gauge(MetricDBReplicaLagSeconds, r.Lag.Seconds(), tags, 1)
				_ = m.Gauge(MetricDBReplicaLagBytes, float64(r.Bytes), tags, 1)
				_ = m.Gauge(MetricDBReplicaStreaming, b2f(r.Streaming), tags, 1)
			}
			return nil
		},
		failed: func(err error) { lag.fail(time.Now(), err) },
	}, pool)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
