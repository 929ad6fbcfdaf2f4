-- +goose Up
-- Transactional outbox (issue 8). Checkout inserts one row per order in the
-- same transaction as the order, so an order exists if and only if its
-- confirmation mail is owed. The relay (`shopd serve` or `shopd relay`)
-- claims due rows with FOR UPDATE SKIP LOCKED, sends them and marks them.
--
-- status: pending (owed; due at next_attempt_at), sent, dead (gave up after
-- RELAY_MAX_ATTEMPTS or a permanent rejection; `shopd outbox requeue-dead`).
-- A claim increments attempts, sets claim_id and pushes next_attempt_at
-- forward by the lease, so a relay that dies mid-batch leaves rows that come
-- back by themselves when the lease expires. The payload is the mail's
-- content as it was at checkout (lines, prices, total); recipient is the
-- buyer's users.email then. trace_context holds the checkout's trace
-- (dd-trace-go text map) so the relay's send span joins the checkout's trace.
-- The foreign key locks orders (SHARE ROW EXCLUSIVE) for an instant: bound
-- the wait (squawk require-lock-timeout).
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';
CREATE TABLE outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL,
    order_id        uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    recipient       text        NOT NULL,
    recipient_name  text        NOT NULL DEFAULT '',
    payload         jsonb       NOT NULL,
    trace_context   jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL DEFAULT 'pending',
    -- squawk-ignore prefer-bigint-over-int -- a retry counter, at most RELAY_MAX_ATTEMPTS (12 by default)
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by      text,
    claim_id        uuid,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CONSTRAINT outbox_kind_check CHECK (kind IN ('order_confirmation')),
    CONSTRAINT outbox_status_check CHECK (status IN ('pending', 'sent', 'dead')),
    CONSTRAINT outbox_attempts_check CHECK (attempts >= 0),
    -- At most one confirmation per order, whatever retries a client makes.
    CONSTRAINT outbox_order_kind_key UNIQUE (order_id, kind)
);
-- The relay's claim: due pending rows, oldest due first.
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id) WHERE status = 'pending';
-- Parked rows, for the gauge and `shopd outbox requeue-dead`.
CREATE INDEX outbox_dead_idx ON outbox (id) WHERE status = 'dead';
-- Retention: the relay deletes sent rows older than RELAY_RETENTION.
CREATE INDEX outbox_sent_idx ON outbox (sent_at) WHERE status = 'sent';

-- +goose Down
-- squawk-ignore ban-drop-table -- the down of the step that created the table
DROP TABLE outbox;
