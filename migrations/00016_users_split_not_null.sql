-- +goose Up
-- Users split, step "expand 5b" (docs/schema-split.md): customer_id NOT NULL.
-- PostgreSQL (12+) skips the full-table check of SET NOT NULL when a
-- validated CHECK (customer_id IS NOT NULL) exists, so the ACCESS EXCLUSIVE
-- lock lasts an instant; the CHECK then has no more use.
-- A separate step from 00015 so that a lock timeout here (retried by shopd
-- migrate) does not roll back, and repeat, 00015's long validation scans.
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = 0;

-- A no-op when 00015 validated the CHECK (the usual case). After this
-- step's down, which leaves the CHECK NOT VALID to avoid a scan under an
-- exclusive lock, it scans orders under SHARE UPDATE EXCLUSIVE, blocking no
-- read and no write.
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_not_null;
SET LOCAL statement_timeout = '10s';
-- squawk-ignore adding-not-nullable-field -- the CHECK (customer_id IS NOT NULL) validated just above (and in 00015) lets PostgreSQL 12+ skip the scan: the ACCESS EXCLUSIVE lock is held for an instant
ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_not_null;

-- +goose Down
-- Back to a CHECK instead of NOT NULL, both metadata only. The CHECK comes
-- back NOT VALID (validating it here would scan orders under the ACCESS
-- EXCLUSIVE lock that ADD CONSTRAINT holds until commit); every row has
-- been checked by NOT NULL anyway, and this step's up validates it again
-- without blocking writes.
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';
ALTER TABLE orders ADD CONSTRAINT orders_customer_id_not_null
    CHECK (customer_id IS NOT NULL) NOT VALID;
-- squawk-ignore ban-drop-not-null -- the CHECK added just above still forbids NULLs in every new row
ALTER TABLE orders ALTER COLUMN customer_id DROP NOT NULL;
