package postgres

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/shop"
)

// Buyer tokens (migration 00019, docs/security.md): only their SHA-256 is
// stored. A token is found by its hash through the unique index; the
// timing of that lookup depends on the hash, which tells a guesser nothing
// about any token, and the hash found is compared once more in constant
// time.

// authenticateSQL finds an unrevoked token by its hash and notes its use,
// at most once a minute per token (a busy buyer's requests do not all
// write the row).
const authenticateSQL = `-- name: tokens.authenticate
WITH t AS (
    SELECT id, customer_id, hash, last_used_at FROM buyer_tokens WHERE hash = $1 AND revoked_at IS NULL
), used AS (
    UPDATE buyer_tokens b SET last_used_at = now() FROM t
    WHERE b.id = t.id AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
)
SELECT customer_id::text, hash FROM t`

// BuyerByToken returns the id of the customer whose unrevoked token hashes
// to h, and notes the token's use (to the minute). Errors: EUNAUTHORIZED
// (no such token, or revoked), EUNAVAILABLE (also: no connection within
// db.AcquireTimeout), EINTERNAL.
func (db *DB) BuyerByToken(ctx context.Context, h shop.TokenHash) (string, error) {
	c, err := db.conn(ctx) // at most db.AcquireTimeout, as every request's store call
	if err != nil {
		return "", wrapErr(err)
	}
	defer c.Release()
	var id string
	var stored []byte
	err = c.QueryRow(ctx, authenticateSQL, h[:]).Scan(&id, &stored)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && subtle.ConstantTimeCompare(stored, h[:]) != 1) {
		return "", shop.Errorf(shop.EUNAUTHORIZED, "The buyer token is not valid or was revoked.")
	}
	if err != nil {
		return "", wrapErr(err)
	}
	return id, nil
}

// issueTokenSQL stores a token for the customer with email $1. After the
// contract step a merchant with that email who is not yet a customer is
// made one first, as the first order would (orders_buyer_is_customer).
const issueTokenSQL = `-- name: tokens.issue
WITH c AS (
    SELECT id FROM customers WHERE email = $1
){merchant}
INSERT INTO buyer_tokens (customer_id, hash)
SELECT id, $2 FROM {buyers}
RETURNING id::text, customer_id::text, created_at`

const issueTokenMerchant = `, m AS (
    INSERT INTO customers (id, email, name, created_at)
    SELECT m.id, m.email, m.name, m.created_at FROM merchants m
    WHERE m.email = $1 AND NOT EXISTS (SELECT 1 FROM c)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), b AS (SELECT id FROM c UNION ALL SELECT id FROM m)`

// insertTokenSQL stores a token for a customer created in the same
// transaction (before the contract step; after it, createCustomerSQL does).
const insertTokenSQL = `-- name: tokens.insert
INSERT INTO buyer_tokens (customer_id, hash) VALUES ($1, $2)`

// IssueToken issues a new token to the customer with the email (a merchant
// becomes a customer, after the users split's contract step): the
// returned token is shown this once and only its hash is stored. Earlier
// tokens stay valid until revoked. Errors: EINVALID (no email), ENOTFOUND
// (no such customer), EUNAVAILABLE, EINTERNAL.
func (db *DB) IssueToken(ctx context.Context, email string) (shop.IssuedToken, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" {
		return shop.IssuedToken{}, shop.Invalid(shop.FieldError{Field: "email", Code: "required", Message: "email is required"})
	}
	token, h := shop.NewBuyerToken()
	out := shop.IssuedToken{Token: token}
	out.Email = email
	err := db.users.run(ctx, db.Pool, func(m usersMode) error {
		q := strings.NewReplacer("{merchant}", "", "{buyers}", "c").Replace(issueTokenSQL)
		if m == usersContracted {
			q = strings.NewReplacer("{merchant}", issueTokenMerchant, "{buyers}", "b").Replace(issueTokenSQL)
		}
		return db.Pool.QueryRow(ctx, q, email, h[:]).Scan(&out.ID, &out.CustomerID, &out.CreatedAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return shop.IssuedToken{}, shop.Errorf(shop.ENOTFOUND, "No customer has the email %s.", email)
	}
	if err != nil {
		return shop.IssuedToken{}, wrapErr(err)
	}
	return out, nil
}

const tokenColumns = `t.id::text, t.customer_id::text, c.email, t.created_at, t.last_used_at, t.revoked_at`

// revokeTokenSQL revokes the token whose hash is $1 or whose id is $2
// (revoking twice keeps the first time).
const revokeTokenSQL = `-- name: tokens.revoke
UPDATE buyer_tokens t SET revoked_at = coalesce(t.revoked_at, now())
FROM customers c
WHERE c.id = t.customer_id AND (t.hash = $1 OR t.id = $2::uuid)
RETURNING ` + tokenColumns

// RevokeToken revokes a token, named by the token itself or by its id
// (what `shopd token list` shows); from then on it authenticates nobody.
// Revoking a revoked token changes nothing. Errors: EINVALID (neither a
// token nor an id), ENOTFOUND, EUNAVAILABLE, EINTERNAL.
func (db *DB) RevokeToken(ctx context.Context, tokenOrID string) (shop.BuyerToken, error) {
	tokenOrID = strings.TrimSpace(tokenOrID)
	var hash []byte
	var id *string
	switch {
	case shop.LooksLikeBuyerToken(tokenOrID):
		h := shop.HashBuyerToken(tokenOrID)
		hash = h[:]
	case shop.ValidID(tokenOrID):
		id = &tokenOrID
	default:
		return shop.BuyerToken{}, shop.Invalid(shop.FieldError{Field: "token", Code: "invalid",
			Message: "token must be a buyer token (" + shop.BuyerTokenPrefix + "...) or a token id"})
	}
	t, err := scanToken(db.Pool.QueryRow(ctx, revokeTokenSQL, hash, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return shop.BuyerToken{}, shop.Errorf(shop.ENOTFOUND, "No such buyer token.")
	}
	if err != nil {
		return shop.BuyerToken{}, wrapErr(err)
	}
	return t, nil
}

const listTokensSQL = `-- name: tokens.list
SELECT ` + tokenColumns + `
FROM buyer_tokens t JOIN customers c ON c.id = t.customer_id
WHERE c.email = $1
ORDER BY t.created_at, t.id`

// ListTokens lists the tokens of the customer with the email, revoked ones
// included, oldest first; never the tokens themselves. Errors:
// EUNAVAILABLE, EINTERNAL.
func (db *DB) ListTokens(ctx context.Context, email string) ([]shop.BuyerToken, error) {
	rows, err := db.Pool.Query(ctx, listTokensSQL, strings.ToLower(strings.TrimSpace(email)))
	if err != nil {
		return nil, wrapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shop.BuyerToken, error) { return scanToken(r) })
	if err != nil {
		return nil, wrapErr(err)
	}
	return out, nil
}

func scanToken(r pgx.Row) (shop.BuyerToken, error) {
	var t shop.BuyerToken
	err := r.Scan(&t.ID, &t.CustomerID, &t.Email, &t.CreatedAt, &t.LastUsedAt, &t.RevokedAt)
	return t, err
}
