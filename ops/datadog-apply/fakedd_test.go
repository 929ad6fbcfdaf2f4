package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
)

// fakeDD is just enough of the Datadog API v1 for datadog-apply: the
// dashboard, monitor and SLO paths it calls, objects kept in memory. Every
// request must carry the keys; every body must be JSON, declared as such,
// and decode into the client's own model with nothing left unparsed or
// unknown. Like Datadog, it assigns ids and fills in fields the request did
// not set (widget ids, monitor option defaults, creation times), so the
// tool's comparison has to ignore them.
type fakeDD struct {
	t              *testing.T
	apiKey, appKey string

	mu         sync.Mutex
	next       int64
	dashboards map[string]map[string]any
	monitors   map[string]map[string]any
	slos       map[string]map[string]any
	requests   []string // "GET /api/v1/monitor", in order
	writes     []string // the POSTs and PUTs only
}

const (
	testAPIKey = "test-api-key"
	testAppKey = "test-app-key"
)

func newFakeDD(t *testing.T) (*fakeDD, *httptest.Server) {
	f := &fakeDD{
		t: t, apiKey: testAPIKey, appKey: testAppKey, next: 1000,
		dashboards: map[string]map[string]any{},
		monitors:   map[string]map[string]any{},
		slos:       map[string]map[string]any{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/dashboard", f.listDashboards)
	mux.HandleFunc("POST /api/v1/dashboard", f.createDashboard)
	mux.HandleFunc("GET /api/v1/dashboard/{id}", f.get(f.dashboards, false))
	mux.HandleFunc("PUT /api/v1/dashboard/{id}", f.updateDashboard)
	mux.HandleFunc("GET /api/v1/monitor", f.listMonitors)
	mux.HandleFunc("POST /api/v1/monitor", f.createMonitor)
	mux.HandleFunc("GET /api/v1/monitor/{id}", f.get(f.monitors, false))
	mux.HandleFunc("PUT /api/v1/monitor/{id}", f.updateMonitor)
	mux.HandleFunc("GET /api/v1/slo", f.listSLOs)
	mux.HandleFunc("POST /api/v1/slo", f.createSLO)
	mux.HandleFunc("GET /api/v1/slo/{id}", f.get(f.slos, true))
	mux.HandleFunc("PUT /api/v1/slo/{id}", f.updateSLO)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake Datadog: unexpected %s %s", r.Method, r.URL.Path)
		http.Error(w, `{"errors":["not found"]}`, http.StatusNotFound)
	})
	srv := httptest.NewServer(f.check(mux))
	t.Cleanup(srv.Close)
	return f, srv
}

// check enforces what every call must carry, then records it.
func (f *fakeDD) check(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("DD-API-KEY"); got != f.apiKey {
			f.t.Errorf("%s %s: DD-API-KEY %q, want %q", r.Method, r.URL.Path, got, f.apiKey)
			http.Error(w, `{"errors":["Forbidden"]}`, http.StatusForbidden)
			return
		}
		if got := r.Header.Get("DD-APPLICATION-KEY"); got != f.appKey {
			f.t.Errorf("%s %s: DD-APPLICATION-KEY %q, want %q", r.Method, r.URL.Path, got, f.appKey)
			http.Error(w, `{"errors":["Forbidden"]}`, http.StatusForbidden)
			return
		}
		if !strings.Contains(r.Header.Get("Accept"), "application/json") {
			f.t.Errorf("%s %s: Accept %q, want application/json", r.Method, r.URL.Path, r.Header.Get("Accept"))
		}
		line := r.Method + " " + r.URL.Path
		f.mu.Lock()
		f.requests = append(f.requests, line)
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			f.writes = append(f.writes, line)
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				f.t.Errorf("%s: Content-Type %q, want application/json", line, ct)
			}
		}
		f.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// decode reads a request body into model (one of the client's types) and
// into generic JSON. It fails the test, and answers 400, when the model
// cannot parse it, or when it carries fields the model does not know or
// that Datadog sets itself.
func (f *fakeDD) decode(w http.ResponseWriter, r *http.Request, model any, unparsed func() (map[string]any, map[string]any)) (map[string]any, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("%s %s: read body: %v", r.Method, r.URL.Path, err)
		return nil, false
	}
	fail := func(format string, a ...any) (map[string]any, bool) {
		msg := fmt.Sprintf(r.Method+" "+r.URL.Path+": "+format, a...)
		f.t.Error(msg)
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]any{"errors": []string{msg}})
		return nil, false
	}
	if err := json.Unmarshal(body, model); err != nil {
		return fail("body does not decode into %T: %v", model, err)
	}
	un, extra := unparsed()
	if un != nil {
		return fail("%T could not parse the body: %s", model, body)
	}
	if len(extra) > 0 {
		return fail("%T: unknown fields %v", model, extra)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return fail("body is not a JSON object: %v", err)
	}
	if _, ok := doc["id"]; ok {
		return fail("the body carries the read-only id")
	}
	return doc, true
}

func (f *fakeDD) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		f.t.Errorf("encode reply: %v", err)
	}
}

func (f *fakeDD) newID() int64 {
	f.next++
	return f.next
}

func (f *fakeDD) get(store map[string]map[string]any, wrapData bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		obj, ok := store[r.PathValue("id")]
		if !ok {
			f.reply(w, http.StatusNotFound, map[string]any{"errors": []string{"not found"}})
			return
		}
		if wrapData {
			f.reply(w, http.StatusOK, map[string]any{"data": obj})
			return
		}
		f.reply(w, http.StatusOK, obj)
	}
}

// --- dashboards

func (f *fakeDD) listDashboards(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := sortedKeys(f.dashboards)
	start, _ := strconv.Atoi(r.URL.Query().Get("start"))
	count, err := strconv.Atoi(r.URL.Query().Get("count"))
	if err != nil || count <= 0 {
		count = len(ids)
	}
	summaries := []map[string]any{}
	for i := start; i < len(ids) && i < start+count; i++ {
		d := f.dashboards[ids[i]]
		s := map[string]any{}
		for _, k := range []string{"id", "title", "description", "layout_type", "url", "created_at", "modified_at", "author_handle", "is_read_only"} {
			if v, ok := d[k]; ok {
				s[k] = v
			}
		}
		summaries = append(summaries, s)
	}
	f.reply(w, http.StatusOK, map[string]any{"dashboards": summaries})
}

func (f *fakeDD) dashboardBody(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	var d datadogV1.Dashboard
	return f.decode(w, r, &d, func() (map[string]any, map[string]any) { return d.UnparsedObject, d.AdditionalProperties })
}

// fillDashboard does what Datadog does to a dashboard it stores.
func (f *fakeDD) fillDashboard(id string, d map[string]any) {
	d["id"] = id
	d["url"] = "/dashboard/" + id
	d["author_handle"] = "apply@example.com"
	d["created_at"] = "2026-01-02T03:04:05Z"
	d["modified_at"] = "2026-01-02T03:04:05Z"
	if _, ok := d["is_read_only"]; !ok {
		d["is_read_only"] = false
	}
	widgets, _ := d["widgets"].([]any)
	for _, wg := range widgets {
		if m, ok := wg.(map[string]any); ok {
			if _, ok := m["id"]; !ok {
				m["id"] = f.newID()
			}
		}
	}
}

func (f *fakeDD) createDashboard(w http.ResponseWriter, r *http.Request) {
	d, ok := f.dashboardBody(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.newID()
	id := fmt.Sprintf("abc-%03d-xyz", n%1000)
	f.fillDashboard(id, d)
	f.dashboards[id] = d
	f.reply(w, http.StatusOK, d)
}

func (f *fakeDD) updateDashboard(w http.ResponseWriter, r *http.Request) {
	d, ok := f.dashboardBody(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.PathValue("id")
	if _, ok := f.dashboards[id]; !ok {
		f.t.Errorf("PUT dashboard %s: no such dashboard", id)
		f.reply(w, http.StatusNotFound, map[string]any{"errors": []string{"not found"}})
		return
	}
	f.fillDashboard(id, d)
	f.dashboards[id] = d
	f.reply(w, http.StatusOK, d)
}

// --- monitors

func (f *fakeDD) listMonitors(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var want []string
	if q := r.URL.Query().Get("monitor_tags"); q != "" {
		want = strings.Split(q, ",")
	}
	out := []map[string]any{}
	for _, id := range sortedKeys(f.monitors) {
		m := f.monitors[id]
		tags := strList(m["tags"])
		if all(want, func(t string) bool { return slices.Contains(tags, t) }) {
			out = append(out, m)
		}
	}
	f.reply(w, http.StatusOK, out)
}

// fillMonitor does what Datadog does to a monitor it stores: an id, its
// state, and the option defaults the request left out.
func fillMonitor(id int64, m map[string]any) {
	m["id"] = id
	m["created"] = "2026-01-02T03:04:05Z"
	m["modified"] = "2026-01-02T03:04:05Z"
	m["overall_state"] = "No Data"
	m["multi"] = false
	m["creator"] = map[string]any{"email": "apply@example.com", "handle": "apply@example.com"}
	opts, _ := m["options"].(map[string]any)
	if opts == nil {
		opts = map[string]any{}
		m["options"] = opts
	}
	for k, v := range map[string]any{"notify_audit": false, "include_tags": true, "new_group_delay": 60, "silenced": map[string]any{}} {
		if _, ok := opts[k]; !ok {
			opts[k] = v
		}
	}
}

func (f *fakeDD) createMonitor(w http.ResponseWriter, r *http.Request) {
	var mo datadogV1.Monitor
	m, ok := f.decode(w, r, &mo, func() (map[string]any, map[string]any) { return mo.UnparsedObject, mo.AdditionalProperties })
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.newID()
	fillMonitor(n, m)
	f.monitors[strconv.FormatInt(n, 10)] = m
	f.reply(w, http.StatusOK, m)
}

func (f *fakeDD) updateMonitor(w http.ResponseWriter, r *http.Request) {
	var mo datadogV1.MonitorUpdateRequest
	body, ok := f.decode(w, r, &mo, func() (map[string]any, map[string]any) { return mo.UnparsedObject, mo.AdditionalProperties })
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.PathValue("id")
	m, ok := f.monitors[id]
	if !ok {
		f.t.Errorf("PUT monitor %s: no such monitor", id)
		f.reply(w, http.StatusNotFound, map[string]any{"errors": []string{"not found"}})
		return
	}
	for k, v := range body { // the fields sent replace the stored ones
		m[k] = v
	}
	n, _ := strconv.ParseInt(id, 10, 64)
	fillMonitor(n, m)
	f.reply(w, http.StatusOK, m)
}

// --- SLOs

func (f *fakeDD) listSLOs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query().Get("tags_query")
	out := []map[string]any{}
	for _, id := range sortedKeys(f.slos) {
		s := f.slos[id]
		if q == "" || slices.Contains(strList(s["tags"]), q) {
			out = append(out, s)
		}
	}
	f.reply(w, http.StatusOK, map[string]any{"data": out})
}

func fillSLO(id string, s map[string]any) {
	s["id"] = id
	s["created_at"] = 1767323045
	s["modified_at"] = 1767323045
	s["creator"] = map[string]any{"email": "apply@example.com"}
	s["monitor_tags"] = []any{}
}

func (f *fakeDD) createSLO(w http.ResponseWriter, r *http.Request) {
	var req datadogV1.ServiceLevelObjectiveRequest
	s, ok := f.decode(w, r, &req, func() (map[string]any, map[string]any) { return req.UnparsedObject, req.AdditionalProperties })
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("%032x", f.newID())
	fillSLO(id, s)
	f.slos[id] = s
	f.reply(w, http.StatusOK, map[string]any{"data": []any{s}})
}

func (f *fakeDD) updateSLO(w http.ResponseWriter, r *http.Request) {
	var slo datadogV1.ServiceLevelObjective
	s, ok := f.decode(w, r, &slo, func() (map[string]any, map[string]any) { return slo.UnparsedObject, slo.AdditionalProperties })
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.PathValue("id")
	if _, ok := f.slos[id]; !ok {
		f.t.Errorf("PUT SLO %s: no such SLO", id)
		f.reply(w, http.StatusNotFound, map[string]any{"errors": []string{"not found"}})
		return
	}
	fillSLO(id, s)
	f.slos[id] = s
	f.reply(w, http.StatusOK, map[string]any{"data": []any{s}})
}

// --- helpers for tests

// snapshot returns the requests and writes so far.
func (f *fakeDD) snapshot() (requests, writes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests), slices.Clone(f.writes)
}

// find returns the stored object of a kind whose shoplab id is name.
func (f *fakeDD) find(k kind, name string) (string, map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tag := idPrefix + name
	switch k {
	case kindDashboard:
		for id, d := range f.dashboards {
			if desc, _ := d["description"].(string); strings.Contains(desc, tag) {
				return id, d
			}
		}
	case kindMonitor:
		for id, m := range f.monitors {
			if slices.Contains(strList(m["tags"]), tag) {
				return id, m
			}
		}
	case kindSLO:
		for id, s := range f.slos {
			if slices.Contains(strList(s["tags"]), tag) {
				return id, s
			}
		}
	}
	return "", nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func strList(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func all[T any](xs []T, ok func(T) bool) bool {
	for _, x := range xs {
		if !ok(x) {
			return false
		}
	}
	return true
}
