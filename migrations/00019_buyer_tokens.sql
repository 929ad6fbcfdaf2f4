-- +goose Up
-- Buyer tokens (docs/security.md): the bearer credentials with which a
-- customer reads their orders and reports and checks out. Only the SHA-256
-- of a token is stored; the token itself is shown once, when it is issued.
-- A revoked token keeps its row (revoked_at) so that `shopd token list`
-- shows what was revoked and when. Deleting a customer deletes its tokens.
--
-- Numbered 00019: other changes of issue 16 may add a migration in
-- parallel; whichever merges second renumbers.
--
-- A new, empty table: its creation locks nothing that traffic uses, except
-- the catalogue entry of customers for the foreign key (SHARE ROW
-- EXCLUSIVE, an instant: no row of buyer_tokens exists to check).
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '10s';

CREATE TABLE buyer_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id  uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    hash         bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- shopd token list <email>, and the ON DELETE CASCADE of customers.
CREATE INDEX buyer_tokens_customer_id_idx ON buyer_tokens (customer_id);

-- +goose Down
-- squawk-ignore ban-drop-table -- the down of the migration that created it
DROP TABLE buyer_tokens;
