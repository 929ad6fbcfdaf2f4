package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

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
			cur, fe := decodeCursor(c)
			if fe != nil {
				writeError(w, r, tel, shop.Invalid(*fe))
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
			setNextLink(w, r, url.Values{"limit": {strconv.Itoa(limit)}, "cursor": {encodeCursor(*next)}})
		}
		writeJSON(w, http.StatusOK, list)
	})
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
