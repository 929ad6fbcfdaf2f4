// Package telemetrytest provides test doubles for package telemetry: a
// DogStatsD capture server, a zap observer logger, the dd-trace-go mock tracer
// and a ready-made *telemetry.Telemetry.
//
// The mock tracer (like the real one) is process-global in dd-trace-go. Tests
// that start it, or start the real tracer through telemetry.New, must not run
// at the same time as each other: MockTracer and LockTracer serialize them
// with a mutex, so such tests may still call t.Parallel(). Spans started by
// other parallel tests while a mock tracer runs are recorded by it too, so
// select spans by what the test itself made (resource, trace id) rather than
// counting all of them. A test must not call MockTracer or LockTracer twice.
package telemetrytest

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/mocktracer"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/shoplab/shoplab/service/telemetry"
)

// globalTracerMu serializes the tests that use dd-trace-go's global tracer.
// It is the one piece of package state, mirroring dd-trace-go's own.
var globalTracerMu sync.Mutex

// LockTracer takes the process-wide lock on dd-trace-go's global tracer until
// the end of t. Use it around telemetry.New with TraceEnabled; MockTracer
// takes it itself.
func LockTracer(t testing.TB) {
	t.Helper()
	globalTracerMu.Lock()
	t.Cleanup(globalTracerMu.Unlock)
}

// MockTracer takes the global tracer lock (see LockTracer), starts
// dd-trace-go's mock tracer and stops it, then releases the lock, on
// t.Cleanup.
func MockTracer(t testing.TB) mocktracer.Tracer {
	t.Helper()
	LockTracer(t)
	mt := mocktracer.Start()
	t.Cleanup(mt.Stop)
	return mt
}

// Observer returns a logger recording every entry at level or above, with
// caller and, from error level, stack traces like the service's logger.
func Observer(t testing.TB, level zapcore.Level) (*zap.Logger, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(level)
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel)), logs
}

// Config returns the telemetry configuration for tests: defaults, env and
// version "test", tracing off, and an AppName unique to this call
// ("shoplab_test_<hex>"), so that lock-wait sampling sees only the sessions of
// pools configured with it.
func Config(t testing.TB) telemetry.Config {
	t.Helper()
	cfg := telemetry.DefaultConfig()
	cfg.Env, cfg.Version = "test", "test"
	cfg.TraceEnabled = false
	cfg.AppName = "shoplab_test_" + randomHex(t, 6)
	return cfg
}

// New returns a Telemetry for tests built with Config(t), logging at debug
// level to an observer and sending metrics to a new StatsdCapture; no tracer
// is started (use MockTracer for spans).
func New(t testing.TB) (*telemetry.Telemetry, *StatsdCapture, *observer.ObservedLogs) {
	t.Helper()
	capture := NewStatsdCapture(t)
	log, logs := Observer(t, zapcore.DebugLevel)
	cfg := Config(t)
	cfg.DogStatsdAddr = capture.Addr()
	return telemetry.NewForTest(log, capture.Client(t), cfg), capture, logs
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("telemetrytest: random: %v", err)
	}
	return hex.EncodeToString(b)
}
