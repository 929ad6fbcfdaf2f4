package httpapi_test

import (
	"testing"
)

// FuzzCreateProduct: no body and no Content-Type make POST /products or
// /products/v2 answer a 5xx or leak internals. CI runs the seed corpus;
// `go test -fuzz FuzzCreateProduct ./service/httpapi` explores further.
func FuzzCreateProduct(f *testing.F) {
	for _, s := range []string{
		`{"name":"Lamp","description":"A lamp","price":19.99,"inventory":5}`,
		`{"name":"Lamp","price":"19.99","inventory":5}`,
		`{"name":"","price":-1,"inventory":-1}`,
		`{"name":"x","price":1e308,"inventory":1e308}`,
		`{"name":"x","price":"1e-400","inventory":0}`,
		`{"name":"x","price":99999999999.99,"inventory":2147483648}`,
		`{"name":"\u0000","description":"\ud800","price":0,"inventory":0}`,
		`{"name":"x","price":0.1,"inventory":0,"extra":null}`,
		`{"name":null,"price":null,"inventory":null}`,
		`{"name":["a"],"price":{},"inventory":"1"}`,
		`{"name":"x","price":"-0.00","inventory":-0}`,
		`{"name":"x","price":"  12.5 ","inventory":1}`,
		`[]`, `null`, `"x"`, `{`, `{"name":"x"}{"name":"y"}`, "\xff\xfe",
	} {
		f.Add(s, "application/json", false)
		f.Add(s, "application/json", true)
	}
	f.Add(`{"name":"x"}`, "text/plain", false)
	f.Add(`{"name":"x"}`, "application/json; charset=\"", true)
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, body, contentType string, v2 bool) {
		path := "/products"
		if v2 {
			path = "/products/v2"
		}
		res := e.do(t, "POST", path, contentType, body)
		if res.status >= 500 {
			t.Fatalf("%s %q (%s) -> %d %s", path, body, contentType, res.status, res.body)
		}
		if res.status != 201 {
			checkProblem(t, res, res.status)
		}
	})
}
