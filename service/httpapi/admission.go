package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// Admission of imports and shutdown of long requests.
//
// An import holds a database connection for as long as its client takes to
// upload its body. So imports are admitted at most ImportsMaxConcurrent at
// a time (429 + Retry-After beyond, without reading the body), run on
// their own pool (shopd's imports pool), and their body is read under an
// idle timeout and a minimum rate: a stalled or trickling upload is cut
// with 408 Request Timeout and its transaction rolled back. When the
// server begins to shut down (Deps.Stopping), new imports get 503 and
// running uploads are cut with 503 + Retry-After at once, instead of
// holding the shutdown until its timeout; report downloads are ended.

// stoppingKey is the request context's value: the server's Stopping
// context (withStopping).
const stoppingKey ctxKey = iota + 100

// withStopping puts stopping (done when the server begins to shut down)
// in every request's context, for the long requests to notice.
func withStopping(stopping context.Context, next http.Handler) http.Handler {
	if stopping == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stoppingKey, stopping)))
	})
}

// stoppingFrom is the server's Stopping context, or one never done.
func stoppingFrom(ctx context.Context) context.Context {
	if s, ok := ctx.Value(stoppingKey).(context.Context); ok {
		return s
	}
	return context.Background()
}

// errShuttingDown answers a request refused or cut by the shutdown.
func errShuttingDown(retryAfter time.Duration) *shop.Error {
	return &shop.Error{Code: shop.EUNAVAILABLE, RetryAfter: retryAfter,
		Message: "The server is shutting down; retry shortly (another instance will answer)."}
}

// endOnShutdown ends a long download when the server begins to shut down:
// it cancels its work (cancel) and unblocks a write stuck on a slow
// reader. The status is sent by then: the download can only be ended. The
// returned func stops watching.
func endOnShutdown(ctx context.Context, w http.ResponseWriter, cancel context.CancelFunc) (stop func()) {
	rc := http.NewResponseController(w)
	s := context.AfterFunc(stoppingFrom(ctx), func() {
		cancel()
		_ = rc.SetWriteDeadline(time.Now())
	})
	return func() { s() }
}

// importAdmission admits imports: at most cap slots at a time, none once
// the server is shutting down, and each upload under its limits.
type importAdmission struct {
	tel        *telemetry.Telemetry
	slots      *reportLimiter
	retryAfter time.Duration
	idle       time.Duration
	minRate    int64 // bytes per second, on average, after idle
}

func newImportAdmission(tel *telemetry.Telemetry, cfg Config) *importAdmission {
	return &importAdmission{
		tel:        tel,
		slots:      &reportLimiter{slots: make(chan struct{}, cfg.ImportsMaxConcurrent), tel: tel, gauge: telemetry.MetricImportsInFlight},
		retryAfter: cfg.ImportRetryAfter,
		idle:       cfg.UploadIdleTimeout,
		minRate:    cfg.UploadMinBytesPerSec,
	}
}

// admit takes a slot for the import r, or answers it (429 when every slot
// is taken, 503 during shutdown) and returns false. An admitted import's
// body is r.Body as guard returns it; release frees the slot.
func (a *importAdmission) admit(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	refuse := func(reason string, err *shop.Error) {
		_ = a.tel.Metrics.Incr(telemetry.MetricImportRejections, []string{"reason:" + reason}, 1)
		// Without it, net/http would read the rest of the body (up to
		// 256 KiB) before sending the answer: a slow upload would wait.
		w.Header().Set("Connection", "close")
		writeError(w, r, a.tel, err)
	}
	if stoppingFrom(r.Context()).Err() != nil {
		refuse("shutting_down", errShuttingDown(a.retryAfter))
		return nil, false
	}
	release, ok = a.slots.tryAcquire()
	if !ok {
		refuse("busy", &shop.Error{Code: shop.ERATELIMIT, RetryAfter: a.retryAfter,
			Message: fmt.Sprintf("Too many imports are running (at most %d at a time); retry shortly.", cap(a.slots.slots))})
		return nil, false
	}
	return release, true
}

// guard wraps r's body in an uploadGuard: each read waits at most the
// idle timeout, the average rate after it must stay above the minimum,
// and the shutdown cuts it. stop ends the watch and clears the deadline.
func (a *importAdmission) guard(w http.ResponseWriter, r *http.Request) (g *uploadGuard, stop func()) {
	g = &uploadGuard{body: r.Body, rc: http.NewResponseController(w), idle: a.idle, minRate: a.minRate,
		retryAfter: a.retryAfter, start: time.Now()}
	unwatch := context.AfterFunc(stoppingFrom(r.Context()), g.shutdown)
	return g, func() {
		unwatch()
		g.mu.Lock()
		g.done = true
		g.mu.Unlock()
		_ = g.rc.SetReadDeadline(time.Time{})
	}
}

// cut reports an import whose upload g cut mid-body: its metric (by
// reason), and Connection: close on the answer, since the rest of the
// body is still on the wire.
func (a *importAdmission) cut(w http.ResponseWriter, g *uploadGuard) {
	g.mu.Lock()
	reason := g.reason
	g.mu.Unlock()
	if reason == "" {
		return
	}
	_ = a.tel.Metrics.Incr(telemetry.MetricImportCuts, []string{"reason:" + reason}, 1)
	w.Header().Set("Connection", "close")
}

// uploadGuard is an import's request body under its limits. Reads come
// from the store's COPY goroutine; shutdown from the server's.
type uploadGuard struct {
	body       io.Reader
	rc         *http.ResponseController
	idle       time.Duration
	minRate    int64
	retryAfter time.Duration
	start      time.Time
	n          int64

	mu     sync.Mutex
	cut    *shop.Error // set by shutdown: every read fails with it
	reason string      // why the upload was cut (idle, slow, shutdown), if it was
	done   bool
}

// fail records that the upload is cut for reason, and returns err.
func (g *uploadGuard) fail(reason string, err *shop.Error) error {
	g.mu.Lock()
	g.reason = reason
	g.mu.Unlock()
	return err
}

func (g *uploadGuard) Read(p []byte) (int, error) {
	g.mu.Lock()
	if g.cut != nil {
		g.mu.Unlock()
		return 0, g.cut
	}
	if g.idle > 0 {
		// The deadline of the connection: SetReadDeadline is not
		// supported by every ResponseWriter (httptest's recorder), which
		// leaves only the rate check.
		_ = g.rc.SetReadDeadline(time.Now().Add(g.idle))
	}
	g.mu.Unlock()
	n, err := g.body.Read(p)
	g.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		g.mu.Lock()
		cut := g.cut
		g.mu.Unlock()
		switch {
		case cut != nil:
			return n, cut
		case errors.Is(err, os.ErrDeadlineExceeded):
			return n, g.fail("idle", &shop.Error{Code: shop.ETIMEOUT, Err: err,
				Message: fmt.Sprintf("The upload sent nothing for %s; nothing was imported. Send the body without pauses.", g.idle)})
		}
		return n, err
	}
	if elapsed := time.Since(g.start); g.minRate > 0 && g.idle > 0 && elapsed > g.idle && err == nil &&
		float64(g.n) < float64(g.minRate)*elapsed.Seconds() {
		return n, g.fail("slow", &shop.Error{Code: shop.ETIMEOUT,
			Message: fmt.Sprintf("The upload is too slow (%d bytes in %s, under %d bytes per second); nothing was imported.",
				g.n, elapsed.Round(time.Millisecond), g.minRate)})
	}
	return n, err
}

// shutdown cuts the upload: the read in progress returns at once (its
// deadline is now) and every later one fails.
func (g *uploadGuard) shutdown() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return
	}
	g.cut, g.reason = errShuttingDown(g.retryAfter), "shutdown"
	_ = g.rc.SetReadDeadline(time.Now())
}
