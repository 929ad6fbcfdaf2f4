package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// requireAdmin is the middleware of the /admin subrouter (routes.go). With
// a token configured, a request must carry `Authorization: Bearer <token>`:
// without credentials it gets a 401 (with WWW-Authenticate), with other
// credentials a 403, both in the one error format. With no token it lets
// every request through (shopd warns at start, and refuses to start that
// way in production).
func requireAdmin(tel *telemetry.Telemetry, token string) mux.MiddlewareFunc {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		if token == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, cred, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
			cred = strings.TrimSpace(cred)
			if !strings.EqualFold(scheme, "Bearer") || cred == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="shoplab admin"`)
				writeError(w, r, tel, shop.Errorf(shop.EUNAUTHORIZED, "Admin endpoints require an Authorization: Bearer <token> header."))
				return
			}
			// Comparing digests takes the same time whatever the token's
			// length and however much of it matches.
			got := sha256.Sum256([]byte(cred))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				writeError(w, r, tel, shop.Errorf(shop.EFORBIDDEN, "The admin token is not valid."))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
