package postgres

// Statements and helpers, exported for the tests of package postgres_test.
const (
	OrdersByUserSQL                = ordersByUserSQL
	ItemsByOrdersSQL               = itemsByOrdersSQL
	SearchProductsSQL              = searchProductsSQL
	ListProductsAfterSQL           = listProductsAfterSQL
	ListMissingDescriptionAfterSQL = listMissingDescriptionAfterSQL
)

// EscapeLike is the search's LIKE escaping.
var EscapeLike = likeEscaper.Replace
