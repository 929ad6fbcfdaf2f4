package shop

import (
	"context"
	"time"
)

// OrderConfirmation is the content of an order-confirmation mail: the order
// as it was at checkout, and its buyer.
type OrderConfirmation struct {
	OrderID  string             `json:"orderId"`
	To       string             `json:"-"` // the buyer's email address
	Name     string             `json:"-"` // the buyer's name
	PlacedAt time.Time          `json:"placedAt"`
	Lines    []ConfirmationLine `json:"lines"`
	Total    Money              `json:"total"`
}

// ConfirmationLine is one line of an order-confirmation mail.
type ConfirmationLine struct {
	ProductID string `json:"productId"`
	Name      string `json:"name"`
	Quantity  int    `json:"quantity"`
	UnitPrice Money  `json:"unitPrice"`
}

// Amount is the line's price: unit price times quantity.
func (l ConfirmationLine) Amount() Money { return l.UnitPrice * Money(l.Quantity) }

// NewOrderConfirmation returns the confirmation of a placed order (without
// its recipient, which the store fills in from the buyer's account).
func NewOrderConfirmation(o Order) OrderConfirmation {
	c := OrderConfirmation{OrderID: o.ID, PlacedAt: o.CreatedAt, Total: o.Total, Lines: make([]ConfirmationLine, len(o.Items))}
	for i, it := range o.Items {
		c.Lines[i] = ConfirmationLine{ProductID: it.ProductID, Name: it.Product.Name, Quantity: it.Quantity, UnitPrice: it.Price}
	}
	return c
}

// Mailer delivers order-confirmation mails.
type Mailer interface {
	// SendOrderConfirmation delivers c to c.To. Delivery is at least once:
	// a mail whose acceptance the server did not confirm may be sent again,
	// with the same Message-ID. Errors: EUNPROCESSABLE when the server
	// rejected the recipient or the message permanently (retrying cannot
	// help); EUNAVAILABLE when the server is unreachable, refused the
	// session or failed temporarily (retry later); EINVALID when c cannot
	// be rendered.
	SendOrderConfirmation(ctx context.Context, c OrderConfirmation) error
}
