package postgres

// Statements, exported for the tests of package postgres_test.
const (
	OrdersByUserSQL  = ordersByUserSQL
	ItemsByOrdersSQL = itemsByOrdersSQL
)
