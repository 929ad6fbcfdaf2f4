package ddquery_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// TestRecorderWithDatadogGo sends through datadog-go configured as shopd
// configures it (telemetry.NewStatsdClient: namespace, global tags,
// extended client-side aggregation) and evaluates queries on the capture.
func TestRecorderWithDatadogGo(t *testing.T) {
	t.Parallel()
	rec, err := ddquery.NewRecorder()
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	cfg := telemetry.DefaultConfig()
	cfg.Env, cfg.Version, cfg.DogStatsdAddr = "test", "test", rec.Addr()
	client, err := telemetry.NewStatsdClient(cfg, statsd.WithoutTelemetry())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	start := time.Now()
	for i := 1; i <= 10; i++ {
		class := "2xx"
		if i%4 == 0 || i == 10 {
			class = "5xx"
		}
		tags := []string{"route:/orders/{userId}", "method:GET", "status_class:" + class}
		_ = client.Incr(telemetry.MetricHTTPRequests, tags, 1)
		_ = client.Distribution(telemetry.MetricHTTPRequestDuration, float64(i), tags, 1)
	}
	_ = client.Incr(telemetry.MetricHTTPRequests, []string{"route:unmatched", "method:GET", "status_class:4xx"}, 1)
	if err := client.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	samples, err := rec.Wait(ctx, func(ss []ddquery.Sample) bool {
		var reqs, durs int
		for _, s := range ss {
			switch s.Name {
			case "shoplab." + telemetry.MetricHTTPRequests:
				reqs += int(s.Value)
			case "shoplab." + telemetry.MetricHTTPRequestDuration:
				durs++
			}
		}
		return reqs == 11 && durs == 10
	})
	if err != nil {
		t.Fatalf("%v; received %v", err, samples)
	}
	from, to := start.Add(-time.Second), time.Now().Add(time.Second)
	step := to.Sub(from)

	for _, tc := range []struct {
		q    string
		want float64
	}{
		{"sum:shoplab.http.requests{route:/orders/_userid_,status_class:5xx,$env}.as_count() / sum:shoplab.http.requests{route:/orders/_userid_,$env}.as_count()", 0.3},
		{"sum:shoplab.http.requests{!route:unmatched,service:shoplab,version:test}.as_count()", 10},
		{"p50:shoplab.http.request.duration{route:/orders/_userid_,method:get}", 5},
		{"max:shoplab.http.request.duration{status_class:5xx}", 10},
		{"count:shoplab.http.request.duration{$env}", 10},
	} {
		q, err := ddquery.ParseQuery(tc.q)
		if err != nil {
			t.Fatal(err)
		}
		series, err := q.Eval(samples, from, to, step, map[string]string{"env": "test"})
		if err != nil {
			t.Fatal(err)
		}
		if len(series) != 1 || len(series[0].Points) != 1 || series[0].Points[0].Value != tc.want {
			t.Errorf("%s = %+v, want %v", tc.q, series, tc.want)
		}
	}

	m, err := ddquery.ParseMonitor("sum(last_5m):sum:shoplab.http.requests{status_class:5xx} by {route}.as_count() / sum:shoplab.http.requests{*} by {route}.as_count() > 0.25")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := m.Evaluate(samples, to, to, time.Minute, m.Thresholds(), ddquery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Group != "route:/orders/_userid_" || evs[0].State != ddquery.Alert || evs[0].Value != 0.3 {
		t.Errorf("monitor: got %+v", evs)
	}
}

// TestRecorderTraffic: Traffic counts the raw bytes and packets received,
// and Reset zeroes them.
func TestRecorderTraffic(t *testing.T) {
	t.Parallel()
	rec, err := ddquery.NewRecorder()
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	conn, err := net.Dial("udp", rec.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	packets := []string{"shoplab.a:1|c\nshoplab.b:2|g", "garbage that parses to nothing", "shoplab.c:1:2:3|d|#k:v"}
	want := 0
	for _, p := range packets {
		if _, err := conn.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
		want += len(p)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, n := rec.Traffic()
		if b == int64(want) && n == int64(len(packets)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Traffic = %d bytes in %d packets, want %d in %d", b, n, want, len(packets))
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec.Reset()
	if b, n := rec.Traffic(); b != 0 || n != 0 {
		t.Errorf("after Reset: Traffic = %d, %d", b, n)
	}
}
