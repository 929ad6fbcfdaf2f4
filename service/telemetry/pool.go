package telemetry

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ReportPoolStats reports pool's statistics every interval until ctx is done,
// tagged pool:name ("main", "reports"):
//
//   - gauges MetricDBPoolAcquired, MetricDBPoolIdle, MetricDBPoolTotal,
//     MetricDBPoolMax, MetricDBPoolConstructing (connections);
//   - counts, as the increase since the previous report, of
//     MetricDBPoolAcquires, MetricDBPoolEmptyAcquires (acquires that had to
//     wait for a connection), MetricDBPoolCanceledAcquires,
//     MetricDBPoolNewConns, and of the milliseconds spent acquiring,
//     MetricDBPoolAcquireWait (all acquires) and MetricDBPoolEmptyAcquireWait
//     (empty acquires only).
//
// Counts start from the pool's totals when ReportPoolStats is called. It
// blocks: run it in its own goroutine.
func ReportPoolStats(ctx context.Context, t *Telemetry, name string, pool *pgxpool.Pool, interval time.Duration) {
	tags := []string{"pool:" + name}
	prev := pool.Stat()
	every(ctx, interval, func() {
		s := pool.Stat()
		m := t.Metrics
		_ = m.Gauge(MetricDBPoolAcquired, float64(s.AcquiredConns()), tags, 1)
		_ = m.Gauge(MetricDBPoolIdle, float64(s.IdleConns()), tags, 1)
		_ = m.Gauge(MetricDBPoolTotal, float64(s.TotalConns()), tags, 1)
		_ = m.Gauge(MetricDBPoolMax, float64(s.MaxConns()), tags, 1)
		_ = m.Gauge(MetricDBPoolConstructing, float64(s.ConstructingConns()), tags, 1)
		_ = m.Count(MetricDBPoolAcquires, s.AcquireCount()-prev.AcquireCount(), tags, 1)
		_ = m.Count(MetricDBPoolEmptyAcquires, s.EmptyAcquireCount()-prev.EmptyAcquireCount(), tags, 1)
		_ = m.Count(MetricDBPoolCanceledAcquires, s.CanceledAcquireCount()-prev.CanceledAcquireCount(), tags, 1)
		_ = m.Count(MetricDBPoolNewConns, s.NewConnsCount()-prev.NewConnsCount(), tags, 1)
		// Differences of truncated cumulative totals: no rounding drift.
		_ = m.Count(MetricDBPoolAcquireWait, s.AcquireDuration().Milliseconds()-prev.AcquireDuration().Milliseconds(), tags, 1)
		_ = m.Count(MetricDBPoolEmptyAcquireWait, s.EmptyAcquireWaitTime().Milliseconds()-prev.EmptyAcquireWaitTime().Milliseconds(), tags, 1)
		prev = s
	})
}
