-- +goose NO TRANSACTION
-- +goose Up
-- Product search (GET /products?q=) matches name and description with
-- ILIKE '%term%'. A B-tree cannot serve a leading wildcard; pg_trgm's GIN
-- trigram indexes can (ILIKE included, with the search's \-escaped % and _).
-- pg_trgm ships with PostgreSQL's contrib package and is a trusted
-- extension (PostgreSQL 13+): the database owner may create it.
-- Lock waits are bounded; the builds are not (they block no read or
-- write). The settings are this migration's session's only (shopd migrate
-- runs on a connection of its own).
SET lock_timeout = '2s';
SET statement_timeout = 0;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- CONCURRENTLY: a live catalogue keeps taking writes while the indexes
-- build (this is why the migration runs outside a transaction). A failed
-- build leaves an INVALID index: drop it and rerun.
CREATE INDEX CONCURRENTLY IF NOT EXISTS products_name_trgm_idx
    ON products USING gin (name gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS products_description_trgm_idx
    ON products USING gin (description gin_trgm_ops);

-- +goose Down
-- The extension stays: other objects may use it, and it costs nothing idle.
DROP INDEX CONCURRENTLY IF EXISTS products_description_trgm_idx;
DROP INDEX CONCURRENTLY IF EXISTS products_name_trgm_idx;
