-- +goose Up
-- Users split, step "expand 5a" (docs/schema-split.md): validate the
-- constraints of 00014. VALIDATE scans orders under SHARE UPDATE EXCLUSIVE,
-- which blocks no read and no write, so the scan may take its time
-- (statement_timeout 0 for it); only the lock wait is bounded.
-- Refuses while any order lacks a customer: run `shopd backfill users-split`
-- first (VALIDATE would fail too, but after a full scan and with a less
-- helpful message).
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = 0;

-- +goose StatementBegin
DO $$
DECLARE
    missing bigint;
BEGIN
    SELECT count(*) INTO missing FROM orders WHERE customer_id IS NULL;
    IF missing > 0 THEN
        RAISE EXCEPTION 'users split: % orders have no customer_id yet', missing
            USING HINT = 'run `shopd backfill users-split`, then migrate again';
    END IF;
END
$$;
-- +goose StatementEnd

ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_fkey;
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_not_null;

-- +goose Down
-- Back to 00014's state: both constraints enforced for new rows, not
-- validated. Dropping and re-adding NOT VALID is metadata only. orders is
-- locked first, as in 00014.
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_not_null;
ALTER TABLE orders ADD CONSTRAINT orders_customer_id_not_null
    CHECK (customer_id IS NOT NULL) NOT VALID;
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey;
ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
