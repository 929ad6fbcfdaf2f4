package shop

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an Error. The HTTP edge maps each code to one status and
// problem type; stores and validation only ever choose a code.
type Code string

// The error codes of shoplab.
const (
	EINVALID       Code = "invalid"                // the request's shape or values are wrong (400)
	EUNPROCESSABLE Code = "unprocessable"          // well-formed but cannot be applied, e.g. an idempotency key reused with another body (422)
	ENOTFOUND      Code = "not_found"              // the resource does not exist (404)
	ECONFLICT      Code = "conflict"               // the current state forbids it: no stock, a lock conflict (409)
	ETOOLARGE      Code = "too_large"              // the body or the row count exceeds a limit (413)
	EUNSUPPORTED   Code = "unsupported_media_type" // the Content-Type is not accepted (415)
	EMETHOD        Code = "method_not_allowed"     // the route exists for other methods (405)
	EUNAUTHORIZED  Code = "unauthorized"           // credentials missing (401)
	EFORBIDDEN     Code = "forbidden"              // credentials wrong (403)
	ERATELIMIT     Code = "rate_limited"           // too many concurrent requests of this kind (429)
	ETIMEOUT       Code = "request_timeout"        // the client sent its body too slowly or stalled (408)
	EUNAVAILABLE   Code = "unavailable"            // a dependency is down or too slow; retry later (503)
	EINTERNAL      Code = "internal"               // a bug or an unexpected failure (500)
)

// FieldError is one problem with one field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error is the one error type that crosses package boundaries. Message is a
// human-readable sentence safe to show to clients; Err, if set, is the
// internal cause, logged but never shown.
type Error struct {
	Code    Code
	Message string
	// Fields lists field-level problems of a validation failure.
	Fields []FieldError
	// RetryAfter, when non-zero, tells clients when to retry (503, 429, 409).
	RetryAfter time.Duration
	// Extensions are extra members of the problem document, e.g. the short
	// lines of a checkout. Values must be safe to show to clients.
	Extensions map[string]any
	// Err is the internal cause; never shown to clients.
	Err error
}

// Error implements error. It includes the internal cause for logs.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("shop %s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("shop %s: %s", e.Code, e.Message)
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the code and a formatted client-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Internal wraps an unexpected error as EINTERNAL with a generic message.
func Internal(err error) *Error {
	return &Error{Code: EINTERNAL, Message: "An internal error occurred.", Err: err}
}

// Invalid returns an EINVALID error carrying field problems; its message is
// the first problem's, or a summary when there are several.
func Invalid(fields ...FieldError) *Error {
	msg := "The request is invalid."
	switch {
	case len(fields) == 1:
		msg = fields[0].Message
	case len(fields) > 1:
		msg = fmt.Sprintf("%s (and %d more problems)", fields[0].Message, len(fields)-1)
	}
	return &Error{Code: EINVALID, Message: msg, Fields: fields}
}

// ErrorCode returns the code of err: the code of the first *Error in its
// chain, "" for nil and EINTERNAL for anything else.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// AsError returns err as an *Error, wrapping unknown errors with Internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal(err)
}
