package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestStoredText: names, descriptions and emails with control characters,
// bidi overrides or invalid UTF-8 are refused with a 400 naming the field
// and the character, on every way in.
func TestStoredText(t *testing.T) {
	e := newEnv(t)
	product := e.id(t, `SELECT id::text FROM products ORDER BY id LIMIT 1`)
	type problem struct {
		Errors []struct{ Field, Code, Message string } `json:"errors"`
	}
	check := func(t *testing.T, res response, field, want string) {
		t.Helper()
		if res.status != http.StatusBadRequest || !strings.Contains(string(res.body), want) || !strings.Contains(string(res.body), `"`+field+`"`) {
			t.Errorf("%d %s, want 400 on %s saying %q", res.status, res.body, field, want)
		}
	}
	t.Run("CreateV1ESC", func(t *testing.T) {
		check(t, e.postJSON(t, "/products", `{"name":"red\u001b[0m","price":1,"inventory":1}`), "name", "U+001B at character 4")
	})
	t.Run("CreateV2BidiOverride", func(t *testing.T) {
		check(t, e.postJSON(t, "/products/v2", `{"name":"ok","description":"txt.\u202Eexe","price":1,"inventory":1}`), "description", "U+202E at character 5")
	})
	t.Run("CreateInvalidUTF8", func(t *testing.T) {
		check(t, e.postJSON(t, "/products/v2", "{\"name\":\"caf\xe9\",\"description\":\"d\",\"price\":1,\"inventory\":1}"), "name", "at character 4")
	})
	t.Run("PatchBEL", func(t *testing.T) {
		check(t, e.do(t, "PATCH", "/products/"+product, "application/merge-patch+json", `{"name":"ding\u0007"}`), "name", "U+0007 at character 5")
	})
	t.Run("ImportRow", func(t *testing.T) {
		res := e.do(t, "POST", "/admin/products/import", "application/x-ndjson", `{"name":"fine","description":"d","price":1,"inventory":1}`+"\n"+`{"name":"evil\u202E","description":"d","price":1,"inventory":1}`+"\n")
		if res.status/100 == 2 || !strings.Contains(string(res.body), "U+202E at character 5") {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	t.Run("UserNameAndEmail", func(t *testing.T) {
		res := e.postJSON(t, "/users", `{"email":"a\u202e@example.com","name":"Eve\u001b"}`)
		check(t, res, "email", "U+202E at character 2")
		check(t, res, "name", "U+001B at character 4")
	})
	t.Run("MultilineDescriptionKept", func(t *testing.T) {
		if res := e.postJSON(t, "/products/v2", `{"name":"Café ☕","description":"one\ntwo","price":1,"inventory":1}`); res.status != http.StatusCreated {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
}

// TestHTTPDetails: HEAD wherever GET works, and GET /orders/checkout is a
// 405, not the orders of a user named "checkout".
func TestHTTPDetails(t *testing.T) {
	e := newEnv(t)
	product := e.id(t, `SELECT id::text FROM products ORDER BY id LIMIT 1`)
	user := e.id(t, `SELECT customer_id::text FROM orders LIMIT 1`)
	t.Run("HEAD", func(t *testing.T) {
		for _, path := range []string{"/health", "/ready", "/products", "/products/" + product, "/orders/" + user,
			"/reports/orders/" + user, "/admin/inventory/low", "/admin/products/missing-description"} {
			get := e.get(t, path)
			head := e.do(t, "HEAD", path, "", "")
			if head.status != get.status || len(head.body) != 0 || head.header.Get("Content-Type") != get.header.Get("Content-Type") {
				t.Errorf("HEAD %s: %d %q (%d bytes); GET: %d %q", path, head.status, head.header.Get("Content-Type"), len(head.body), get.status, get.header.Get("Content-Type"))
			}
		}
	})
	t.Run("HEADOnPOSTOnlyRoute", func(t *testing.T) {
		res := e.do(t, "HEAD", "/users", "", "")
		if res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "POST" {
			t.Errorf("%d Allow=%q", res.status, res.header.Get("Allow"))
		}
	})
	t.Run("AllowListsHEAD", func(t *testing.T) {
		res := e.do(t, "DELETE", "/products", "", "")
		if res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("%d Allow=%q", res.status, res.header.Get("Allow"))
		}
	})
	t.Run("GETCheckout", func(t *testing.T) {
		for _, m := range []string{"GET", "HEAD", "PUT", "DELETE"} {
			res := e.do(t, m, "/orders/checkout", "", "")
			if res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "POST" {
				t.Errorf("%s /orders/checkout: %d Allow=%q %s", m, res.status, res.header.Get("Allow"), res.body)
			}
		}
	})
	t.Run("ClientSentPriceRefused", func(t *testing.T) {
		res := e.bad("price is not a cart field").postJSON(t, "/orders/checkout", fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1,"price":0.01}]}`, user, product))
		if res.status != http.StatusBadRequest || !strings.Contains(string(res.body), "price") {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
}
