package telemetry

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Statement outcomes, the values of the outcome tag.
const (
	OutcomeOK                   = "ok"
	OutcomeTimeout              = "timeout"               // SQLSTATE 57014 or context deadline
	OutcomeSerializationFailure = "serialization_failure" // SQLSTATE 40001
	OutcomeDeadlock             = "deadlock"              // SQLSTATE 40P01
	OutcomeLockNotAvailable     = "lock_not_available"    // SQLSTATE 55P03 (lock_timeout, NOWAIT)
	OutcomeCanceled             = "canceled"              // the caller's context was canceled (client went away)
	OutcomeError                = "error"                 // anything else
)

// QueryOutcome classifies the error of a statement run under ctx into one of
// the Outcome* values. pgx.ErrNoRows is OutcomeOK. A 57014 (query_canceled)
// is OutcomeTimeout unless ctx was canceled, which is OutcomeCanceled, as is
// context.Canceled itself.
func QueryOutcome(ctx context.Context, err error) string {
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return OutcomeOK
	}
	ctxCanceled := ctx != nil && errors.Is(ctx.Err(), context.Canceled)
	if errors.Is(err, context.Canceled) {
		return OutcomeCanceled
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57014":
			if ctxCanceled {
				return OutcomeCanceled
			}
			return OutcomeTimeout
		case "40001":
			return OutcomeSerializationFailure
		case "40P01":
			return OutcomeDeadlock
		case "55P03":
			return OutcomeLockNotAvailable
		}
		return OutcomeError
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) ||
		(ctx != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		return OutcomeTimeout
	}
	if ctxCanceled {
		return OutcomeCanceled
	}
	return OutcomeError
}
