package ddquery_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

func ptr(v float64) *float64 { return &v }

// perMinute returns one gauge sample of each value, at 30s into minute i;
// a NaN value leaves the minute empty.
func perMinute(name string, values []float64, tags ...string) []ddquery.Sample {
	var out []ddquery.Sample
	for i, v := range values {
		if v == v {
			out = append(out, smp(float64(i*60+30), name, "g", v, tags...))
		}
	}
	return out
}

func states(evs []ddquery.Evaluation) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.State.String())
	}
	return out
}

// evalEachMinute evaluates m at the end of each of the n minutes after t0.
func evalEachMinute(t *testing.T, q string, samples []ddquery.Sample, n int, th ddquery.Thresholds, opt ddquery.Options) []ddquery.Evaluation {
	t.Helper()
	m, err := ddquery.ParseMonitor(q)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := m.Evaluate(samples, at(60), at(float64(60*n)), time.Minute, th, opt)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestMonitorHysteresis(t *testing.T) {
	t.Parallel()
	samples := perMinute("g", []float64{50, 95, 85, 75, 85, 95, 70, 92, 88})
	for _, tc := range []struct {
		name string
		q    string
		th   ddquery.Thresholds
		want string
	}{
		{"CriticalOnly", "max(last_1m):avg:g{*} > 90", ddquery.Thresholds{Critical: 90},
			"OK ALERT OK OK OK ALERT OK ALERT OK"},
		{"Warning", "max(last_1m):avg:g{*} > 90", ddquery.Thresholds{Critical: 90, Warning: ptr(80)},
			"OK ALERT WARN OK WARN ALERT OK ALERT WARN"},
		{"Recovery", "max(last_1m):avg:g{*} > 90", ddquery.Thresholds{Critical: 90, Warning: ptr(80), CriticalRecovery: ptr(80), WarningRecovery: ptr(70)},
			"OK ALERT ALERT WARN WARN ALERT OK ALERT ALERT"},
		{"AtThreshold", "max(last_1m):avg:g{*} >= 95", ddquery.Thresholds{Critical: 95, CriticalRecovery: ptr(85)},
			"OK ALERT ALERT OK OK ALERT OK OK OK"}, // 85 is still >= the recovery threshold 85
		{"Below", "min(last_1m):avg:g{*} < 80", ddquery.Thresholds{Critical: 80, Warning: ptr(90), CriticalRecovery: ptr(90)},
			"ALERT OK WARN ALERT ALERT OK ALERT OK WARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := evalEachMinute(t, tc.q, samples, 9, tc.th, ddquery.Options{Step: time.Minute})
			if got := strings.Join(states(evs), " "); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestMonitorTimeAggregation(t *testing.T) {
	t.Parallel()
	// Five points in the window: 10, 30, 20, 60, 40 at 10s intervals.
	var samples []ddquery.Sample
	for i, v := range []float64{10, 30, 20, 60, 40} {
		samples = append(samples, smp(float64(i*10+5), "g", "g", v))
	}
	for agg, want := range map[string]float64{"avg": 32, "sum": 160, "min": 10, "max": 60, "last": 40} {
		m, err := ddquery.ParseMonitor(agg + "(last_1m):avg:g{*} > 1000")
		if err != nil {
			t.Fatal(err)
		}
		evs, err := m.Evaluate(samples, at(60), at(60), time.Minute, m.Thresholds(), ddquery.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || !evs[0].HasValue || evs[0].Value != want || evs[0].State != ddquery.OK || evs[0].Group != "*" {
			t.Errorf("%s: got %+v, want value %v", agg, evs, want)
		}
	}
}

func TestMonitorWindowSlides(t *testing.T) {
	t.Parallel()
	// One 5xx at 30s; the 5-minute window holds it from 60s to 300s.
	samples := []ddquery.Sample{smp(30, "req", "c", 1, "status_class:5xx")}
	m, _ := ddquery.ParseMonitor("sum(last_5m):sum:req{status_class:5xx}.as_count() > 0")
	evs, err := m.Evaluate(samples, at(0), at(420), time.Minute, m.Thresholds(), ddquery.Options{NotifyNoData: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(states(evs), " "); got != "NO DATA ALERT ALERT ALERT ALERT ALERT NO DATA NO DATA" {
		t.Errorf("got %s", got)
	}
	if evs[1].Value != 1 {
		t.Errorf("value %v, want 1", evs[1].Value)
	}
}

func TestMonitorNoData(t *testing.T) {
	t.Parallel()
	samples := perMinute("g", []float64{1, 2, nan, nan, nan, 3})
	for _, tc := range []struct {
		name string
		opt  ddquery.Options
		want string
	}{
		{"NotifyNoData", ddquery.Options{Step: time.Minute, NotifyNoData: true}, "OK OK NO DATA NO DATA NO DATA OK"},
		{"NoDataTimeframe", ddquery.Options{Step: time.Minute, NotifyNoData: true, NoDataTimeframe: 2 * time.Minute}, "OK OK OK NO DATA NO DATA OK"},
		{"KeepLastState", ddquery.Options{Step: time.Minute}, "OK OK OK OK OK OK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := evalEachMinute(t, "avg(last_1m):avg:g{*} > 10", samples, 6, ddquery.Thresholds{Critical: 10}, tc.opt)
			if got := strings.Join(states(evs), " "); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestMonitorGroups(t *testing.T) {
	t.Parallel()
	samples := append(perMinute("g", []float64{95, 50, 50}, "route:/a"), perMinute("g", []float64{nan, 99, nan}, "route:/b")...)
	evs := evalEachMinute(t, "max(last_1m):max:g{*} by {route} > 90", samples, 3, ddquery.Thresholds{Critical: 90}, ddquery.Options{Step: time.Minute, NotifyNoData: true})
	var got []string
	for _, e := range ddquery.Changes(evs) {
		got = append(got, e.Time.Sub(t0).String()+" "+e.Group+" "+e.State.String())
	}
	want := []string{"1m0s route:/a ALERT", "2m0s route:/a OK", "2m0s route:/b ALERT", "3m0s route:/b NO DATA"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestMonitorAsCountPath(t *testing.T) {
	t.Parallel()
	// Per 10s: errors 1, 0, 0, 0, 0, 9; requests 1, 10, 10, 10, 10, 10.
	// Classic path: avg of per-interval ratios = (1+0+0+0+0+0.9)/6 = 0.3167.
	// as_count path: sum(errors)/sum(requests) = 10/51 = 0.196.
	var samples []ddquery.Sample
	for i, n := range []float64{1, 10, 10, 10, 10, 10} {
		samples = append(samples, smp(float64(i*10+1), "req", "c", n))
	}
	samples = append(samples, smp(1, "err", "c", 1), smp(51, "err", "c", 9))
	for q, want := range map[string]float64{
		"sum(last_1m):sum:err{*}.as_count() / sum:req{*}.as_count() > 0.5": 10.0 / 51,
		"avg(last_1m):sum:err{*}.as_count() / sum:req{*}.as_count() > 0.5": 10.0 / 51,
		"avg(last_1m):sum:err{*}.as_rate() / sum:req{*}.as_rate() > 0.5":   1.9 / 6,
		"sum(last_1m):sum:err{*}.as_count() > 5":                           10,
	} {
		m, err := ddquery.ParseMonitor(q)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := m.Evaluate(samples, at(60), at(60), time.Minute, m.Thresholds(), ddquery.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || !evs[0].HasValue || abs(evs[0].Value-want) > 1e-9 {
			t.Errorf("%s: got %+v, want %v", q, evs, want)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestMonitorPercentile(t *testing.T) {
	t.Parallel()
	// 100 values 1..100 over five minutes, spread across flushes.
	var samples []ddquery.Sample
	for i := 1; i <= 100; i++ {
		samples = append(samples, smp(float64(i*3-1), "lat", "d", float64(i), "route:/x"))
	}
	m, err := ddquery.ParseMonitor("percentile(last_5m):p99:lat{route:/x} > 98")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := m.Evaluate(samples, at(300), at(300), time.Minute, ddquery.Thresholds{Critical: 98}, ddquery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Value != 99 || evs[0].State != ddquery.Alert {
		t.Errorf("got %+v, want p99 = 99, ALERT", evs)
	}
	// The average of per-interval p99s is not the window's p99.
	m2, _ := ddquery.ParseMonitor("avg(last_5m):p99:lat{route:/x} > 98")
	evs, _ = m2.Evaluate(samples, at(300), at(300), time.Minute, ddquery.Thresholds{Critical: 98}, ddquery.Options{})
	if len(evs) != 1 || evs[0].Value >= 99 || evs[0].State != ddquery.OK {
		t.Errorf("avg of p99s: got %+v", evs)
	}
}

func TestMonitorThresholdErrors(t *testing.T) {
	t.Parallel()
	above, _ := ddquery.ParseMonitor("avg(last_5m):avg:g{*} > 10")
	below, _ := ddquery.ParseMonitor("avg(last_5m):avg:g{*} < 10")
	for _, tc := range []struct {
		m    *ddquery.Monitor
		th   ddquery.Thresholds
		want string
	}{
		{above, ddquery.Thresholds{Critical: 9}, "differs"},
		{above, ddquery.Thresholds{Critical: 10, Warning: ptr(11)}, "warning threshold"},
		{above, ddquery.Thresholds{Critical: 10, CriticalRecovery: ptr(10)}, "critical recovery"},
		{above, ddquery.Thresholds{Critical: 10, WarningRecovery: ptr(5)}, "needs a warning"},
		{above, ddquery.Thresholds{Critical: 10, Warning: ptr(8), WarningRecovery: ptr(9)}, "warning recovery"},
		{below, ddquery.Thresholds{Critical: 10, Warning: ptr(8)}, "above"},
	} {
		if _, err := tc.m.Evaluate(nil, t0, t0, time.Minute, tc.th, ddquery.Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %+v: error %v, want %q", tc.m, tc.th, err, tc.want)
		}
	}
}

// TestEvaluateMissingAsZero: a count that stops coming resolves the
// alert with MissingAsZero, and keeps it without.
func TestEvaluateMissingAsZero(t *testing.T) {
	m, err := ddquery.ParseMonitor("sum(last_1m):sum:x.c{*}.as_count() > 5")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var samples []ddquery.Sample
	for i := range 10 {
		samples = append(samples, ddquery.Sample{Name: "x.c", Type: "c", Value: 1, Rate: 1, Time: t0.Add(time.Duration(i) * time.Second)})
	}
	for _, zero := range []bool{false, true} {
		evs, err := m.Evaluate(samples, t0.Add(30*time.Second), t0.Add(3*time.Minute), 30*time.Second, m.Thresholds(), ddquery.Options{MissingAsZero: zero})
		if err != nil {
			t.Fatal(err)
		}
		if evs[0].State != ddquery.Alert {
			t.Fatalf("first evaluation %v, want ALERT", evs[0].State)
		}
		want := ddquery.Alert
		if zero {
			want = ddquery.OK
		}
		if last := evs[len(evs)-1]; last.State != want {
			t.Errorf("MissingAsZero %v: after the counts stopped %v, want %v", zero, last.State, want)
		}
	}
}
