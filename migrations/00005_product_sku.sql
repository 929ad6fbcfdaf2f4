-- +goose NO TRANSACTION
-- +goose Up
-- An optional stock-keeping unit per product, unique when present. Bulk
-- imports upsert by it (ON CONFLICT (sku) WHERE sku IS NOT NULL), so that
-- re-importing a file updates its products instead of duplicating them.
--
-- Each statement runs on its own (NO TRANSACTION) so that none holds a
-- strong lock for long on a big table, and each can be re-run after a
-- failure: the column has no default (a catalogue-only change); the CHECK
-- is added NOT VALID (instant) then validated under a lock that lets reads
-- and writes through; the index is built CONCURRENTLY. (A failed
-- concurrent build leaves an INVALID index behind: drop it before re-running.)
-- Every wait for a lock is bounded (the validation scan and the index build
-- are not: neither blocks reads or writes); the settings are this
-- migration's session's only (shopd migrate runs on a connection of its own).
SET lock_timeout = '2s';
SET statement_timeout = 0;
ALTER TABLE products ADD COLUMN IF NOT EXISTS sku text;

-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE products ADD CONSTRAINT products_sku_check
        CHECK (sku IS NULL OR length(sku) BETWEEN 1 AND 64) NOT VALID;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
-- +goose StatementEnd

-- squawk-ignore prefer-robust-stmts -- re-running VALIDATE on a validated constraint is a no-op
ALTER TABLE products VALIDATE CONSTRAINT products_sku_check;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS products_sku_key ON products (sku) WHERE sku IS NOT NULL;

-- +goose Down
SET lock_timeout = '2s';
SET statement_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS products_sku_key;
ALTER TABLE products DROP CONSTRAINT IF EXISTS products_sku_check;
-- squawk-ignore ban-drop-column -- the down of the step that added the column
ALTER TABLE products DROP COLUMN IF EXISTS sku;
