// Package relay delivers the outbox's order-confirmation mails (issue 8).
//
// Checkout writes one outbox row in the same transaction as the order (package
// postgres), so an order exists if and only if its mail is owed. A Relay
// claims due events in batches through a Store (a claim never takes an event
// another relay holds), and each claim is a lease: it pushes the event's next
// attempt forward by the lease and is committed at once, so the sends run
// outside any transaction and a relay that dies mid-batch leaves events that
// become due again when the lease expires. Results are recorded only under
// the claim; failures are retried with exponential backoff and jitter, and
// after MaxAttempts (or a permanent rejection) the event is parked as dead.
//
// Delivery is at least once: a relay that dies after the server accepted a
// mail and before it marked the event sent, or whose lease expired during a
// send, lets the mail go out again, with the same Message-ID.
//
// The relay knows the outbox only through Store; *postgres.DB implements it,
// and cmd/shopd wires the two.
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/ext"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// StatusStore reads the state of the outbox, for its gauges.
type StatusStore interface {
	// OutboxStatus counts pending, due and dead events and ages the oldest
	// pending one.
	OutboxStatus(ctx context.Context) (shop.OutboxStatus, error)
}

// Store is the outbox as a relay uses it; each method is one statement.
// The mark methods record a result only under the claim that took the event:
// lost reports that the claim had expired (another relay owns the event) and
// nothing was recorded.
type Store interface {
	StatusStore
	// ClaimOutbox leases up to n due events to the relay named by for
	// lease, counting the claim as an attempt, and returns them in id order.
	ClaimOutbox(ctx context.Context, by string, n int, lease time.Duration) ([]shop.OutboxEvent, error)
	// MarkOutboxSent records a delivery.
	MarkOutboxSent(ctx context.Context, c shop.OutboxClaim) (lost bool, err error)
	// MarkOutboxRetry records a failed delivery, due again after retryIn.
	MarkOutboxRetry(ctx context.Context, c shop.OutboxClaim, retryIn time.Duration, lastError string) (lost bool, err error)
	// MarkOutboxDead parks the event as dead.
	MarkOutboxDead(ctx context.Context, c shop.OutboxClaim, lastError string) (lost bool, err error)
	// ReleaseOutbox hands claimed events back unattempted, due at once, and
	// returns how many it released.
	ReleaseOutbox(ctx context.Context, claims []shop.OutboxClaim) (int, error)
	// PurgeSentOutbox deletes events sent more than olderThan ago and
	// returns how many.
	PurgeSentOutbox(ctx context.Context, olderThan time.Duration) (int, error)
}

// Span operation names of the relay.
const (
	SpanBatch = "outbox.relay.batch" // one claim and its sends
	SpanSend  = "outbox.send"        // one delivery; child of the checkout's span
	SpanStats = "outbox.stats"       // the gauges' query (dropped)
	SpanPurge = "outbox.purge"       // the retention's delete (dropped)
)

// Reasons, the reason tag of outbox.retried and outbox.dead.
const (
	ReasonUnavailable = "unavailable"  // the mail server failed or could not be reached (retried)
	ReasonMaxAttempts = "max_attempts" // the last allowed attempt failed (dead)
	ReasonRejected    = "rejected"     // the server rejected the recipient or message for good (dead)
	ReasonInvalid     = "invalid"      // the event cannot be turned into a mail (dead)
)

// markTimeout bounds each statement that records a result or hands events
// back; they run even when the relay's context has ended.
const markTimeout = 10 * time.Second

// Relay delivers the outbox's order confirmations through a shop.Mailer.
// Several relays (in several processes) may run on one database; each event
// is claimed by one of them at a time.
type Relay struct {
	store  Store
	mailer shop.Mailer
	tel    *telemetry.Telemetry
	cfg    Config
}

// New returns a relay on store sending with mailer and reporting to tel.
// Errors: EINVALID for a configuration out of range or a nil store, mailer
// or tel.
func New(store Store, mailer shop.Mailer, tel *telemetry.Telemetry, cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || mailer == nil || tel == nil {
		return nil, shop.Errorf(shop.EINVALID, "the outbox relay needs a store, a mailer and telemetry")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultConfig().Name
	}
	return &Relay{store: store, mailer: mailer, tel: tel, cfg: cfg}, nil
}

// BatchStats counts what one or more batches did.
type BatchStats struct {
	Claimed  int // events claimed
	Sent     int // delivered and marked sent
	Retried  int // failed and rescheduled
	Dead     int // parked as dead
	Released int // claimed but handed back unsent (shutdown, lease running out, a failure ended the batch)
	LostMark int // delivered or failed, but the claim had expired and another relay owned the event
	// Stopped is set when a transient failure ended the batch early: the
	// mail server is probably down, and the rest wait for the next poll.
	Stopped bool
}

func (s *BatchStats) add(o BatchStats) {
	s.Claimed += o.Claimed
	s.Sent += o.Sent
	s.Retried += o.Retried
	s.Dead += o.Dead
	s.Released += o.Released
	s.LostMark += o.LostMark
	s.Stopped = o.Stopped
}

// Run relays until ctx ends: it drains the due events batch after batch,
// then polls every Interval, and reports the outbox gauges every
// StatsInterval (deleting sent events past Retention). On ctx's end it
// finishes the send in progress (within SendTimeout), hands the rest of its
// batch back and returns nil. Store errors are logged and retried at the
// next poll; Run returns no other error.
func (r *Relay) Run(ctx context.Context) error {
	log := r.tel.Log.With(zap.String("relay", r.cfg.Name))
	log.Info("outbox relay started", zap.Int("batch_size", r.cfg.BatchSize), zap.Duration("interval", r.cfg.Interval),
		zap.Int("max_attempts", r.cfg.MaxAttempts), zap.Duration("lease", r.cfg.Lease))
	var lastStats time.Time
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("outbox relay stopped")
			return nil
		case <-wait.C:
		}
		for ctx.Err() == nil {
			st, err := r.RunBatch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("outbox relay: claim failed; retrying at the next poll", zap.Error(err))
				}
				break
			}
			if st.Claimed < r.cfg.BatchSize || st.Stopped {
				break
			}
			if time.Since(lastStats) >= r.cfg.StatsInterval {
				r.reportStatsLogged(ctx, log)
				lastStats = time.Now()
			}
		}
		if ctx.Err() == nil && time.Since(lastStats) >= r.cfg.StatsInterval {
			r.reportStatsLogged(ctx, log)
			lastStats = time.Now()
		}
		wait.Reset(r.cfg.Interval)
	}
}

// Drain runs batches until none is due or a transient failure stops one,
// and returns what they did. Errors: those of Store.ClaimOutbox
// (EUNAVAILABLE, EINTERNAL for the postgres store).
func (r *Relay) Drain(ctx context.Context) (BatchStats, error) {
	var total BatchStats
	for {
		st, err := r.RunBatch(ctx)
		total.add(st)
		if err != nil || st.Claimed == 0 || st.Stopped || ctx.Err() != nil {
			return total, err
		}
	}
}

// RunBatch claims up to BatchSize due events and delivers them one by one.
// A delivery that fails transiently is rescheduled and ends the batch (the
// server is probably down: one probe per poll, not one per event); the
// unsent rest is handed back. Errors: those of Store.ClaimOutbox
// (EUNAVAILABLE, EINTERNAL for the postgres store; nothing was claimed).
func (r *Relay) RunBatch(ctx context.Context) (BatchStats, error) {
	var st BatchStats
	span, ctx := tracer.StartSpanFromContext(ctx, SpanBatch, tracer.ResourceName("order_confirmation"),
		tracer.SpanType(ext.SpanTypeMessageConsumer), tracer.Tag("outbox.relay", r.cfg.Name))
	defer func() {
		span.SetTag("outbox.claimed", st.Claimed)
		if st.Claimed == 0 {
			// An empty poll (every Interval, per relay) is not worth a trace;
			// this drops its claim statement's span too.
			span.SetTag(ext.ManualDrop, true)
		}
		span.Finish()
	}()

	if ctx.Err() != nil {
		return st, nil // stopping: claim nothing more
	}
	// The claim itself is not cancelled with ctx: PostgreSQL may carry out a
	// claim whose answer a cancellation then loses, and its events would stay
	// leased, unsent, until the lease ends (a relay stopped by a deploy left
	// confirmations behind that way). Once claimed, every event is sent or
	// released below.
	claimCtx, cancelClaim := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.SendTimeout)
	defer cancelClaim()
	claimedAt := time.Now()
	events, err := r.claim(claimCtx)
	if err != nil {
		span.SetTag(ext.ErrorMsg, cause(err).Error())
		return st, err
	}
	st.Claimed = len(events)
	// Past this instant a send could outlive the lease.
	sendBy := claimedAt.Add(r.cfg.Lease - r.cfg.SendTimeout)
	// Results are recorded even when ctx ends (shutdown): the send happened.
	rctx := context.WithoutCancel(ctx)
	for i, ev := range events {
		if ctx.Err() != nil || time.Now().After(sendBy) {
			st.Released += r.release(rctx, events[i:])
			break
		}
		res := r.deliver(rctx, ev)
		switch res.outcome {
		case resultSent:
			st.Sent++
		case resultRetry:
			st.Retried++
		case resultDead:
			st.Dead++
		}
		if res.lost {
			st.LostMark++
		}
		if res.outcome == resultRetry {
			st.Stopped = true
			st.Released += r.release(rctx, events[i+1:])
			break
		}
	}
	return st, nil
}

func (r *Relay) claim(ctx context.Context) ([]shop.OutboxEvent, error) {
	return r.store.ClaimOutbox(ctx, r.cfg.Name, r.cfg.BatchSize, r.cfg.Lease)
}

// cause is err's underlying cause: the driver's error inside a store's
// shop.Error. The batch span's error message and the release's log line
// show it, as they did when the relay ran its statements itself.
func cause(err error) error {
	var se *shop.Error
	if errors.As(err, &se) && se.Err != nil {
		return se.Err
	}
	return err
}

type resultKind int

const (
	resultSent resultKind = iota
	resultRetry
	resultDead
)

type result struct {
	outcome resultKind
	lost    bool // the claim had expired: another relay owns the event
}

// deliver sends one claimed event and records the result under its claim.
func (r *Relay) deliver(ctx context.Context, ev shop.OutboxEvent) result {
	opts := []tracer.StartSpanOption{
		tracer.ResourceName("order_confirmation"),
		tracer.SpanType(ext.SpanTypeMessageConsumer),
		tracer.Tag(ext.SpanKind, ext.SpanKindConsumer),
		tracer.Tag("order.id", ev.OrderID),
		tracer.Tag("outbox.event_id", ev.ID),
		tracer.Tag("outbox.attempt", ev.Attempts),
		tracer.Tag("outbox.relay", r.cfg.Name),
		tracer.Tag("outbox.age_ms", time.Since(ev.CreatedAt).Milliseconds()),
	}
	// The send joins the checkout's trace as a child of the checkout's span
	// (the request span that was active when the order was placed); an event
	// without a trace context hangs under the batch span instead.
	if parent, err := tracer.Extract(tracer.TextMapCarrier(ev.TraceContext)); err == nil && parent != nil {
		opts = append(opts, tracer.WithStartSpanConfig(&tracer.StartSpanConfig{Parent: parent}))
	} else if batch, ok := tracer.SpanFromContext(ctx); ok && batch != nil {
		opts = append(opts, tracer.WithStartSpanConfig(&tracer.StartSpanConfig{Parent: batch.Context()}))
	}
	span := tracer.StartSpan(SpanSend, opts...)
	ctx = tracer.ContextWithSpan(ctx, span)
	log := telemetry.Logger(ctx, r.tel.Log).With(zap.String("order_id", ev.OrderID), zap.Int64("outbox_event_id", ev.ID),
		zap.Int("attempt", ev.Attempts), zap.String("relay", r.cfg.Name))

	res, sendErr := r.attempt(ctx, ev, log)
	switch res.outcome {
	case resultSent:
		span.SetTag("outbox.outcome", "sent")
	case resultRetry:
		span.SetTag("outbox.outcome", "retried")
	case resultDead:
		span.SetTag("outbox.outcome", "dead")
	}
	if sendErr != nil {
		span.Finish(tracer.WithError(sendErr))
	} else {
		span.Finish()
	}
	return res
}

// attempt does the work of deliver; it returns the send error, if any, for
// the span.
func (r *Relay) attempt(ctx context.Context, ev shop.OutboxEvent, log *zap.Logger) (result, error) {
	if ev.Attempts > r.cfg.MaxAttempts {
		// Claimed MaxAttempts times already without a recorded result (the
		// relays holding it died): stop trying.
		err := fmt.Errorf("claimed %d times without a recorded result", ev.Attempts-1)
		return r.park(ctx, ev, ReasonMaxAttempts, err, log), err
	}
	var c shop.OrderConfirmation
	if err := json.Unmarshal(ev.Payload, &c); err != nil {
		err = fmt.Errorf("outbox payload: %w", err)
		return r.park(ctx, ev, ReasonInvalid, err, log), err
	}
	c.OrderID, c.To, c.Name = ev.OrderID, ev.Recipient, ev.RecipientName

	start := time.Now()
	err := r.mailer.SendOrderConfirmation(ctx, c)
	elapsed := time.Since(start)
	code := shop.ErrorCode(err)
	outcome := "ok"
	switch {
	case err == nil:
	case code == shop.EUNPROCESSABLE:
		outcome = ReasonRejected
	case code == shop.EINVALID:
		outcome = ReasonInvalid
	default:
		outcome = ReasonUnavailable
	}
	_ = r.tel.Metrics.Distribution(telemetry.MetricMailSMTPDuration, float64(elapsed.Microseconds())/1000, []string{"outcome:" + outcome}, 1)

	switch {
	case err == nil:
		lost, dbErr := r.mark(ctx, func(ctx context.Context) (bool, error) { return r.store.MarkOutboxSent(ctx, ev.OutboxClaim) })
		if dbErr != nil {
			// The mail went out but the row stays claimed: after the lease
			// it is sent again (at least once).
			log.Error("order confirmation sent but not marked; it will be sent again after the lease", zap.Error(dbErr))
			return result{outcome: resultSent}, nil
		}
		if lost {
			r.lostLease(log)
			return result{outcome: resultSent, lost: true}, nil
		}
		_ = r.tel.Metrics.Incr(telemetry.MetricOutboxSent, nil, 1)
		log.Info("order confirmation sent", zap.Duration("smtp", elapsed))
		return result{outcome: resultSent}, nil
	case outcome == ReasonRejected || outcome == ReasonInvalid:
		return r.park(ctx, ev, outcome, err, log), err
	case ev.Attempts >= r.cfg.MaxAttempts:
		return r.park(ctx, ev, ReasonMaxAttempts, err, log), err
	}
	delay := r.cfg.Backoff(ev.Attempts)
	lost, dbErr := r.mark(ctx, func(ctx context.Context) (bool, error) {
		return r.store.MarkOutboxRetry(ctx, ev.OutboxClaim, delay, errText(err))
	})
	switch {
	case dbErr != nil:
		log.Warn("order confirmation not sent, and the retry not recorded; it comes back after the lease", zap.NamedError("send_error", err), zap.Error(dbErr))
	case lost:
		r.lostLease(log)
		return result{outcome: resultRetry, lost: true}, err
	default:
		_ = r.tel.Metrics.Incr(telemetry.MetricOutboxRetried, []string{"reason:" + ReasonUnavailable}, 1)
		log.Warn("order confirmation not sent; will retry", zap.Duration("retry_in", delay), zap.Error(err))
	}
	return result{outcome: resultRetry}, err
}

// park marks ev dead, counts and logs it.
func (r *Relay) park(ctx context.Context, ev shop.OutboxEvent, reason string, cause error, log *zap.Logger) result {
	lost, err := r.mark(ctx, func(ctx context.Context) (bool, error) {
		return r.store.MarkOutboxDead(ctx, ev.OutboxClaim, errText(cause))
	})
	switch {
	case err != nil:
		log.Error("order confirmation could not be parked as dead; it comes back after the lease", zap.String("reason", reason), zap.NamedError("cause", cause), zap.Error(err))
		return result{outcome: resultDead}
	case lost:
		r.lostLease(log)
		return result{outcome: resultDead, lost: true}
	}
	_ = r.tel.Metrics.Incr(telemetry.MetricOutboxDead, []string{"reason:" + reason}, 1)
	log.Error("order confirmation parked as dead: requeue it with `shopd outbox requeue-dead` once the cause is fixed",
		zap.String("reason", reason), zap.Error(cause))
	return result{outcome: resultDead}
}

func (r *Relay) lostLease(log *zap.Logger) {
	_ = r.tel.Metrics.Incr(telemetry.MetricOutboxLeaseLost, nil, 1)
	log.Warn("outbox claim expired before its result was recorded; another relay owns the event and the mail may go out twice (same Message-ID)")
}

// markRetryPause is the wait before a mark that failed with EUNAVAILABLE
// (the connection lost, no primary yet) is tried again, within
// markTimeout.
const markRetryPause = 200 * time.Millisecond

// mark runs one of the store's mark methods within markTimeout; lost
// reports that the event was no longer under this claim. A try that fails
// with EUNAVAILABLE is repeated until markTimeout: a failover (the primary
// dies, the standby is promoted) takes seconds, and a sent mail whose mark
// gave up at once would stay claimed and go out again after the lease.
// The marks are conditional on the claim, so a repeat is harmless; but a
// try that failed with its connection may have committed (its answer was
// lost), and then the repeat finds the claim already recorded: lost after
// such a try is taken for recorded. (It could also be a lease that ran out
// meanwhile; that mail may then go out twice, uncounted.)
func (r *Relay) mark(ctx context.Context, do func(context.Context) (bool, error)) (lost bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, markTimeout)
	defer cancel()
	inDoubt := false
	for {
		lost, err = do(ctx)
		switch {
		case err == nil:
			return lost && !inDoubt, nil
		case shop.ErrorCode(err) != shop.EUNAVAILABLE:
			return false, err
		}
		inDoubt = true
		select {
		case <-ctx.Done():
			return false, err
		case <-time.After(markRetryPause):
		}
	}
}

// release hands events back unsent and returns how many it released.
func (r *Relay) release(ctx context.Context, events []shop.OutboxEvent) int {
	if len(events) == 0 {
		return 0
	}
	claims := make([]shop.OutboxClaim, len(events))
	for i, ev := range events {
		claims[i] = ev.OutboxClaim
	}
	ctx, cancel := context.WithTimeout(ctx, markTimeout)
	defer cancel()
	n, err := r.store.ReleaseOutbox(ctx, claims)
	if err != nil {
		r.tel.Log.Warn("outbox relay: release failed; the events come back after the lease", zap.Int("events", len(events)), zap.Error(cause(err)))
		return 0
	}
	return n
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 1000 {
		s = s[:1000]
	}
	return s
}
