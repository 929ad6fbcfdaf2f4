package httpapi_test

import (
	"strings"
	"testing"

	"github.com/shoplab/shoplab/service/httpapi"
)

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	const token = "s3cret-admin-token"
	one := body("application/json", bulkRows("Auth", 1))

	t.Run("On", func(t *testing.T) {
		t.Parallel()
		e := newImportEnv(t, httpapi.Config{AdminToken: token})
		for _, c := range []struct {
			name, auth string
			status     int
		}{
			{"ErrMissing", "", 401},
			{"ErrNotBearer", "Basic " + token, 401},
			{"ErrEmptyBearer", "Bearer ", 401},
			{"ErrWrongToken", "Bearer wrong", 403},
			{"ErrTokenPrefix", "Bearer " + token[:5], 403},
		} {
			t.Run(c.name, func(t *testing.T) {
				var h []string
				if c.auth != "" {
					h = []string{"Authorization", c.auth}
				}
				for _, r := range []response{
					e.do(t, "POST", importPath, "application/json", one, h...),
					e.do(t, "GET", "/admin/inventory/low", "", "", h...),
				} {
					checkProblem(t, r, c.status)
					if c.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("401 without WWW-Authenticate: %v", r.header)
					}
				}
			})
		}
		t.Run("NothingWrittenWhenRefused", func(t *testing.T) {
			if c := e.scalar(t, `SELECT count(*) FROM products`); c != 0 {
				t.Errorf("%d products", c)
			}
		})
		t.Run("OK", func(t *testing.T) {
			e.importOK(t, importPath, "application/json", one, "Authorization", "Bearer "+token)
			if r := e.do(t, "GET", "/admin/inventory/low", "", "", "Authorization", "bearer "+token); r.status != 200 {
				t.Errorf("low inventory with the token: %d", r.status)
			}
		})
		// Unknown admin paths and wrong methods answer as on any other
		// path, before any credentials are asked for.
		t.Run("UnknownAdminPath", func(t *testing.T) {
			for _, path := range []string{"/admin/nope", "/admin", "/admin/", "/administrator"} {
				p := checkProblem(t, e.do(t, "GET", path, "", ""), 404)
				if p.Detail != "Route not found" {
					t.Errorf("%s: detail %q", path, p.Detail)
				}
			}
		})
		t.Run("AdminMethodNotAllowed", func(t *testing.T) {
			r := e.do(t, "DELETE", "/admin/inventory/low", "", "")
			checkProblem(t, r, 405)
			if got := r.header.Get("Allow"); got != "GET, HEAD" {
				t.Errorf("Allow %q, want GET, HEAD", got)
			}
			r = e.do(t, "GET", importPath, "", "")
			checkProblem(t, r, 405)
			if got := r.header.Get("Allow"); got != "POST" {
				t.Errorf("Allow %q, want POST", got)
			}
		})
		t.Run("OtherRoutesOpen", func(t *testing.T) {
			if r := e.get(t, "/products"); r.status != 200 {
				t.Errorf("/products = %d", r.status)
			}
		})
	})
	t.Run("Off", func(t *testing.T) {
		t.Parallel()
		e := newImportEnv(t, httpapi.Config{})
		e.importOK(t, importPath, "application/json", one)
		e.importOK(t, importPath, "application/json", one, "Authorization", "Bearer anything")
	})
}
