package postgres

import "context"

// Statements and helpers, exported for the tests of package postgres_test.
const (
	OrdersByUserSQL                = ordersByUserSQL
	ItemsByOrdersSQL               = itemsByOrdersSQL
	SearchProductsSQL              = searchProductsSQL
	ListProductsSQL                = listProductsSQL
	ListProductsAfterSQL           = listProductsAfterSQL
	ListMissingDescriptionAfterSQL = listMissingDescriptionAfterSQL
)

// ReserveStockSQL is the checkout's stock decrement.
const ReserveStockSQL = reserveStockSQL

// EscapeLike is the search's LIKE escaping.
var EscapeLike = likeEscaper.Replace

// Expand returns sql as the stores run it on db's current users schema.
func (db *DB) Expand(ctx context.Context, sql string) (string, error) {
	m, err := db.users.current(ctx, db.Pool)
	return db.q(m, sql), err
}

// DetectUsersSchema makes r detect the users schema now, as its first
// report would, and names it as DB.DetectUsersSchema does.
func (r *Reports) DetectUsersSchema(ctx context.Context) (string, error) {
	return r.users.detectName(ctx, r.Pool)
}

// Expand returns sql as r runs it on its current users schema.
func (r *Reports) Expand(ctx context.Context, sql string) (string, error) {
	m, err := r.users.current(ctx, r.Pool)
	return r.users.sql(m, sql), err
}
