package telemetry

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/felixge/httpsnoop"
	"github.com/gorilla/mux"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RouteUnmatched is the route tag of requests no route matched (404 and 405
// answered by the router).
const RouteUnmatched = "unmatched"

// RequestIDHeader is the header the access log reads the request id from: the
// response header first (set by the request-id middleware), else the request
// header.
const RequestIDHeader = "X-Request-Id"

// HTTPMiddleware returns the router middleware for metrics and access logs.
// Install it with router.Use, so that it runs after routing and can read the
// route template with mux.CurrentRoute. Per request it records
// MetricHTTPRequests and MetricHTTPRequestDuration (ms) tagged
// route:<template> (never the raw path), method:<GET|...|other> and
// status_class:<2xx|3xx|4xx|5xx>, and writes one access log line, msg
// "request", with method, route, path, status, duration_ms, bytes, request_id,
// user_agent, dd.trace_id and dd.span_id (the server span muxtrace put in the
// request context): info below 500, error (with the logger's stack trace) from
// 500. Identical lines are sampled by the logger (LOG_SAMPLE_*), so a load
// test cannot flood the disk. A handler panic is recorded as a 500 and
// re-raised for the recovery middleware.
//
// gorilla/mux does not run router.Use middleware for requests no route
// matches; wrap the router's NotFoundHandler and MethodNotAllowedHandler with
// UnmatchedHandler, or call InstrumentRouter which does all three.
func HTTPMiddleware(t *Telemetry) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			serveObserved(t, routeOf(r), next, w, r)
		})
	}
}

// UnmatchedHandler wraps h, a router's NotFoundHandler or
// MethodNotAllowedHandler, with the metrics and access log of HTTPMiddleware
// under route:unmatched. A nil h is http.NotFoundHandler().
func UnmatchedHandler(t *Telemetry, h http.Handler) http.Handler {
	if h == nil {
		h = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveObserved(t, RouteUnmatched, h, w, r)
	})
}

// InstrumentRouter installs HTTPMiddleware on r and wraps its NotFoundHandler
// and MethodNotAllowedHandler with UnmatchedHandler (defaulting to plain 404
// and 405 responses). Call it after setting those handlers. For a muxtrace
// router pass its embedded *mux.Router: InstrumentRouter(t, router.Router).
func InstrumentRouter(t *Telemetry, r *mux.Router) {
	r.Use(HTTPMiddleware(t))
	r.NotFoundHandler = UnmatchedHandler(t, r.NotFoundHandler)
	notAllowed := r.MethodNotAllowedHandler
	if notAllowed == nil {
		notAllowed = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusMethodNotAllowed)
		})
	}
	r.MethodNotAllowedHandler = UnmatchedHandler(t, notAllowed)
}

// routeOf returns the path template of the route mux matched.
func routeOf(r *http.Request) string {
	route := mux.CurrentRoute(r)
	if route == nil {
		return RouteUnmatched
	}
	if tpl, err := route.GetPathTemplate(); err == nil {
		return tpl
	}
	if name := route.GetName(); name != "" {
		return name
	}
	return "unknown"
}

type responseStats struct {
	status int
	bytes  int64
}

func (s *responseStats) header(code int) {
	if s.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.status = code
	}
}

func serveObserved(t *Telemetry, route string, next http.Handler, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var st responseStats
	ww := httpsnoop.Wrap(w, httpsnoop.Hooks{
		WriteHeader: func(f httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
			return func(code int) { st.header(code); f(code) }
		},
		Write: func(f httpsnoop.WriteFunc) httpsnoop.WriteFunc {
			return func(b []byte) (int, error) {
				st.header(http.StatusOK)
				n, err := f(b)
				st.bytes += int64(n)
				return n, err
			}
		},
		WriteString: func(f httpsnoop.WriteStringFunc) httpsnoop.WriteStringFunc {
			return func(s string) (int, error) {
				st.header(http.StatusOK)
				n, err := f(s)
				st.bytes += int64(n)
				return n, err
			}
		},
		ReadFrom: func(f httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
			return func(src io.Reader) (int64, error) {
				st.header(http.StatusOK)
				n, err := f(src)
				st.bytes += n
				return n, err
			}
		},
		Flush: func(f httpsnoop.FlushFunc) httpsnoop.FlushFunc {
			return func() { st.header(http.StatusOK); f() }
		},
	})
	defer func() {
		p := recover()
		if p != nil && st.status == 0 {
			st.status = http.StatusInternalServerError
		}
		if st.status == 0 {
			st.status = http.StatusOK
		}
		observe(t, route, w, r, st, time.Since(start))
		if p != nil {
			panic(p)
		}
	}()
	next.ServeHTTP(ww, r)
}

func observe(t *Telemetry, route string, w http.ResponseWriter, r *http.Request, st responseStats, dur time.Duration) {
	method := methodTag(r.Method)
	class := strconv.Itoa(st.status/100) + "xx"
	tags := []string{"route:" + route, "method:" + method, "status_class:" + class}
	_ = t.Metrics.Incr(MetricHTTPRequests, tags, 1)
	_ = t.Metrics.Distribution(MetricHTTPRequestDuration, ms(dur), tags, 1)

	reqID := w.Header().Get(RequestIDHeader)
	if reqID == "" {
		reqID = r.Header.Get(RequestIDHeader)
	}
	if reqID != "" {
		if span, ok := tracer.SpanFromContext(r.Context()); ok {
			span.SetTag("http.request_id", reqID)
		}
	}
	level := zapcore.InfoLevel
	if st.status >= 500 {
		level = zapcore.ErrorLevel
	}
	log := Logger(r.Context(), t.Log)
	if ce := log.Check(level, "request"); ce != nil {
		ce.Write(
			zap.String("method", r.Method),
			zap.String("route", route),
			zap.String("path", r.URL.Path),
			zap.Int("status", st.status),
			zap.Float64("duration_ms", ms(dur)),
			zap.Int64("bytes", st.bytes),
			zap.String("request_id", reqID),
			zap.String("user_agent", r.UserAgent()),
		)
	}
}

// methodTag bounds the method tag to the standard methods.
func methodTag(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
