package httpapi_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// leaks are things no answer may ever contain: SQL, driver and Go
// internals, stack traces.
var leaks = regexp.MustCompile(`(?i)SQLSTATE|pgx|pgconn|postgres|violates|constraint|relation "|syntax error at|` +
	`goroutine |runtime\.|\.go:\d+|\*shop\.|shop\.[A-Z]|encoding/json|reflect\.|panic:|unmarshal|struct|(?-i:json: )`)

// problemDoc is the one error format.
type problemDoc struct {
	Type      string            `json:"type"`
	Title     string            `json:"title"`
	Status    int               `json:"status"`
	Detail    string            `json:"detail"`
	Error     string            `json:"error"`
	Instance  string            `json:"instance"`
	RequestID string            `json:"requestId"`
	Errors    []shop.FieldError `json:"errors"`
}

// checkProblem asserts res is a problem document with status and returns it.
func checkProblem(t *testing.T, res response, status int) problemDoc {
	t.Helper()
	if res.status != status {
		t.Fatalf("status %d, want %d; body %s", res.status, status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if m := leaks.Find(res.body); m != nil {
		t.Errorf("body leaks internals (%q): %s", m, res.body)
	}
	var p problemDoc
	res.json(t, &p)
	if p.Status != status || p.Type == "" || p.Title == "" || p.Detail == "" || p.Error != p.Detail {
		t.Errorf("incomplete problem document: %s", res.body)
	}
	if p.RequestID == "" || p.RequestID != res.header.Get("X-Request-Id") {
		t.Errorf("requestId %q does not match X-Request-Id %q", p.RequestID, res.header.Get("X-Request-Id"))
	}
	return p
}

func hasField(p problemDoc, field, code string) bool {
	for _, f := range p.Errors {
		if f.Field == field && (code == "" || f.Code == code) {
			return true
		}
	}
	return false
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	valid := `{"name":"Lamp","description":"A lamp","price":19.99,"inventory":5}`

	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		field, code string // an expected entry of errors
		detail      string // a substring of detail
	}{
		{"MalformedJSON", "POST", "/products", "application/json", "{\"name\": \"x\",\n \"price\": }", 400, "", "", "line 2, column 11"},
		{"TruncatedJSON", "POST", "/products", "application/json", `{"name": "x"`, 400, "", "", "ends unexpectedly"},
		{"EmptyBody", "POST", "/products", "application/json", ``, 400, "", "", "empty"},
		{"NotAnObject", "POST", "/products", "application/json", `[1,2]`, 400, "", "", "JSON object"},
		{"TrailingData", "POST", "/products", "application/json", valid + `{}`, 400, "", "", "single JSON value"},
		{"WrongContentType", "POST", "/products", "text/plain", valid, 415, "", "", "application/json"},
		{"NoContentType", "POST", "/products", "", valid, 415, "", "", "application/json"},
		{"BodyTooLarge", "POST", "/products", "application/json", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "", "", "limit"},
		{"MissingFields", "POST", "/products", "application/json", `{}`, 400, "price", "required", "name is required"},
		{"NameWrongType", "POST", "/products", "application/json", `{"name":5,"price":1,"inventory":1}`, 400, "name", "type", "name must be a string"},
		{"PriceWrongType", "POST", "/products", "application/json", `{"name":"x","price":true,"inventory":1}`, 400, "price", "type", "price must be a number"},
		{"PriceNotANumber", "POST", "/products", "application/json", `{"name":"x","price":"abc","inventory":1}`, 400, "price", "invalid", "decimal"},
		{"PriceTooPrecise", "POST", "/products", "application/json", `{"name":"x","price":1.999,"inventory":1}`, 400, "price", "invalid", "2 decimal"},
		{"InventoryFraction", "POST", "/products", "application/json", `{"name":"x","price":1,"inventory":1.5}`, 400, "inventory", "type", "integer"},
		{"NegativePrice", "POST", "/products", "application/json", `{"name":"x","price":-1,"inventory":1}`, 400, "price", "min", "greater than or equal to 0"},
		{"NegativeInventory", "POST", "/products", "application/json", `{"name":"x","price":1,"inventory":-1}`, 400, "inventory", "min", ""},
		{"EmptyName", "POST", "/products", "application/json", `{"name":"  ","price":1,"inventory":1}`, 400, "name", "blank", ""},
		{"HugeName", "POST", "/products", "application/json", `{"name":"` + strings.Repeat("n", 10000) + `","price":1,"inventory":1}`, 400, "name", "too_long", ""},
		{"UnknownField", "POST", "/products", "application/json", `{"name":"x","price":1,"inventroy":1}`, 400, "inventroy", "unknown", `"inventroy"`},
		{"HugeInventory", "POST", "/products", "application/json", `{"name":"x","price":1,"inventory":99999999999999999999}`, 400, "inventory", "type", ""},
		{"MalformedProductID", "GET", "/products/not-a-uuid", "", "", 404, "", "", "Product not found"},
		{"UnknownProduct", "GET", "/products/00000000-0000-4000-8000-000000000000", "", "", 404, "", "", "Product not found"},
		{"MalformedUserID", "GET", "/orders/1';DROP TABLE users--", "", "", 404, "", "", "User not found"},
		{"UnknownRoute", "GET", "/nope", "", "", 404, "", "", "Route not found"},
		{"BadLimit", "GET", "/products?limit=abc", "", "", 400, "limit", "range", ""},
		{"NegativeLimit", "GET", "/products?limit=-1", "", "", 400, "limit", "range", ""},
		{"BadThreshold", "GET", "/admin/inventory/low?threshold=x", "", "", 400, "threshold", "", ""},
		{"BadCursor", "GET", "/orders/00000000-0000-4000-8000-000000000000?cursor=zzz", "", "", 400, "cursor", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			send := e
			if c.method == "POST" || c.status == 400 {
				send = e.bad("malformed on purpose: " + c.name)
			}
			res := send.do(t, c.method, c.path, c.contentType, c.body)
			p := checkProblem(t, res, c.status)
			if c.field != "" && !hasField(p, c.field, c.code) {
				t.Errorf("errors lack {field %s, code %s}: %s", c.field, c.code, res.body)
			}
			if !strings.Contains(p.Detail, c.detail) {
				t.Errorf("detail %q lacks %q", p.Detail, c.detail)
			}
		})
	}

	t.Run("MethodNotAllowed", func(t *testing.T) {
		res := e.do(t, "DELETE", "/products", "", "")
		checkProblem(t, res, 405)
		if got := res.header.Get("Allow"); got != "GET, HEAD, POST" {
			t.Errorf("Allow %q, want \"GET, POST\"", got)
		}
	})

	t.Run("NothingStoredOnBadInput", func(t *testing.T) {
		if n := e.scalar(t, "SELECT count(*) FROM products"); n != 100 {
			t.Errorf("%d products after bad inputs, want the 100 seeded", n)
		}
	})

	t.Run("RequestIDFromClient", func(t *testing.T) {
		res := e.do(t, "GET", "/nope", "", "", "X-Request-Id", "abc-123")
		if p := checkProblem(t, res, 404); p.RequestID != "abc-123" {
			t.Errorf("requestId %q, want the client's", p.RequestID)
		}
		if res := e.get(t, "/health"); len(res.header.Get("X-Request-Id")) != 32 {
			t.Errorf("generated X-Request-Id %q", res.header.Get("X-Request-Id"))
		}
	})
}

// panickyStore is a product store whose listing panics, to prove that a
// panic becomes a 500 in the one format.
type panickyStore struct{ shop.ProductStore }

func (panickyStore) ListProducts(context.Context, shop.ProductFilter) (shop.ProductPage, error) {
	panic("boom: secret internal state")
}

func TestPanicIs500(t *testing.T) {
	t.Parallel()
	tel, _, logs := telemetrytest.New(t)
	srv := newServer(t, httpapi.NewServer(httpapi.Deps{Telemetry: tel, Products: panickyStore{}}))
	res := (&testEnv{srv: srv}).get(t, "/products")
	p := checkProblem(t, res, 500)
	if strings.Contains(string(res.body), "secret") || strings.Contains(p.Detail, "boom") {
		t.Errorf("panic value leaked: %s", res.body)
	}
	if logs.FilterMessage("panic").Len() == 0 {
		t.Error("the panic was not logged")
	}
}

func TestDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	// A pool on a port where nothing listens: every query fails to connect.
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := postgres.New(pool)
	tel, _, _ := telemetrytest.New(t)
	srv := newServer(t, httpapi.NewServer(httpapi.Deps{Telemetry: tel, Products: db, Orders: db, Reports: postgres.NewReports(db.Pool, 0), Users: db, DB: db}))
	e := &testEnv{srv: srv}
	for _, path := range []string{"/products", "/ready", "/orders/00000000-0000-4000-8000-000000000000"} {
		res := e.get(t, path)
		checkProblem(t, res, http.StatusServiceUnavailable)
		if res.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", path)
		}
	}
	if res := e.get(t, "/health"); res.status != 200 {
		t.Errorf("/health = %d without a database, want 200 (liveness never touches it)", res.status)
	}
}
