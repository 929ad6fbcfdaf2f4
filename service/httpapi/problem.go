package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// problemBase is where the problem types are documented (README, "Errors").
const problemBase = "https://shoplab.dev/problems/"

// errorKinds maps each error code, once, to its HTTP status and problem
// type. Nothing else in the edge chooses an error status.
var errorKinds = map[shop.Code]struct {
	status int
	slug   string
	title  string
}{
	shop.EINVALID:       {http.StatusBadRequest, "invalid-request", "Invalid request"},
	shop.EUNPROCESSABLE: {http.StatusUnprocessableEntity, "unprocessable", "Request cannot be processed"},
	shop.ENOTFOUND:      {http.StatusNotFound, "not-found", "Not found"},
	shop.ECONFLICT:      {http.StatusConflict, "conflict", "Conflict"},
	shop.ETOOLARGE:      {http.StatusRequestEntityTooLarge, "too-large", "Request too large"},
	shop.EUNSUPPORTED:   {http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type"},
	shop.EMETHOD:        {http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed"},
	shop.EUNAUTHORIZED:  {http.StatusUnauthorized, "unauthorized", "Unauthorized"},
	shop.EFORBIDDEN:     {http.StatusForbidden, "forbidden", "Forbidden"},
	shop.ERATELIMIT:     {http.StatusTooManyRequests, "too-many-requests", "Too many requests"},
	shop.ETIMEOUT:       {http.StatusRequestTimeout, "request-timeout", "Request timeout"},
	shop.EUNAVAILABLE:   {http.StatusServiceUnavailable, "unavailable", "Service unavailable"},
	shop.EINTERNAL:      {http.StatusInternalServerError, "internal", "Internal server error"},
}

// writeError answers with err in the one error format, RFC 9457
// application/problem+json:
//
//	{"type", "title", "status", "detail", "instance", "requestId",
//	 "error": one sentence (what the original's clients read),
//	 "errors": [{"field","code","message"}] for validation failures, ...extensions}
//
// Internal errors are logged with their cause and tagged on the span; the
// client sees only a generic sentence and the request id. (Unless the
// raw-errors chaos switch is on: see writeRawError.)
func writeError(w http.ResponseWriter, r *http.Request, tel *telemetry.Telemetry, err error) {
	ctx := r.Context()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// The client went away; nobody reads the answer.
		telemetry.Logger(ctx, tel.Log).Info("client gone", zap.String("path", r.URL.Path))
		w.WriteHeader(499)
		return
	}
	e := shop.AsError(err)
	if e.Err != nil && switchOn(ctx, shop.SwitchRawErrors) {
		writeRawError(w, r, tel, e)
		return
	}
	kind, ok := errorKinds[e.Code]
	if !ok {
		kind = errorKinds[shop.EINTERNAL]
	}
	detail := e.Message
	if kind.status >= 500 {
		log := telemetry.Logger(ctx, tel.Log)
		if kind.status == http.StatusInternalServerError {
			detail = "An internal error occurred. Quote the request id when reporting it."
			log.Error("internal error", zap.Error(err), zap.String("path", r.URL.Path))
		} else {
			log.Warn("unavailable", zap.Error(err), zap.String("path", r.URL.Path))
		}
		if span, ok := tracer.SpanFromContext(ctx); ok {
			span.SetTag("error.message", e.Error())
			span.SetTag("error.type", string(e.Code))
		}
	}
	body := map[string]any{}
	for k, v := range e.Extensions {
		body[k] = v
	}
	body["type"] = problemBase + kind.slug
	body["title"] = kind.title
	body["status"] = kind.status
	body["detail"] = detail
	body["error"] = detail
	body["instance"] = r.URL.Path
	body["requestId"] = RequestIDFrom(ctx)
	if len(e.Fields) > 0 {
		body["errors"] = e.Fields
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds()+0.999)))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(kind.status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
