package shop

import "time"

// OutboxClaim names one outbox event as a relay holds it: the event and the
// claim under which its result may be recorded. A result recorded under a
// claim that has expired (another relay claimed the event since) is lost.
type OutboxClaim struct {
	ID      int64  // the event
	ClaimID string // the claim (a UUID), new at every claim
}

// OutboxEvent is an order-confirmation mail owed and claimed by a relay.
type OutboxEvent struct {
	OutboxClaim
	OrderID       string
	Recipient     string // the buyer's address at checkout
	RecipientName string // the buyer's name at checkout
	// Payload is the OrderConfirmation as JSON, as it was at checkout
	// (without its recipient).
	Payload []byte
	// TraceContext holds the checkout's trace propagation headers (empty
	// when it had no span).
	TraceContext map[string]string
	// Attempts counts the claims of the event, this one included.
	Attempts  int
	CreatedAt time.Time
}

// OutboxStatus is the state of the outbox.
type OutboxStatus struct {
	Pending int // events not yet sent (due or waiting for a retry)
	Due     int // pending events due now (not leased, not backing off)
	Dead    int // events parked as dead
	// OldestPending is the age of the oldest pending event (0 when none).
	OldestPending time.Duration
	// OldestPendingOrder is that event's order id ("" when none).
	OldestPendingOrder string
}
