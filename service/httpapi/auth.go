package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"

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
			cred := bearerCredential(r)
			if cred == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="shoplab admin"`)
				writeError(w, r, tel, shop.Errorf(shop.EUNAUTHORIZED, "Admin endpoints require an Authorization: Bearer <token> header."))
				return
			}
			if !sameDigest(cred, want) {
				writeError(w, r, tel, shop.Errorf(shop.EFORBIDDEN, "The admin token is not valid."))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearerCredential is the credential of the request's
// `Authorization: Bearer <credential>` header, "" when there is none.
func bearerCredential(r *http.Request) string {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

// sameDigest reports whether cred's SHA-256 is want. Comparing digests
// takes the same time whatever the credential's length and however much
// of it matches.
func sameDigest(cred string, want [sha256.Size]byte) bool {
	got := sha256.Sum256([]byte(cred))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// buyerKey is the context key of the request's buyer principal.
type buyerKey struct{}

// principal is who a request of a buyer route acts as: the admin (any
// buyer), one customer, or anyone (buyer authentication off).
type principal struct {
	open     bool   // BuyerAuth off: the original's open routes
	admin    bool   // the admin token
	customer string // the customer of a buyer token
}

// withPrincipal returns ctx carrying p.
func withPrincipal(r *http.Request, p principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), buyerKey{}, p))
}

// errNotYours is the answer to a request about another buyer: exactly what
// an unknown user gets, so that ids cannot be probed.
func errNotYours() error { return shop.Errorf(shop.ENOTFOUND, "User not found") }

// mayActFor reports whether the request may read or write the data of
// customer userID: with its own buyer token or the admin token, or when
// buyer authentication is off. A request that no buyer middleware saw may
// not: the routes fail closed.
func mayActFor(r *http.Request, userID string) bool {
	p, ok := r.Context().Value(buyerKey{}).(principal)
	return ok && (p.open || p.admin || (p.customer != "" && p.customer == userID))
}

// openBuyers is the middleware of the buyer routes with buyer
// authentication off (BUYER_AUTH=off): every request acts for anyone, as
// in the original.
func openBuyers() mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, withPrincipal(r, principal{open: true}))
		})
	}
}

// buyerChallenge is the WWW-Authenticate of a buyer route's 401;
// invalidToken adds RFC 6750's error="invalid_token".
func buyerChallenge(invalidToken bool) string {
	if invalidToken {
		return `Bearer realm="shoplab", error="invalid_token"`
	}
	return `Bearer realm="shoplab"`
}

// credential is what a request's Authorization header proves: nothing
// (no Bearer credential), the admin token, a buyer token's customer, or an
// error (EUNAUTHORIZED: the token is unknown or revoked; EUNAVAILABLE: it
// could not be looked up in time).
type credential struct {
	present  bool   // a Bearer credential was sent
	admin    bool   // it is the admin token (when one is set)
	customer string // it is a valid buyer token of this customer
	err      error  // it is neither, or could not be checked
}

// credKey is the context key of a request's *lazyCredential.
type credKey struct{}

// lazyCredential resolves a request's credential at most once, when the
// first middleware asks: the rate limit (to key the request on who it is)
// and requireBuyer (to admit it) share one token look-up, and a request
// that neither asks about costs none.
type lazyCredential struct {
	once    sync.Once
	c       credential
	resolve func() credential
}

// withCredentials is the router middleware that makes a request's
// credential available to credentialOf: the admin token compared in
// constant time, else a buyer token looked up by its hash (tokens nil:
// buyer tokens are not checked and count as no proof).
func withCredentials(tokens shop.TokenStore, adminToken string) mux.MiddlewareFunc {
	admin := sha256.Sum256([]byte(adminToken))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cred := bearerCredential(r)
			if cred == "" { // proves nothing: what credentialOf answers without a resolver
				next.ServeHTTP(w, r)
				return
			}
			lc := &lazyCredential{resolve: func() credential {
				if adminToken != "" && sameDigest(cred, admin) {
					return credential{present: true, admin: true}
				}
				if tokens == nil {
					return credential{present: true, err: shop.Errorf(shop.EUNAUTHORIZED, "The buyer token is not valid or was revoked.")}
				}
				customer, err := tokens.BuyerByToken(r.Context(), shop.HashBuyerToken(cred))
				return credential{present: true, customer: customer, err: err}
			}}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), credKey{}, lc)))
		})
	}
}

// credentialOf returns the request's credential, resolving it on first
// use. A request without a Bearer credential (withCredentials then puts
// no resolver in its context, and the request is not copied) or that
// withCredentials did not see proves nothing.
func credentialOf(r *http.Request) credential {
	lc, ok := r.Context().Value(credKey{}).(*lazyCredential)
	if !ok {
		return credential{}
	}
	lc.once.Do(func() { lc.c = lc.resolve() })
	return lc.c
}

// requireBuyer is the middleware of the buyer routes (routes.go): a
// request must carry `Authorization: Bearer <token>` with a buyer token
// (shop.TokenStore) or the admin token (when one is set), as
// withCredentials resolved it. Without credentials, or with a token that
// is unknown or revoked, it answers 401 with WWW-Authenticate; a buyer
// token admits the request for its own customer only, which the handlers
// check (mayActFor: another customer's id answers 404, as an unknown one
// does).
func requireBuyer(tel *telemetry.Telemetry) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := credentialOf(r)
			switch {
			case !c.present:
				w.Header().Set("WWW-Authenticate", buyerChallenge(false))
				writeError(w, r, tel, shop.Errorf(shop.EUNAUTHORIZED, "This endpoint requires an Authorization: Bearer <token> header with your buyer token."))
			case c.admin:
				next.ServeHTTP(w, withPrincipal(r, principal{admin: true}))
			case c.err != nil:
				if shop.ErrorCode(c.err) == shop.EUNAUTHORIZED {
					w.Header().Set("WWW-Authenticate", buyerChallenge(true))
				}
				writeError(w, r, tel, c.err)
			default:
				next.ServeHTTP(w, withPrincipal(r, principal{customer: c.customer}))
			}
		})
	}
}
