package httpapi

import (
	"context"
	"net/http"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// The chaos switches (docs/switches.md) reach the edge in two ways: the
// handlers whose behaviour a switch changes take them as a dependency
// (handleOrderReport), and writeError, which every handler calls, finds
// them in the request's context, where withSwitches puts Deps.Switches.

type switchesKey struct{}

// withSwitches puts sw in every request's context for writeError.
func withSwitches(sw shop.Switches, next http.Handler) http.Handler {
	if sw == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), switchesKey{}, sw)))
	})
}

// switchOn reports whether the switch is on for the request of ctx.
func switchOn(ctx context.Context, name string) bool {
	sw, _ := ctx.Value(switchesKey{}).(shop.Switches)
	return shop.SwitchOn(ctx, sw, name)
}

// writeRawError is the original's defect behind the raw-errors switch: an
// error with an internal cause (a driver error, a timeout's cause) is
// answered 500 with the cause's raw text in the body, as the original
// passed Prisma's exceptions to its clients, whatever the error's code.
// It is logged and tagged on the span like any internal error.
func writeRawError(w http.ResponseWriter, r *http.Request, tel *telemetry.Telemetry, e *shop.Error) {
	telemetry.Logger(r.Context(), tel.Log).Error("internal error sent raw to the client",
		zap.String("switch", shop.SwitchRawErrors), zap.String("code", string(e.Code)),
		zap.Error(e), zap.String("path", r.URL.Path))
	if span, ok := tracer.SpanFromContext(r.Context()); ok {
		span.SetTag("error.message", e.Error())
		span.SetTag("error.type", string(shop.EINTERNAL))
	}
	writeJSON(w, http.StatusInternalServerError, map[string]any{"error": e.Err.Error()})
}

// switchState is one switch in GET /admin/switches and PUT
// /admin/switches/{name}.
type switchState struct {
	Switch string `json:"switch"`
	On     bool   `json:"on"`
}

// handleListSwitches is GET /admin/switches: every switch and whether it
// is on.
func handleListSwitches(sw shop.SwitchBoard) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := []switchState{}
		for _, name := range shop.SwitchNames() {
			out = append(out, switchState{name, sw.On(r.Context(), name)})
		}
		writeJSON(w, http.StatusOK, map[string]any{"switches": out})
	})
}

// flipRequest is the body of PUT /admin/switches/{name}.
type flipRequest struct {
	On *bool `json:"on"`
}

// handleFlipSwitch is PUT /admin/switches/{name} {"on": true|false}: it
// turns a switch on or off at runtime, for the next requests, and logs a
// warning. 404 for an unknown switch; 422 when the switches come from a
// provider that cannot be flipped from here.
func handleFlipSwitch(tel *telemetry.Telemetry, sw shop.SwitchBoard, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := mux.Vars(r)["name"]
		on, err := decodeValid(w, r, limit, func(req flipRequest) (bool, error) {
			if req.On == nil {
				return false, shop.Invalid(shop.FieldError{Field: "on", Code: "required", Message: "on is required (true or false)"})
			}
			return *req.On, nil
		})
		if err == nil {
			err = sw.Flip(r.Context(), name, on)
		}
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		telemetry.Logger(r.Context(), tel.Log).Warn("chaos switch flipped", zap.String("switch", name), zap.Bool("on", on))
		writeJSON(w, http.StatusOK, switchState{name, on})
	})
}
