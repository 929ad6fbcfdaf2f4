package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// handleHealth is the liveness check: it never touches the database, so a
// slow or absent database never gets the process restarted.
func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
	})
}

// handleReady is the readiness check: 200 when the database answers within
// timeout, 503 with Retry-After otherwise.
func handleReady(tel *telemetry.Telemetry, db shop.Pinger, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if err := db.Ping(ctx); err != nil {
			e := shop.AsError(err)
			if e.Code != shop.EUNAVAILABLE {
				e = &shop.Error{Code: shop.EUNAVAILABLE, Message: "The database is unavailable.", RetryAfter: 5 * time.Second, Err: err}
			}
			writeError(w, r, tel, e)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": map[string]string{"database": "ok"}})
	})
}
