package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

const bulkUserSQL = `-- name: seed.bulk_user
INSERT INTO {customers} (email, name) VALUES ($1, $2) RETURNING id::text`

// bulkOrdersSQL makes n orders for user $1 in one statement with
// generate_series: order g has 1 + g % 4 lines of distinct products from
// the catalogue (at their current prices, 1-3 units each), a total equal to
// the sum of its lines, and was placed g minutes before $3.
const bulkOrdersSQL = `-- name: seed.bulk_orders
WITH p AS (
    SELECT array_agg(id ORDER BY id) AS ids, array_agg(price ORDER BY id) AS prices, count(*)::int AS n
    FROM products
), gs AS MATERIALIZED (
    SELECT g, gen_random_uuid() AS id FROM generate_series(1, $2::int) g
), lines AS MATERIALIZED (
    SELECT gs.id AS order_id, gs.g,
           p.ids[1 + (gs.g * 7 + k * 13) % p.n] AS product_id,
           1 + (gs.g + k) % 3 AS quantity,
           p.prices[1 + (gs.g * 7 + k * 13) % p.n] AS price
    FROM gs CROSS JOIN p CROSS JOIN LATERAL generate_series(1, 1 + gs.g % 4) k
    WHERE p.n > 0
), new_orders AS (
    INSERT INTO orders (id, {buyer_id}, status, total, created_at)
    SELECT order_id, $1::uuid, 'completed', sum(price * quantity), $3::timestamptz - g * interval '1 minute'
    FROM lines GROUP BY order_id, g
)
INSERT INTO order_items (order_id, product_id, quantity, price)
SELECT order_id, product_id, quantity, price FROM lines`

const bulkVacuumSQL = `-- name: seed.vacuum
VACUUM (ANALYZE) {customers}, orders, order_items`

// SeedBulkUser adds a customer with the given email and name and n
// completed orders of 1-4 lines each (2.5 on average) drawn from the
// existing catalogue, generated inside the database in one transaction,
// then vacuums and analyzes the tables (statistics for the planner,
// visibility for index-only scans), as autovacuum would soon. It exists for load tests and
// benchmarks of large reports (100,000 orders take a few seconds). It
// returns the user's id. Errors: ECONFLICT (email taken), EUNAVAILABLE,
// EINTERNAL.
func (db *DB) SeedBulkUser(ctx context.Context, email, name string, n int) (string, error) {
	var id string
	var mode usersMode
	err := db.users.run(ctx, db.Pool, func(m usersMode) error {
		mode = m
		return inTx(ctx, db.Pool, nil, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, db.q(m, bulkUserSQL), email, name).Scan(&id); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, db.q(m, bulkOrdersSQL), id, n, seedBase.AddDate(1, 0, 0))
			return err
		})
	})
	if err != nil {
		return "", wrapErr(err)
	}
	if _, err := db.Pool.Exec(ctx, db.q(mode, bulkVacuumSQL)); err != nil {
		return "", wrapErr(err)
	}
	return id, nil
}
