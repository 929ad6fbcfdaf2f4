package postgres

// The transactional outbox of order-confirmation mails (issue 8).
//
// Checkout inserts one outbox row in the same transaction as the order, so an
// order exists if and only if its mail is owed. A Relay claims due rows in
// batches (FOR UPDATE SKIP LOCKED, so relays never claim the same row), and
// each claim is a lease: it pushes next_attempt_at forward by the lease and
// is committed at once, so the sends run outside any transaction and a relay
// that dies mid-batch leaves rows that become due again when the lease
// expires. Results are recorded only under the claim (claim_id); failures
// are retried with exponential backoff and jitter, and after MaxAttempts
// (or a permanent rejection) the row is parked as dead.
//
// Delivery is at least once: a relay that dies after the server accepted a
// mail and before it marked the row sent, or whose lease expired during a
// send, lets the mail go out again, with the same Message-ID.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/ext"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// enqueueSQL writes the confirmation of an order: its content as it is at
// checkout, the buyer's address and the checkout's trace context. A buyer
// that cannot be found leaves recipient NULL, which outbox's NOT NULL
// refuses: the statement fails and the checkout's transaction with it, so
// no order can exist without its mail owed.
const enqueueSQL = `-- name: outbox.enqueue
INSERT INTO outbox (kind, order_id, recipient, recipient_name, payload, trace_context)
VALUES ('order_confirmation', $1,
        (SELECT u.email FROM {users} u WHERE u.id = $2),
        coalesce((SELECT u.name FROM {users} u WHERE u.id = $2), ''),
        $3::jsonb, $4::jsonb)`

// queueOrderConfirmation queues, in the checkout's last batch (before its
// COMMIT), the statement that owes order's confirmation mail: if the
// checkout rolls back, so does the mail, and the other way round. sql
// expands the statement for the users schema (usersschema.go).
func queueOrderConfirmation(ctx context.Context, b *pgx.Batch, order shop.Order, sql func(string) string) {
	b.Queue(sql(enqueueSQL), order.ID, order.UserID, shop.NewOrderConfirmation(order), traceCarrier(ctx))
}

// traceCarrier returns the trace context of the span in ctx as dd-trace-go
// propagation headers (empty without a span or a tracer).
func traceCarrier(ctx context.Context) tracer.TextMapCarrier {
	carrier := tracer.TextMapCarrier{}
	if span, ok := tracer.SpanFromContext(ctx); ok && span != nil {
		_ = tracer.Inject(span.Context(), carrier)
	}
	return carrier
}

// RelayConfig tunes a Relay. DefaultRelayConfig gives the production values.
type RelayConfig struct {
	// Name identifies the relay in outbox.claimed_by (default host:pid).
	Name string
	// BatchSize is how many due events one claim takes (RELAY_BATCH_SIZE).
	BatchSize int
	// Interval is the pause between polls once nothing is due (RELAY_INTERVAL).
	Interval time.Duration
	// Lease is how long a claim keeps other relays off an event
	// (RELAY_LEASE). It must exceed SendTimeout: a relay stops sending from
	// a batch once less than SendTimeout of its lease is left.
	Lease time.Duration
	// SendTimeout is the longest one send may take (the mailer's timeout,
	// SMTP_TIMEOUT).
	SendTimeout time.Duration
	// MaxAttempts is how many deliveries are tried before an event is parked
	// as dead (RELAY_MAX_ATTEMPTS).
	MaxAttempts int
	// BackoffBase and BackoffMax bound the wait before retry n:
	// min(BackoffBase * 2^(n-1), BackoffMax), of which a random half is
	// jitter (RELAY_BACKOFF_BASE, RELAY_BACKOFF_MAX).
	BackoffBase, BackoffMax time.Duration
	// StatsInterval is how often Run reports the outbox gauges.
	StatsInterval time.Duration
	// Retention is how long sent events are kept; 0 keeps them
	// (RELAY_RETENTION).
	Retention time.Duration
}

// DefaultRelayConfig is the relay's production configuration: 20 events a
// claim, a poll a second, 2-minute leases, 30 s sends, 12 attempts with
// backoff from 10 s to 1 h (about three hours before an event goes dead),
// sent events kept a week.
func DefaultRelayConfig() RelayConfig {
	host, _ := os.Hostname()
	return RelayConfig{
		Name:          host + ":" + strconv.Itoa(os.Getpid()),
		BatchSize:     20,
		Interval:      time.Second,
		Lease:         2 * time.Minute,
		SendTimeout:   30 * time.Second,
		MaxAttempts:   12,
		BackoffBase:   10 * time.Second,
		BackoffMax:    time.Hour,
		StatsInterval: 10 * time.Second,
		Retention:     7 * 24 * time.Hour,
	}
}

// Validate reports the first setting out of range. Errors: EINVALID.
func (c RelayConfig) Validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > 1000:
		return shop.Errorf(shop.EINVALID, "RELAY_BATCH_SIZE must be between 1 and 1000")
	case c.Interval <= 0:
		return shop.Errorf(shop.EINVALID, "RELAY_INTERVAL must be positive")
	case c.SendTimeout <= 0:
		return shop.Errorf(shop.EINVALID, "SMTP_TIMEOUT must be positive")
	case c.Lease <= c.SendTimeout:
		return shop.Errorf(shop.EINVALID, "RELAY_LEASE (%s) must be longer than SMTP_TIMEOUT (%s)", c.Lease, c.SendTimeout)
	case c.MaxAttempts < 1:
		return shop.Errorf(shop.EINVALID, "RELAY_MAX_ATTEMPTS must be at least 1")
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return shop.Errorf(shop.EINVALID, "RELAY_BACKOFF_BASE must be positive and at most RELAY_BACKOFF_MAX")
	case c.StatsInterval <= 0:
		return shop.Errorf(shop.EINVALID, "the relay's stats interval must be positive")
	case c.Retention < 0:
		return shop.Errorf(shop.EINVALID, "RELAY_RETENTION must not be negative")
	}
	return nil
}

// Backoff is the wait before the retry that follows failed attempt n (1 is
// the first): d = min(BackoffBase * 2^(n-1), BackoffMax), then a uniformly
// random value in [d/2, d], so that events that failed together (a mail
// server outage) do not all come back in the same instant.
func (c RelayConfig) Backoff(n int) time.Duration {
	d := c.BackoffMax
	if n >= 1 && n <= 40 {
		if b := c.BackoffBase << (n - 1); b > 0 && b < d {
			d = b
		}
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// Span operation names of the relay.
const (
	SpanOutboxBatch = "outbox.relay.batch" // one claim and its sends
	SpanOutboxSend  = "outbox.send"        // one delivery; child of the checkout's span
)

// Reasons, the reason tag of outbox.retried and outbox.dead.
const (
	ReasonUnavailable = "unavailable"  // the mail server failed or could not be reached (retried)
	ReasonMaxAttempts = "max_attempts" // the last allowed attempt failed (dead)
	ReasonRejected    = "rejected"     // the server rejected the recipient or message for good (dead)
	ReasonInvalid     = "invalid"      // the event cannot be turned into a mail (dead)
)

// Relay delivers the outbox's order confirmations through a shop.Mailer.
// Several relays (in several processes) may run on one database; each event
// is claimed by one of them at a time.
type Relay struct {
	db     *DB
	mailer shop.Mailer
	tel    *telemetry.Telemetry
	cfg    RelayConfig
}

// NewRelay returns a relay on db sending with mailer and reporting to tel.
// Errors: EINVALID for a configuration out of range or a nil mailer or tel.
func (db *DB) NewRelay(mailer shop.Mailer, tel *telemetry.Telemetry, cfg RelayConfig) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if mailer == nil || tel == nil {
		return nil, shop.Errorf(shop.EINVALID, "the outbox relay needs a mailer and telemetry")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultRelayConfig().Name
	}
	return &Relay{db: db, mailer: mailer, tel: tel, cfg: cfg}, nil
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
// batch back and returns nil. Database errors are logged and retried at the
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

func (r *Relay) reportStatsLogged(ctx context.Context, log *zap.Logger) {
	if _, err := r.ReportStats(ctx); err != nil && ctx.Err() == nil {
		log.Warn("outbox relay: stats failed", zap.Error(err))
	}
	if r.cfg.Retention > 0 {
		if _, err := r.db.PurgeSentOutbox(ctx, r.cfg.Retention); err != nil && ctx.Err() == nil {
			log.Warn("outbox relay: purge failed", zap.Error(err))
		}
	}
}

// Drain runs batches until none is due or a transient failure stops one,
// and returns what they did. Errors: EUNAVAILABLE, EINTERNAL (database).
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

// claimSQL leases up to $1 due events to relay $3 for $2 ms. SKIP LOCKED:
// rows another relay is claiming at this instant are left to it, never
// waited for; once committed, the lease (next_attempt_at in the future)
// keeps them off every claim until it expires.
const claimSQL = `-- name: outbox.claim
WITH due AS (
    SELECT id FROM outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET attempts = o.attempts + 1,
    next_attempt_at = now() + $2::bigint * interval '1 millisecond',
    claimed_by = $3,
    claim_id = gen_random_uuid()
FROM due
WHERE o.id = due.id
RETURNING o.id, o.claim_id::text, o.order_id::text, o.recipient, o.recipient_name,
          o.payload, o.trace_context, o.attempts, o.created_at`

const markSentSQL = `-- name: outbox.mark_sent
UPDATE outbox SET status = 'sent', sent_at = now(), claim_id = NULL, last_error = NULL
WHERE id = $1 AND claim_id = $2 AND status = 'pending'`

const markRetrySQL = `-- name: outbox.mark_retry
UPDATE outbox SET next_attempt_at = now() + $3::bigint * interval '1 millisecond', claim_id = NULL, last_error = $4
WHERE id = $1 AND claim_id = $2 AND status = 'pending'`

const markDeadSQL = `-- name: outbox.mark_dead
UPDATE outbox SET status = 'dead', claim_id = NULL, last_error = $3
WHERE id = $1 AND claim_id = $2 AND status = 'pending'`

// releaseSQL hands claimed, unattempted events back: due now, and the
// claim's attempt not counted.
const releaseSQL = `-- name: outbox.release
UPDATE outbox o SET next_attempt_at = now(), attempts = greatest(o.attempts - 1, 0), claim_id = NULL
FROM unnest($1::bigint[], $2::uuid[]) AS r(id, claim_id)
WHERE o.id = r.id AND o.claim_id = r.claim_id AND o.status = 'pending'`

// outboxEvent is a claimed event.
type outboxEvent struct {
	id        int64
	claimID   string
	orderID   string
	recipient string
	name      string
	payload   []byte
	trace     map[string]string
	attempts  int
	createdAt time.Time
}

// RunBatch claims up to BatchSize due events and delivers them one by one.
// A delivery that fails transiently is rescheduled and ends the batch (the
// server is probably down: one probe per poll, not one per event); the
// unsent rest is handed back. Errors: EUNAVAILABLE, EINTERNAL (the claim
// failed; nothing was claimed).
func (r *Relay) RunBatch(ctx context.Context) (BatchStats, error) {
	var st BatchStats
	span, ctx := tracer.StartSpanFromContext(ctx, SpanOutboxBatch, tracer.ResourceName("order_confirmation"),
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

	claimedAt := time.Now()
	events, err := r.claim(ctx)
	if err != nil {
		span.SetTag(ext.ErrorMsg, err.Error())
		return st, wrapErr(err)
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

func (r *Relay) claim(ctx context.Context) ([]outboxEvent, error) {
	rows, err := r.db.Pool.Query(ctx, claimSQL, r.cfg.BatchSize, r.cfg.Lease.Milliseconds(), r.cfg.Name)
	if err != nil {
		return nil, err
	}
	var events []outboxEvent
	for rows.Next() {
		var ev outboxEvent
		if err := rows.Scan(&ev.id, &ev.claimID, &ev.orderID, &ev.recipient, &ev.name, &ev.payload, &ev.trace, &ev.attempts, &ev.createdAt); err != nil {
			rows.Close()
			return nil, err
		}
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(events, func(a, b outboxEvent) int { return cmp.Compare(a.id, b.id) })
	return events, nil
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
func (r *Relay) deliver(ctx context.Context, ev outboxEvent) result {
	opts := []tracer.StartSpanOption{
		tracer.ResourceName("order_confirmation"),
		tracer.SpanType(ext.SpanTypeMessageConsumer),
		tracer.Tag(ext.SpanKind, ext.SpanKindConsumer),
		tracer.Tag("order.id", ev.orderID),
		tracer.Tag("outbox.event_id", ev.id),
		tracer.Tag("outbox.attempt", ev.attempts),
		tracer.Tag("outbox.relay", r.cfg.Name),
		tracer.Tag("outbox.age_ms", time.Since(ev.createdAt).Milliseconds()),
	}
	// The send joins the checkout's trace as a child of the checkout's span
	// (the request span that was active when the order was placed); an event
	// without a trace context hangs under the batch span instead.
	if parent, err := tracer.Extract(tracer.TextMapCarrier(ev.trace)); err == nil && parent != nil {
		opts = append(opts, tracer.WithStartSpanConfig(&tracer.StartSpanConfig{Parent: parent}))
	} else if batch, ok := tracer.SpanFromContext(ctx); ok && batch != nil {
		opts = append(opts, tracer.WithStartSpanConfig(&tracer.StartSpanConfig{Parent: batch.Context()}))
	}
	span := tracer.StartSpan(SpanOutboxSend, opts...)
	ctx = tracer.ContextWithSpan(ctx, span)
	log := telemetry.Logger(ctx, r.tel.Log).With(zap.String("order_id", ev.orderID), zap.Int64("outbox_event_id", ev.id),
		zap.Int("attempt", ev.attempts), zap.String("relay", r.cfg.Name))

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
func (r *Relay) attempt(ctx context.Context, ev outboxEvent, log *zap.Logger) (result, error) {
	if ev.attempts > r.cfg.MaxAttempts {
		// Claimed MaxAttempts times already without a recorded result (the
		// relays holding it died): stop trying.
		err := fmt.Errorf("claimed %d times without a recorded result", ev.attempts-1)
		return r.park(ctx, ev, ReasonMaxAttempts, err, log), err
	}
	var c shop.OrderConfirmation
	if err := json.Unmarshal(ev.payload, &c); err != nil {
		err = fmt.Errorf("outbox payload: %w", err)
		return r.park(ctx, ev, ReasonInvalid, err, log), err
	}
	c.OrderID, c.To, c.Name = ev.orderID, ev.recipient, ev.name

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
		lost, dbErr := r.mark(ctx, markSentSQL, ev.id, ev.claimID)
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
	case ev.attempts >= r.cfg.MaxAttempts:
		return r.park(ctx, ev, ReasonMaxAttempts, err, log), err
	}
	delay := r.cfg.Backoff(ev.attempts)
	lost, dbErr := r.mark(ctx, markRetrySQL, ev.id, ev.claimID, delay.Milliseconds(), errText(err))
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
func (r *Relay) park(ctx context.Context, ev outboxEvent, reason string, cause error, log *zap.Logger) result {
	lost, err := r.mark(ctx, markDeadSQL, ev.id, ev.claimID, errText(cause))
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

// mark runs one of the mark statements; lost reports that the row was no
// longer under this claim.
func (r *Relay) mark(ctx context.Context, sql string, args ...any) (lost bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tag, err := r.db.Pool.Exec(ctx, sql, args...)
	if err != nil {
		return false, wrapErr(err)
	}
	return tag.RowsAffected() == 0, nil
}

// release hands events back unsent and returns how many it released.
func (r *Relay) release(ctx context.Context, events []outboxEvent) int {
	if len(events) == 0 {
		return 0
	}
	ids := make([]int64, len(events))
	claims := make([]string, len(events))
	for i, ev := range events {
		ids[i], claims[i] = ev.id, ev.claimID
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tag, err := r.db.Pool.Exec(ctx, releaseSQL, ids, claims)
	if err != nil {
		r.tel.Log.Warn("outbox relay: release failed; the events come back after the lease", zap.Int("events", len(events)), zap.Error(err))
		return 0
	}
	return int(tag.RowsAffected())
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

// OutboxStatus is the state of the outbox.
type OutboxStatus struct {
	Pending int // events not yet sent (due or waiting for a retry)
	Due     int // pending events due now (not leased, not backing off)
	Dead    int // events parked as dead
	// OldestPending is the age of the oldest pending event (0 when none).
	OldestPending time.Duration
	// OldestPendingOrder is that event's order id ("" when none).
	OldestPendingOrder string
}

const outboxStatusSQL = `-- name: outbox.status
SELECT count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= now()),
       count(*) FILTER (WHERE status = 'dead'),
       COALESCE((EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE status = 'pending')) * 1000)::bigint, 0),
       COALESCE((SELECT order_id::text FROM outbox WHERE status = 'pending' ORDER BY created_at, id LIMIT 1), '')
FROM outbox
WHERE status IN ('pending', 'dead')`

// OutboxStatus counts pending, due and dead events and ages the oldest
// pending one. Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) OutboxStatus(ctx context.Context) (OutboxStatus, error) {
	var s OutboxStatus
	var ms int64
	if err := db.Pool.QueryRow(ctx, outboxStatusSQL).Scan(&s.Pending, &s.Due, &s.Dead, &ms, &s.OldestPendingOrder); err != nil {
		return OutboxStatus{}, wrapErr(err)
	}
	s.OldestPending = time.Duration(ms) * time.Millisecond
	return s, nil
}

// ReportStats sends the outbox gauges (pending, age of the oldest pending,
// parked) and returns the status they came from. Errors: EUNAVAILABLE,
// EINTERNAL.
func (r *Relay) ReportStats(ctx context.Context) (OutboxStatus, error) {
	return r.db.ReportOutboxStats(ctx, r.tel)
}

// ReportOutboxStats sends the outbox gauges to tel and returns the status
// they came from. A service that runs no relay still calls it, so that mails
// owed and not sent show (and alert). Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) ReportOutboxStats(ctx context.Context, tel *telemetry.Telemetry) (OutboxStatus, error) {
	// A trace every 10 s per process would cost more than it tells: the
	// gauges are the signal.
	ctx, finish := droppedRoot(ctx, "outbox.stats")
	defer finish()
	s, err := db.OutboxStatus(ctx)
	if err != nil {
		return s, err
	}
	_ = tel.Metrics.Gauge(telemetry.MetricOutboxPending, float64(s.Pending), nil, 1)
	_ = tel.Metrics.Gauge(telemetry.MetricOutboxOldestPendingAge, s.OldestPending.Seconds(), nil, 1)
	_ = tel.Metrics.Gauge(telemetry.MetricOutboxParked, float64(s.Dead), nil, 1)
	return s, nil
}

const requeueDeadSQL = `-- name: outbox.requeue_dead
UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), claim_id = NULL
WHERE status = 'dead' AND (cardinality($1::uuid[]) = 0 OR order_id = ANY($1::uuid[]))`

// RequeueDead makes dead events pending again with a fresh attempt budget:
// those of orderIDs, or all of them when orderIDs is empty. It returns how
// many it requeued. Errors: EINVALID (an order id is not a UUID),
// EUNAVAILABLE, EINTERNAL.
func (db *DB) RequeueDead(ctx context.Context, orderIDs []string) (int, error) {
	for _, id := range orderIDs {
		if !shop.ValidID(id) {
			return 0, shop.Errorf(shop.EINVALID, "%q is not an order id", id)
		}
	}
	if orderIDs == nil {
		orderIDs = []string{}
	}
	tag, err := db.Pool.Exec(ctx, requeueDeadSQL, orderIDs)
	if err != nil {
		return 0, wrapErr(err)
	}
	return int(tag.RowsAffected()), nil
}

const purgeSentSQL = `-- name: outbox.purge_sent
DELETE FROM outbox WHERE status = 'sent' AND sent_at < now() - $1::bigint * interval '1 millisecond'`

// PurgeSentOutbox deletes events sent more than olderThan ago and returns
// how many. Errors: EINVALID (olderThan not positive), EUNAVAILABLE,
// EINTERNAL.
func (db *DB) PurgeSentOutbox(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan <= 0 {
		return 0, shop.Errorf(shop.EINVALID, "the retention must be positive")
	}
	ctx, finish := droppedRoot(ctx, "outbox.purge")
	defer finish()
	tag, err := db.Pool.Exec(ctx, purgeSentSQL, olderThan.Milliseconds())
	if err != nil {
		return 0, wrapErr(err)
	}
	return int(tag.RowsAffected()), nil
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
