package ddquery_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

func TestParseDatagrams(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 0)
	got := ddquery.ParseDatagrams(at, []byte(
		"shoplab.a:1|c|#x:1,y\n"+
			"shoplab.b:2.5:3|d|@0.5|#route:/orders/{userId}|c:abc\n"+
			"_e{1,1}:t|x\n"+
			"_sc|check|0\n"+
			"shoplab.c:7|g|#\n"+
			"shoplab.s:user-1|s|#k:v\n"+
			"shoplab.bad:x:4|c\n"+
			"garbage\n"+
			"notype:1\n"))
	want := []ddquery.Sample{
		{Time: at, Name: "shoplab.a", Type: "c", Value: 1, Rate: 1, Tags: []string{"x:1", "y"}},
		{Time: at, Name: "shoplab.b", Type: "d", Value: 2.5, Rate: 0.5, Tags: []string{"route:/orders/{userId}"}},
		{Time: at, Name: "shoplab.b", Type: "d", Value: 3, Rate: 0.5, Tags: []string{"route:/orders/{userId}"}},
		{Time: at, Name: "shoplab.c", Type: "g", Value: 7, Rate: 1},
		{Time: at, Name: "shoplab.s", Type: "s", Value: 0, Rate: 1, Tags: []string{"k:v"}},
		{Time: at, Name: "shoplab.bad", Type: "c", Value: 4, Rate: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	got[1].Tags[0] = "changed"
	if got[2].Tags[0] != "route:/orders/{userId}" {
		t.Error("the values of one line share their tags slice")
	}
}

func TestNormalizeTag(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"route:/orders/{userId}":  "route:/orders/_userid_",
		"Status_Class:5XX":        "status_class:5xx",
		"query:checkout.reserve":  "query:checkout.reserve",
		"client:go-http-client/1": "client:go-http-client/1",
		"a b?c=d":                 "a_b_c_d",
		"Émile:Ünïcode":           "émile:ünïcode",
		strings.Repeat("x", 250):  strings.Repeat("x", 200),
	} {
		if got := ddquery.NormalizeTag(in); got != want {
			t.Errorf("NormalizeTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		q    string
		want []ddquery.MetricRef
	}{
		{"avg:shoplab.db.locks.waiting{*}", []ddquery.MetricRef{{Name: "shoplab.db.locks.waiting", SpaceAgg: "avg"}}},
		{"sum:shoplab.http.requests{status_class:5xx,!route:unmatched} by {route,method}.as_count()",
			[]ddquery.MetricRef{{Name: "shoplab.http.requests", SpaceAgg: "sum", Filters: []string{"status_class:5xx", "!route:unmatched"}, GroupBy: []string{"route", "method"}}}},
		{"p99:shoplab.http.request.duration{route:/orders/_userid_, $env, $service} by {route}",
			[]ddquery.MetricRef{{Name: "shoplab.http.request.duration", SpaceAgg: "p99", Filters: []string{"route:/orders/_userid_", "$env", "$service"}, GroupBy: []string{"route"}}}},
		{"p99.9:d{route:/orders*}.rollup(max, 60)", []ddquery.MetricRef{{Name: "d", SpaceAgg: "p99.9", Filters: []string{"route:/orders*"}}}},
		{"count:d{*}.as_rate()", []ddquery.MetricRef{{Name: "d", SpaceAgg: "count"}}},
		{"100 * sum:a{status_class:5xx}.as_count() / (sum:a{*}.as_count() + 1)",
			[]ddquery.MetricRef{{Name: "a", SpaceAgg: "sum", Filters: []string{"status_class:5xx"}}, {Name: "a", SpaceAgg: "sum"}}},
		{"default_zero(max:g{pool:main}) - -2.5e1", []ddquery.MetricRef{{Name: "g", SpaceAgg: "max", Filters: []string{"pool:main"}}}},
		{"min:g{*}.rollup(avg)", []ddquery.MetricRef{{Name: "g", SpaceAgg: "min"}}},
	} {
		q, err := ddquery.ParseQuery(tc.q)
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", tc.q, err)
			continue
		}
		if got := q.Metrics(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseQuery(%q).Metrics() = %+v, want %+v", tc.q, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		q       string
		monitor bool
		pos     int
		msg     string
	}{
		{q: "shoplab.x{*}", pos: 0, msg: "no space aggregator"},
		{q: "median:x{*}", pos: 0, msg: "unsupported space aggregator"},
		{q: "p100:x{*}", pos: 0, msg: "unsupported space aggregator"},
		{q: "sum:x{*}.fill(zero)", pos: 8, msg: "unsupported function .fill()"},
		{q: "sum:x{*}.as_count().as_rate()", pos: 19, msg: "already has"},
		{q: "abs(sum:x{*})", pos: 0, msg: "unsupported function abs()"},
		{q: "sum:x{route:/orders/{userId}}", pos: 20, msg: "unsupported character"},
		{q: "sum:x{Status:5XX}", pos: 6, msg: "not a normalised tag"},
		{q: "sum:x{env IN (a,b)}", pos: 9, msg: "IN (...) is not supported"},
		{q: "sum:x{a:b AND c:d}", pos: 9, msg: "boolean filter"},
		{q: "sum:x{-a:b}", pos: 6, msg: "negate with '!'"},
		{q: "sum:x{*,a:b}", pos: 6, msg: "'*' must be the only filter"},
		{q: "sum:x{a:b", pos: 9, msg: "unterminated"},
		{q: "sum:x{a:b} by {}", pos: 15, msg: "expected a tag key"},
		{q: "sum:x{*}.rollup(median)", pos: 16, msg: "unsupported rollup method"},
		{q: "sum:x{*}.rollup(sum, 1.5)", pos: 21, msg: "whole seconds"},
		{q: "sum:x{*} +", pos: 10, msg: "end of the query"},
		{q: "sum:x{*} sum:y{*}", pos: 9, msg: "unexpected"},
		{q: "sum:x{a:$env}", pos: 8, msg: "whole filter"},
		{q: "avg(last_5m):avg:x{*} == 1", monitor: true, pos: 22, msg: "unsupported comparator"},
		{q: "median(last_5m):avg:x{*} > 1", monitor: true, pos: 0, msg: "unsupported time aggregation"},
		{q: "avg(last_5x):avg:x{*} > 1", monitor: true, pos: 4, msg: "expected a window"},
		{q: "avg(last_5m):avg:x{*}", monitor: true, pos: 21, msg: "expected a comparator"},
		{q: "avg(last_5m):avg:x{*} > high", monitor: true, pos: 24, msg: "expected a number"},
		{q: "avg(last_5m):avg:x{*} > 1 by", monitor: true, pos: 26, msg: "after the threshold"},
		{q: "percentile(last_5m):avg:x{*} > 1", monitor: true, pos: 20, msg: "percentile() needs"},
	} {
		var err error
		if tc.monitor {
			_, err = ddquery.ParseMonitor(tc.q)
		} else {
			_, err = ddquery.ParseQuery(tc.q)
		}
		var se *ddquery.SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: error %v, want a *SyntaxError", tc.q, err)
			continue
		}
		if se.Pos != tc.pos || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%q: error at %d %q, want at %d containing %q", tc.q, se.Pos, se.Msg, tc.pos, tc.msg)
		}
	}
}

func TestParseMonitor(t *testing.T) {
	t.Parallel()
	m, err := ddquery.ParseMonitor("sum(last_5m): sum:shoplab.http.requests{status_class:5xx}.as_count() / sum:shoplab.http.requests{*}.as_count() >= 0.05")
	if err != nil {
		t.Fatal(err)
	}
	if m.TimeAgg != "sum" || m.Window != 5*time.Minute || m.Comparator != ">=" || m.Threshold != 0.05 {
		t.Errorf("got %+v", m)
	}
	if got := m.Expr.String(); got != "sum:shoplab.http.requests{status_class:5xx}.as_count() / sum:shoplab.http.requests{*}.as_count()" {
		t.Errorf("Expr = %q", got)
	}
	if names := []string{m.Metrics()[0].Name, m.Metrics()[1].Name}; !slices.Equal(names, []string{"shoplab.http.requests", "shoplab.http.requests"}) {
		t.Errorf("Metrics = %v", m.Metrics())
	}
	for q, want := range map[string]time.Duration{
		"avg(last_1m):avg:x{*} < -1":         time.Minute,
		"max(last_1h):avg:x{*} > 1":          time.Hour,
		"min(last_1d):avg:x{*} <= 1":         24 * time.Hour,
		"percentile(last_15m):p95:d{*} > 1":  15 * time.Minute,
		"last(last_30m):max:g{*} by {a} > 1": 30 * time.Minute,
	} {
		m, err := ddquery.ParseMonitor(q)
		if err != nil || m.Window != want {
			t.Errorf("ParseMonitor(%q) = %+v, %v; want window %v", q, m, err, want)
		}
	}
}
