package relay

import (
	"context"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/ext"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// ReportStats sends the outbox gauges (pending, age of the oldest pending,
// parked) and returns the status they came from. Errors: those of
// Store.OutboxStatus (EUNAVAILABLE, EINTERNAL for the postgres store).
func (r *Relay) ReportStats(ctx context.Context) (shop.OutboxStatus, error) {
	return ReportStats(ctx, r.store, r.tel)
}

// ReportStats sends the outbox gauges of store to tel and returns the status
// they came from. A service that runs no relay still calls it, so that mails
// owed and not sent show (and alert). Errors: those of store.OutboxStatus
// (EUNAVAILABLE, EINTERNAL for the postgres store).
func ReportStats(ctx context.Context, store StatusStore, tel *telemetry.Telemetry) (shop.OutboxStatus, error) {
	// A trace every 10 s per process would cost more than it tells: the
	// gauges are the signal.
	ctx, finish := droppedRoot(ctx, SpanStats)
	defer finish()
	s, err := store.OutboxStatus(ctx)
	if err != nil {
		return s, err
	}
	_ = tel.Metrics.Gauge(telemetry.MetricOutboxPending, float64(s.Pending), nil, 1)
	_ = tel.Metrics.Gauge(telemetry.MetricOutboxOldestPendingAge, s.OldestPending.Seconds(), nil, 1)
	_ = tel.Metrics.Gauge(telemetry.MetricOutboxParked, float64(s.Dead), nil, 1)
	return s, nil
}

// reportStatsLogged reports the gauges and purges sent events past
// Retention, logging failures.
func (r *Relay) reportStatsLogged(ctx context.Context, log *zap.Logger) {
	if _, err := r.ReportStats(ctx); err != nil && ctx.Err() == nil {
		log.Warn("outbox relay: stats failed", zap.Error(err))
	}
	if r.cfg.Retention > 0 {
		if _, err := r.purge(ctx); err != nil && ctx.Err() == nil {
			log.Warn("outbox relay: purge failed", zap.Error(err))
		}
	}
}

// purge deletes the events sent more than Retention ago.
func (r *Relay) purge(ctx context.Context) (int, error) {
	ctx, finish := droppedRoot(ctx, SpanPurge)
	defer finish()
	return r.store.PurgeSentOutbox(ctx, r.cfg.Retention)
}

// droppedRoot starts, when ctx carries no span, a root span that the tracer
// drops with its children (the statements' spans), for background work
// whose metrics say enough. Inside a trace it does nothing.
func droppedRoot(ctx context.Context, op string) (context.Context, func()) {
	if span, ok := tracer.SpanFromContext(ctx); ok && span != nil {
		return ctx, func() {}
	}
	span, ctx := tracer.StartSpanFromContext(ctx, op, tracer.Tag(ext.ManualDrop, true))
	return ctx, func() { span.Finish() }
}
