-- +goose Up
-- Users split, step "expand 4" (docs/schema-split.md): every order must have
-- a customer that exists. Both constraints are NOT VALID: enforced for every
-- row written from now on, without scanning the existing ones, so each
-- ALTER holds its lock (SHARE ROW EXCLUSIVE on orders and customers for the
-- foreign key, ACCESS EXCLUSIVE on orders for the CHECK) for an instant.
-- 00015 validates them without blocking writes. The CHECK stands in for NOT
-- NULL, which cannot be added NOT VALID.
-- orders is locked first, once, in the mode the CHECK needs: the writers
-- (checkout, and the users trigger of 00012) lock orders before customers,
-- and so must this step, or a writer holding orders and waiting for
-- customers and this step holding customers and upgrading its lock on
-- orders deadlock.
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;

ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
ALTER TABLE orders ADD CONSTRAINT orders_customer_id_not_null
    CHECK (customer_id IS NOT NULL) NOT VALID;

-- +goose Down
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_not_null;
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey;
