package ddquery

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Point is one value of a series: the aggregate of the interval that
// starts at Time.
type Point struct {
	Time  time.Time
	Value float64
}

// Series is the timeseries of one group of a query.
type Series struct {
	// Tags are the group's "key:value" tags, in the order of the query's
	// "by {...}" keys (a sample without the tag is in the group
	// "key:n/a"); empty for a query without "by".
	Tags []string
	// Points are in time order; an interval without data has no point.
	Points []Point
}

// Group is the series' tags joined with ",", or "*" for a query without
// "by", as Datadog names monitor groups.
func (s Series) Group() string { return groupName(s.Tags) }

func groupName(tags []string) string {
	if len(tags) == 0 {
		return "*"
	}
	return strings.Join(tags, ",")
}

// Eval evaluates q over the samples whose Time is in [from, to), in
// intervals of step starting at from (a .rollup() with a longer interval
// uses that interval instead), and returns one series per group, sorted by
// group. vars gives the values of template variables ($env -> vars["env"]);
// a variable that is absent, empty or "*" matches everything.
//
// It returns an error when step is not positive, when a metric was received
// with two types, or when the query asks something of a type that does
// not have it (p99: of a count, .as_count() makes no difference to a gauge
// and is accepted); it never returns a silent zero. A metric never received
// gives no series.
func (q *Query) Eval(samples []Sample, from, to time.Time, step time.Duration, vars map[string]string) ([]Series, error) {
	if step <= 0 {
		return nil, errors.New("ddquery: step must be positive")
	}
	c := newEvalCtx(samples, vars)
	set, err := c.eval(q.root, window{from, to, step}, nil)
	if err != nil {
		return nil, err
	}
	if set.constant {
		s := Series{}
		for t := from; t.Before(to); t = t.Add(step) {
			s.Points = append(s.Points, Point{t, set.c})
		}
		return []Series{s}, nil
	}
	return set.list(), nil
}

// window is the time range and interval of one evaluation.
type window struct {
	from, to time.Time
	step     time.Duration
}

// seriesSet is the value of an expression: a constant, or series by group.
type seriesSet struct {
	constant bool
	c        float64
	m        map[string]*series // by group name
}

type series struct {
	tags []string
	vals map[int64]float64 // by interval start, Unix nanoseconds
}

func (s *seriesSet) list() []Series {
	out := make([]Series, 0, len(s.m))
	for _, sr := range s.m {
		ser := Series{Tags: sr.tags}
		keys := make([]int64, 0, len(sr.vals))
		for k := range sr.vals {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ser.Points = append(ser.Points, Point{time.Unix(0, k), sr.vals[k]})
		}
		out = append(out, ser)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group() < out[j].Group() })
	return out
}

// normSample is a sample with its tags normalised.
type normSample struct {
	Sample
	tags   []string
	source string // the sorted normalised tag set: one timeseries
}

type evalCtx struct {
	samples []Sample
	vars    map[string]string
	byName  map[string][]normSample
}

func newEvalCtx(samples []Sample, vars map[string]string) *evalCtx {
	return &evalCtx{samples: samples, vars: vars, byName: map[string][]normSample{}}
}

func (c *evalCtx) named(name string) []normSample {
	if ns, ok := c.byName[name]; ok {
		return ns
	}
	ns := []normSample{}
	for _, s := range c.samples {
		if s.Name != name {
			continue
		}
		n := normSample{Sample: s, tags: make([]string, len(s.Tags))}
		for i, t := range s.Tags {
			n.tags[i] = NormalizeTag(t)
		}
		sorted := slices.Clone(n.tags)
		slices.Sort(sorted)
		n.source = strings.Join(slices.Compact(sorted), "\x00")
		ns = append(ns, n)
	}
	c.byName[name] = ns
	return ns
}

// leafFunc evaluates a metric query; nil means evalMetric.
type leafFunc func(*metricNode, window) (*seriesSet, error)

func (c *evalCtx) eval(n node, w window, leaf leafFunc) (*seriesSet, error) {
	switch n := n.(type) {
	case *numberNode:
		return &seriesSet{constant: true, c: n.v}, nil
	case *negNode:
		x, err := c.eval(n.x, w, leaf)
		if err != nil {
			return nil, err
		}
		return combine(&seriesSet{constant: true, c: -1}, x, '*'), nil
	case *binaryNode:
		l, err := c.eval(n.l, w, leaf)
		if err != nil {
			return nil, err
		}
		r, err := c.eval(n.r, w, leaf)
		if err != nil {
			return nil, err
		}
		return combine(l, r, n.op), nil
	case *funcNode: // default_zero
		x, err := c.eval(n.arg, w, leaf)
		if err != nil {
			return nil, err
		}
		if !x.constant {
			for _, s := range x.m {
				for t := w.from; t.Before(w.to); t = t.Add(w.step) {
					if _, ok := s.vals[t.UnixNano()]; !ok {
						s.vals[t.UnixNano()] = 0
					}
				}
			}
		}
		return x, nil
	case *metricNode:
		if leaf != nil {
			return leaf(n, w)
		}
		return c.evalMetric(n, w)
	}
	return nil, fmt.Errorf("ddquery: unknown node %T", n)
}

func apply(op byte, a, b float64) (float64, bool) {
	var v float64
	switch op {
	case '+':
		v = a + b
	case '-':
		v = a - b
	case '*':
		v = a * b
	case '/':
		if b == 0 {
			return 0, false
		}
		v = a / b
	}
	return v, !math.IsNaN(v) && !math.IsInf(v, 0)
}

// combine applies op point by point. Series pair up by group; a side with
// a single ungrouped series pairs with every group of the other side. A
// point exists where both sides have one and the result is a number
// (x/0 has no point).
func combine(l, r *seriesSet, op byte) *seriesSet {
	if l.constant && r.constant {
		v, ok := apply(op, l.c, r.c)
		if !ok {
			return &seriesSet{m: map[string]*series{}}
		}
		return &seriesSet{constant: true, c: v}
	}
	out := &seriesSet{m: map[string]*series{}}
	one := func(s *seriesSet) *series {
		if len(s.m) == 1 {
			if sr, ok := s.m["*"]; ok {
				return sr
			}
		}
		return nil
	}
	pair := func(g string, a, b *series, tags []string) {
		res := &series{tags: tags, vals: map[int64]float64{}}
		for t, av := range a.vals {
			if bv, ok := b.vals[t]; ok {
				if v, ok := apply(op, av, bv); ok {
					res.vals[t] = v
				}
			}
		}
		out.m[g] = res
	}
	switch {
	case l.constant || r.constant:
		s, k := r, l.c
		if r.constant {
			s, k = l, r.c
		}
		for g, sr := range s.m {
			res := &series{tags: sr.tags, vals: map[int64]float64{}}
			for t, v := range sr.vals {
				a, b := k, v
				if r.constant {
					a, b = v, k
				}
				if x, ok := apply(op, a, b); ok {
					res.vals[t] = x
				}
			}
			out.m[g] = res
		}
	case one(r) != nil && len(l.m) > 0:
		for g, sr := range l.m {
			pair(g, sr, one(r), sr.tags)
		}
	case one(l) != nil && len(r.m) > 0:
		for g, sr := range r.m {
			pair(g, one(l), sr, sr.tags)
		}
	default:
		for g, a := range l.m {
			if b, ok := r.m[g]; ok {
				pair(g, a, b, a.tags)
			}
		}
	}
	return out
}

// metricType returns the DogStatsD type the metric was received with.
func metricType(name string, ns []normSample) (string, error) {
	typ := ""
	for _, s := range ns {
		if typ == "" {
			typ = s.Type
		} else if s.Type != typ {
			return "", fmt.Errorf("ddquery: metric %s was received both as %q and as %q", name, typ, s.Type)
		}
	}
	return typ, nil
}

var typeNames = map[string]string{"c": "count", "g": "gauge", "d": "distribution", "h": "histogram", "ms": "timer", "s": "set"}

func (c *evalCtx) matches(m *metricNode, s normSample) bool {
	for _, f := range m.filters {
		pattern := f.pattern
		if f.tmplVar != "" {
			v := c.vars[f.tmplVar]
			if v == "" || v == "*" {
				continue
			}
			pattern = normalizePattern(f.tmplVar + ":" + v)
		}
		found := false
		for _, t := range s.tags {
			if globMatch(pattern, t) {
				found = true
				break
			}
		}
		if found == f.neg {
			return false
		}
	}
	return true
}

func groupTags(by []string, tags []string) []string {
	if len(by) == 0 {
		return nil
	}
	out := make([]string, len(by))
	for i, k := range by {
		out[i] = k + ":n/a"
		for _, t := range tags {
			if v, ok := strings.CutPrefix(t, k+":"); ok {
				out[i] = k + ":" + v
				break
			}
		}
	}
	return out
}

// evalMetric evaluates one metric query over w.
func (c *evalCtx) evalMetric(m *metricNode, w window) (*seriesSet, error) {
	interval := w.step
	if d := time.Duration(m.rollupSecs) * time.Second; d > interval {
		interval = d
	}
	all := c.named(m.name)
	typ, err := metricType(m.name, all)
	if err != nil {
		return nil, err
	}
	out := &seriesSet{m: map[string]*series{}}
	if typ == "" {
		return out, nil
	}
	agg := m.spaceAgg
	switch typ {
	case "c", "g":
		if agg == "count" || m.percentile > 0 {
			return nil, fmt.Errorf("ddquery: %s:%s: %s is a %s; %s: applies to distributions only", agg, m.name, m.name, typeNames[typ], agg)
		}
	case "d":
	default:
		return nil, fmt.Errorf("ddquery: %s is a %s (|%s): only counts, gauges and distributions are supported", m.name, typeNames[typ], typ)
	}

	// Select and bucket: group -> source -> bucket -> samples.
	type bucketKey struct {
		group, source string
		b             int64
	}
	buckets := map[bucketKey][]normSample{}
	groups := map[string][]string{}
	sources := map[[2]string]bool{}
	nb := int64((w.to.Sub(w.from) + interval - 1) / interval)
	for _, s := range all {
		if s.Time.Before(w.from) || !s.Time.Before(w.to) || !c.matches(m, s) {
			continue
		}
		tags := groupTags(m.groupBy, s.tags)
		g := groupName(tags)
		groups[g] = tags
		src := s.source
		if typ == "d" {
			src = "" // distributions aggregate all sources' values together
		}
		sources[[2]string{g, src}] = true
		b := int64(s.Time.Sub(w.from) / interval)
		k := bucketKey{g, src, b}
		buckets[k] = append(buckets[k], s)
	}
	start := func(b int64) int64 { return w.from.Add(time.Duration(b) * interval).UnixNano() }
	secs := interval.Seconds()

	for g, tags := range groups {
		sr := &series{tags: tags, vals: map[int64]float64{}}
		for b := int64(0); b < nb; b++ {
			var vals []float64 // one per source
			for src := range sources {
				if src[0] != g {
					continue
				}
				ss := buckets[bucketKey{g, src[1], b}]
				switch typ {
				case "c":
					method := m.rollup
					if method == "" {
						method = "sum"
					}
					if len(ss) == 0 {
						if method == "sum" || method == "count" {
							vals = append(vals, 0) // counts are aligned as 0
						}
						continue
					}
					xs := make([]float64, len(ss))
					for i, s := range ss {
						xs[i] = s.Value / rate(s.Rate)
					}
					v := reduce(method, xs)
					if method == "sum" && !m.asCount {
						v /= secs // as a rate: per second
					}
					vals = append(vals, v)
				case "g":
					if len(ss) == 0 {
						continue
					}
					xs := make([]float64, len(ss))
					for i, s := range ss {
						xs[i] = s.Value
					}
					method := m.rollup
					if method == "" {
						method = "last"
					}
					vals = append(vals, reduce(method, xs))
				case "d":
					if v, ok := distStat(m, ss, secs); ok {
						vals = append(vals, v)
					}
				}
			}
			if len(vals) == 0 {
				continue
			}
			if typ == "d" {
				sr.vals[start(b)] = vals[0]
			} else {
				sr.vals[start(b)] = reduce(agg, vals)
			}
		}
		out.m[g] = sr
	}
	return out, nil
}

func rate(r float64) float64 {
	if r <= 0 || r > 1 {
		return 1
	}
	return r
}

// reduce aggregates xs (not empty) with method: avg, sum, min, max, count
// or last (the last in arrival order).
func reduce(method string, xs []float64) float64 {
	switch method {
	case "sum":
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s
	case "avg":
		return reduce("sum", xs) / float64(len(xs))
	case "min":
		return slices.Min(xs)
	case "max":
		return slices.Max(xs)
	case "count":
		return float64(len(xs))
	case "last":
		return xs[len(xs)-1]
	}
	panic("ddquery: unknown aggregation " + method)
}

// distStat computes m's space aggregation over the values of one interval
// of a distribution: every value counts 1/rate times. count: and sum: are
// per interval (as counts), or per second with .as_rate(); an interval
// without values has no point, except for count: and sum:, which are 0.
func distStat(m *metricNode, ss []normSample, secs float64) (float64, bool) {
	perSec := 1.0
	if m.asRate {
		perSec = secs
	}
	var wsum, vsum float64
	for _, s := range ss {
		w := 1 / rate(s.Rate)
		wsum += w
		vsum += w * s.Value
	}
	switch m.spaceAgg {
	case "count":
		return wsum / perSec, true
	case "sum":
		return vsum / perSec, true
	}
	if len(ss) == 0 {
		return 0, false
	}
	switch m.spaceAgg {
	case "avg":
		return vsum / wsum, true
	case "min", "max":
		xs := make([]float64, len(ss))
		for i, s := range ss {
			xs[i] = s.Value
		}
		return reduce(m.spaceAgg, xs), true
	}
	return percentile(ss, m.percentile), true
}

// percentile returns the weighted nearest-rank p-th percentile: the
// smallest value v such that the values <= v weigh at least p% of all.
func percentile(ss []normSample, p float64) float64 {
	type wv struct{ v, w float64 }
	xs := make([]wv, len(ss))
	total := 0.0
	for i, s := range ss {
		xs[i] = wv{s.Value, 1 / rate(s.Rate)}
		total += xs[i].w
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].v < xs[j].v })
	target := p / 100 * total
	cum := 0.0
	for _, x := range xs {
		cum += x.w
		if cum >= target-1e-9*total {
			return x.v
		}
	}
	return xs[len(xs)-1].v
}
