package ddquery

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// State is a monitor group's state after an evaluation.
type State int

// The states of a metric monitor group.
const (
	OK State = iota
	Warn
	Alert
	NoData
)

// String returns the state as Datadog shows it: "OK", "WARN", "ALERT",
// "NO DATA".
func (s State) String() string {
	switch s {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	case Alert:
		return "ALERT"
	case NoData:
		return "NO DATA"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Thresholds are a monitor's options.thresholds. Critical must equal the
// threshold in the query, as Datadog requires.
type Thresholds struct {
	Critical float64
	// Warning, CriticalRecovery and WarningRecovery are optional (nil).
	Warning, CriticalRecovery, WarningRecovery *float64
}

// Thresholds returns the thresholds of m's query: Critical only.
func (m *Monitor) Thresholds() Thresholds { return Thresholds{Critical: m.Threshold} }

// Options are the monitor options the evaluation honours.
type Options struct {
	// Step is the interval of the points the time aggregation runs over
	// (default 10s, the Datadog Agent's DogStatsD flush interval).
	Step time.Duration
	// NotifyNoData is options.notify_no_data. When true, a group whose
	// window has had no point for NoDataTimeframe goes to NoData. When
	// false, an empty window keeps the group's last state (NoData only
	// before its first value), as Datadog keeps showing the last state.
	NotifyNoData bool
	// NoDataTimeframe is options.no_data_timeframe; 0 means the window:
	// NO DATA as soon as one window is empty.
	NoDataTimeframe time.Duration
	// Vars are template variable values, as for Query.Eval.
	Vars map[string]string
	// MissingAsZero evaluates a window without points as 0 for a group
	// that has had a value, instead of keeping its last state: Datadog's
	// default on missing data for sum and count aggregations (a count
	// that stopped coming is zero, so the alert resolves).
	MissingAsZero bool
}

// Evaluation is the result of one evaluation of one monitor group.
type Evaluation struct {
	Time time.Time
	// Group is "*" for a monitor without "by", else "key:value,...".
	Group string
	// Value is the time-aggregated value, when HasValue.
	Value    float64
	HasValue bool
	State    State
}

// Evaluate runs m as Datadog's monitor scheduler would at from, from+every,
// ... up to to: each evaluation at T takes the window [T-Window, T),
// evaluates the expression at opt.Step, aggregates each group's points with
// the time aggregation, and compares the value with th (see the package
// comment for the recovery and NO DATA rules). A monitor without "by" has
// the single group "*" from the first evaluation; groups of a multi-alert
// monitor appear at their first value. Results are in time order, then
// group order.
//
// It returns an error for invalid thresholds (Critical not equal to the
// query's, a warning or recovery threshold on the wrong side) or a
// non-positive every, and the errors of Query.Eval.
func (m *Monitor) Evaluate(samples []Sample, from, to time.Time, every time.Duration, th Thresholds, opt Options) ([]Evaluation, error) {
	if every <= 0 {
		return nil, errors.New("ddquery: every must be positive")
	}
	if opt.Step <= 0 {
		opt.Step = 10 * time.Second
	}
	if err := m.checkThresholds(th); err != nil {
		return nil, err
	}
	grouped := false
	countPath := false
	walk(m.Expr.root, func(n *metricNode) {
		grouped = grouped || len(n.groupBy) > 0
		countPath = countPath || n.asCount
	})
	countPath = countPath && hasArithmetic(m.Expr.root)

	type groupState struct {
		state     State
		lastValue time.Time
		hasValue  bool
	}
	groups := map[string]*groupState{}
	if !grouped {
		groups["*"] = &groupState{state: NoData}
	}
	c := newEvalCtx(samples, opt.Vars)
	var out []Evaluation
	for t := from; !t.After(to); t = t.Add(every) {
		values, err := m.values(c, window{t.Add(-m.Window), t, opt.Step}, countPath)
		if err != nil {
			return nil, err
		}
		for g := range values {
			if groups[g] == nil {
				groups[g] = &groupState{state: NoData}
			}
		}
		names := make([]string, 0, len(groups))
		for g := range groups {
			names = append(names, g)
		}
		sort.Strings(names)
		for _, g := range names {
			gs := groups[g]
			ev := Evaluation{Time: t, Group: g}
			if v, ok := values[g]; ok {
				ev.Value, ev.HasValue = v, true
				gs.state = m.next(gs.state, v, th)
				gs.lastValue, gs.hasValue = t, true
			} else if opt.MissingAsZero && gs.hasValue {
				gs.state = m.next(gs.state, 0, th)
			} else if opt.NotifyNoData && (!gs.hasValue || opt.NoDataTimeframe == 0 || t.Sub(gs.lastValue) >= opt.NoDataTimeframe) {
				gs.state = NoData
			}
			ev.State = gs.state
			out = append(out, ev)
		}
	}
	return out, nil
}

// values evaluates the window and returns each group's time-aggregated value.
func (m *Monitor) values(c *evalCtx, w window, countPath bool) (map[string]float64, error) {
	var set *seriesSet
	var err error
	switch {
	case m.TimeAgg == "percentile":
		// One interval as long as the window: the percentile of every value in it.
		w.step = w.to.Sub(w.from)
		set, err = c.eval(m.Expr.root, w, nil)
	case countPath:
		// Datadog's as_count() path: time-aggregate each query, then do the arithmetic.
		set, err = c.eval(m.Expr.root, w, func(n *metricNode, w window) (*seriesSet, error) {
			s, err := c.evalMetric(n, w)
			if err != nil {
				return nil, err
			}
			for _, sr := range s.m {
				if v, ok := timeAggregate(m.TimeAgg, sr); ok {
					sr.vals = map[int64]float64{w.from.UnixNano(): v}
				} else {
					sr.vals = map[int64]float64{}
				}
			}
			return s, nil
		})
	default:
		set, err = c.eval(m.Expr.root, w, nil)
	}
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	if set.constant {
		out["*"] = set.c
		return out, nil
	}
	for g, sr := range set.m {
		if v, ok := timeAggregate(m.TimeAgg, sr); ok {
			out[g] = v
		}
	}
	return out, nil
}

func timeAggregate(agg string, sr *series) (float64, bool) {
	if len(sr.vals) == 0 {
		return 0, false
	}
	keys := make([]int64, 0, len(sr.vals))
	for k := range sr.vals {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	xs := make([]float64, len(keys))
	for i, k := range keys {
		xs[i] = sr.vals[k]
	}
	if agg == "percentile" {
		agg = "last" // a single interval
	}
	return reduce(agg, xs), true
}

// breaches reports whether v is beyond threshold t for m's comparator.
func (m *Monitor) breaches(v, t float64) bool {
	switch m.Comparator {
	case ">":
		return v > t
	case ">=":
		return v >= t
	case "<":
		return v < t
	}
	return v <= t
}

// next is the state after a value v, given the previous state.
func (m *Monitor) next(prev State, v float64, th Thresholds) State {
	if m.breaches(v, th.Critical) || prev == Alert && th.CriticalRecovery != nil && m.breaches(v, *th.CriticalRecovery) {
		return Alert
	}
	if th.Warning != nil && (m.breaches(v, *th.Warning) ||
		(prev == Warn || prev == Alert) && th.WarningRecovery != nil && m.breaches(v, *th.WarningRecovery)) {
		return Warn
	}
	return OK
}

func (m *Monitor) checkThresholds(th Thresholds) error {
	if th.Critical != m.Threshold {
		return fmt.Errorf("ddquery: critical threshold %v differs from the query's %v", th.Critical, m.Threshold)
	}
	// beyond(a, b): a is strictly on the alerting side of b.
	beyond := func(a, b float64) bool {
		if m.Comparator == ">" || m.Comparator == ">=" {
			return a > b
		}
		return a < b
	}
	side := "below"
	if m.Comparator == "<" || m.Comparator == "<=" {
		side = "above"
	}
	if th.Warning != nil && !beyond(th.Critical, *th.Warning) {
		return fmt.Errorf("ddquery: warning threshold %v must be %s the critical threshold %v", *th.Warning, side, th.Critical)
	}
	if th.CriticalRecovery != nil && !beyond(th.Critical, *th.CriticalRecovery) {
		return fmt.Errorf("ddquery: critical recovery threshold %v must be %s the critical threshold %v", *th.CriticalRecovery, side, th.Critical)
	}
	if th.WarningRecovery != nil {
		if th.Warning == nil {
			return errors.New("ddquery: a warning recovery threshold needs a warning threshold")
		}
		if !beyond(*th.Warning, *th.WarningRecovery) {
			return fmt.Errorf("ddquery: warning recovery threshold %v must be %s the warning threshold %v", *th.WarningRecovery, side, *th.Warning)
		}
	}
	return nil
}

// Changes returns the evaluations where a group's state differs from its
// previous evaluation, including each group's first.
func Changes(evs []Evaluation) []Evaluation {
	last := map[string]State{}
	var out []Evaluation
	for _, e := range evs {
		if s, ok := last[e.Group]; !ok || s != e.State {
			out = append(out, e)
		}
		last[e.Group] = e.State
	}
	return out
}

func hasArithmetic(n node) bool {
	switch n := n.(type) {
	case *binaryNode:
		return true
	case *negNode:
		return hasArithmetic(n.x)
	case *funcNode:
		return hasArithmetic(n.arg)
	}
	return false
}
