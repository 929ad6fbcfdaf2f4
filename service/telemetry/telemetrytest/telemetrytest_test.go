package telemetrytest_test

import (
	"slices"
	"testing"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"go.uber.org/zap/zapcore"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

func TestParseDatagram(t *testing.T) {
	t.Parallel()
	got := telemetrytest.ParseDatagram([]byte(
		"shoplab.a:1|c|#x:1,y\n" +
			"shoplab.b:2.5:3|d|@0.5|#route:/orders/{userId}|c:abc\n" +
			"_e{1,1}:t|x\n" +
			"shoplab.c:7|g\n" +
			"shoplab.s:user-1|s|#k:v\n" +
			"garbage\n"))
	want := []telemetrytest.Metric{
		{Name: "shoplab.a", Value: 1, Type: "c", Rate: 1, Tags: []string{"x:1", "y"}},
		{Name: "shoplab.b", Value: 2.5, Type: "d", Rate: 0.5, Tags: []string{"route:/orders/{userId}"}},
		{Name: "shoplab.b", Value: 3, Type: "d", Rate: 0.5, Tags: []string{"route:/orders/{userId}"}},
		{Name: "shoplab.c", Value: 7, Type: "g", Rate: 1},
		{Name: "shoplab.s", Value: 0, Type: "s", Rate: 1, Tags: []string{"k:v"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d metrics, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Value != w.Value || g.Type != w.Type || g.Rate != w.Rate || !slices.Equal(g.Tags, w.Tags) {
			t.Errorf("metric %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestStatsdCapture(t *testing.T) {
	t.Parallel()
	capture := telemetrytest.NewStatsdCapture(t)
	client := capture.Client(t)
	for i := 0; i < 5; i++ {
		_ = client.Incr(telemetry.MetricHTTPRequests, []string{"route:/x"}, 1)
		_ = client.Distribution(telemetry.MetricHTTPRequestDuration, float64(i), []string{"route:/x"}, 1)
	}
	_ = client.Gauge(telemetry.MetricDBPoolMax, 4, []string{"pool:main"}, 1)

	m := capture.WaitFor(t, telemetry.MetricHTTPRequests, "route:/x")
	if m.Name != "shoplab.http.requests" || !m.HasTags("env:test", "service:shoplab", "version:test") {
		t.Errorf("got %v", m)
	}
	if v, _ := m.Tag("route"); v != "/x" {
		t.Errorf("Tag(route) = %q", v)
	}
	capture.WaitForMatch(t, telemetry.MetricDBPoolMax, func(m telemetrytest.Metric) bool { return m.Value == 4 }, "pool:main")
	if got := capture.Sum(telemetry.MetricHTTPRequests, "route:/x"); got != 5 {
		t.Errorf("Sum = %v, want 5 (aggregated counts)", got)
	}
	capture.WaitForMatch(t, telemetry.MetricHTTPRequestDuration, func(telemetrytest.Metric) bool {
		return len(capture.Find(telemetry.MetricHTTPRequestDuration)) == 5
	})
	if len(capture.Find("shoplab.db.pool.max")) == 0 {
		t.Error("Find does not accept the namespaced name")
	}
	capture.Reset()
	if len(capture.Metrics()) != 0 {
		t.Error("Reset kept metrics")
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tel, capture, logs := telemetrytest.New(t)
	tel.Log.Debug("hello")
	if logs.FilterMessage("hello").Len() != 1 {
		t.Error("logger does not record debug lines")
	}
	_ = tel.Metrics.Incr(telemetry.MetricLogDropped, nil, 1)
	capture.WaitFor(t, telemetry.MetricLogDropped)
	other := telemetrytest.Config(t)
	if tel.Config.AppName == other.AppName || tel.Config.TraceEnabled {
		t.Errorf("Config: AppName %q vs %q, TraceEnabled %v", tel.Config.AppName, other.AppName, tel.Config.TraceEnabled)
	}
}

func TestMockTracer(t *testing.T) {
	t.Parallel()
	mt := telemetrytest.MockTracer(t)
	log, logs := telemetrytest.Observer(t, zapcore.InfoLevel)
	span, ctx := tracer.StartSpanFromContext(t.Context(), "test.op", tracer.ResourceName("mock-res"))
	telemetry.Logger(ctx, log).Error("inside")
	span.Finish()
	var found bool
	for _, s := range mt.FinishedSpans() {
		if s.Tag("resource.name") == "mock-res" {
			found = true
		}
	}
	if !found {
		t.Error("span not recorded by the mock tracer")
	}
	e := logs.All()[0]
	if e.ContextMap()["dd.trace_id"] != telemetry.TraceID(span.Context()) || e.Stack == "" {
		t.Errorf("entry %+v: want trace id and a stack", e)
	}
}
