-- +goose NO TRANSACTION
-- +goose Up
-- Users split, step "expand 3" (docs/schema-split.md): the index that order
-- history and reports read once they go by customer_id, and that the
-- customers foreign key needs (a customer's delete looks its orders up).
-- CONCURRENTLY: SHARE UPDATE EXCLUSIVE, which blocks no read and no write;
-- it cannot run inside a transaction, hence NO TRANSACTION above.
-- A CONCURRENTLY build that fails (a lock timeout while it waits for older
-- transactions, a cancel) leaves an INVALID index behind: drop it first, so
-- that a retry builds a valid one instead of keeping the broken one.
SET lock_timeout = '2s';
SET statement_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_created_idx;
-- squawk-ignore prefer-robust-stmts -- IF NOT EXISTS would keep an INVALID leftover of a failed build; the DROP ... IF EXISTS above makes the step re-runnable instead
CREATE INDEX CONCURRENTLY orders_customer_created_idx ON orders (customer_id, created_at DESC, id DESC);
-- This session goes back to goose: leave no setting behind.
RESET lock_timeout;
RESET statement_timeout;

-- +goose Down
SET lock_timeout = '2s';
SET statement_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_created_idx;
RESET lock_timeout;
RESET statement_timeout;
