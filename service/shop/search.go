package shop

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxSearchLen bounds a search query, in characters. Longer input is not a
// product name a person types, and every extra character costs trigram
// work in the database.
const MaxSearchLen = 100

// Search-query problem codes: the Code of the FieldError that
// ParseSearchQuery returns, also the reason tag of rejection metrics.
const (
	SearchTooLong     = "too_long"
	SearchInvalidUTF8 = "invalid_utf8"
	SearchNUL         = "nul"
	SearchControlChar = "control_char"
)

// ProductSearch selects a page of the products matching a query, best
// match first.
type ProductSearch struct {
	// Query is a query ParseSearchQuery accepted: matched literally (no
	// wildcards) and case-insensitively against name and description.
	Query string
	Page  int // 1-based
	Limit int
}

// ParseSearchQuery checks a search query as typed and returns it trimmed.
// Input that cannot be a query is an EINVALID error on field "q" whose code
// says why: SearchInvalidUTF8, SearchNUL, SearchControlChar (tabs, newlines,
// DEL and the C1 controls included) or SearchTooLong (more than
// MaxSearchLen characters after trimming). A blank query returns "".
func ParseSearchQuery(q string) (string, error) {
	bad := func(code, format string, args ...any) (string, error) {
		return "", Invalid(FieldError{Field: "q", Code: code, Message: "q " + fmt.Sprintf(format, args...)})
	}
	switch {
	case !utf8.ValidString(q):
		return bad(SearchInvalidUTF8, "must be valid UTF-8 text")
	case strings.IndexByte(q, 0) >= 0:
		return bad(SearchNUL, "must not contain NUL characters")
	case strings.IndexFunc(q, unicode.IsControl) >= 0:
		return bad(SearchControlChar, "must not contain control characters")
	}
	q = strings.TrimSpace(q)
	if n := utf8.RuneCountInString(q); n > MaxSearchLen {
		return bad(SearchTooLong, "must be at most %d characters (got %d)", MaxSearchLen, n)
	}
	return q, nil
}
