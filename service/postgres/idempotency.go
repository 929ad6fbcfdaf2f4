package postgres

import (
	"context"
)

// deleteExpiredKeysSQL deletes up to $1 expired idempotency keys, oldest
// first, through idempotency_keys_expires_at_idx. Small batches keep each
// transaction short; SKIP LOCKED passes over keys a checkout is taking over.
const deleteExpiredKeysSQL = `-- name: idempotency.delete_expired
DELETE FROM idempotency_keys
WHERE idempotency_key IN (
    SELECT idempotency_key FROM idempotency_keys
    WHERE expires_at <= now()
    ORDER BY expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)`

// expiredKeysBatch is how many keys one cleanup statement deletes.
const expiredKeysBatch = 1000

// DeleteExpiredIdempotencyKeys deletes every expired idempotency key, in
// batches of a thousand, and returns how many it deleted. Their orders stay;
// a request with a deleted key is a new checkout. Errors: EUNAVAILABLE,
// EINTERNAL (with the count deleted so far).
func (db *DB) DeleteExpiredIdempotencyKeys(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := db.Pool.Exec(ctx, deleteExpiredKeysSQL, expiredKeysBatch)
		if err != nil {
			return total, wrapErr(err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < expiredKeysBatch {
			return total, nil
		}
	}
}
