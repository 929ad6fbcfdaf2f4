package postgres

// The transactional outbox of order-confirmation mails (issue 8): its SQL.
//
// Checkout inserts one outbox row in the same transaction as the order, so an
// order exists if and only if its mail is owed. The statements a relay runs
// (package relay: the claim loop, retries, dead letters, metrics) are the
// store methods below, each one statement that returns plain data. A claim
// takes due rows FOR UPDATE SKIP LOCKED (so relays never claim the same row)
// and is a lease: it pushes next_attempt_at forward by the lease and commits
// at once, so the sends run outside any transaction and a relay that dies
// mid-batch leaves rows that become due again when the lease expires.
// Results are recorded only under the claim (claim_id).

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/shop"
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

// confirmation is the outbox row of an order's confirmation mail, its JSON
// columns encoded as text: pgx's exec mode, the one that works through
// PgBouncer (docs/pgbouncer.md), cannot tell what a struct or a
// map[string]string is to become, and would send []byte as bytea.
type confirmation struct {
	order            shop.Order
	payload, carrier string
}

// newConfirmation encodes order's confirmation and the trace context of
// ctx. Errors: EINTERNAL.
func newConfirmation(ctx context.Context, order shop.Order) (confirmation, error) {
	payload, err := json.Marshal(shop.NewOrderConfirmation(order))
	if err != nil {
		return confirmation{}, shop.Internal(err)
	}
	carrier, err := json.Marshal(traceCarrier(ctx))
	if err != nil {
		return confirmation{}, shop.Internal(err)
	}
	return confirmation{order: order, payload: string(payload), carrier: string(carrier)}, nil
}

// queue queues, in the checkout's last batch (before its COMMIT), the
// statement that owes the order's confirmation mail: if the checkout rolls
// back, so does the mail, and the other way round. sql expands the
// statement for the users schema (usersschema.go).
func (c confirmation) queue(b *pgx.Batch, sql func(string) string) {
	b.Queue(sql(enqueueSQL), c.order.ID, c.order.UserID, c.payload, c.carrier)
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

// ClaimOutbox leases up to n due events to the relay named by for lease,
// counts the claim as an attempt, and returns them in id order. The claim is
// committed when ClaimOutbox returns. Errors: EUNAVAILABLE, EINTERNAL
// (nothing was claimed).
func (db *DB) ClaimOutbox(ctx context.Context, by string, n int, lease time.Duration) ([]shop.OutboxEvent, error) {
	rows, err := db.Pool.Query(ctx, claimSQL, n, lease.Milliseconds(), by)
	if err != nil {
		return nil, wrapErr(err)
	}
	var events []shop.OutboxEvent
	for rows.Next() {
		var ev shop.OutboxEvent
		if err := rows.Scan(&ev.ID, &ev.ClaimID, &ev.OrderID, &ev.Recipient, &ev.RecipientName, &ev.Payload, &ev.TraceContext, &ev.Attempts, &ev.CreatedAt); err != nil {
			rows.Close()
			return nil, wrapErr(err)
		}
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr(err)
	}
	slices.SortFunc(events, func(a, b shop.OutboxEvent) int { return cmp.Compare(a.ID, b.ID) })
	return events, nil
}

const markSentSQL = `-- name: outbox.mark_sent
UPDATE outbox SET status = 'sent', sent_at = now(), claim_id = NULL, last_error = NULL
WHERE id = $1 AND claim_id = $2 AND status = 'pending'`

const markRetrySQL = `-- name: outbox.mark_retry
UPDATE outbox SET next_attempt_at = now() + $3::bigint * interval '1 millisecond', claim_id = NULL, last_error = $4
WHERE id = $1 AND claim_id = $2 AND status = 'pending'`

const markDeadSQL = `-- name: outbox.mark_dead
UPDATE outbox SET status = 'dead', claim_id = NULL, last_error = $3
WHERE id = $1 AND claim_id = $2 AND status = 'pending'`

// MarkOutboxSent records that the event of c was delivered. lost reports
// that c had expired (another relay owns the event) and nothing was
// recorded. Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) MarkOutboxSent(ctx context.Context, c shop.OutboxClaim) (lost bool, err error) {
	return db.markOutbox(ctx, markSentSQL, c.ID, c.ClaimID)
}

// MarkOutboxRetry records a failed delivery of the event of c, with
// lastError, and makes it due again after retryIn. lost reports that c had
// expired and nothing was recorded. Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) MarkOutboxRetry(ctx context.Context, c shop.OutboxClaim, retryIn time.Duration, lastError string) (lost bool, err error) {
	return db.markOutbox(ctx, markRetrySQL, c.ID, c.ClaimID, retryIn.Milliseconds(), lastError)
}

// MarkOutboxDead parks the event of c as dead (failed for good), with
// lastError; only RequeueDead brings it back. lost reports that c had
// expired and nothing was recorded. Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) MarkOutboxDead(ctx context.Context, c shop.OutboxClaim, lastError string) (lost bool, err error) {
	return db.markOutbox(ctx, markDeadSQL, c.ID, c.ClaimID, lastError)
}

func (db *DB) markOutbox(ctx context.Context, sql string, args ...any) (lost bool, err error) {
	tag, err := db.Pool.Exec(ctx, sql, args...)
	if err != nil {
		return false, wrapErr(err)
	}
	return tag.RowsAffected() == 0, nil
}

// releaseSQL hands claimed, unattempted events back: due now, and the
// claim's attempt not counted.
const releaseSQL = `-- name: outbox.release
UPDATE outbox o SET next_attempt_at = now(), attempts = greatest(o.attempts - 1, 0), claim_id = NULL
FROM unnest($1::bigint[], $2::uuid[]) AS r(id, claim_id)
WHERE o.id = r.id AND o.claim_id = r.claim_id AND o.status = 'pending'`

// ReleaseOutbox hands claimed events back unattempted: due at once, their
// claim not counted as an attempt. Claims that have expired are skipped. It
// returns how many it released. Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) ReleaseOutbox(ctx context.Context, claims []shop.OutboxClaim) (int, error) {
	if len(claims) == 0 {
		return 0, nil
	}
	ids := make([]int64, len(claims))
	claimIDs := make([]string, len(claims))
	for i, c := range claims {
		ids[i], claimIDs[i] = c.ID, c.ClaimID
	}
	tag, err := db.Pool.Exec(ctx, releaseSQL, ids, claimIDs)
	if err != nil {
		return 0, wrapErr(err)
	}
	return int(tag.RowsAffected()), nil
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
func (db *DB) OutboxStatus(ctx context.Context) (shop.OutboxStatus, error) {
	var s shop.OutboxStatus
	var ms int64
	if err := db.Pool.QueryRow(ctx, outboxStatusSQL).Scan(&s.Pending, &s.Due, &s.Dead, &ms, &s.OldestPendingOrder); err != nil {
		return shop.OutboxStatus{}, wrapErr(err)
	}
	s.OldestPending = time.Duration(ms) * time.Millisecond
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
	tag, err := db.Pool.Exec(ctx, purgeSentSQL, olderThan.Milliseconds())
	if err != nil {
		return 0, wrapErr(err)
	}
	return int(tag.RowsAffected()), nil
}
