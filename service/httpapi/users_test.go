package httpapi_test

import (
	"strings"
	"testing"
)

// TestCreateUser covers POST /users on the contracted schema (customers
// and merchants): 201 with the stored user, a customer by default; 409
// for an email already taken, in either table and in any letter case; 400
// naming each bad field.
func TestCreateUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	t.Run("OK", func(t *testing.T) {
		res := e.postJSON(t, "/users", `{"email": " Ada@Example.COM ", "name": " Ada Lovelace "}`)
		var u struct{ ID, Email, Name, UserType, CreatedAt string }
		res.json(t, &u)
		if res.status != 201 || u.Email != "ada@example.com" || u.Name != "Ada Lovelace" || u.UserType != "customer" || u.ID == "" || u.CreatedAt == "" {
			t.Fatalf("%d %s", res.status, res.body)
		}
		if n := e.scalar(t, `SELECT count(*) FROM customers WHERE id = $1 AND email = 'ada@example.com'`, u.ID); n != 1 {
			t.Errorf("the customer is not stored")
		}
	})
	t.Run("Merchant", func(t *testing.T) {
		res := e.postJSON(t, "/users", `{"email": "shop@example.com", "name": "Shop", "userType": "merchant"}`)
		var u struct{ ID, UserType string }
		res.json(t, &u)
		if res.status != 201 || u.UserType != "merchant" {
			t.Fatalf("%d %s", res.status, res.body)
		}
		if n := e.scalar(t, `SELECT count(*) FROM merchants WHERE id = $1`, u.ID); n != 1 {
			t.Errorf("the merchant is not stored")
		}
	})
	t.Run("ErrEmailTaken", func(t *testing.T) {
		for _, body := range []string{
			`{"email": "ADA@example.com", "name": "Twin"}`,                         // a customer's, in capitals
			`{"email": "ada@example.com", "name": "Twin", "userType": "merchant"}`, // a customer's, as a merchant
			`{"email": "shop@example.com", "name": "Twin"}`,                        // a merchant's, as a customer
			`{"email": "merchant1@example.com", "name": "Twin"}`,                   // seeded
		} {
			res := e.postJSON(t, "/users", body)
			if res.status != 409 || !strings.Contains(string(res.body), "already exists") || res.header.Get("Retry-After") != "" {
				t.Errorf("%s: %d %s", body, res.status, res.body)
			}
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, c := range []struct{ body, field, code string }{
			{`{"name": "X"}`, "email", "required"},
			{`{"email": "  ", "name": "X"}`, "email", "blank"},
			{`{"email": "no-at-sign", "name": "X"}`, "email", "invalid"},
			{`{"email": "a@b", "name": "X"}`, "email", "invalid"},
			{`{"email": "a b@example.com", "name": "X"}`, "email", "invalid"},
			{`{"email": "a@@example.com", "name": "X"}`, "email", "invalid"},
			{`{"email": "` + strings.Repeat("a", 250) + `@example.com", "name": "X"}`, "email", "too_long"},
			{`{"email": "x@example.com"}`, "name", "required"},
			{`{"email": "x@example.com", "name": " "}`, "name", "blank"},
			{`{"email": "x@example.com", "name": "a\u0000b"}`, "name", "invalid"},
			{`{"email": "x@example.com", "name": "` + strings.Repeat("n", 201) + `"}`, "name", "too_long"},
			{`{"email": "x@example.com", "name": "X", "userType": "admin"}`, "userType", "invalid"},
			{`{"email": "x@example.com", "name": "X", "role": "admin"}`, "role", "unknown"},
			{`{"email": 5, "name": "X"}`, "email", "type"},
		} {
			res := e.bad("field out of shape").postJSON(t, "/users", c.body)
			var p struct {
				Errors []struct{ Field, Code string }
			}
			res.json(t, &p)
			if res.status != 400 || len(p.Errors) == 0 || p.Errors[0].Field != c.field || p.Errors[0].Code != c.code {
				t.Errorf("%.60s: %d %s, want 400 %s/%s", c.body, res.status, res.body, c.field, c.code)
			}
		}
		if n := e.scalar(t, `SELECT count(*) FROM customers WHERE email = 'x@example.com'`); n != 0 {
			t.Errorf("an invalid user was stored")
		}
	})
}
