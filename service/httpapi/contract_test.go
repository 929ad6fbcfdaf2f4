package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/shoplab/shoplab/api"
)

// The contract: every request that a test of this package sends to the
// service and every answer it gets is validated against api/openapi.yaml
// (kin-openapi's openapi3filter) by the handler that newServer puts in
// front of the service; a request or answer the document does not
// describe fails the test that sent it. Tests that send a malformed
// request on purpose say so with the invalidRequest header (its answer is
// validated all the same); tests that turn on a chaos switch whose defect
// is an undocumented answer say so with offContract. Every (operation,
// status) pair seen is counted, and TestMain prints how many of those the
// document declares were exercised.

const (
	// invalidRequest, a request header whose value says why, marks a
	// request the test sends malformed on purpose: it is not held to the
	// document, its answer is. The header never reaches the service.
	invalidRequest = "X-Test-Invalid-Request"
	// offContract, a request header whose value says why, marks a request
	// whose answer is a deliberate defect of a chaos switch (raw-errors):
	// neither side is held to the document. It never reaches the service.
	offContract = "X-Test-Off-Contract"
	// exchangeID, set by testEnv.do, has the validator hand what it finds
	// to the test that sent the request (else it fails the test that
	// started the server). It never reaches the service.
	exchangeID = "X-Test-Exchange"
)

// captureLimit bounds the bytes of a body the validator keeps; a longer
// body (a 100,000-row import, a large download) is validated without its
// body.
const captureLimit = 1 << 20

var coverageOut = flag.String("openapi.coverage", "", "write the (operation, status) pairs the tests exercised, and those the document declares, as JSON to this file")

// contract is the document, loaded and checked once per test binary.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	// unrouted are the answers of a path no route serves (404) and of a
	// method the path's routes do not take (405): x-unrouted-responses.
	unrouted map[int]*openapi3.Operation
	mu       sync.Mutex
	seen     map[string]int // "METHOD /path status" -> times
	// pending are the findings of the exchanges of testEnv.do, by
	// exchangeID, ready once done is closed.
	pending map[string]*findings
	nextID  int
	spent   atomic.Int64 // nanoseconds spent validating, all exchanges together
}

// findings are what the validator found in one exchange.
type findings struct {
	done chan struct{}
	errs []string
}

// expect registers an exchange that the sender will collect.
func (c *contract) expect() (string, *findings) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	id := strconv.Itoa(c.nextID)
	f := &findings{done: make(chan struct{})}
	c.pending[id] = f
	return id, f
}

// collect waits for the findings of exchange id (the validator runs as
// the service's answer ends) and forgets them.
func (c *contract) collect(id string, f *findings) []string {
	select {
	case <-f.done:
	case <-time.After(30 * time.Second):
		return []string{"openapi: the validator did not finish with this exchange within 30s"}
	}
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
	return f.errs
}

// findingsOf returns the registered findings of exchange id, or nil.
func (c *contract) findingsOf(id string) *findings {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[id]
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("api/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("api/openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	// Match paths on any host: the tests' servers listen on free ports.
	routed := *doc
	routed.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(&routed)
	if err != nil {
		return nil, err
	}
	c := &contract{doc: doc, router: router, seen: map[string]int{}, pending: map[string]*findings{}, unrouted: map[int]*openapi3.Operation{}}
	raw, ok := doc.Extensions["x-unrouted-responses"].(map[string]any)
	if !ok {
		return nil, errors.New("api/openapi.yaml: x-unrouted-responses is missing")
	}
	for key, status := range map[string]int{"notFound": 404, "methodNotAllowed": 405} {
		m, _ := raw[key].(map[string]any)
		ref, _ := m["$ref"].(string)
		name, found := strings.CutPrefix(ref, "#/components/responses/")
		resp := doc.Components.Responses[name]
		if !found || resp == nil {
			return nil, fmt.Errorf("api/openapi.yaml: x-unrouted-responses.%s does not name a response of components", key)
		}
		c.unrouted[status] = &openapi3.Operation{Responses: openapi3.NewResponses(openapi3.WithStatus(status, resp))}
	}
	return c, nil
})

// theContract returns the loaded document, failing t if it does not load.
func theContract(t testing.TB) *contract {
	t.Helper()
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func init() {
	// The media types the document uses that kin-openapi does not know:
	// checked for their declared type (a string), not parsed.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder)
}

// record counts one exercised (operation, status) pair.
func (c *contract) record(op string, status int) {
	c.mu.Lock()
	c.seen[op+" "+strconv.Itoa(status)]++
	c.mu.Unlock()
}

// declared returns every (operation, status) pair the document declares,
// "METHOD /path status", sorted, the unrouted answers as "ANY * 404|405".
func (c *contract) declared() []string {
	var out []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				out = append(out, method+" "+path+" "+status)
			}
		}
	}
	for status := range c.unrouted {
		out = append(out, "ANY * "+strconv.Itoa(status))
	}
	slices.Sort(out)
	return out
}

// coverage returns the declared pairs exercised and those not.
func (c *contract) coverage() (hit, missed []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.declared() {
		if c.seen[p] > 0 {
			hit = append(hit, p)
		} else {
			missed = append(missed, p)
		}
	}
	return hit, missed
}

// TestMain runs the tests, then reports how many of the document's
// (operation, status) pairs they exercised (and writes them with
// -openapi.coverage).
func TestMain(m *testing.M) {
	code := m.Run()
	if c, err := loadContract(); err == nil {
		hit, missed := c.coverage()
		c.mu.Lock()
		total := 0
		for _, n := range c.seen {
			total += n
		}
		c.mu.Unlock()
		if total > 0 {
			fmt.Printf("openapi: %d exchanges validated in %v (all goroutines together); %d of %d declared (operation, status) pairs exercised\n",
				total, time.Duration(c.spent.Load()).Round(time.Millisecond), len(hit), len(hit)+len(missed))
			if testing.Verbose() {
				for _, p := range missed {
					fmt.Printf("openapi: not exercised: %s\n", p)
				}
			}
		}
		if *coverageOut != "" {
			b, _ := json.MarshalIndent(map[string]any{"exercised": hit, "notExercised": missed,
				"validationSeconds": time.Duration(c.spent.Load()).Seconds()}, "", "  ")
			if err := os.WriteFile(*coverageOut, b, 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// newServer starts h on a real listener, closed when the test ends, behind
// the contract's validator (not for benchmarks: they measure the service
// alone).
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	if !isBenchmark(t) {
		h = validating(t, theContract(t), h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// validating is the handler that holds every exchange with next to the
// document. The request is validated as sent (its body as far as the
// service read it, when that is all of it and at most captureLimit); the
// answer as written, streamed through unchanged.
func validating(t testing.TB, c *contract, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		why := r.Header.Get(invalidRequest)
		off := r.Header.Get(offContract)
		found := c.findingsOf(r.Header.Get(exchangeID))
		r.Header.Del(invalidRequest)
		r.Header.Del(offContract)
		r.Header.Del(exchangeID)
		sent := r.Clone(context.Background())
		// A body of known, modest length is read first (the service gets
		// the same bytes); a streamed one is captured as the service reads.
		var body *capture
		if r.ContentLength >= 0 && r.ContentLength <= captureLimit {
			b, err := io.ReadAll(r.Body)
			_ = r.Body.Close()
			body = &capture{eof: err == nil, n: int64(len(b))}
			body.buf.Write(b)
			r.Body = io.NopCloser(bytes.NewReader(b))
		} else {
			body = &capture{r: r.Body}
			r.Body = body
		}
		rec := &recorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if rec.header == nil {
				rec.header = w.Header().Clone()
			}
			if off == "" {
				ex := exchange{req: sent, why: why, body: body, rec: rec, aborted: v != nil}
				for _, err := range c.check(ex) {
					msg := fmt.Sprintf("openapi: %s %s -> %d: %s", sent.Method, shorten(sent.URL.RequestURI()), rec.status, brief(err))
					if found != nil {
						found.errs = append(found.errs, msg)
					} else {
						t.Error(msg)
					}
				}
			}
			if found != nil {
				close(found.done)
			}
			if v != nil {
				panic(v)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// exchange is one request and its answer as the validator saw them.
type exchange struct {
	req     *http.Request
	why     string // why the request is malformed on purpose, or ""
	body    *capture
	rec     *recorder
	aborted bool // the service cut the answer off (http.ErrAbortHandler)
}

// check validates ex against the document and records its pair; it
// returns what does not match.
func (c *contract) check(ex exchange) []error {
	defer func(start time.Time) { c.spent.Add(int64(time.Since(start))) }(time.Now())
	status := ex.rec.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends 200
	}
	if status == 499 {
		return nil // the client went away: nobody got an answer
	}
	req := ex.req
	route, params, err := c.router.FindRoute(req)
	head := false
	if errors.Is(err, routers.ErrMethodNotAllowed) && req.Method == http.MethodHead {
		// HEAD wherever GET works: GET's operation, without a body.
		get := req.Clone(context.Background())
		get.Method = http.MethodGet
		if r, p, gerr := c.router.FindRoute(get); gerr == nil {
			route, params, err, head, req = r, p, nil, true, get
		}
	}
	if errors.Is(err, routers.ErrMethodNotAllowed) && status != http.StatusMethodNotAllowed {
		// A fixed path (/products/v2) shadows a template beside it
		// (/products/{id}) only for the methods it has; the service's
		// router tries the template for the others (except where a
		// notPath keeps it off the fixed path: GET /orders/checkout, 405).
		if r, p := c.templateRoute(req); r != nil {
			route, params, err = r, p, nil
		}
	}
	name := ""
	switch {
	case err == nil:
		name = route.Method + " " + route.Path
	case errors.Is(err, routers.ErrPathNotFound), errors.Is(err, routers.ErrMethodNotAllowed):
		// Off the document: only the router's 404 or 405 may answer.
		want := http.StatusNotFound
		if errors.Is(err, routers.ErrMethodNotAllowed) {
			want = http.StatusMethodNotAllowed
		}
		if status != want {
			return []error{fmt.Errorf("a request the document does not describe (%v) answered %d, want the router's %d", err, status, want)}
		}
		route = &routers.Route{Spec: c.doc, Path: req.URL.Path, Method: req.Method, Operation: c.unrouted[want]}
		params = map[string]string{}
		name = "ANY *"
		ex.why = "off the document's paths and methods"
	default:
		return []error{err}
	}
	c.record(name, status)
	var errs []error
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: &openapi3filter.Options{
		MultiError:          true,
		SkipSettingDefaults: true,
		// The service checks credentials; the document's security is
		// what a client sends, the 401/403 answers are validated.
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	}}
	if ex.why == "" && name != "ANY *" {
		b, whole := ex.body.bytes()
		in.Options.ExcludeRequestBody = !whole
		req.Body = io.NopCloser(bytes.NewReader(b))
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			errs = append(errs, fmt.Errorf("request does not match the document (if that is the point of the test, mark it with %s): %w", invalidRequest, err))
		}
	}
	body, whole := ex.rec.bytes()
	if head || req.Method == http.MethodHead {
		body, whole = nil, true // net/http sends no body to HEAD
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: ex.rec.header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{
			MultiError:            true,
			IncludeResponseStatus: true,
			ExcludeResponseBody:   !whole || ex.aborted || head,
		}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		errs = append(errs, fmt.Errorf("answer does not match the document: %w", err))
	}
	return errs
}

// capture is a request body as the service read it.
type capture struct {
	r   io.ReadCloser
	mu  sync.Mutex
	buf bytes.Buffer
	n   int64
	eof bool
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.n += int64(n)
	if c.buf.Len()+n <= captureLimit {
		c.buf.Write(p[:n])
	}
	if errors.Is(err, io.EOF) {
		c.eof = true
	}
	c.mu.Unlock()
	return n, err
}

func (c *capture) Close() error { return c.r.Close() }

// bytes returns the body and whether it is the whole body.
func (c *capture) bytes() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes()), c.eof && int64(c.buf.Len()) == c.n
}

// recorder passes an answer through to the client and keeps its status,
// its header as sent and its first captureLimit bytes.
type recorder struct {
	http.ResponseWriter
	mu     sync.Mutex
	status int
	header http.Header
	body   bytes.Buffer
	n      int64
}

func (r *recorder) WriteHeader(status int) {
	r.mu.Lock()
	if r.status == 0 && status >= 200 {
		r.status = status
		r.header = r.ResponseWriter.Header().Clone()
	}
	r.mu.Unlock()
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	if r.status == 0 {
		r.status = http.StatusOK
		r.header = r.ResponseWriter.Header().Clone()
	}
	r.n += int64(len(p))
	if r.body.Len()+len(p) <= captureLimit {
		r.body.Write(p)
	}
	r.mu.Unlock()
	return r.ResponseWriter.Write(p)
}

// Flush and Unwrap keep streaming and http.ResponseController working.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// bytes returns the answer's body and whether it is all of it.
func (r *recorder) bytes() ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.body.Bytes()), int64(r.body.Len()) == r.n
}

// checkServed holds an exchange that a test served in-process (through
// the handler's ServeHTTP, as the budgets do) to the document: the
// request as sent with body (nil: not checked, a streamed body), and
// the answer's status, header and body (whole: all of it).
func checkServed(t testing.TB, req *http.Request, body []byte, status int, header http.Header, answer []byte, whole bool) {
	t.Helper()
	c := theContract(t)
	sent := req.Clone(context.Background())
	if sent.URL.Host == "" {
		sent.URL.Scheme, sent.URL.Host = "http", "localhost"
	}
	in := &capture{eof: body != nil, n: int64(len(body))}
	in.buf.Write(body)
	rec := &recorder{status: status, header: header, n: int64(len(answer))}
	rec.body.Write(answer)
	if !whole {
		rec.n++ // not all of it
	}
	for _, err := range c.check(exchange{req: sent, body: in, rec: rec}) {
		t.Errorf("openapi: %s %s -> %d: %s", sent.Method, shorten(sent.URL.RequestURI()), status, brief(err))
	}
}

// shorten keeps a failure message readable when a test sends a huge URL.
func shorten(s string) string {
	if len(s) > 200 {
		return s[:200] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// isBenchmark reports whether t is a benchmark's: benchmarks measure the
// service alone, unvalidated.
func isBenchmark(t testing.TB) bool {
	_, bench := t.(*testing.B)
	return bench
}

// templateRoute finds the operation for req among the templated paths of
// the document (those with a {parameter}), or nil.
func (c *contract) templateRoute(req *http.Request) (*routers.Route, map[string]string) {
	segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	for path, item := range c.doc.Paths.Map() {
		op := item.GetOperation(req.Method)
		if op == nil || !strings.Contains(path, "{") {
			continue
		}
		tpl := strings.Split(strings.Trim(path, "/"), "/")
		if len(tpl) != len(segs) {
			continue
		}
		params := map[string]string{}
		for i, t := range tpl {
			if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
				params[t[1:len(t)-1]] = segs[i]
			} else if t != segs[i] {
				params = nil
				break
			}
		}
		if params != nil {
			return &routers.Route{Spec: c.doc, Path: path, PathItem: item, Method: req.Method, Operation: op}, params
		}
	}
	return nil, nil
}

// brief is err's message without the schema and value dumps that
// kin-openapi appends to it.
func brief(err error) string {
	var b strings.Builder
	for _, line := range strings.Split(err.Error(), "\n") {
		if t := strings.TrimSpace(line); t == "Schema:" || t == "Value:" {
			b.WriteString(" [...]")
			continue
		}
		if strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "\t") {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(" | ")
		}
		b.WriteString(line)
	}
	return b.String()
}
