-- +goose NO TRANSACTION
-- +goose Up
-- Step 1 of "every product has a description" (docs/api-evolution.md).
-- "Missing" gets exactly one representation, NULL, so that the backfill
-- worklist (GET /admin/products/missing-description) and the final
-- NOT NULL constraint see the same rows. What this does NOT add yet, and
-- why: CHECK (description IS NOT NULL), even NOT VALID, is enforced on every
-- INSERT and on every UPDATE of any row, old ones included: it would break
-- POST /products (v1, description optional until its sunset), the import,
-- and every checkout of one of the products still without a description
-- (the stock UPDATE rewrites the row). It comes after the backfill.

-- Lock waits are bounded; the scans are not (the UPDATE's row locks and
-- VALIDATE's lock let reads and other writes go on). The settings are this
-- migration's session's only (shopd migrate runs on a connection of its own).
SET lock_timeout = '2s';
SET statement_timeout = 0;

-- Blank descriptions (older clients sent "") become NULL: missing.
UPDATE products SET description = NULL
WHERE description IS NOT NULL AND btrim(description, E' \t\r\n') = '';

-- NOT VALID then VALIDATE, in separate transactions: adding takes a brief
-- ACCESS EXCLUSIVE lock without scanning; validating scans under SHARE
-- UPDATE EXCLUSIVE, which lets reads and writes go on.
-- squawk-ignore prefer-robust-stmts -- a re-run after a failure past this point stops here on the existing constraint, loudly; drop it and re-run (the other statements are idempotent)
ALTER TABLE products ADD CONSTRAINT products_description_not_blank
    CHECK (description IS NULL OR btrim(description, E' \t\r\n') <> '') NOT VALID;
-- squawk-ignore prefer-robust-stmts -- re-running VALIDATE on a validated constraint is a no-op
ALTER TABLE products VALIDATE CONSTRAINT products_description_not_blank;

-- The backfill worklist, newest first, and its count (the readiness
-- figure) read only the rows still missing a description.
CREATE INDEX CONCURRENTLY IF NOT EXISTS products_missing_description_idx
    ON products (created_at DESC, id DESC) WHERE description IS NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS products_missing_description_idx;
ALTER TABLE products DROP CONSTRAINT IF EXISTS products_description_not_blank;
