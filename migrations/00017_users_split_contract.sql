-- +goose Up
-- Users split, step "contract" (docs/schema-split.md). Irreversible.
-- Refuses unless users_split_check() (what `shopd verify users-split`
-- prints) finds no difference. The check runs before any lock is taken:
-- writes go on during it, and the triggers keep the new tables in step with
-- them until the triggers are dropped below, under the exclusive locks.
-- Then: drop the sync triggers and orders.user_id (its index and foreign
-- key go with it), add the small trigger that makes a buying merchant a
-- customer, and rename users to users_legacy, kept for an observation
-- period and dropped by hand later. The running service notices on its next
-- statement (undefined table/column), re-reads the schema and goes on with
-- customers, merchants and orders.customer_id.
-- Locks: ACCESS EXCLUSIVE on users, then orders (the order in which
-- checkouts take them, so that no deadlock arises), for the time of a few
-- catalogue updates: no rewrite, no scan.
SET LOCAL statement_timeout = 0;

-- +goose StatementBegin
DO $$
DECLARE
    failed text;
BEGIN
    SELECT string_agg(format('%s: %s (e.g. %s)', check_name, differences, example), '; ')
    INTO failed
    FROM users_split_check()
    WHERE differences > 0;
    IF failed IS NOT NULL THEN
        RAISE EXCEPTION 'users split: old and new differ, refusing to contract: %', failed
            USING HINT = 'run `shopd backfill users-split`, then `shopd verify users-split` until it passes';
    END IF;
END
$$;
-- +goose StatementEnd

SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';
LOCK TABLE users, orders IN ACCESS EXCLUSIVE MODE;

DROP TRIGGER users_split_sync ON orders;
DROP TRIGGER users_split_sync ON users;
DROP FUNCTION users_split_orders_trigger();
DROP FUNCTION users_split_users_trigger();
DROP FUNCTION users_split_sync_user(uuid);
DROP FUNCTION users_split_check();
-- squawk-ignore ban-drop-table -- the backfill's bookkeeping; the backfill is over
DROP TABLE users_split_backfill;
-- squawk-ignore ban-drop-column -- the point of the step: verified equal to customer_id just above; the service switches to customer_id when this statement makes its old queries fail
ALTER TABLE orders DROP COLUMN user_id;
-- A merchant who buys becomes a customer, as the orders trigger above saw
-- to before: checkout inserts the order with the merchant's id and this
-- trigger copies the merchant into customers first if needed.
-- +goose StatementBegin
CREATE FUNCTION orders_buyer_is_customer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM customers WHERE id = NEW.customer_id) THEN
        INSERT INTO customers (id, email, name, created_at)
        SELECT m.id, m.email, m.name, m.created_at FROM merchants m WHERE m.id = NEW.customer_id
        ON CONFLICT (id) DO NOTHING;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER orders_buyer_is_customer
    BEFORE INSERT OR UPDATE OF customer_id ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_buyer_is_customer();

-- squawk-ignore renaming-table -- kept, not dropped, so that a mistake found later can still be repaired by hand; the service stops using it when this runs
ALTER TABLE users RENAME TO users_legacy;

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    RAISE EXCEPTION 'users split: the contract step is irreversible'
        USING HINT = 'orders.user_id and the triggers are gone and new accounts live only in customers and merchants; '
                     'restore by hand from users_legacy and customers (see docs/schema-split.md, "Rollback")';
END
$$;
-- +goose StatementEnd
