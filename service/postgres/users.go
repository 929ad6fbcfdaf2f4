package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/shop"
)

// createUserSQL inserts an account before the users split's contract
// step; the trigger of migration 00012 copies it into customers or
// merchants. users_email_key keeps emails unique.
const createUserSQL = `-- name: users.create
INSERT INTO users (email, name, user_type) VALUES ($1, $2, $3)
RETURNING id::text, email, name, user_type, created_at`

// lockEmailSQL serialises the creation of accounts with one email after
// the contract step, when customers and merchants each have their own
// unique index and only this lock keeps an email in one of them.
const lockEmailSQL = `-- name: users.lock_email lock
SELECT pg_advisory_xact_lock(hashtext('shoplab.users.email'), hashtext($1))`

const createCustomerSQL = `-- name: users.create_customer
INSERT INTO customers (email, name)
SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM merchants WHERE email = $1)
RETURNING id::text, email, name, 'customer', created_at`

// createCustomerWithTokenSQL is createCustomerSQL plus the hash $3 of the
// buyer token issued with the account, in the one statement (only with a
// token: without one, nothing here needs buyer_tokens, which a schema
// walked step by step through the users split may not have yet).
const createCustomerWithTokenSQL = `-- name: users.create_customer_with_token
WITH c AS (
    INSERT INTO customers (email, name)
    SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM merchants WHERE email = $1)
    RETURNING id, email, name, created_at
), t AS (
    INSERT INTO buyer_tokens (customer_id, hash) SELECT id, $3 FROM c
)
SELECT id::text, email, name, 'customer', created_at FROM c`

const createMerchantSQL = `-- name: users.create_merchant
INSERT INTO merchants (email, name)
SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM customers WHERE email = $1)
RETURNING id::text, email, name, 'merchant', created_at`

// CreateUser stores a validated customer or merchant: into users before
// the users split's contract step, into customers or merchants after it;
// with a customer, nu.TokenHash (when set) in the same transaction.
// Errors: EINVALID, ECONFLICT (the email is taken), EUNAVAILABLE,
// EINTERNAL.
func (db *DB) CreateUser(ctx context.Context, nu shop.NewUser) (shop.User, error) {
	var u shop.User
	c, err := db.conn(ctx)
	if err != nil {
		return shop.User{}, wrapErr(err)
	}
	defer c.Release()
	err = db.users.run(ctx, db.Pool, func(m usersMode) error {
		return inTx(ctx, c, nil, func(tx pgx.Tx) error {
			var hash []byte
			if nu.TokenHash != nil && nu.UserType == shop.UserTypeCustomer {
				hash = nu.TokenHash[:]
			}
			if m != usersContracted {
				if err := tx.QueryRow(ctx, createUserSQL, nu.Email, nu.Name, nu.UserType).Scan(&u.ID, &u.Email, &u.Name, &u.UserType, &u.CreatedAt); err != nil || hash == nil {
					return err
				}
				_, err := tx.Exec(ctx, insertTokenSQL, u.ID, hash)
				return err
			}
			if _, err := tx.Exec(ctx, lockEmailSQL, nu.Email); err != nil {
				return err
			}
			q, args := createCustomerSQL, []any{nu.Email, nu.Name}
			switch {
			case nu.UserType == shop.UserTypeMerchant:
				q = createMerchantSQL
			case hash != nil:
				q, args = createCustomerWithTokenSQL, append(args, hash)
			}
			err := tx.QueryRow(ctx, q, args...).Scan(&u.ID, &u.Email, &u.Name, &u.UserType, &u.CreatedAt)
			if errors.Is(err, pgx.ErrNoRows) {
				return errEmailTaken(nu.Email)
			}
			return err
		})
	})
	if err != nil {
		if e := wrapErr(err); e.Code == shop.ECONFLICT && e.RetryAfter == 0 {
			return shop.User{}, errEmailTaken(nu.Email)
		}
		return shop.User{}, wrapErr(err)
	}
	return u, nil
}

func errEmailTaken(email string) *shop.Error {
	return shop.Errorf(shop.ECONFLICT, "A user with email %s already exists.", email)
}
