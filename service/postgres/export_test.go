package postgres

// Statements, exported for the tests of package postgres_test.
const (
	OrdersByUserSQL  = ordersByUserSQL
	ItemsByOrdersSQL = itemsByOrdersSQL
)

// ReserveStockSQL is the checkout's stock decrement.
const ReserveStockSQL = reserveStockSQL
