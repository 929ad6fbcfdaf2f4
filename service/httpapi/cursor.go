package httpapi

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shoplab/shoplab/service/shop"
)

// Keyset pages (GET /orders/{userId}, GET /products,
// GET /admin/products/missing-description) share one cursor: an opaque
// token that encodes the position (created_at, id) of the last item of the
// previous page. Clients never build one; they follow Link rel="next".

// encodeCursor makes the opaque cursor of position c.
func encodeCursor(c shop.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "," + c.ID))
}

// errBadCursor is the answer to a cursor this API did not issue.
func errBadCursor() *shop.FieldError {
	return &shop.FieldError{Field: "cursor", Code: "invalid", Message: "cursor is not one this API issued; follow the Link header"}
}

// decodeCursor reads a cursor made by encodeCursor; anything else is a
// field error on "cursor".
func decodeCursor(s string) (*shop.Cursor, *shop.FieldError) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor()
	}
	at, id, ok := strings.Cut(string(b), ",")
	us, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || !shop.ValidID(id) {
		return nil, errBadCursor()
	}
	return &shop.Cursor{CreatedAt: time.UnixMicro(us), ID: id}, nil
}

// setNextLink sets the Link header to the request's path with query q,
// rel="next" (RFC 8288).
func setNextLink(w http.ResponseWriter, r *http.Request, q url.Values) {
	w.Header().Set("Link", "<"+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
}
