package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

type ctxKey int

const requestIDKey ctxKey = iota

// RequestIDFrom returns the request id that the requestID middleware put in ctx.
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID gives every request an id: the client's X-Request-Id when it
// is sane, otherwise a new random one. It is echoed in the response's
// X-Request-Id, put in the context and left in the request's header for
// the access log.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !saneRequestID(id) {
			var b [16]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
			r.Header.Set("X-Request-Id", id)
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// recoverer turns a panic into a 500 in the one format, with the stack in
// the log and nothing of it in the body.
func recoverer(tel *telemetry.Telemetry) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil || v == http.ErrAbortHandler {
					if v != nil {
						panic(v)
					}
					return
				}
				telemetry.Logger(r.Context(), tel.Log).Error("panic", zap.Any("panic", v)) // the logger adds the stack
				writeError(w, r, tel, shop.Internal(fmt.Errorf("panic: %v", v)))
			}()
			next.ServeHTTP(w, r)
		})
	}
}

func handleNotFound(tel *telemetry.Telemetry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, tel, shop.Errorf(shop.ENOTFOUND, "Route not found"))
	})
}

// handleMethodNotAllowed answers 405 with the Allow header listing the
// methods that the path's routes accept.
func handleMethodNotAllowed(tel *telemetry.Telemetry, router *mux.Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		_ = router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
			methods, err := route.GetMethods()
			if err != nil {
				return nil
			}
			for _, m := range methods {
				// The route's every matcher (path, notPath...) with its
				// own method.
				as := r.WithContext(r.Context())
				as.Method = m
				if route.Match(as, &mux.RouteMatch{}) && !slices.Contains(allow, m) {
					allow = append(allow, m)
				}
			}
			return nil
		})
		if slices.Contains(allow, http.MethodGet) && !slices.Contains(allow, http.MethodHead) {
			allow = append(allow, http.MethodHead) // headAsGet
		}
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, r, tel, shop.Errorf(shop.EMETHOD, "Method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
	})
}

// notPath is a route matcher that refuses path, so that a fixed path
// (/orders/checkout) is not taken by a pattern route beside it
// (/orders/{userId}): its other methods answer 405.
func notPath(path string) mux.MatcherFunc {
	return func(r *http.Request, _ *mux.RouteMatch) bool { return r.URL.Path != path }
}

// headAsGet serves a HEAD request that no route takes as HEAD as the GET of
// the same URL (RFC 9110 9.3.2: HEAD wherever GET works). net/http
// discards the body written to a HEAD request, and the answer's headers
// are GET's. The routes, metrics and access log see method GET.
func headAsGet(router *mux.Router, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			var m mux.RouteMatch
			if !router.Match(r, &m) || m.MatchErr != nil {
				get := r.WithContext(r.Context())
				get.Method = http.MethodGet
				var gm mux.RouteMatch
				if router.Match(get, &gm) && gm.MatchErr == nil {
					r = get
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
