// Package shop is shoplab's domain: products, users, orders and their
// validation rules, the Error type with its codes, and the store interfaces
// that the postgres package implements and the httpapi package consumes.
// It imports the standard library only.
package shop

import (
	"context"
	"regexp"
	"time"
)

// Product is an item for sale. SKU, the optional stock-keeping unit, is
// unique when set; JSON carries it only when set, so products without one
// keep the original shape.
type Product struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description *string   `json:"description"`
	Price       Money     `json:"price"`
	Inventory   int       `json:"inventory"`
	SKU         *string   `json:"sku,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// User is a buyer or a merchant.
type User struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	UserType  string    `json:"userType"` // "" for a legacy account whose type was never recorded
	CreatedAt time.Time `json:"createdAt"`
}

// The user types.
const (
	UserTypeCustomer = "customer"
	UserTypeMerchant = "merchant"
)

// Order statuses.
const (
	OrderPending   = "pending"
	OrderCompleted = "completed"
	OrderCancelled = "cancelled"
)

// Order is a user's purchase with its lines.
type Order struct {
	ID        string      `json:"id"`
	UserID    string      `json:"userId"`
	Status    string      `json:"status"`
	Total     Money       `json:"total"`
	CreatedAt time.Time   `json:"createdAt"`
	Items     []OrderItem `json:"items"`
}

// OrderItem is one line of an order; Price is the unit price at purchase.
type OrderItem struct {
	ID        string  `json:"id"`
	OrderID   string  `json:"orderId"`
	ProductID string  `json:"productId"`
	Quantity  int     `json:"quantity"`
	Price     Money   `json:"price"`
	Product   Product `json:"product"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidID reports whether id is a UUID in its canonical text form.
func ValidID(id string) bool { return uuidRE.MatchString(id) }

// ProductFilter selects a page of products, newest first: by page number
// (Page, with a total count) or, when After is set, by keyset (the page
// after a cursor, without a count; cheap at any depth).
type ProductFilter struct {
	Limit int
	Page  int     // 1-based; ignored when After is set
	After *Cursor // the position of the last product of the previous page
	// MissingDescription keeps only products without a description.
	MissingDescription bool
}

// ProductPage is a page of products.
type ProductPage struct {
	Products []Product
	// Total counts every match; -1 when not counted (keyset pages).
	Total int
	// Next is the position of the page's last product when more follow.
	Next *Cursor
}

// OrderPage selects a page of one user's orders, newest first. After, when
// set, is the cursor of the last order of the previous page.
type OrderPage struct {
	Limit int
	After *Cursor
}

// Cursor is a position in a list ordered newest first by (created_at DESC,
// id DESC): a user's orders, the catalogue. Keyset pages start after it.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// CheckoutRequest is a cart to buy.
type CheckoutRequest struct {
	UserID string     `json:"userId"`
	Items  []CartLine `json:"items"`
	// IdempotencyKey, when set, makes the checkout idempotent: a retry with
	// the same key and the same request returns the first result without a
	// second order; the same key with another request is EUNPROCESSABLE.
	// It comes from the Idempotency-Key header, never from the body.
	IdempotencyKey string `json:"-"`
}

// CheckoutResult is a placed order. Replayed reports that the order was
// placed by an earlier request with the same idempotency key and this is
// its stored result.
type CheckoutResult struct {
	Order    Order
	Replayed bool
}

// CartLine is one line of a cart.
type CartLine struct {
	ProductID string `json:"productId"`
	Quantity  int    `json:"quantity"`
}

// Shortage is a cart line that cannot be served from stock.
type Shortage struct {
	ProductID string `json:"productId"`
	Name      string `json:"name"`
	Requested int    `json:"requested"`
	Available int    `json:"available"`
}

// ReportSummary holds the figures of a user's order report, computed by
// the database.
type ReportSummary struct {
	User           User
	OrderCount     int
	ItemsPurchased int
	TotalSpent     Money
	// Text sums the lengths of the fields a report prints per order and
	// per line, so that the size of a rendering can be computed without
	// reading the lines (GET /reports/orders/{userId} reports it).
	Text ReportTextLengths
}

// ReportTextLengths are facts about a user's order lines, counted by the
// database: how many orders have lines, how many lines there are, and the
// total byte length of the text form of each variable-width field the
// lines carry (money as shop.Money.String prints it, quantities in
// decimal). Fixed-width fields (ids, timestamps) need no sum.
type ReportTextLengths struct {
	Orders       int64 // orders with at least one line (orders without lines print nothing)
	Lines        int64 // order lines
	Statuses     int64 // bytes of the statuses of those orders
	OrderTotals  int64 // bytes of the totals of those orders
	ProductNames int64 // bytes of the product names, one per line
	Quantities   int64 // digits of the quantities, one per line
	UnitPrices   int64 // bytes of the unit prices, one per line
	LineTotals   int64 // bytes of unit price x quantity, one per line
}

// ReportLine is one line of an order in a streamed report: the order's
// header fields repeat on each of its lines.
type ReportLine struct {
	OrderID     string
	Status      string
	CreatedAt   time.Time
	OrderTotal  Money
	ProductID   string
	ProductName string
	Quantity    int
	UnitPrice   Money
}

// ProductStore reads and writes the catalogue.
type ProductStore interface {
	// ListProducts returns a page of products, newest first. Errors:
	// EUNAVAILABLE, EINTERNAL.
	ListProducts(ctx context.Context, f ProductFilter) (ProductPage, error)
	// SearchProducts returns a page of the products whose name or
	// description contains s.Query (case-insensitive, literally), best
	// match first, with the total. Errors: EUNAVAILABLE (including a search
	// that ran past its statement timeout), EINVALID, EINTERNAL.
	SearchProducts(ctx context.Context, s ProductSearch) (ProductPage, error)
	// Product returns one product. Errors: ENOTFOUND, EUNAVAILABLE, EINTERNAL.
	Product(ctx context.Context, id string) (Product, error)
	// CreateProduct stores a validated product. Errors: EINVALID,
	// EUNAVAILABLE, EINTERNAL.
	CreateProduct(ctx context.Context, p NewProduct) (Product, error)
	// UpdateProduct applies a validated patch to one product and returns
	// it. Errors: ENOTFOUND, EINVALID, EUNAVAILABLE, EINTERNAL.
	UpdateProduct(ctx context.Context, id string, p ProductPatch) (Product, error)
	// ImportProducts streams the rows of src into the catalogue in one
	// transaction: all of them, or none when src or the database fails.
	// A row with a SKU updates the product that already has it. It pulls
	// rows as it writes them and never holds them all. When src fails
	// (src.Err() != nil) it returns src's error, unchanged. Errors:
	// EINVALID, ECONFLICT (a concurrent import of the same SKUs; retry),
	// EUNAVAILABLE, EINTERNAL, or src's error.
	ImportProducts(ctx context.Context, src ProductSource) (ImportResult, error)
	// LowInventory lists products with inventory <= threshold, lowest
	// first. Errors: EUNAVAILABLE, EINTERNAL.
	LowInventory(ctx context.Context, threshold int) ([]Product, error)
}

// OrderStore reads order history and places orders.
type OrderStore interface {
	// OrdersByUser returns a page of the user's orders, newest first, each
	// with its items and their products, and the cursor of the next page
	// (nil on the last). Errors: ENOTFOUND (no such user), EUNAVAILABLE,
	// EINTERNAL.
	OrdersByUser(ctx context.Context, userID string, page OrderPage) ([]Order, *Cursor, error)
	// Checkout reserves stock and places the order in one transaction; it
	// never oversells. With req.IdempotencyKey, a retry of the same request
	// returns the first order (Replayed) instead of placing another.
	// A CheckoutTrace in ctx (WithCheckoutTrace) receives the time spent
	// waiting. Errors: EINVALID, ENOTFOUND (user or product), ECONFLICT
	// (insufficient stock, with the shortages; or a concurrent transaction
	// won, retryable), EUNPROCESSABLE (idempotency key reused with another
	// request), EUNAVAILABLE (lock, statement or connection-pool timeout,
	// with RetryAfter), EINTERNAL.
	Checkout(ctx context.Context, req CheckoutRequest) (CheckoutResult, error)
}

// ReportStore computes order reports. Its implementation should run on
// its own small connection pool, so that reports can never take the
// connections that checkout and the catalogue need.
type ReportStore interface {
	// ReportSummary returns a user's report figures, computed with
	// aggregates in the database. Errors: ENOTFOUND, EUNAVAILABLE (the
	// database is down, or the statement timeout struck), EINTERNAL.
	ReportSummary(ctx context.Context, userID string) (ReportSummary, error)
	// ReportUser returns the user a report is about, without computing
	// anything (for formats that need no figures). Errors: ENOTFOUND,
	// EUNAVAILABLE, EINTERNAL.
	ReportUser(ctx context.Context, userID string) (User, error)
	// StreamReport calls fn for each order line of the user, newest order
	// first, at most limit lines (0: all), without holding them in memory.
	// It stops at fn's first error or when ctx ends, cancelling the query
	// in the database, and returns that error. Errors: EUNAVAILABLE (the
	// database is down, or the statement timeout struck), EINTERNAL, the
	// context's error, or fn's error unchanged.
	StreamReport(ctx context.Context, userID string, limit int, fn func(ReportLine) error) error
}

// Pinger checks that a dependency answers.
type Pinger interface {
	// Ping returns EUNAVAILABLE when the dependency does not answer.
	Ping(ctx context.Context) error
}
