package ddquery_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

var t0 = time.Unix(1700000000, 0)

// at returns t0 plus secs seconds.
func at(secs float64) time.Time { return t0.Add(time.Duration(secs * float64(time.Second))) }

func smp(secs float64, name, typ string, v float64, tags ...string) ddquery.Sample {
	return ddquery.Sample{Time: at(secs), Name: name, Type: typ, Value: v, Rate: 1, Tags: tags}
}

func withRate(s ddquery.Sample, r float64) ddquery.Sample { s.Rate = r; return s }

// vals returns each series' group and its values, NaN for the intervals of
// [from, from+n*step) without a point.
func vals(series []ddquery.Series, from time.Time, step time.Duration, n int) map[string][]float64 {
	out := map[string][]float64{}
	for _, s := range series {
		v := make([]float64, n)
		for i := range v {
			v[i] = math.NaN()
		}
		for _, p := range s.Points {
			v[int(p.Time.Sub(from)/step)] = p.Value
		}
		out[s.Group()] = v
	}
	return out
}

func sameVals(a, b map[string][]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !(x[i] == y[i] || math.IsNaN(x[i]) && math.IsNaN(y[i]) || math.Abs(x[i]-y[i]) < 1e-9) {
				return false
			}
		}
	}
	return true
}

var nan = math.NaN()

func TestEval(t *testing.T) {
	t.Parallel()
	const req, dur, pool = "shoplab.http.requests", "shoplab.http.request.duration", "shoplab.db.pool.in_use"
	samples := []ddquery.Sample{
		// counts, flushed every 2s by two sources (routes)
		smp(1, req, "c", 4, "route:/orders/{userId}", "status_class:2xx", "env:test"),
		smp(3, req, "c", 2, "route:/orders/{userId}", "status_class:5xx", "env:test"),
		smp(5, req, "c", 6, "route:/products", "status_class:2xx", "env:prod"),
		withRate(smp(12, req, "c", 1, "route:/products", "status_class:5xx", "env:prod"), 0.5), // stands for 2
		smp(25, req, "c", 10, "route:/orders/{userId}", "status_class:2xx", "env:test"),
		// a distribution across flushes, with a sample rate
		smp(1, dur, "d", 10, "route:/orders/{userId}"),
		smp(3, dur, "d", 20, "route:/orders/{userId}"),
		withRate(smp(5, dur, "d", 30, "route:/products"), 0.25), // weighs 4
		smp(7, dur, "d", 40, "route:/products"),
		smp(15, dur, "d", 100, "route:/products"),
		// gauges
		smp(1, pool, "g", 3, "pool:main"),
		smp(4, pool, "g", 5, "pool:main"),
		smp(2, pool, "g", 1, "pool:lock_sampler"),
		smp(21, pool, "g", 7, "pool:main"),
	}
	const step = 10 * time.Second
	for _, tc := range []struct {
		name, q string
		vars    map[string]string
		want    map[string][]float64 // 3 intervals of 10s from t0
	}{
		{"CountAsCount", "sum:" + req + "{*}.as_count()", nil, map[string][]float64{"*": {12, 2, 10}}},
		{"CountAsRate", "sum:" + req + "{*}.as_rate()", nil, map[string][]float64{"*": {1.2, 0.2, 1}}},
		{"CountDefaultIsRate", "sum:" + req + "{*}", nil, map[string][]float64{"*": {1.2, 0.2, 1}}},
		{"CountRollupInterval", "sum:" + req + "{*}.as_count().rollup(sum, 20)", nil, map[string][]float64{"*": {14, nan, 10}}},
		{"CountZeroAligned", "sum:" + req + "{status_class:5xx}.as_count()", nil, map[string][]float64{"*": {2, 2, 0}}},
		{"NormalisedTagFilter", "sum:" + req + "{route:/orders/_userid_}.as_count()", nil, map[string][]float64{"*": {6, 0, 10}}},
		{"Negation", "sum:" + req + "{!route:/orders/_userid_}.as_count()", nil, map[string][]float64{"*": {6, 2, 0}}},
		{"Wildcard", "sum:" + req + "{route:/ord*}.as_count()", nil, map[string][]float64{"*": {6, 0, 10}}},
		{"TemplateVar", "sum:" + req + "{$env}.as_count()", map[string]string{"env": "prod"}, map[string][]float64{"*": {6, 2, 0}}},
		{"TemplateVarStar", "sum:" + req + "{$env}.as_count()", map[string]string{"env": "*"}, map[string][]float64{"*": {12, 2, 10}}},
		{"GroupBy", "sum:" + req + "{*} by {route}.as_count()", nil, map[string][]float64{
			"route:/orders/_userid_": {6, 0, 10}, "route:/products": {6, 2, 0}}},
		{"GroupByMissingTag", "sum:" + req + "{*} by {host}.as_count()", nil, map[string][]float64{"host:n/a": {12, 2, 10}}},
		{"ErrorRate", "sum:" + req + "{status_class:5xx}.as_count() / sum:" + req + "{*}.as_count()", nil,
			map[string][]float64{"*": {2.0 / 12, 1, 0}}},
		{"ErrorRateByRouteDivByZero", "sum:" + req + "{status_class:5xx} by {route}.as_count() / sum:" + req + "{*} by {route}.as_count()", nil,
			map[string][]float64{"route:/orders/_userid_": {2.0 / 6, nan, 0}, "route:/products": {0, 1, nan}}},
		{"Arithmetic", "100 * (sum:" + req + "{*}.as_count() - 2) + -1", nil, map[string][]float64{"*": {999, -1, 799}}},
		{"BroadcastUngrouped", "sum:" + req + "{*} by {route}.as_count() / sum:" + req + "{*}.as_count()", nil,
			map[string][]float64{"route:/orders/_userid_": {0.5, 0, 1}, "route:/products": {0.5, 1, 0}}},
		// Interval 0 holds 10, 20, 30 (weighing 4) and 40: unweighted, p30 and p50 would be 20.
		{"Percentiles", "p50:" + dur + "{*}", nil, map[string][]float64{"*": {30, 100, nan}}},
		{"P99", "p99:" + dur + "{*}", nil, map[string][]float64{"*": {40, 100, nan}}},
		{"P20WeighsRate", "p20:" + dur + "{*}", nil, map[string][]float64{"*": {20, 100, nan}}},
		{"P30WeighsRate", "p30:" + dur + "{*}", nil, map[string][]float64{"*": {30, 100, nan}}},
		{"PercentileAcrossFlushes", "p50:" + dur + "{*}.rollup(avg, 30)", nil, map[string][]float64{"*": {30, nan, nan}}},
		{"DistAvg", "avg:" + dur + "{*}", nil, map[string][]float64{"*": {(10 + 20 + 4*30 + 40) / 7.0, 100, nan}}},
		{"DistCount", "count:" + dur + "{*}", nil, map[string][]float64{"*": {7, 1, 0}}},
		{"DistCountAsRate", "count:" + dur + "{*}.as_rate()", nil, map[string][]float64{"*": {0.7, 0.1, 0}}},
		{"DistMaxByRoute", "max:" + dur + "{*} by {route}", nil, map[string][]float64{
			"route:/orders/_userid_": {20, nan, nan}, "route:/products": {40, 100, nan}}},
		{"GaugeLast", "max:" + pool + "{pool:main}", nil, map[string][]float64{"*": {5, nan, 7}}},
		{"GaugeSpaceSum", "sum:" + pool + "{*}", nil, map[string][]float64{"*": {6, nan, 7}}},
		{"GaugeRollupAvg", "avg:" + pool + "{pool:main}.rollup(avg)", nil, map[string][]float64{"*": {4, nan, 7}}},
		{"GaugeAsCountNoEffect", "max:" + pool + "{pool:main}.as_count()", nil, map[string][]float64{"*": {5, nan, 7}}},
		{"DefaultZero", "default_zero(max:" + pool + "{pool:main})", nil, map[string][]float64{"*": {5, 0, 7}}},
		{"DefaultZeroNoSeries", "default_zero(max:" + pool + "{pool:none})", nil, map[string][]float64{}},
		{"Unknown", "sum:nothing{*}", nil, map[string][]float64{}},
		{"Constant", "2 * 3", nil, map[string][]float64{"*": {6, 6, 6}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := ddquery.ParseQuery(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			series, err := q.Eval(samples, t0, at(30), step, tc.vars)
			if err != nil {
				t.Fatal(err)
			}
			if got := vals(series, t0, step, 3); !sameVals(got, tc.want) {
				t.Errorf("%s\ngot  %v\nwant %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	t.Parallel()
	samples := []ddquery.Sample{
		smp(1, "c", "c", 1), smp(1, "g", "g", 1), smp(1, "h", "h", 1), smp(1, "s", "s", 0),
		smp(1, "mixed", "c", 1), smp(2, "mixed", "g", 1),
	}
	for q, want := range map[string]string{
		"p99:c{*}":            "applies to distributions only",
		"count:g{*}":          "applies to distributions only",
		"avg:h{*}":            "histogram",
		"sum:s{*}":            "set",
		"sum:mixed{*}":        "both as",
		"sum:c{*} / p50:c{*}": "applies to distributions only",
	} {
		qq, err := ddquery.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		_, err = qq.Eval(samples, t0, at(10), time.Second, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", q, err, want)
		}
	}
	qq, _ := ddquery.ParseQuery("sum:c{*}")
	if _, err := qq.Eval(samples, t0, at(10), 0, nil); err == nil {
		t.Error("step 0: no error")
	}
}

func TestSeriesTagsAndOrder(t *testing.T) {
	t.Parallel()
	q, _ := ddquery.ParseQuery("sum:c{*} by {b,a}.as_count()")
	series, err := q.Eval([]ddquery.Sample{
		smp(5, "c", "c", 1, "a:2", "b:1"), smp(1, "c", "c", 1, "a:1", "b:1"), smp(0, "c", "c", 1, "A:1", "B:1"),
	}, t0, at(10), 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []ddquery.Series{
		{Tags: []string{"b:1", "a:1"}, Points: []ddquery.Point{{at(0), 2}, {at(5), 0}}},
		{Tags: []string{"b:1", "a:2"}, Points: []ddquery.Point{{at(0), 0}, {at(5), 1}}},
	}
	if !reflect.DeepEqual(series, want) {
		t.Errorf("got %+v, want %+v", series, want)
	}
}

// TestParseFormula evaluates a dashboard formula over its named queries as
// the same arithmetic written between the queries, and refuses names that
// are not queries and metric queries inside the formula.
func TestParseFormula(t *testing.T) {
	t.Parallel()
	samples := []ddquery.Sample{
		smp(1, "m.req", "c", 8, "status_class:2xx"),
		smp(2, "m.req", "c", 2, "status_class:5xx"),
		smp(11, "m.req", "c", 5, "status_class:2xx"),
	}
	q1, err := ddquery.ParseQuery("sum:m.req{status_class:5xx}.as_count()")
	if err != nil {
		t.Fatal(err)
	}
	q2, err := ddquery.ParseQuery("sum:m.req{*}.as_count()")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]*ddquery.Query{"query1": q1, "query2": q2}
	f, err := ddquery.ParseFormula("100 * query1 / query2", named)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(f.Metrics()); got != 2 {
		t.Errorf("Metrics() has %d queries, want 2", got)
	}
	series, err := f.Eval(samples, at(0), at(20), 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := vals(series, at(0), 10*time.Second, 2)
	if want := map[string][]float64{"*": {20, 0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("100 * query1 / query2 = %v, want %v", got, want)
	}
	for formula, wantMsg := range map[string]string{
		"query1 / query3":        `"query3", which is not one of its queries`,
		"query1 + sum:m.req{*}":  "holds no metric query",
		"abs(query1)":            "unsupported function abs()",
		"query1 query2":          "unexpected",
		"100 * (query1 / query2": `expected ")"`,
		"query10 - query1":       `"query10"`,
	} {
		_, err := ddquery.ParseFormula(formula, named)
		var se *ddquery.SyntaxError
		if !errors.As(err, &se) || !strings.Contains(se.Msg, wantMsg) {
			t.Errorf("ParseFormula(%q) = %v, want a SyntaxError with %q", formula, err, wantMsg)
		}
	}
}
