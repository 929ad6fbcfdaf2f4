package httpapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// RateLimiter takes one request from a client's budget. It is the Take of
// github.com/sethvargo/go-limiter's Store (shopd passes a memorystore), so
// that the edge holds no limiter state of its own and whoever builds the
// store closes it: tokens is the client's budget per window, remaining
// what is left of it, reset the Unix time in nanoseconds at which it is
// refilled, and ok false when the request must be refused.
type RateLimiter interface {
	Take(ctx context.Context, key string) (tokens, remaining, reset uint64, ok bool, err error)
}

// RateLimit configures the per-client rate limit. A nil Limiter turns it
// off.
type RateLimit struct {
	// Limiter keeps the budgets.
	Limiter RateLimiter
	// Window is the limiter's interval, advertised in RateLimit-Policy.
	Window time.Duration
	// TrustedProxies are the addresses of the reverse proxies whose
	// X-Forwarded-For is believed. Empty: X-Forwarded-For is ignored and
	// the client is the connection's peer address.
	TrustedProxies []netip.Prefix
}

// rateLimitExempt are the routes that are never limited: the probes, which
// an orchestrator sends from one address and which must answer during a
// storm (a limited liveness probe restarts a healthy process).
var rateLimitExempt = map[string]bool{"/health": true, "/ready": true}

// rateLimitPolicy is the policy name of the RateLimit fields.
const rateLimitPolicy = "client"

// rateLimit is the router middleware of the per-client limit. It runs after
// routing (so that the 429 is counted under its route by the telemetry
// middleware) and before the handler touches a body or the database, so
// that a refused request costs a hash and a map look-up. Every limited
// answer carries the RateLimit and RateLimit-Policy fields of
// draft-ietf-httpapi-ratelimit-headers-10; a refusal is a 429 with
// Retry-After. If the limiter fails the request is let through (fail
// open) and the failure logged: the limit protects the service, it must
// not become its outage.
func rateLimit(tel *telemetry.Telemetry, rl RateLimit) mux.MiddlewareFunc {
	if rl.Limiter == nil {
		return func(next http.Handler) http.Handler { return next }
	}
	window := max(1, int64((rl.Window+time.Second-1)/time.Second))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			route := routeTemplate(r)
			if rateLimitExempt[route] {
				next.ServeHTTP(w, r)
				return
			}
			kind, key := clientKey(r, credentialOf(r), rl.TrustedProxies)
			tokens, remaining, reset, ok, err := rl.Limiter.Take(r.Context(), kind+":"+key)
			if err != nil {
				telemetry.Logger(r.Context(), tel.Log).Warn("rate limiter failed; request let through", zap.Error(err))
				next.ServeHTTP(w, r)
				return
			}
			wait := time.Until(time.Unix(0, int64(reset)))
			secs := max(0, int64((wait+time.Second-1)/time.Second))
			h := w.Header()
			h.Set("RateLimit-Policy", fmt.Sprintf("%q;q=%d;w=%d", rateLimitPolicy, tokens, window))
			h.Set("RateLimit", fmt.Sprintf("%q;r=%d;t=%d", rateLimitPolicy, remaining, secs))
			if !ok {
				_ = tel.Metrics.Incr(telemetry.MetricHTTPRateLimited, []string{"route:" + route, "client_kind:" + kind}, 1)
				writeError(w, r, tel, &shop.Error{Code: shop.ERATELIMIT, RetryAfter: time.Duration(max(1, secs)) * time.Second,
					Message: "Too many requests from this client (at most " + strconv.FormatUint(tokens, 10) + " per " + rl.Window.String() + "); retry after the Retry-After seconds."})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// routeTemplate is the path template of the route mux matched, "" if none.
func routeTemplate(r *http.Request) string {
	if route := mux.CurrentRoute(r); route != nil {
		if tpl, err := route.GetPathTemplate(); err == nil {
			return tpl
		}
	}
	return ""
}

// clientKey says whose budget a request spends: "admin" for the admin
// token; "buyer" and the customer's id for a valid buyer token (all of a
// customer's tokens share one budget); otherwise, with no credential or
// one that proves nothing (invented, revoked, or not checkable in time),
// "addr" and the client's address, so that inventing bearer values buys
// no new budget. The address is an IPv6 client's /64, which one host
// usually holds whole, and the connection's peer unless that peer is a
// trusted proxy, in which case it is the right-most X-Forwarded-For entry
// that is not one: entries left of it were written by the client and are
// not believed.
func clientKey(r *http.Request, c credential, trusted []netip.Prefix) (kind, key string) {
	switch {
	case c.admin:
		return "admin", "admin"
	case c.customer != "" && c.err == nil:
		return "buyer", c.customer
	}
	addr := peerAddr(r.RemoteAddr)
	if addr.IsValid() && isTrusted(addr, trusted) {
		hops := r.Header.Values("X-Forwarded-For")
	walk:
		for i := len(hops) - 1; i >= 0; i-- {
			parts := strings.Split(hops[i], ",")
			for j := len(parts) - 1; j >= 0; j-- {
				hop, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
				if err != nil {
					break walk // a garbled entry: stop at the last hop believed
				}
				addr = hop.Unmap()
				if !isTrusted(addr, trusted) {
					break walk
				}
			}
		}
	}
	if !addr.IsValid() {
		return "addr", r.RemoteAddr
	}
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return "addr", p.String()
	}
	return "addr", addr.String()
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
