package postgres

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shoplab/shoplab/service/shop"
)

// TestWrapErrConnectionLost: a connection that goes away mid-statement
// (reset by the network, closed by a proxy: pgx reports io.ErrUnexpectedEOF,
// io.EOF, or pgconn.ErrConnClosed on its next use) is the database being
// unavailable, a 503 with Retry-After, never a 500. chaos's db-down and
// db-resets scenarios produce these through a real proxy.
func TestWrapErrConnectionLost(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		fmt.Errorf("read: %w", io.ErrUnexpectedEOF),
		fmt.Errorf("receive message failed: %w", io.EOF),
		fmt.Errorf("acquire: %w", pgconn.ErrConnClosed),
	} {
		e := wrapErr(err)
		if e.Code != shop.EUNAVAILABLE || e.RetryAfter <= 0 || !errors.Is(e, err) {
			t.Errorf("wrapErr(%v) = %s (Retry-After %s), want %s with a Retry-After, wrapping the cause", err, e.Code, e.RetryAfter, shop.EUNAVAILABLE)
		}
	}
}
