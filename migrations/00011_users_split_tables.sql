-- +goose Up
-- Users split, step "expand 1" (docs/schema-split.md): the new tables.
-- Nothing reads them until the contract step; from 00012 on, triggers on
-- users and orders keep them in step with every write. A customer or a
-- merchant keeps the id of the user it comes from, so URLs and order
-- references stay valid; a merchant who buys is in both tables under one id.
-- New tables only: no lock on a table anyone uses.
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';

CREATE TABLE customers (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email       text        NOT NULL,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customers_email_key UNIQUE (email)
);

CREATE TABLE merchants (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text        NOT NULL,
    name          text        NOT NULL,
    business_name text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT merchants_email_key UNIQUE (email)
);

-- +goose Down
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';
-- squawk-ignore ban-drop-table -- nothing reads these tables before the contract step, and 00012's down (which must run first) has removed the triggers that write them
DROP TABLE merchants;
-- squawk-ignore ban-drop-table -- as above
DROP TABLE customers;
