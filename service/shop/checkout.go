package shop

import (
	"context"
	"crypto/sha256"
	"strconv"
	"time"
)

// MaxIdempotencyKeyLen bounds the Idempotency-Key header.
const MaxIdempotencyKeyLen = 255

// Fingerprint identifies what a validated request asks for: the user and
// the merged, sorted lines (so two bodies that differ only in line order or
// in how a product's quantity is split over lines are the same request).
// An idempotency key is bound to the fingerprint of its first request.
func (req CheckoutRequest) Fingerprint() []byte {
	h := sha256.New()
	h.Write([]byte("checkout\x00" + req.UserID + "\x00"))
	for _, l := range req.Items {
		h.Write([]byte(l.ProductID + ":" + strconv.Itoa(l.Quantity) + "\x00"))
	}
	return h.Sum(nil)
}

// validIdempotencyKey accepts 1 to MaxIdempotencyKeyLen printable ASCII
// characters (a UUID, as clients usually send, fits).
func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > MaxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// CheckoutTrace receives what a checkout waited for, like
// net/http/httptrace does for a client request: the caller puts one in the
// context with WithCheckoutTrace and reads it after Checkout returns,
// whatever the outcome. The store fills what it measured.
type CheckoutTrace struct {
	// PoolWait is the time spent acquiring a database connection.
	PoolWait time.Duration
	// LockWait is the time spent in the statements that take row locks
	// (claiming the idempotency key, locking the cart's products): their
	// wait for locks held by other checkouts plus their own execution,
	// which is well under a millisecond.
	LockWait time.Duration
	// Lines and Units are the cart's distinct products and total quantity
	// after merging duplicate lines (0 when the request was invalid).
	Lines, Units int
	// StockOverwrites and NegativeStockAttempts are set only with the
	// unlocked-stock switch on (docs/switches.md): lines whose stock write
	// replaced another value than the checkout had read (a lost update),
	// and lines whose quantity exceeded the stock they overwrote (a
	// decrement would have gone below zero: units sold that were not there).
	StockOverwrites, NegativeStockAttempts int
}

type checkoutTraceKey struct{}

// WithCheckoutTrace returns ctx carrying tr for the Checkout called with it.
func WithCheckoutTrace(ctx context.Context, tr *CheckoutTrace) context.Context {
	return context.WithValue(ctx, checkoutTraceKey{}, tr)
}

// CheckoutTraceFrom returns the CheckoutTrace of ctx, or nil.
func CheckoutTraceFrom(ctx context.Context) *CheckoutTrace {
	tr, _ := ctx.Value(checkoutTraceKey{}).(*CheckoutTrace)
	return tr
}
