package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// handleOrdersByUser answers the user's orders, newest first, as a JSON
// array (the original's shape). Pages hold ?limit= orders (a default when
// absent); when more exist, a Link header with rel="next" carries the
// cursor of the next page.
func handleOrdersByUser(tel *telemetry.Telemetry, orders shop.OrderStore, defLimit, maxLimit int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID := mux.Vars(r)["userId"]
		if !shop.ValidID(userID) {
			writeError(w, r, tel, shop.Errorf(shop.ENOTFOUND, "User not found"))
			return
		}
		limit, fe := queryInt(r, "limit", defLimit, 1, maxLimit)
		if fe != nil {
			writeError(w, r, tel, shop.Invalid(*fe))
			return
		}
		page := shop.OrderPage{Limit: limit}
		if c := r.URL.Query().Get("cursor"); c != "" {
			cur, err := decodeCursor(c)
			if err != nil {
				writeError(w, r, tel, err)
				return
			}
			page.After = cur
		}
		list, next, err := orders.OrdersByUser(r.Context(), userID, page)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		if next != nil {
			q := url.Values{"limit": {strconv.Itoa(limit)}, "cursor": {encodeCursor(*next)}}
			w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
		}
		writeJSON(w, http.StatusOK, list)
	})
}

// encodeCursor makes an opaque page cursor: the position of the last order.
func encodeCursor(c shop.OrderCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "," + c.ID))
}

func decodeCursor(s string) (*shop.OrderCursor, error) {
	bad := shop.Invalid(shop.FieldError{Field: "cursor", Code: "invalid", Message: "cursor is not one this API issued; follow the Link header"})
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	at, id, ok := strings.Cut(string(b), ",")
	us, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || !shop.ValidID(id) {
		return nil, bad
	}
	return &shop.OrderCursor{CreatedAt: time.UnixMicro(us), ID: id}, nil
}

func handleCheckout(tel *telemetry.Telemetry, orders shop.OrderStore, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeValid(w, r, limit, shop.CheckoutRequest.Validate)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		order, err := orders.Checkout(r.Context(), req)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusCreated, order)
	})
}
