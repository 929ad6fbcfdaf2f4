package telemetry

import (
	"context"
	"strconv"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"go.uber.org/zap"
)

// Logger returns base enriched with dd.trace_id and dd.span_id of the span in
// ctx, so that Datadog links the line to its trace; base itself is returned
// when ctx carries no span. (dd.service, dd.env and dd.version are already on
// the logger New builds.) Use it for every line logged inside a request.
func Logger(ctx context.Context, base *zap.Logger) *zap.Logger {
	fields := TraceFields(ctx)
	if fields == nil {
		return base
	}
	return base.With(fields...)
}

// TraceFields returns the dd.trace_id and dd.span_id fields of the span in ctx,
// or nil when there is none.
func TraceFields(ctx context.Context) []zap.Field {
	span, ok := tracer.SpanFromContext(ctx)
	if !ok || span == nil {
		return nil
	}
	sc := span.Context()
	if sc == nil || sc.SpanID() == 0 {
		return nil
	}
	return []zap.Field{
		zap.String("dd.trace_id", TraceID(sc)),
		zap.String("dd.span_id", strconv.FormatUint(sc.SpanID(), 10)),
	}
}

// TraceID formats the trace id of sc the way Datadog correlates logs with
// traces: the 32-hex-digit 128-bit id when the upper half is set (dd-trace-go
// v2's default), the decimal 64-bit id otherwise (e.g. a trace continued from
// x-datadog-trace-id).
func TraceID(sc *tracer.SpanContext) string {
	if sc == nil {
		return ""
	}
	if sc.TraceIDUpper() != 0 {
		return sc.TraceID()
	}
	return strconv.FormatUint(sc.TraceIDLower(), 10)
}
