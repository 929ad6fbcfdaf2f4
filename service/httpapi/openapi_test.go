package httpapi_test

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gorilla/mux"

	"github.com/shoplab/shoplab/api"
	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/switches"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// documented returns the document's operations as "METHOD /path".
func documented(t *testing.T) []string {
	t.Helper()
	var ops []string
	for path, item := range theContract(t).doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

// TestOpenAPIDocumentsEveryRoute: the routes of routes.go (the chaos
// switches' too) and the operations of api/openapi.yaml are the same
// set, both ways.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	tel, _, _ := telemetrytest.New(t)
	sw, err := switches.NewInMemory(context.Background(), switches.Off())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close(context.Background()) })
	var routes []string
	err = httpapi.Routes(httpapi.Deps{Telemetry: tel, Switches: sw}).Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return nil // a subrouter's own route
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s takes any method: the document cannot describe it", tpl)
			return nil
		}
		for _, m := range methods {
			routes = append(routes, m+" "+tpl)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(routes)
	ops := documented(t)
	for _, r := range routes {
		if !slices.Contains(ops, r) {
			t.Errorf("route %s (routes.go) is missing from api/openapi.yaml", r)
		}
	}
	for _, o := range ops {
		if !slices.Contains(routes, o) {
			t.Errorf("api/openapi.yaml documents %s, which routes.go does not serve", o)
		}
	}
	if len(routes) == 0 {
		t.Fatal("no routes walked")
	}
}

// readmeRow matches a row of the README's API table: "| `METHOD /path...` |".
var readmeRow = regexp.MustCompile("^\\| `(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^`?]*)[^`]*` \\|")

// TestOpenAPIMatchesREADME: the README's API table lists exactly the
// document's operations (method and path; HEAD goes without saying).
func TestOpenAPIMatchesREADME(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(string(raw), "\n") {
		if m := readmeRow.FindStringSubmatch(line); m != nil && !slices.Contains(rows, m[1]+" "+m[2]) {
			rows = append(rows, m[1]+" "+m[2])
		}
	}
	var ops []string
	for _, o := range documented(t) {
		if !strings.HasPrefix(o, "HEAD ") {
			ops = append(ops, o)
		}
	}
	slices.Sort(rows)
	if !slices.Equal(rows, ops) {
		t.Errorf("README's API table lists\n  %s\napi/openapi.yaml documents\n  %s", strings.Join(rows, "\n  "), strings.Join(ops, "\n  "))
	}
	if !strings.Contains(string(raw), "(api/openapi.yaml)") || !strings.Contains(string(raw), "/openapi.yaml") {
		t.Error("README does not link api/openapi.yaml and GET /openapi.yaml")
	}
}

// TestOpenAPIDocument: the document is valid OpenAPI 3.0 (kin-openapi's
// own checks, examples included), every operation has an id and declares
// X-Request-Id on every answer, and the service serves it byte for byte.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	c := theContract(t)
	if err := c.doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Errorf("examples: %v", err)
	}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			for status, res := range op.Responses.Map() {
				if h := res.Value.Headers["X-Request-Id"]; h == nil || !h.Value.Required {
					t.Errorf("%s %s %s does not declare X-Request-Id", method, path, status)
				}
			}
		}
	}

	e := newEnv(t)
	res := e.get(t, "/openapi.yaml")
	if res.status != 200 || string(res.body) != string(api.OpenAPI) || res.header.Get("Content-Type") != api.MediaType {
		t.Fatalf("GET /openapi.yaml: %d %s, %d bytes, want api/openapi.yaml's %d", res.status, res.header.Get("Content-Type"), len(res.body), len(api.OpenAPI))
	}
	if cc := res.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("Cache-Control %q: not cacheable", cc)
	}
	etag := res.header.Get("ETag")
	if res := e.do(t, "GET", "/openapi.yaml", "", "", "If-None-Match", etag); res.status != http.StatusNotModified || len(res.body) != 0 {
		t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and none", etag, res.status, len(res.body))
	}
	if res := e.do(t, "HEAD", "/openapi.yaml", "", ""); res.status != 200 || res.header.Get("ETag") != etag {
		t.Errorf("HEAD /openapi.yaml: %d %v", res.status, res.header)
	}
	if res := e.do(t, "HEAD", "/openapi.yaml", "", "", "If-None-Match", etag); res.status != http.StatusNotModified {
		t.Errorf("HEAD If-None-Match: %d, want 304", res.status)
	}
}
