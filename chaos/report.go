package chaos

import (
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/moncheck"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// Phase is one phase of a run, in wall-clock time.
type Phase struct {
	Name     string    `json:"name"`
	From, To time.Time `json:"-"`
	// Start and End are seconds since the run started.
	Start float64 `json:"start_s"`
	End   float64 `json:"end_s"`
}

// Change is a monitor group's state change.
type Change struct {
	Monitor string  `json:"monitor"`
	Group   string  `json:"group"`
	From    string  `json:"from"`
	To      string  `json:"to"`
	At      float64 `json:"at_s"`
	Phase   string  `json:"phase"`
	Value   string  `json:"value"`
}

// Diagnosis is a fired monitor's runbook's first query over the fault phase.
type Diagnosis struct {
	Monitor string `json:"monitor"`
	Runbook string `json:"runbook"`
	Query   string `json:"query"`
	// Top are the groups, highest first (at most 5): "query:x = 1999".
	Top []string `json:"top"`
	// Want is the expected tag of the top group, when one is expected.
	Want string `json:"want,omitempty"`
	OK   bool   `json:"ok"`
}

// KeyMetric is one metric's value per phase.
type KeyMetric struct {
	Label  string    `json:"label"`
	Query  string    `json:"query"`
	Values []*string `json:"values"` // per phase; nil: no data
}

// Report is one run: the results file and the timeline's source.
type Report struct {
	Scenario string    `json:"scenario"`
	Incident string    `json:"incident"`
	Summary  string    `json:"summary"`
	Factor   float64   `json:"factor"`
	NoFault  bool      `json:"no_fault,omitempty"`
	Start    time.Time `json:"start"`
	LoadEnd  time.Time `json:"load_end"`
	End      time.Time `json:"end"`
	Phases   []Phase   `json:"phases"`
	Every    string    `json:"every"`
	Samples  int       `json:"samples"`
	Mails    int64     `json:"mails"`

	Requests   []PhaseRequests   `json:"requests"`
	KeyMetrics []KeyMetric       `json:"key_metrics"`
	Changes    []Change          `json:"changes"`
	Fired      []string          `json:"fired"`
	Monitors   []moncheck.Result `json:"monitors"`
	Diagnoses  []Diagnosis       `json:"diagnoses"`
	Invariants []Invariant       `json:"invariants"`
	// PeakRSSMiB is the first shopd's peak resident memory per phase, in
	// MiB (-1: not readable).
	PeakRSSMiB []float64 `json:"peak_rss_mib"`
	// Signatures are the expectations' signature figures as measured.
	Signatures []SignatureResult `json:"signatures,omitempty"`
	// CaughtBy is what catches the fault (from the expectations).
	CaughtBy map[string]string `json:"caught_by,omitempty"`
	Recovery *Recovery         `json:"recovery,omitempty"`
	Outage   *Outage           `json:"outage,omitempty"`
	Notes    []string          `json:"notes,omitempty"`
	Failures []string          `json:"failures"`
	OK       bool              `json:"ok"`

	// Steps are the run's wall time per step (Run's setup, phases,
	// settle, checks and shutdown).
	Steps []Step `json:"steps,omitempty"`

	series []chart
}

func (r *Report) phaseAt(t time.Time) string {
	for _, p := range r.Phases {
		if !t.Before(p.From) && t.Before(p.To) {
			return p.Name
		}
	}
	return "settle"
}

func (r *Report) since(t time.Time) float64 {
	return math.Round(t.Sub(r.Start).Seconds()*10) / 10
}

func alarm(e ddquery.Evaluation, m moncheck.Monitor) bool {
	return e.State == ddquery.Alert || (e.State == ddquery.NoData && m.Options.NotifyNoData)
}

// judge records each monitor's state changes and checks fire, recover and
// quiet.
func (r *Report) judge(mons []moncheck.Monitor, results []moncheck.Result, x *Expectations, rec *recorder) {
	for i := range r.Phases {
		r.Phases[i].Start, r.Phases[i].End = r.since(r.Phases[i].From), r.since(r.Phases[i].To)
	}
	r.Monitors = results
	fault, recovery := r.Phases[1], r.Phases[2]
	fireUntil := recovery.From.Add(recovery.To.Sub(recovery.From) / 2)
	for i, res := range results {
		m := mons[i]
		id := MonitorID(m)
		last := map[string]ddquery.State{}
		atEnd := map[string]ddquery.State{} // at the end of the recovery phase
		firedInFault, firedAt := false, time.Time{}
		for _, e := range res.Trace {
			prev, seen := last[e.Group]
			if seen && prev != e.State || !seen && e.State != ddquery.OK && e.State != ddquery.NoData {
				from := "-"
				if seen {
					from = prev.String()
				}
				v := "-"
				if e.HasValue {
					v = fmt.Sprintf("%.4g", e.Value)
				}
				r.Changes = append(r.Changes, Change{Monitor: id, Group: e.Group, From: from, To: e.State.String(),
					At: r.since(e.Time), Phase: r.phaseAt(e.Time), Value: v})
			}
			last[e.Group] = e.State
			if !e.Time.After(recovery.To) {
				atEnd[e.Group] = e.State
			}
			if alarm(e, m) {
				if firedAt.IsZero() {
					firedAt = e.Time
				}
				if !e.Time.Before(fault.From) && !e.Time.After(fireUntil) {
					firedInFault = true
				}
			}
		}
		if !firedAt.IsZero() {
			r.Fired = append(r.Fired, id)
		}
		endOK := true
		for _, s := range atEnd {
			if s == ddquery.Alert || s == ddquery.Warn || (s == ddquery.NoData && m.Options.NotifyNoData) {
				endOK = false
			}
		}
		switch {
		case slices.Contains(x.Fire, id):
			if !firedInFault {
				r.Failures = append(r.Failures, fmt.Sprintf("monitor %s did not fire in the fault phase (worst %s)", id, worst(res)))
			} else if !endOK {
				r.Failures = append(r.Failures, fmt.Sprintf("monitor %s fired but did not recover by the end of the recovery phase", id))
			}
		case slices.Contains(x.MayFire, id):
		default:
			if !firedAt.IsZero() {
				r.Failures = append(r.Failures, fmt.Sprintf("monitor %s must stay quiet but fired at +%.1fs (%s phase): %s", id, r.since(firedAt), r.phaseAt(firedAt), res.Why))
			}
		}
	}
	sort.SliceStable(r.Changes, func(i, j int) bool { return r.Changes[i].At < r.Changes[j].At })
	for load, classes := range x.Status {
		bad := map[string]int{}
		for _, pr := range r.Requests {
			for k, codes := range pr.ByKind {
				if k != load && !strings.HasPrefix(k, load+"/") { // a load, or one kind of it
					continue
				}
				for code, n := range codes {
					class := code[:1] + "xx"
					if !slices.Contains(classes, class) && !slices.Contains(classes, code) {
						bad[strings.TrimPrefix(k, load+"/")+" "+code] += n
					}
				}
			}
		}
		if len(bad) > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("load %s answered %v, want only %s", load, bad, strings.Join(classes, ", ")))
		}
	}
}

func worst(res moncheck.Result) string {
	if res.Worst == nil {
		return "no data"
	}
	return fmt.Sprintf("%.4g against %.4g", *res.Worst, res.Critical)
}

// diagnose evaluates the first query of the runbook of every fired monitor
// over the fault phase and checks the expected ones.
func (r *Report) diagnose(root string, mons []moncheck.Monitor, x *Expectations, samples []ddquery.Sample, step time.Duration) {
	want := map[string]DiagnosisExpectation{}
	for _, d := range x.Diagnosis {
		want[d.Monitor] = d
	}
	fault := r.Phases[1]
	for _, m := range mons {
		id := MonitorID(m)
		d, expected := want[id]
		if !slices.Contains(r.Fired, id) && !expected {
			continue
		}
		for _, rb := range m.Runbooks {
			dg := Diagnosis{Monitor: id, Runbook: "runbooks/" + rb + ".md", OK: true}
			q, err := FirstQuery(filepath.Join(root, dg.Runbook))
			if err == nil {
				dg.Query = q
				dg.Top, err = topGroups(q, samples, fault.From, fault.To, step)
			}
			if err != nil {
				dg.Top = []string{"error: " + err.Error()}
			}
			if expected {
				dg.Want = d.Tag + ":" + d.Value
				dg.OK = err == nil && len(dg.Top) > 0 && slices.Contains(strings.Split(strings.SplitN(dg.Top[0], " = ", 2)[0], ","), dg.Want)
				if d.Min != nil {
					dg.Want += fmt.Sprintf(" >= %g", *d.Min)
					var v float64
					if dg.OK {
						_, err := fmt.Sscan(strings.SplitN(dg.Top[0], " = ", 2)[1], &v)
						dg.OK = err == nil && v >= *d.Min
					}
				}
				if !dg.OK {
					r.Failures = append(r.Failures, fmt.Sprintf("diagnosis of %s: %s's first query %s: top group %v, want %s", id, dg.Runbook, q, first(dg.Top), dg.Want))
				}
			}
			r.Diagnoses = append(r.Diagnoses, dg)
		}
	}
}

func first(xs []string) string {
	if len(xs) == 0 {
		return "(no data)"
	}
	return xs[0]
}

// topGroups evaluates q over [from, to) and ranks its groups: by their sum
// for an .as_count() query, else by their highest point.
func topGroups(q string, samples []ddquery.Sample, from, to time.Time, step time.Duration) ([]string, error) {
	pq, err := ddquery.ParseQuery(q)
	if err != nil {
		return nil, err
	}
	series, err := pq.Eval(samples, from, to, step, nil)
	if err != nil {
		return nil, err
	}
	sum := strings.Contains(q, ".as_count()")
	type gv struct {
		g string
		v float64
	}
	var gs []gv
	for _, s := range series {
		if len(s.Points) == 0 {
			continue
		}
		v := math.Inf(-1)
		if sum {
			v = 0
		}
		for _, p := range s.Points {
			if sum {
				v += p.Value
			} else {
				v = math.Max(v, p.Value)
			}
		}
		gs = append(gs, gv{s.Group(), v})
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].v > gs[j].v })
	var out []string
	for _, g := range gs[:min(len(gs), 5)] {
		out = append(out, fmt.Sprintf("%s = %.4g", g.g, g.v))
	}
	return out, nil
}

// keyMetrics are the figures the timeline shows per phase: one interval
// per phase, so a percentile is the phase's, a count its total and a gauge
// its maximum.
var keyMetrics = []struct{ label, query string }{
	{"checkouts 201", "sum:shoplab.checkout.outcomes{outcome:success}.as_count()"},
	{"checkouts timed out", "sum:shoplab.checkout.outcomes{outcome:timeout}.as_count()"},
	{"checkout p99 ms", "p99:shoplab.checkout.duration{*}"},
	{"checkout lock wait p99 ms", "p99:shoplab.checkout.lock_wait{*}"},
	{"lock waits sampled, max ms", "max:shoplab.db.lock_wait.sampled{*}"},
	{"main pool acquired, max", "max:shoplab.db.pool.acquired{pool:main}.rollup(max)"},
	{"http 5xx", "sum:shoplab.http.requests{status_class:5xx}.as_count()"},
	{"http 4xx", "sum:shoplab.http.requests{status_class:4xx}.as_count()"},
	{"reports rejected", "sum:shoplab.reports.rejected{*}.as_count()"},
	{"outbox oldest pending s, max", "max:shoplab.outbox.oldest_pending_age{*}.rollup(max)"},
	{"mails sent", "sum:shoplab.outbox.sent{*}.as_count()"},
}

func (r *Report) keyMetrics(samples []ddquery.Sample) {
	for _, km := range keyMetrics {
		k := KeyMetric{Label: km.label, Query: km.query}
		q, err := ddquery.ParseQuery(km.query)
		for _, p := range r.Phases {
			var v *string
			if err == nil {
				if ss, e := q.Eval(samples, p.From, p.To, p.To.Sub(p.From), nil); e == nil {
					for _, s := range ss {
						for _, pt := range s.Points {
							x := fmt.Sprintf("%.4g", pt.Value)
							v = &x
						}
					}
				}
			}
			k.Values = append(k.Values, v)
		}
		r.KeyMetrics = append(r.KeyMetrics, k)
	}
}

// chart is one plot of the HTML timeline.
type chart struct {
	title, unit string
	lines       []moncheck.Line
}

var timelineCharts = []struct{ title, unit, query string }{
	{"requests by status class (per second)", "req/s", "sum:shoplab.http.requests{*} by {status_class}.as_rate()"},
	{"checkout outcomes (per second)", "req/s", "sum:shoplab.checkout.outcomes{*} by {outcome}.as_rate()"},
	{"checkout p99 and lock wait p99", "ms", "p99:shoplab.checkout.duration{*}"},
	{"lock waits sampled by statement (max)", "ms", "max:shoplab.db.lock_wait.sampled{*} by {query}"},
	{"pool connections acquired", "connections", "max:shoplab.db.pool.acquired{*} by {pool}"},
	{"reports rejected (per second)", "req/s", "sum:shoplab.reports.rejected{*}.as_rate()"},
	{"outbox oldest pending", "s", "max:shoplab.outbox.oldest_pending_age{*}"},
}

func timelineSeries(samples []ddquery.Sample, from, to time.Time, step time.Duration) []chart {
	var out []chart
	for _, tc := range timelineCharts {
		c := chart{title: tc.title, unit: tc.unit}
		queries := []string{tc.query}
		if strings.HasPrefix(tc.query, "p99:shoplab.checkout.duration") {
			queries = append(queries, "p99:shoplab.checkout.lock_wait{*}")
		}
		for _, qs := range queries {
			q, err := ddquery.ParseQuery(qs)
			if err != nil {
				continue
			}
			ss, err := q.Eval(samples, from, to, step, nil)
			if err != nil {
				continue
			}
			for _, s := range ss {
				label := moncheck.ShortQuery(qs, 48)
				if g := s.Group(); g != "*" {
					label = g
				}
				c.lines = append(c.lines, moncheck.Line{Label: label, Points: s.Points})
			}
		}
		out = append(out, c)
	}
	return out
}

// PrintTimeline writes the run for a terminal: per phase the request rate,
// status counts, p50/p99 and key metrics; the monitors' state changes; the
// fired monitors' runbooks and first queries; the invariants; the verdict.
func (r *Report) PrintTimeline(w io.Writer) {
	fmt.Fprintf(w, "\n== chaos %s (%s): %s\n", r.Scenario, r.Incident, r.Summary)
	scale := "full scale"
	if r.Factor > 1 {
		scale = fmt.Sprintf("compressed x%g (monitor windows / %g)", r.Factor, r.Factor)
	}
	fmt.Fprintf(w, "%s; monitors evaluated every %s; %d DogStatsD samples\n\n", scale, r.Every, r.Samples)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "PHASE\tSECONDS\tREQ/S\tP50 MS\tP99 MS\tSTATUS\n")
	for i, p := range r.Phases {
		pr := r.Requests[i]
		fmt.Fprintf(tw, "%s\t%.0f-%.0f\t%.1f\t%.1f\t%.1f\t%s\n", p.Name, p.Start, p.End, pr.Rate, pr.P50Ms, pr.P99Ms, counts(pr.Status))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "KEY METRIC\thealthy\tfault\trecovery\n")
	for _, k := range r.KeyMetrics {
		fmt.Fprintf(tw, "%s", k.Label)
		for _, v := range k.Values {
			s := "-"
			if v != nil {
				s = *v
			}
			fmt.Fprintf(tw, "\t%s", s)
		}
		fmt.Fprintln(tw)
	}
	if len(r.PeakRSSMiB) == len(r.Phases) {
		fmt.Fprint(tw, "shopd peak RSS MiB")
		for _, v := range r.PeakRSSMiB {
			fmt.Fprintf(tw, "\t%.1f", v)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nMONITOR STATE CHANGES")
	if len(r.Changes) == 0 {
		fmt.Fprintln(w, "  none: every monitor stayed OK")
	}
	for _, c := range r.Changes {
		fmt.Fprintf(w, "  +%5.1fs %-8s %-22s %s -> %s (value %s, group %s)\n", c.At, c.Phase, c.Monitor, c.From, c.To, c.Value, c.Group)
	}
	if len(r.Diagnoses) > 0 {
		fmt.Fprintln(w, "\nRUNBOOKS OF THE FIRED MONITORS, FIRST QUERY OVER THE FAULT PHASE")
	}
	for _, d := range r.Diagnoses {
		fmt.Fprintf(w, "  %s -> %s\n    %s\n", d.Monitor, d.Runbook, d.Query)
		for _, t := range d.Top {
			fmt.Fprintf(w, "      %s\n", t)
		}
		if d.Want != "" {
			verdict := "points at the cause"
			if !d.OK {
				verdict = "MISSED"
			}
			fmt.Fprintf(w, "    expected top group %s: %s\n", d.Want, verdict)
		}
	}
	if len(r.Signatures) > 0 {
		fmt.Fprintln(w, "\nSIGNATURE OF THE FAULT")
	}
	for _, sg := range r.Signatures {
		v := "ok"
		if !sg.OK {
			v = "MISSED"
		}
		fmt.Fprintf(w, "  %-8s %-6s %-40s %s (want %s)\n", sg.Phase, v, sg.Label, sg.Value, sg.Want)
	}
	if rv := r.Recovery; rv != nil {
		fmt.Fprintln(w, "\nRECOVERY")
		if rv.FirstOKS == 0 {
			fmt.Fprintf(w, "  healed at +%.1fs; no 2xx of %s/%s since\n", rv.HealS, rv.Load, rv.Kind)
		} else {
			fmt.Fprintf(w, "  healed at +%.1fs; first 2xx of %s/%s at +%.3fs: recovered in %.3f s (bound %g s)\n", rv.HealS, rv.Load, rv.Kind, rv.FirstOKS, rv.Seconds, rv.WithinS)
		}
	}
	if o := r.Outage; o != nil {
		o.print(w)
	}
	fmt.Fprintln(w, "\nINVARIANTS")
	for _, inv := range r.Invariants {
		v := "ok"
		switch {
		case !inv.OK && inv.ExpectedToBreak:
			v = "BROKEN (expected)"
		case !inv.OK:
			v = "FAILED"
		case inv.ExpectedToBreak:
			v = "HELD (expected to break)"
		}
		fmt.Fprintf(w, "  %-20s %-6s %s\n", inv.Name, v, inv.Detail)
	}
	if len(r.CaughtBy) > 0 {
		fmt.Fprintln(w, "\nCAUGHT BY")
		for _, k := range slices.Sorted(maps.Keys(r.CaughtBy)) {
			fmt.Fprintf(w, "  %-16s %s\n", k, r.CaughtBy[k])
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.OK {
		fmt.Fprintf(w, "\n%s: every expectation met\n", r.Scenario)
	} else {
		fmt.Fprintf(w, "\n%s: %d expectation(s) missed:\n", r.Scenario, len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  - %s\n", f)
		}
	}
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// Write writes dir/<scenario>.json (the report) and dir/<scenario>.html
// (the timeline's plots, phase boundaries marked) and returns their paths.
func (r *Report) Write(dir string) (string, string, error) {
	jsonPath := filepath.Join(dir, r.Scenario+".json")
	htmlPath := filepath.Join(dir, r.Scenario+".html")
	if err := benchkit.WriteJSON(jsonPath, r); err != nil {
		return "", "", err
	}
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, `<!doctype html><html><head><meta charset="utf-8"><title>chaos %s</title><style>%s</style></head><body>`, esc(r.Scenario), moncheck.CSS)
	fmt.Fprintf(&b, `<h1>chaos %s</h1><p class="meta">%s (%s). Factor %g, from %s. Every expectation met: %v.</p>`,
		esc(r.Scenario), esc(r.Summary), esc(r.Incident), r.Factor, r.Start.UTC().Format(time.RFC3339), r.OK)
	var marks []moncheck.Mark
	for _, p := range r.Phases {
		marks = append(marks, moncheck.Mark{Time: p.From, Label: p.Name})
	}
	for _, c := range r.Changes {
		if c.To == "ALERT" || c.From == "ALERT" {
			marks = append(marks, moncheck.Mark{Time: r.Start.Add(time.Duration(c.At * float64(time.Second))), Label: c.Monitor + " " + c.To})
		}
	}
	b.WriteString(`<div class="grid">`)
	for _, c := range r.series {
		fmt.Fprintf(&b, `<div class="w"><h4>%s</h4>`, esc(c.title))
		if err := moncheck.Chart(&b, c.lines, c.unit, r.Start, r.End, marks...); err != nil {
			return "", "", err
		}
		b.WriteString(`</div>`)
	}
	b.WriteString(`</div><h2>Monitor state changes</h2><table>`)
	for _, c := range r.Changes {
		fmt.Fprintf(&b, `<tr><td class="n">+%.1fs</td><td>%s</td><td>%s</td><td>%s → %s</td><td>%s</td></tr>`, c.At, esc(c.Phase), esc(c.Monitor), esc(c.From), esc(c.To), esc(c.Value))
	}
	b.WriteString(`</table><h2>Expectations</h2><ul>`)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, `<li class="err">%s</li>`, esc(f))
	}
	if r.OK {
		b.WriteString(`<li>all met</li>`)
	}
	b.WriteString(`</ul></body></html>`)
	if err := os.WriteFile(htmlPath, []byte(b.String()), 0o644); err != nil {
		return "", "", err
	}
	return jsonPath, htmlPath, nil
}

// SignatureResult is one Signature as measured.
type SignatureResult struct {
	Label string `json:"label"`
	Query string `json:"query"`
	Phase string `json:"phase"`
	Value string `json:"value"`
	Want  string `json:"want"`
	OK    bool   `json:"ok"`
}

// signatures measures each signature over its phase and checks its bound.
func (r *Report) signatures(samples []ddquery.Sample, sigs []Signature) {
	for _, sg := range sigs {
		res := SignatureResult{Label: sg.Label, Query: sg.Query, Phase: sg.Phase}
		var want []string
		if sg.Above != nil {
			want = append(want, fmt.Sprintf("> %g", *sg.Above))
		}
		if sg.AtMost != nil {
			want = append(want, fmt.Sprintf("<= %g", *sg.AtMost))
		}
		res.Want = strings.Join(want, " and ")
		v, err := r.phaseValue(samples, sg)
		if err != nil {
			res.Value = "error: " + err.Error()
		} else {
			res.Value = fmt.Sprintf("%.4g", v)
			res.OK = (sg.Above == nil || v > *sg.Above) && (sg.AtMost == nil || v <= *sg.AtMost)
		}
		if !res.OK {
			r.Failures = append(r.Failures, fmt.Sprintf("signature %q in the %s phase: %s, want %s", sg.Label, sg.Phase, res.Value, res.Want))
		}
		r.Signatures = append(r.Signatures, res)
	}
}

// phaseValue is a signature query's value over its phase (the fault's
// window extended by SignatureLag, the recovery's started that much later
// and run to the end of the capture; less SkipS): one interval, summed over
// groups for .as_count(), else the highest; no data is 0.
func (r *Report) phaseValue(samples []ddquery.Sample, sg Signature) (float64, error) {
	query, phase := sg.Query, sg.Phase
	i := slices.IndexFunc(r.Phases, func(p Phase) bool { return p.Name == phase })
	if i < 0 {
		return 0, fmt.Errorf("no phase %q", phase)
	}
	if query == ProcPeakRSS {
		if i >= len(r.PeakRSSMiB) || r.PeakRSSMiB[i] < 0 {
			return 0, fmt.Errorf("shopd's memory was not readable")
		}
		return r.PeakRSSMiB[i], nil
	}
	q, err := ddquery.ParseQuery(query)
	if err != nil {
		return 0, err
	}
	p := r.Phases[i]
	// The fault's late samples count for the fault, not the recovery; the
	// healthy phase ends where the fault starts (nothing of it is early).
	from, to := p.From, p.To
	switch phase {
	case "fault":
		to = to.Add(SignatureLag)
	case "recovery":
		from, to = from.Add(SignatureLag), r.End
	}
	from = from.Add(time.Duration(sg.SkipS * float64(time.Second)))
	if to.After(r.End) {
		to = r.End
	}
	if !from.Before(to) {
		return 0, fmt.Errorf("the %s phase is shorter than skip_s and the %s lag", phase, SignatureLag)
	}
	ss, err := q.Eval(samples, from, to, to.Sub(from), nil)
	if err != nil {
		return 0, err
	}
	sum := strings.Contains(query, ".as_count()")
	v, any := 0.0, false
	for _, s := range ss {
		for _, pt := range s.Points {
			switch {
			case sum:
				v += pt.Value
			case !any || pt.Value > v:
				v = pt.Value
			}
			any = true
		}
	}
	return v, nil
}
