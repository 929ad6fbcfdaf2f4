-- +goose Up
-- Idempotency keys of POST /orders/checkout (the Idempotency-Key header).
-- A row is written in the same transaction as the order it produced, so a
-- key exists exactly when its order does. A retry with the same key and the
-- same request gets the stored response; with another request, a 422.
-- Rows expire (expires_at, 24 h by default) and shopd deletes them.
-- The foreign key locks orders (SHARE ROW EXCLUSIVE) for an instant:
-- bound the wait (squawk require-lock-timeout).
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';
CREATE TABLE idempotency_keys (
    idempotency_key text        PRIMARY KEY,
    -- sha256 of the validated request (user and merged, sorted lines)
    request_hash    bytea       NOT NULL,
    -- NULL only inside the transaction that claimed the key
    order_id        uuid        REFERENCES orders (id) ON DELETE CASCADE,
    -- the order exactly as the first answer (201) carried it
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    CONSTRAINT idempotency_keys_key_check CHECK (length(idempotency_key) BETWEEN 1 AND 255)
);
-- The cleanup deletes expired keys oldest first.
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
-- ON DELETE CASCADE from orders looks keys up by order.
CREATE INDEX idempotency_keys_order_id_idx ON idempotency_keys (order_id);

-- +goose Down
-- squawk-ignore ban-drop-table -- the down of the step that created the table
DROP TABLE idempotency_keys;
