package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest/observer"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// testEnv is a seeded database behind the real router on a real listener.
type testEnv struct {
	db    *postgres.DB
	srv   *httptest.Server
	tel   *telemetry.Telemetry
	stats *telemetrytest.StatsdCapture
	logs  *observer.ObservedLogs
	// why, when set, marks every request sent through this env as
	// malformed on purpose (invalidRequest): see bad.
	why string
}

// bad returns e for requests that are malformed on purpose, saying why:
// the API's document does not describe them (contract_test.go), but the
// answers they get are held to it all the same.
func (e *testEnv) bad(why string) *testEnv {
	c := *e
	c.why = why
	return &c
}

// newEnv starts the service's HTTP edge on a seeded fresh database, with
// the service's query tracer on the pool; configure adjusts the pool.
func newEnv(t testing.TB, configure ...func(*pgxpool.Config)) *testEnv {
	t.Helper()
	tel, stats, logs := telemetrytest.New(t)
	pool := pgtest.NewWithConfig(t, func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = telemetry.NewQueryTracer(tel)
		c.ConnConfig.RuntimeParams["application_name"] = tel.Config.AppName
		for _, f := range configure {
			f(c)
		}
	})
	db := postgres.New(pool)
	if _, err := db.Seed(t.Context()); err != nil {
		t.Fatal(err)
	}
	return serve(t, db, testConfig(), tel, stats, logs)
}

// serve puts the real router with cfg in front of db, on a listener closed
// when the test ends; reports get a store of their own on db's pool.
func serve(t testing.TB, db *postgres.DB, cfg httpapi.Config, tel *telemetry.Telemetry, stats *telemetrytest.StatsdCapture, logs *observer.ObservedLogs) *testEnv {
	t.Helper()
	h := httpapi.NewServer(httpapi.Deps{Config: cfg, Telemetry: tel, Products: db, Orders: db, Reports: postgres.NewReports(db.Pool, 0), Users: db, Tokens: db, DB: db})
	srv := newServer(t, h)
	return &testEnv{db: db, srv: srv, tel: tel, stats: stats, logs: logs}
}

// testConfig is the edge's default configuration with v1's sunset pinned
// far away, so that no test changes behaviour with the calendar
// (TestProductVersions covers the sunset itself).
func testConfig() httpapi.Config {
	return httpapi.Config{ProductsV1Sunset: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   []byte
	closed bool // the server asked to close the connection (Connection: close)
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (e *testEnv) do(t testing.TB, method, path, contentType string, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if e.why != "" {
		req.Header.Set(invalidRequest, e.why)
	}
	// The validator's findings about this exchange fail this test, here.
	var collect func() []string
	if !isBenchmark(t) {
		c := theContract(t)
		id, found := c.expect()
		req.Header.Set(exchangeID, id)
		collect = func() []string { return c.collect(id, found) }
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if collect != nil {
		for _, msg := range collect() {
			t.Error(msg)
		}
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (e *testEnv) get(t testing.TB, path string) response {
	t.Helper()
	return e.do(t, "GET", path, "", "")
}

func (e *testEnv) postJSON(t testing.TB, path string, v any, headers ...string) response {
	t.Helper()
	var body string
	switch b := v.(type) {
	case string:
		body = b
	default:
		var buf bytes.Buffer
		_ = json.NewEncoder(&buf).Encode(v)
		body = buf.String()
	}
	return e.do(t, "POST", path, "application/json", body, headers...)
}

func (e *testEnv) scalar(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *testEnv) id(t testing.TB, query string, args ...any) string {
	t.Helper()
	var s string
	if err := e.db.Pool.QueryRow(t.Context(), query, args...).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// holdRowLock locks product's row from a transaction of its own, as a
// buyer whose checkout is in flight would, until release (which the test
// calls before it ends; calling it again does nothing).
func holdRowLock(t *testing.T, pool *pgxpool.Pool, product string) (release func()) {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM products WHERE id = $1 FOR UPDATE`, product); err != nil {
		_ = tx.Rollback(ctx)
		t.Fatal(err)
	}
	return func() { _ = tx.Rollback(ctx) }
}
