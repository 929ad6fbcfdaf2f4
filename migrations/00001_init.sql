-- +goose Up
-- The original schema (original-system.md) with what it lacked: UUID keys,
-- exact NUMERIC money, foreign keys, CHECK constraints that make bad states
-- impossible, and the indexes the queries need.

-- user_type is NULL for an account whose type was never recorded: the
-- original schema had no such column, so every account carried over from
-- it is typeless until someone decides. New accounts default to customer.
CREATE TABLE users (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email       text        NOT NULL,
    name        text        NOT NULL,
    user_type   text                 DEFAULT 'customer',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_user_type_check CHECK (user_type IN ('customer', 'merchant'))
);

CREATE TABLE products (
    id          uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text          NOT NULL,
    description text,
    price       numeric(12,2) NOT NULL,
    -- squawk-ignore prefer-bigint-over-int -- stock, at most 1,000,000,000 (shop.MaxInventory, validated on every write), far below 2^31
    inventory   integer       NOT NULL,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT products_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT products_price_check CHECK (price >= 0),
    CONSTRAINT products_inventory_check CHECK (inventory >= 0)
);
-- GET /products lists newest first; the id breaks ties for stable pages.
-- squawk-ignore require-lock-timeout, require-statement-timeout -- products was created in this same transaction: no other session can hold or queue for its locks, and it is empty
CREATE INDEX products_created_at_idx ON products (created_at DESC, id DESC);
CREATE INDEX products_name_idx ON products (name);
-- GET /admin/inventory/low: lowest stock first.
CREATE INDEX products_inventory_idx ON products (inventory, id);

CREATE TABLE orders (
    id          uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid          NOT NULL REFERENCES users (id),
    status      text          NOT NULL DEFAULT 'pending',
    total       numeric(12,2) NOT NULL,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT orders_status_check CHECK (status IN ('pending', 'completed', 'cancelled')),
    CONSTRAINT orders_total_check CHECK (total >= 0)
);
-- Order history: one user's orders, newest first, paged by (created_at, id).
CREATE INDEX orders_user_created_idx ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_created_at_idx ON orders (created_at);

CREATE TABLE order_items (
    id          uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id    uuid          NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id  uuid          NOT NULL REFERENCES products (id),
    -- squawk-ignore prefer-bigint-over-int -- a cart line's quantity, at most 1,000 (shop.MaxLineQuantity)
    quantity    integer       NOT NULL,
    price       numeric(12,2) NOT NULL,
    CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    CONSTRAINT order_items_price_check CHECK (price >= 0)
);
CREATE INDEX order_items_order_id_idx ON order_items (order_id);
CREATE INDEX order_items_product_id_idx ON order_items (product_id);

-- +goose Down
-- squawk-ignore-file ban-drop-table -- the down of the first migration: it removes the whole schema it created, on purpose
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE products;
DROP TABLE users;
