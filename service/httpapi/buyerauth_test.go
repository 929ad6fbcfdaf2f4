package httpapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// TestBuyerAuth covers every route that reads or writes a buyer's data
// (GET /orders/{userId}, GET /reports/orders/{userId} in JSON and as a
// download, POST /orders/checkout) with buyer authentication on: the
// buyer's own token and the admin token are served; another buyer's token
// gets exactly what an unknown id gets (404, or the cart's 400 first), so
// that ids cannot be probed; no token, a malformed header, an unknown and
// a revoked token get 401 with WWW-Authenticate. Tokens come from POST
// /users (customers only) and are stored as hashes only.
func TestBuyerAuth(t *testing.T) {
	t.Parallel()
	const admin = "admin-token-of-at-least-32-characters"
	db := postgres.New(pgtest.New(t))
	tel, stats, logs := telemetrytest.New(t)
	e := serve(t, db, httpapi.Config{BuyerAuth: true, AdminToken: admin, ProductsV1Sunset: testConfig().ProductsV1Sunset}, tel, stats, logs)
	product := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Auth Lamp', 10, 1000) RETURNING id::text`)
	const unknown = "00000000-0000-4000-8000-000000000000"

	type buyer struct{ id, token string }
	newBuyer := func(name string) buyer {
		t.Helper()
		res := e.postJSON(t, "/users", fmt.Sprintf(`{"email":"%s@example.com","name":"%s"}`, name, name))
		var u struct{ ID, Token string }
		res.json(t, &u)
		if res.status != 201 || u.ID == "" || !strings.HasPrefix(u.Token, shop.BuyerTokenPrefix) {
			t.Fatalf("POST /users: %d %s", res.status, res.body)
		}
		return buyer{u.ID, u.Token}
	}
	ada, bob, eve := newBuyer("ada"), newBuyer("bob"), newBuyer("eve")
	if _, err := db.RevokeToken(t.Context(), eve.token); err != nil {
		t.Fatal(err)
	}
	bearer := func(token string) []string { return []string{"Authorization", "Bearer " + token} }
	cart := func(user string) string {
		return fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product)
	}
	// Each buyer has an order of their own (placed with their token).
	for _, b := range []buyer{ada, bob} {
		if r := e.postJSON(t, "/orders/checkout", cart(b.id), bearer(b.token)...); r.status != 201 {
			t.Fatalf("own checkout: %d %s", r.status, r.body)
		}
	}

	t.Run("TokensStoredAsHashes", func(t *testing.T) {
		h := shop.HashBuyerToken(ada.token)
		if n := e.scalar(t, `SELECT count(*) FROM buyer_tokens WHERE hash = $1 AND customer_id = $2`, h[:], ada.id); n != 1 {
			t.Errorf("ada's token hash stored %d times", n)
		}
		if n := e.scalar(t, `SELECT count(*) FROM buyer_tokens WHERE encode(hash, 'escape') LIKE '%sbt_%'`); n != 0 {
			t.Errorf("%d tokens stored in clear", n)
		}
		if n := e.scalar(t, `SELECT count(*) FROM buyer_tokens WHERE customer_id = $1 AND last_used_at IS NOT NULL`, ada.id); n != 1 {
			t.Errorf("ada's token: last_used_at not noted")
		}
	})
	t.Run("MerchantGetsNoToken", func(t *testing.T) {
		r := e.postJSON(t, "/users", `{"email":"shop@example.com","name":"Shop","userType":"merchant"}`)
		if r.status != 201 || strings.Contains(string(r.body), `"token"`) {
			t.Errorf("%d %s", r.status, r.body)
		}
	})

	routes := []struct {
		name, method, path string
		body               func(user string) string
		ok                 int
	}{
		{"Orders", "GET", "/orders/%s", nil, 200},
		{"Report", "GET", "/reports/orders/%s", nil, 200},
		{"ReportDownload", "GET", "/reports/orders/%s?format=csv", nil, 200},
		{"Checkout", "POST", "/orders/checkout", cart, 201},
	}
	call := func(t *testing.T, method, path string, body func(string) string, user string, h ...string) response {
		t.Helper()
		b, ctype := "", ""
		if body != nil {
			b, ctype = body(user), "application/json"
		}
		if strings.Contains(path, "%s") {
			path = fmt.Sprintf(path, user)
		}
		return e.do(t, method, path, ctype, b, h...)
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			t.Run("OwnToken", func(t *testing.T) {
				if r := call(t, rt.method, rt.path, rt.body, ada.id, bearer(ada.token)...); r.status != rt.ok {
					t.Errorf("%d %s", r.status, r.body)
				}
			})
			t.Run("Admin", func(t *testing.T) {
				for _, who := range []string{ada.id, bob.id} {
					if r := call(t, rt.method, rt.path, rt.body, who, bearer(admin)...); r.status != rt.ok {
						t.Errorf("%d %s", r.status, r.body)
					}
				}
			})
			t.Run("ErrOtherBuyersToken", func(t *testing.T) {
				before := e.scalar(t, `SELECT count(*) FROM orders WHERE customer_id = $1`, bob.id)
				other := call(t, rt.method, rt.path, rt.body, bob.id, bearer(ada.token)...)
				p := checkProblem(t, other, 404)
				// What an id that does not exist gets, even from the admin.
				missing := checkProblem(t, call(t, rt.method, rt.path, rt.body, unknown, bearer(admin)...), 404)
				if p.Detail != missing.Detail || p.Type != missing.Type || p.Title != missing.Title {
					t.Errorf("another buyer's id: %+v; an unknown id: %+v", p, missing)
				}
				if after := e.scalar(t, `SELECT count(*) FROM orders WHERE customer_id = $1`, bob.id); after != before {
					t.Errorf("bob's orders went from %d to %d", before, after)
				}
			})
			t.Run("ErrNoToken", func(t *testing.T) {
				for _, h := range [][]string{nil, {"Authorization", "Basic " + ada.token}, {"Authorization", "Bearer "}} {
					r := call(t, rt.method, rt.path, rt.body, ada.id, h...)
					checkProblem(t, r, 401)
					if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="shoplab"` {
						t.Errorf("%v: WWW-Authenticate %q", h, got)
					}
				}
			})
			t.Run("ErrInvalidOrRevokedToken", func(t *testing.T) {
				for _, token := range []string{eve.token, "sbt_" + strings.Repeat("A", 43), admin[:31], ada.token + "x"} {
					r := call(t, rt.method, rt.path, rt.body, eve.id, bearer(token)...)
					checkProblem(t, r, 401)
					if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="shoplab", error="invalid_token"` {
						t.Errorf("WWW-Authenticate %q", got)
					}
				}
			})
		})
	}
	// A cart's problems come before the buyer check, as they do before the
	// store looks the user up: an invalid cart for another buyer's id and
	// for an unknown id answer alike.
	t.Run("CheckoutInvalidCartForAnotherBuyer", func(t *testing.T) {
		bad := func(user string) string { return fmt.Sprintf(`{"userId":%q,"items":[]}`, user) }
		other := checkProblem(t, e.bad("empty cart").postJSON(t, "/orders/checkout", bad(bob.id), bearer(ada.token)...), 400)
		missing := checkProblem(t, e.bad("empty cart").postJSON(t, "/orders/checkout", bad(unknown), bearer(admin)...), 400)
		if other.Detail != missing.Detail {
			t.Errorf("%q vs %q", other.Detail, missing.Detail)
		}
	})
	t.Run("OtherRoutesOpen", func(t *testing.T) {
		if r := e.get(t, "/products"); r.status != 200 {
			t.Errorf("/products = %d", r.status)
		}
	})
}

// TestBuyerAuthOff: with Config.BuyerAuth off (BUYER_AUTH=off) the buyer
// routes serve anyone, as the original did, whatever credentials come, and
// POST /users issues no token.
func TestBuyerAuthOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user1@example.com'`)
	// No token is issued (nor needed): the schema may predate buyer_tokens.
	if r := e.postJSON(t, "/users", `{"email":"open@example.com","name":"Open"}`); r.status != 201 || strings.Contains(string(r.body), `"token"`) {
		t.Errorf("POST /users: %d %s", r.status, r.body)
	}
	if n := e.scalar(t, `SELECT count(*) FROM buyer_tokens`); n != 0 {
		t.Errorf("%d tokens stored", n)
	}
	for _, h := range [][]string{nil, {"Authorization", "Bearer sbt_whatever"}} {
		if r := e.do(t, "GET", "/orders/"+user+"?limit=1", "", "", h...); r.status != 200 {
			t.Errorf("%v: %d %s", h, r.status, r.body)
		}
	}
}
