package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/open-feature/go-sdk/openfeature/memprovider"
	"github.com/sethvargo/go-limiter/memorystore"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/switches"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// The answers of api/openapi.yaml that the other tests of the package do
// not provoke, each on purpose, so that every (operation, status) pair the
// document declares is exercised (TestMain's summary) and validated.

// call is one well-formed request of an operation.
type call struct {
	op                   string // "METHOD /template", as the document has it
	method, path, ct     string
	body                 string
	headers              []string
	db, limited, hasBody bool // touches the database; rate-limited; has a body
}

// wellFormed returns a valid request of every operation of the document
// (but the probes and the document itself), on seeded ids.
func wellFormed(product, user string) []call {
	js := "application/json"
	return []call{
		{op: "GET /products", method: "GET", path: "/products?limit=2", db: true, limited: true},
		{op: "POST /products", method: "POST", path: "/products", ct: js, body: `{"name":"Contract Lamp","price":"9.99","inventory":3}`, db: true, limited: true, hasBody: true},
		{op: "POST /products/v2", method: "POST", path: "/products/v2", ct: js, body: `{"name":"Contract Lamp 2","description":"Bright.","price":"9.99","inventory":3}`, db: true, limited: true, hasBody: true},
		{op: "GET /products/{id}", method: "GET", path: "/products/" + product, db: true, limited: true},
		{op: "PATCH /products/{id}", method: "PATCH", path: "/products/" + product, ct: "application/merge-patch+json", body: `{"inventory":12}`, db: true, limited: true, hasBody: true},
		{op: "POST /users", method: "POST", path: "/users", ct: js, body: `{"email":"contract.user@example.com","name":"Contract"}`, db: true, limited: true, hasBody: true},
		{op: "GET /orders/{userId}", method: "GET", path: "/orders/" + user + "?limit=1", db: true, limited: true},
		{op: "POST /orders/checkout", method: "POST", path: "/orders/checkout", ct: js, body: fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product), db: true, limited: true, hasBody: true},
		{op: "GET /reports/orders/{userId}", method: "GET", path: "/reports/orders/" + user, db: true, limited: true},
		{op: "POST /admin/products/import", method: "POST", path: "/admin/products/import", ct: js, body: `{"products":[{"name":"Contract Import","description":"Imported.","price":"1.00","inventory":1}]}`, db: true, limited: true, hasBody: true},
		{op: "GET /admin/inventory/low", method: "GET", path: "/admin/inventory/low?threshold=3", db: true, limited: true},
		{op: "GET /admin/products/missing-description", method: "GET", path: "/admin/products/missing-description?limit=2", db: true, limited: true},
		{op: "GET /admin/switches", method: "GET", path: "/admin/switches", limited: true},
		{op: "PUT /admin/switches/{name}", method: "PUT", path: "/admin/switches/raw-errors", ct: js, body: `{"on":false}`, limited: true, hasBody: true},
		{op: "GET /openapi.yaml", method: "GET", path: "/openapi.yaml", limited: true},
		{op: "HEAD /openapi.yaml", method: "HEAD", path: "/openapi.yaml", limited: true},
	}
}

// contractEnv is the service with every part wired (chaos switches off,
// buyer authentication and the admin token as cfg says, rate limiting
// when limit is set) on db.
func contractEnv(t *testing.T, db *postgres.DB, cfg httpapi.Config, limit *memorystore.Config) *testEnv {
	t.Helper()
	tel, stats, logs := telemetrytest.New(t)
	sw, err := switches.NewInMemory(context.Background(), switches.Off())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close(context.Background()) })
	cfg.ProductsV1Sunset = testConfig().ProductsV1Sunset
	d := httpapi.Deps{Config: cfg, Telemetry: tel, Products: db, Orders: db, Reports: postgres.NewReports(db.Pool, 0),
		Users: db, Tokens: db, DB: db, Switches: sw}
	if limit != nil {
		store, err := memorystore.New(limit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close(context.Background()) })
		d.RateLimit = httpapi.RateLimit{Limiter: store, Window: limit.Interval}
	}
	return &testEnv{db: db, srv: newServer(t, httpapi.NewServer(d)), tel: tel, stats: stats, logs: logs}
}

// seeded returns a seeded database and a product and customer of it.
func seeded(t *testing.T) (db *postgres.DB, product, user string) {
	t.Helper()
	db = postgres.New(pgtest.New(t))
	if _, err := db.Seed(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{db: db}
	return db, e.id(t, `SELECT id::text FROM products WHERE inventory >= 10 ORDER BY id LIMIT 1`),
		e.id(t, `SELECT id::text FROM customers WHERE email = 'user1@example.com'`)
}

// send sends c through e with extra headers.
func (e *testEnv) send(t *testing.T, c call, headers ...string) response {
	t.Helper()
	return e.do(t, c.method, c.path, c.ct, c.body, append(append([]string{}, c.headers...), headers...)...)
}

// TestOpenAPIRateLimitedAnswers: past its budget a client gets 429 with
// Retry-After and the RateLimit headers from every limited operation.
func TestOpenAPIRateLimitedAnswers(t *testing.T) {
	t.Parallel()
	db, product, user := seeded(t)
	e := contractEnv(t, db, httpapi.Config{}, &memorystore.Config{Tokens: 1, Interval: time.Hour})
	if res := e.get(t, "/products?limit=1"); res.status != 200 {
		t.Fatalf("first request: %d %s", res.status, res.body)
	}
	for _, c := range wellFormed(product, user) {
		res := e.send(t, c)
		if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" || res.header.Get("RateLimit") == "" {
			t.Errorf("%s over budget: %d %v", c.op, res.status, res.header)
		}
	}
	// The probes are never limited.
	for _, m := range []string{"GET", "HEAD"} {
		for _, p := range []string{"/health", "/ready"} {
			if res := e.do(t, m, p, "", ""); res.status != 200 {
				t.Errorf("%s %s over budget: %d", m, p, res.status)
			}
		}
	}
}

// TestOpenAPIDatabaseDownAnswers: without a database every operation that
// needs one answers 503 with Retry-After (HEAD /ready too).
func TestOpenAPIDatabaseDownAnswers(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	const product, user = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
	e := contractEnv(t, postgres.New(pool), httpapi.Config{}, nil)
	for _, c := range wellFormed(product, user) {
		if !c.db {
			continue
		}
		res := e.send(t, c)
		if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" {
			t.Errorf("%s without a database: %d %s", c.op, res.status, res.body)
		}
	}
	if res := e.do(t, "HEAD", "/ready", "", ""); res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" {
		t.Errorf("HEAD /ready without a database: %d %v", res.status, res.header)
	}
}

// TestOpenAPIInternalErrorAnswers: a database whose tables are gone (an
// error no code maps) is a 500 that names only the request id, from every
// operation that reads them.
func TestOpenAPIInternalErrorAnswers(t *testing.T) {
	t.Parallel()
	db, product, user := seeded(t)
	e := contractEnv(t, db, httpapi.Config{}, nil)
	for _, table := range []string{"products", "orders", "order_items", "customers", "merchants", "users", "buyer_tokens", "idempotency_keys", "product_counts", "outbox"} {
		if _, err := db.Pool.Exec(t.Context(), fmt.Sprintf(`ALTER TABLE IF EXISTS %s RENAME TO %s_gone`, table, table)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range wellFormed(product, user) {
		if !c.db {
			continue
		}
		res := e.send(t, c)
		if res.status != http.StatusInternalServerError {
			t.Errorf("%s on missing tables: %d %s", c.op, res.status, res.body)
			continue
		}
		p := checkProblem(t, res, 500)
		if strings.Contains(p.Detail, "gone") || p.RequestID == "" {
			t.Errorf("%s: 500 leaks or lacks the request id: %s", c.op, res.body)
		}
	}
}

// TestOpenAPIClientErrorAnswers: the 4xx answers each operation declares
// that no other test asks for.
func TestOpenAPIClientErrorAnswers(t *testing.T) {
	t.Parallel()
	db, product, user := seeded(t)
	const admin = "contract-admin-token-0123456789abcdef"
	e := contractEnv(t, db, httpapi.Config{AdminToken: admin, BuyerAuth: true, MaxBodyBytes: 48}, nil)
	auth := []string{"Authorization", "Bearer " + admin}
	calls := wellFormed(product, user)

	t.Run("TooLarge", func(t *testing.T) {
		for _, c := range calls {
			if !c.hasBody || c.op == "POST /admin/products/import" { // imports have a limit of their own (import_test.go)
				continue
			}
			c.body = strings.Replace(c.body, "{", `{"name":"`+strings.Repeat("n", 60)+`",`, 1)
			if c.op == "PUT /admin/switches/{name}" || c.op == "POST /orders/checkout" {
				e := e.bad("over the body limit, with a field the operation does not take")
				if res := e.send(t, c, auth...); res.status != http.StatusRequestEntityTooLarge {
					t.Errorf("%s over the body limit: %d %s", c.op, res.status, res.body)
				}
				continue
			}
			if res := e.send(t, c, auth...); res.status != http.StatusRequestEntityTooLarge {
				t.Errorf("%s over the body limit: %d %s", c.op, res.status, res.body)
			}
		}
	})
	t.Run("UnsupportedMediaType", func(t *testing.T) {
		for _, c := range calls {
			if !c.hasBody {
				continue
			}
			c.ct = "text/plain"
			if res := e.bad("a Content-Type the operation does not take").send(t, c, auth...); res.status != http.StatusUnsupportedMediaType {
				t.Errorf("%s as text/plain: %d %s", c.op, res.status, res.body)
			}
		}
	})
	t.Run("Unauthorized", func(t *testing.T) {
		for _, c := range calls {
			if !strings.Contains(c.op, "/admin/") && !strings.Contains(c.op, "/orders/") && !strings.Contains(c.op, "/reports/") {
				continue
			}
			res := e.send(t, c)
			if res.status != http.StatusUnauthorized || res.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s without credentials: %d %v", c.op, res.status, res.header)
			}
			if strings.Contains(c.op, "/admin/") {
				if res := e.send(t, c, "Authorization", "Bearer not-the-admin-token"); res.status != http.StatusForbidden {
					t.Errorf("%s with another token: %d", c.op, res.status)
				}
			}
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		const unknown = "00000000-0000-4000-8000-000000000000"
		for _, c := range []call{
			{op: "PATCH /products/{id}", method: "PATCH", path: "/products/" + unknown, ct: "application/merge-patch+json", body: `{"inventory":1}`},
			{op: "GET /reports/orders/{userId}", method: "GET", path: "/reports/orders/" + unknown},
			{op: "PUT /admin/switches/{name}", method: "PUT", path: "/admin/switches/no-such", ct: "application/json", body: `{"on":true}`},
		} {
			if res := e.send(t, c, auth...); res.status != http.StatusNotFound {
				t.Errorf("%s unknown: %d %s", c.op, res.status, res.body)
			}
		}
	})
	t.Run("Conflict", func(t *testing.T) {
		e := contractEnv(t, db, httpapi.Config{}, nil) // bodies of any size
		sku := `{"name":"Sku","description":"Once.","price":"1.00","inventory":1,"sku":"CONTRACT-1"}`
		for _, path := range []string{"/products/v2", "/products/v2", "/products"} {
			e.do(t, "POST", path, "application/json", sku)
		}
		for _, path := range []string{"/products", "/products/v2"} {
			if res := e.do(t, "POST", path, "application/json", sku); res.status != http.StatusConflict {
				t.Errorf("POST %s with a SKU taken: %d %s", path, res.status, res.body)
			}
		}
	})
	t.Run("NotModified", func(t *testing.T) {
		etag := e.get(t, "/openapi.yaml").header.Get("ETag")
		if res := e.do(t, "HEAD", "/openapi.yaml", "", "", "If-None-Match", etag); res.status != http.StatusNotModified {
			t.Errorf("HEAD /openapi.yaml If-None-Match: %d", res.status)
		}
	})
}

// TestOpenAPISwitchesFromAProvider: switches served by an outside provider
// cannot be flipped here: 422.
func TestOpenAPISwitchesFromAProvider(t *testing.T) {
	t.Parallel()
	sw, err := switches.New(context.Background(), memprovider.NewInMemoryProvider(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close(context.Background()) })
	tel, stats, logs := telemetrytest.New(t)
	db := postgres.New(pgtest.New(t))
	h := httpapi.NewServer(httpapi.Deps{Config: testConfig(), Telemetry: tel, Products: db, Orders: db,
		Reports: postgres.NewReports(db.Pool, 0), Users: db, DB: db, Switches: sw})
	e := &testEnv{db: db, srv: newServer(t, h), tel: tel, stats: stats, logs: logs}
	checkProblem(t, e.do(t, "PUT", "/admin/switches/raw-errors", "application/json", `{"on":true}`), http.StatusUnprocessableEntity)
}
