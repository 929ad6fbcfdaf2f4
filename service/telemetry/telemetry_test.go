package telemetry_test

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"go.uber.org/zap/zapcore"

	"github.com/shoplab/shoplab/internal/pgproc"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// syncBuffer is a bytes.Buffer safe for the tracer's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	port, err := pgproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(port)
}

// TestNewWithoutAgent starts the real tracer against an agent port where
// nothing listens: New and Close must succeed and the log must stay quiet.
func TestNewWithoutAgent(t *testing.T) {
	t.Parallel()
	telemetrytest.LockTracer(t)
	cfg := telemetry.DefaultConfig()
	cfg.Env = "test"
	cfg.AgentHost = "127.0.0.1"
	cfg.TraceAgentPort = freePort(t)
	cfg.DogStatsdAddr = "127.0.0.1:" + freePort(t) // UDP: nobody listens there either
	cfg.LogLevel = "debug"                         // quiet must not depend on the level
	var out syncBuffer
	tel, err := telemetry.New(cfg, &out)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	span, ctx := tracer.StartSpanFromContext(t.Context(), "test.op")
	telemetry.Logger(ctx, tel.Log).Info("inside span")
	span.Finish()
	for i := 0; i < 100; i++ {
		_ = tel.Metrics.Incr(telemetry.MetricHTTPRequests, []string{"route:/x"}, 1)
	}
	if err := tel.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tel.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	var lines, ddtrace int
	var sawSpanLine bool
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		lines++
		if m["level"] == "error" || m["level"] == "fatal" {
			t.Errorf("error line: %s", l)
		}
		if m["logger"] == "ddtrace" && m["level"] != "debug" {
			ddtrace++
		}
		if m["msg"] == "inside span" {
			sawSpanLine = true
			if m["dd.trace_id"] != telemetry.TraceID(span.Context()) || m["dd.service"] != "shoplab" || m["dd.env"] != "test" {
				t.Errorf("span line lacks correlation fields: %s", l)
			}
			if _, ok := m["timestamp"]; !ok {
				t.Errorf("no timestamp: %s", l)
			}
		}
	}
	if !sawSpanLine {
		t.Errorf("the service's own line is missing:\n%s", out.String())
	}
	if ddtrace > 5 {
		t.Errorf("%d tracer lines above debug, want a handful:\n%s", ddtrace, out.String())
	}
	t.Logf("%d lines, %d from the tracer above debug:\n%s", lines, ddtrace, out.String())
}

func TestNewSamplesLogs(t *testing.T) {
	t.Parallel()
	cfg := telemetry.DefaultConfig()
	cfg.TraceEnabled = false
	cfg.LogSampleFirst, cfg.LogSampleThereafter = 10, 1000
	capture := telemetrytest.NewStatsdCapture(t)
	cfg.DogStatsdAddr = capture.Addr()
	var out syncBuffer
	tel, err := telemetry.New(cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		tel.Log.Info("request")
	}
	if err := tel.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n > 12 {
		t.Errorf("%d lines written, want about 10", n)
	}
	eventually(t, "log.dropped", func() bool {
		var dropped float64
		for _, m := range capture.Find(telemetry.MetricLogDropped, "level:info") {
			dropped += m.Value
		}
		return dropped >= 480
	})
}

func TestNewInvalidLevel(t *testing.T) {
	t.Parallel()
	cfg := telemetry.DefaultConfig()
	cfg.TraceEnabled = false
	cfg.LogLevel = "loud"
	if _, err := telemetry.New(cfg, &syncBuffer{}); err == nil {
		t.Fatal("want an error")
	}
}

func TestLoggerWithoutSpan(t *testing.T) {
	t.Parallel()
	log, logs := telemetrytest.Observer(t, zapcore.InfoLevel)
	telemetry.Logger(t.Context(), log).Info("no span")
	f := logs.All()[0].ContextMap()
	if _, ok := f["dd.trace_id"]; ok {
		t.Errorf("dd.trace_id without a span: %v", f)
	}
}
