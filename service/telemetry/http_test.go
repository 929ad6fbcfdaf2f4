package telemetry_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	muxtrace "github.com/DataDog/dd-trace-go/contrib/gorilla/mux/v2"
	"github.com/DataDog/dd-trace-go/v2/ddtrace/mocktracer"
	"github.com/gorilla/mux"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// newTestServer builds the handler chain the service uses: request-id and
// recovery middleware outside a muxtrace router instrumented by telemetry.
func newTestServer(tel *telemetry.Telemetry) http.Handler {
	router := muxtrace.NewRouter(muxtrace.WithService(tel.Config.Service))
	router.HandleFunc("/orders/{userId}", func(w http.ResponseWriter, r *http.Request) {
		telemetry.Logger(r.Context(), tel.Log).Info("handler", zap.String("user", mux.Vars(r)["userId"]))
		_, _ = w.Write([]byte(`{"orders":[]}`))
	}).Methods(http.MethodGet)
	router.HandleFunc("/boom", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "internal", http.StatusInternalServerError)
	})
	router.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	telemetry.InstrumentRouter(tel, router.Router)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" {
			id = "req-generated"
		}
		w.Header().Set("X-Request-Id", id)
		defer func() {
			if p := recover(); p != nil {
				http.Error(w, "internal", http.StatusInternalServerError)
			}
		}()
		router.ServeHTTP(w, r)
	})
}

func serve(h http.Handler, method, target string, headers map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// accessLine returns the one access log line with request_id id.
func accessLine(t *testing.T, logs *observer.ObservedLogs, id string) observer.LoggedEntry {
	t.Helper()
	lines := logs.FilterMessage("request").FilterField(zap.String("request_id", id)).All()
	if len(lines) != 1 {
		t.Fatalf("want 1 access log line with request_id %s, got %d", id, len(lines))
	}
	return lines[0]
}

func serverSpan(t *testing.T, mt mocktracer.Tracer, id string) *mocktracer.Span {
	t.Helper()
	for _, s := range mt.FinishedSpans() {
		if s.OperationName() == "http.request" && s.Tag("http.request_id") == id {
			return s
		}
	}
	t.Fatalf("no http.request span tagged http.request_id %s", id)
	return nil
}

func TestHTTPMiddleware(t *testing.T) {
	t.Parallel()
	mt := telemetrytest.MockTracer(t)
	tel, capture, logs := telemetrytest.New(t)
	h := newTestServer(tel)

	t.Run("RouteTemplate", func(t *testing.T) {
		rec := serve(h, http.MethodGet, "/orders/42", map[string]string{"X-Request-Id": "req-ok", "User-Agent": "ua-test"})
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		span := serverSpan(t, mt, "req-ok")
		if got := span.Tag("resource.name"); got != "GET /orders/{userId}" {
			t.Errorf("span resource = %v, want GET /orders/{userId}", got)
		}
		if got := span.Tag("service.name"); got != "shoplab" {
			t.Errorf("span service = %v, want shoplab", got)
		}
		line := accessLine(t, logs, "req-ok")
		f := line.ContextMap()
		want := map[string]any{
			"method": "GET", "route": "/orders/{userId}", "path": "/orders/42", "status": int64(200),
			"bytes": int64(len(`{"orders":[]}`)), "user_agent": "ua-test",
			"dd.trace_id": telemetry.TraceID(span.Unwrap().Context()),
			"dd.span_id":  strconv.FormatUint(span.SpanID(), 10),
		}
		for k, v := range want {
			if f[k] != v {
				t.Errorf("access log %s = %#v, want %#v", k, f[k], v)
			}
		}
		if _, ok := f["duration_ms"].(float64); !ok {
			t.Errorf("access log duration_ms = %#v", f["duration_ms"])
		}
		if line.Level != zapcore.InfoLevel {
			t.Errorf("level %s, want info", line.Level)
		}
		// The handler's own line carries the same trace.
		for _, e := range logs.FilterMessage("handler").All() {
			if e.ContextMap()["dd.trace_id"] != want["dd.trace_id"] {
				t.Errorf("handler line dd.trace_id = %v, want %v", e.ContextMap()["dd.trace_id"], want["dd.trace_id"])
			}
		}

		tags := []string{"route:/orders/{userId}", "method:GET", "status_class:2xx"}
		if m := capture.WaitFor(t, telemetry.MetricHTTPRequests, tags...); m.Type != "c" {
			t.Errorf("http.requests type %s, want c", m.Type)
		}
		if m := capture.WaitFor(t, telemetry.MetricHTTPRequestDuration, tags...); m.Type != "d" {
			t.Errorf("http.request.duration type %s, want d", m.Type)
		}
		for _, m := range capture.Metrics() {
			if strings.Contains(strings.Join(m.Tags, ","), "/orders/42") {
				t.Errorf("metric tagged with the raw path: %v", m)
			}
		}
	})

	t.Run("Unmatched", func(t *testing.T) {
		if rec := serve(h, http.MethodGet, "/nope/7", map[string]string{"X-Request-Id": "req-404"}); rec.Code != http.StatusNotFound {
			t.Fatalf("status %d, want 404", rec.Code)
		}
		if rec := serve(h, http.MethodDelete, "/orders/42", map[string]string{"X-Request-Id": "req-405"}); rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("status %d, want 405", rec.Code)
		}
		for id, status := range map[string]int64{"req-404": 404, "req-405": 405} {
			f := accessLine(t, logs, id).ContextMap()
			if f["route"] != telemetry.RouteUnmatched || f["status"] != status {
				t.Errorf("%s: route %v status %v", id, f["route"], f["status"])
			}
		}
		capture.WaitFor(t, telemetry.MetricHTTPRequests, "route:unmatched", "method:GET", "status_class:4xx")
		capture.WaitFor(t, telemetry.MetricHTTPRequests, "route:unmatched", "method:DELETE", "status_class:4xx")
	})

	t.Run("ServerError", func(t *testing.T) {
		serve(h, http.MethodGet, "/boom", map[string]string{"X-Request-Id": "req-500"})
		line := accessLine(t, logs, "req-500")
		if line.Level != zapcore.ErrorLevel || line.Stack == "" {
			t.Errorf("5xx line: level %s, stack %q; want error with a stack", line.Level, line.Stack)
		}
		capture.WaitFor(t, telemetry.MetricHTTPRequests, "route:/boom", "status_class:5xx")
	})

	t.Run("Panic", func(t *testing.T) {
		rec := serve(h, http.MethodGet, "/panic", map[string]string{"X-Request-Id": "req-panic"})
		if rec.Code != http.StatusInternalServerError {
			t.Fatalf("status %d, want 500 from the recovery middleware", rec.Code)
		}
		if f := accessLine(t, logs, "req-panic").ContextMap(); f["status"] != int64(500) {
			t.Errorf("status %v, want 500", f["status"])
		}
	})

	t.Run("RequestIDFromRequest", func(t *testing.T) {
		// Without the outer middleware the id comes from the request header.
		router := mux.NewRouter()
		router.Use(telemetry.HTTPMiddleware(tel))
		router.HandleFunc("/x", func(http.ResponseWriter, *http.Request) {})
		serve(router, http.MethodGet, "/x", map[string]string{"X-Request-Id": "req-in-request"})
		accessLine(t, logs, "req-in-request")
	})

	t.Run("DatadogHeaders", func(t *testing.T) {
		serve(h, http.MethodGet, "/orders/1", map[string]string{
			"X-Request-Id":                "req-dd",
			"x-datadog-trace-id":          "1234567",
			"x-datadog-parent-id":         "7654321",
			"x-datadog-sampling-priority": "1",
		})
		span := serverSpan(t, mt, "req-dd")
		if span.TraceID() != 1234567 || span.ParentID() != 7654321 {
			t.Errorf("span trace %d parent %d, want 1234567/7654321", span.TraceID(), span.ParentID())
		}
		if got := accessLine(t, logs, "req-dd").ContextMap()["dd.trace_id"]; got != "1234567" {
			t.Errorf("dd.trace_id = %v, want 1234567", got)
		}
	})

	t.Run("W3CTraceContext", func(t *testing.T) {
		const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		serve(h, http.MethodGet, "/orders/1", map[string]string{
			"X-Request-Id": "req-w3c",
			"traceparent":  fmt.Sprintf("00-%s-%s-01", traceID, parentID),
		})
		span := serverSpan(t, mt, "req-w3c")
		if got := span.Unwrap().Context().TraceID(); got != traceID {
			t.Errorf("span trace id %s, want %s", got, traceID)
		}
		if got := strconv.FormatUint(span.ParentID(), 16); got != strings.TrimLeft(parentID, "0") {
			t.Errorf("span parent %s, want %s", got, parentID)
		}
		if got := accessLine(t, logs, "req-w3c").ContextMap()["dd.trace_id"]; got != traceID {
			t.Errorf("dd.trace_id = %v, want %s", got, traceID)
		}
	})
}
