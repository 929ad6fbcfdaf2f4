package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// handleOrdersByUser answers the user's orders (to that buyer or the admin:
// another buyer's id is answered as an unknown one), newest first, as a JSON
// array (the original's shape). Pages hold ?limit= orders (a default when
// absent); when more exist, a Link header with rel="next" carries the
// cursor of the next page.
func handleOrdersByUser(tel *telemetry.Telemetry, orders shop.OrderStore, defLimit, maxLimit int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID := mux.Vars(r)["userId"]
		if !shop.ValidID(userID) || !mayActFor(r, userID) {
			writeError(w, r, tel, errNotYours())
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

// IdempotencyKeyHeader carries a checkout's idempotency key;
// ReplayedHeader ("true") marks an answer replayed from an earlier request
// with the same key.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotent-Replayed"
)

// handleCheckout places an order for the buyer of the request's token (or
// anyone's, with the admin token; another buyer's userId is answered as an
// unknown one, 404): 201 with the order, or the replayed
// order (with Idempotent-Replayed: true) when the Idempotency-Key header
// names an earlier checkout of the same request. Every checkout is counted
// and timed by outcome (see observeCheckout).
func handleCheckout(tel *telemetry.Telemetry, orders shop.OrderStore, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var tr shop.CheckoutTrace
		res, err := checkout(w, r, orders, limit, &tr)
		observeCheckout(r.Context(), tel, res, err, &tr, time.Since(start))
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		if res.Replayed {
			w.Header().Set(ReplayedHeader, "true")
		}
		writeJSON(w, http.StatusCreated, res.Order)
	})
}

func checkout(w http.ResponseWriter, r *http.Request, orders shop.OrderStore, limit int64, tr *shop.CheckoutTrace) (shop.CheckoutResult, error) {
	in, err := decode[shop.CheckoutRequest](w, r, limit)
	if err != nil {
		return shop.CheckoutResult{}, err
	}
	if keys := r.Header.Values(IdempotencyKeyHeader); len(keys) > 0 {
		in.IdempotencyKey = keys[0]
		if len(keys) > 1 || keys[0] == "" {
			return shop.CheckoutResult{}, shop.Invalid(shop.FieldError{Field: IdempotencyKeyHeader, Code: "invalid",
				Message: "send exactly one non-empty Idempotency-Key header"})
		}
	}
	if !mayActFor(r, in.UserID) {
		// Another buyer's id gets what an unknown id gets from the store:
		// the cart's problems first, else 404 (ids cannot be probed).
		if _, err := in.Validate(); err != nil {
			return shop.CheckoutResult{}, err
		}
		return shop.CheckoutResult{}, errNotYours()
	}
	// The store validates the cart (shape, merged lines, key) before any
	// SQL; validating here too would do that work twice per checkout.
	return orders.Checkout(shop.WithCheckoutTrace(r.Context(), tr), in)
}

// Checkout outcomes, the values of the outcome tag of the checkout metrics.
const (
	checkoutSuccess           = "success"            // 201, a new order
	checkoutInsufficientStock = "insufficient_stock" // 409 with shortages
	checkoutReplay            = "idempotent_replay"  // 201, the order of an earlier request with the key
	checkoutConflict          = "conflict"           // 409 retryable: deadlock, serialization failure, key in use
	checkoutTimeout           = "timeout"            // 503: lock, statement or pool acquire timeout, database down
	checkoutRejected          = "rejected"           // 4xx: invalid cart, unknown user or product, key reused
	checkoutCanceled          = "canceled"           // the client went away
	checkoutError             = "error"              // 500
)

// checkoutOutcome classifies a checkout's result.
func checkoutOutcome(ctx context.Context, res shop.CheckoutResult, err error) string {
	if err == nil {
		if res.Replayed {
			return checkoutReplay
		}
		return checkoutSuccess
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return checkoutCanceled
	}
	e := shop.AsError(err)
	switch e.Code {
	case shop.ECONFLICT:
		if _, short := e.Extensions["shortages"]; short {
			return checkoutInsufficientStock
		}
		return checkoutConflict
	case shop.EUNAVAILABLE:
		return checkoutTimeout
	case shop.EINTERNAL:
		return checkoutError
	}
	if kind, ok := errorKinds[e.Code]; ok && kind.status < 500 {
		return checkoutRejected
	}
	return checkoutError
}

// observeCheckout records a checkout's outcome: MetricCheckoutOutcomes,
// MetricCheckoutDuration, MetricCheckoutPoolWait and MetricCheckoutLockWait
// (when the store got that far), tagged outcome; for new orders the lines,
// units and value; an outcome tag on the request span; and a warning with
// the waits for conflicts and timeouts (the 503 itself is logged by
// writeError); and, with the unlocked-stock switch, the lost updates and
// oversold lines (MetricCheckoutStockOverwrites,
// MetricCheckoutNegativeStockAttempts) with a warning.
func observeCheckout(ctx context.Context, tel *telemetry.Telemetry, res shop.CheckoutResult, err error, tr *shop.CheckoutTrace, dur time.Duration) {
	outcome := checkoutOutcome(ctx, res, err)
	tags := []string{"outcome:" + outcome}
	m := tel.Metrics
	_ = m.Incr(telemetry.MetricCheckoutOutcomes, tags, 1)
	_ = m.Distribution(telemetry.MetricCheckoutDuration, millis(dur), tags, 1)
	if tr.Lines > 0 {
		_ = m.Distribution(telemetry.MetricCheckoutPoolWait, millis(tr.PoolWait), tags, 1)
		_ = m.Distribution(telemetry.MetricCheckoutLockWait, millis(tr.LockWait), tags, 1)
	}
	if outcome == checkoutSuccess {
		_ = m.Distribution(telemetry.MetricCheckoutOrderLines, float64(tr.Lines), nil, 1)
		_ = m.Distribution(telemetry.MetricCheckoutOrderItems, float64(tr.Units), nil, 1)
		_ = m.Distribution(telemetry.MetricCheckoutOrderValue, float64(res.Order.Total)/100, nil, 1)
	}
	if tr.StockOverwrites > 0 || tr.NegativeStockAttempts > 0 { // only with the unlocked-stock switch
		_ = m.Count(telemetry.MetricCheckoutStockOverwrites, int64(tr.StockOverwrites), nil, 1)
		_ = m.Count(telemetry.MetricCheckoutNegativeStockAttempts, int64(tr.NegativeStockAttempts), nil, 1)
		telemetry.Logger(ctx, tel.Log).Warn("stock overwritten without a lock",
			zap.String("switch", shop.SwitchUnlockedStock),
			zap.String("outcome", outcome),
			zap.Int("lost_updates", tr.StockOverwrites),
			zap.Int("negative_stock_attempts", tr.NegativeStockAttempts))
	}
	if span, ok := tracer.SpanFromContext(ctx); ok {
		span.SetTag("checkout.outcome", outcome)
		span.SetTag("checkout.lines", tr.Lines)
		span.SetTag("checkout.pool_wait_ms", millis(tr.PoolWait))
		span.SetTag("checkout.lock_wait_ms", millis(tr.LockWait))
	}
	if outcome == checkoutConflict || outcome == checkoutTimeout {
		telemetry.Logger(ctx, tel.Log).Warn("checkout "+outcome,
			zap.String("outcome", outcome),
			zap.Float64("duration_ms", millis(dur)),
			zap.Float64("pool_wait_ms", millis(tr.PoolWait)),
			zap.Float64("lock_wait_ms", millis(tr.LockWait)),
			zap.Int("lines", tr.Lines),
			zap.Error(err))
	}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
