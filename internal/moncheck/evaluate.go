package moncheck

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"

	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// Every is how often the check evaluates each monitor over the capture,
// and Step the interval of the points inside a window (the Agent's
// DogStatsD flush interval, ddquery's default).
const (
	Every = 10 * time.Second
	Step  = 10 * time.Second
)

// Monitor is one monitors/*.json file, decoded and its query parsed.
type Monitor struct {
	// File is the file's base name ("no-traffic.json").
	File string
	// Name is the monitor's name.
	Name  string
	Query *ddquery.Monitor
	// Thresholds and Options come from the file's options.
	Thresholds ddquery.Thresholds
	Options    ddquery.Options
	// Runbooks are the runbooks/<name>.md its message links, by name.
	Runbooks []string
}

var runbookRE = regexp.MustCompile(`runbooks/([a-z0-9-]+)\.md`)

// LoadMonitors reads every *.json of dir as a Datadog monitor (v1), parses
// its query with ddquery and takes its thresholds, notify_no_data and
// no_data_timeframe (minutes, as Datadog's API has it). It fails, naming
// the file, on a file that does not decode or a query that does not parse.
func LoadMonitors(dir string) ([]Monitor, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("moncheck: no monitors in %s", dir)
	}
	var out []Monitor
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m datadogV1.Monitor
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("moncheck: %s: %w", f, err)
		}
		q, err := ddquery.ParseMonitor(m.Query)
		if err != nil {
			return nil, fmt.Errorf("moncheck: %s: query: %w", f, err)
		}
		o := m.GetOptions()
		th := o.GetThresholds()
		mon := Monitor{File: filepath.Base(f), Name: m.GetName(), Query: q,
			Thresholds: ddquery.Thresholds{Critical: q.Threshold},
			// Datadog evaluates a sum's missing data as zero unless
			// told to notify on no data.
			Options: ddquery.Options{Step: Step, NotifyNoData: o.GetNotifyNoData(), MissingAsZero: q.TimeAgg == "sum" && !o.GetNotifyNoData()},
		}
		for _, l := range runbookRE.FindAllStringSubmatch(m.GetMessage(), -1) {
			if !slices.Contains(mon.Runbooks, l[1]) {
				mon.Runbooks = append(mon.Runbooks, l[1])
			}
		}
		if v, ok := th.GetWarningOk(); ok {
			mon.Thresholds.Warning = v
		}
		if v, ok := th.GetCriticalRecoveryOk(); ok {
			mon.Thresholds.CriticalRecovery = v
		}
		if v, ok := th.GetWarningRecoveryOk(); ok {
			mon.Thresholds.WarningRecovery = v
		}
		if v, ok := o.GetNoDataTimeframeOk(); ok && v != nil {
			mon.Options.NoDataTimeframe = time.Duration(*v) * time.Minute
		}
		out = append(out, mon)
	}
	return out, nil
}

// Result is one monitor's verdict over a capture.
type Result struct {
	File     string   `json:"file"`
	Name     string   `json:"name"`
	Query    string   `json:"query"`
	Critical float64  `json:"critical"`
	Warning  *float64 `json:"warning,omitempty"`
	// Worst is the value closest to (or furthest beyond) the critical
	// threshold over every evaluation and group: the maximum for > and >=,
	// the minimum for < and <=. Nil when no evaluation had a value.
	Worst *float64 `json:"worst"`
	// Final is the state after the last evaluation: the worst over the
	// groups; "OK (no data)" when the metric never appeared and
	// notify_no_data is false.
	Final string `json:"final"`
	// Transitions are the state changes after each group's first state,
	// "group: OK -> WARN at +20s".
	Transitions []string `json:"transitions"`
	Evaluations int      `json:"evaluations"`
	// OK is false when any evaluation was WARN or ALERT, or NO DATA for a
	// monitor with notify_no_data (a false alarm in a healthy run).
	OK bool `json:"ok"`
	// Why says what was not OK.
	Why string `json:"why,omitempty"`
	// Trace is every evaluation, in time order then group order (for
	// timelines; not written).
	Trace []ddquery.Evaluation `json:"-"`
}

// Evaluate evaluates every monitor over samples as Datadog's scheduler
// would: every Every from from+Every to to, each evaluation over the
// monitor's own window [T-window, T). A window longer than the capture
// sees only what was captured: the window is truncated to the run (the
// capture holds nothing older), which is what a monitor created at the
// start of the run would see. A monitor whose metric never appears has no
// group and no evaluation: OK when notify_no_data is false (Datadog would
// show it without data, and notify nobody), NO DATA, a failure, when it is
// true. It returns an error when an evaluation fails (ddquery's errors).
func Evaluate(monitors []Monitor, samples []ddquery.Sample, from, to time.Time) ([]Result, error) {
	return EvaluateEvery(monitors, samples, from, to, Every)
}

// EvaluateEvery is Evaluate with evaluations every every instead of Every:
// chaos's compressed runs evaluate as often as their windows are short.
func EvaluateEvery(monitors []Monitor, samples []ddquery.Sample, from, to time.Time, every time.Duration) ([]Result, error) {
	var out []Result
	for _, m := range monitors {
		evs, err := m.Query.Evaluate(samples, from.Add(every), to, every, m.Thresholds, m.Options)
		if err != nil {
			return nil, fmt.Errorf("moncheck: %s: %w", m.File, err)
		}
		out = append(out, judge(m, evs, from))
	}
	return out, nil
}

func judge(m Monitor, evs []ddquery.Evaluation, from time.Time) Result {
	r := Result{File: m.File, Name: m.Name, Query: m.Query.String(), Critical: m.Thresholds.Critical,
		Warning: m.Thresholds.Warning, Evaluations: len(evs), OK: true, Transitions: []string{}, Trace: evs}
	below := strings.HasPrefix(m.Query.Comparator, "<")
	final := map[string]ddquery.State{}
	seen := map[string]bool{}
	var bad []string
	for _, e := range evs {
		if e.HasValue {
			if r.Worst == nil || (below && e.Value < *r.Worst) || (!below && e.Value > *r.Worst) {
				v := e.Value
				r.Worst = &v
			}
		}
		alarm := e.State == ddquery.Alert || e.State == ddquery.Warn || (e.State == ddquery.NoData && m.Options.NotifyNoData)
		if alarm {
			r.OK = false
			if len(bad) < 3 {
				bad = append(bad, fmt.Sprintf("%s %s at +%s (value %s)", e.Group, e.State, e.Time.Sub(from).Round(time.Second), fmtValue(e.Value, e.HasValue)))
			}
		}
		if seen[e.Group] && final[e.Group] != e.State {
			r.Transitions = append(r.Transitions, fmt.Sprintf("%s: %s -> %s at +%s", e.Group, final[e.Group], e.State, e.Time.Sub(from).Round(time.Second)))
		}
		seen[e.Group] = true
		final[e.Group] = e.State
	}
	switch {
	case len(final) == 0 && m.Options.NotifyNoData:
		r.Final, r.OK = ddquery.NoData.String(), false
		bad = append(bad, "no data at all, and notify_no_data is true")
	case len(final) == 0:
		r.Final = "OK (no data)"
	default:
		worst := ddquery.OK
		for _, s := range final {
			if rank(s, m.Options.NotifyNoData) > rank(worst, m.Options.NotifyNoData) {
				worst = s
			}
		}
		r.Final = worst.String()
		if worst == ddquery.NoData && !m.Options.NotifyNoData {
			r.Final = "OK (no data)"
		}
	}
	r.Why = strings.Join(bad, "; ")
	return r
}

func rank(s ddquery.State, notifyNoData bool) int {
	switch s {
	case ddquery.Alert:
		return 3
	case ddquery.Warn:
		return 2
	case ddquery.NoData:
		if notifyNoData {
			return 2
		}
		return 0
	}
	return 0
}

func fmtValue(v float64, ok bool) string {
	if !ok || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.4g", v)
}

// PrintTable writes the results as an aligned table: monitor, query
// (shortened), thresholds, worst value, final state, transitions.
func PrintTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MONITOR\tQUERY\tCRIT (WARN)\tWORST\tFINAL\tTRANSITIONS")
	for _, r := range results {
		th := fmtValue(r.Critical, true)
		if r.Warning != nil {
			th += " (" + fmtValue(*r.Warning, true) + ")"
		}
		worst := "no data"
		if r.Worst != nil {
			worst = fmtValue(*r.Worst, true)
		}
		tr := "none"
		if len(r.Transitions) > 0 {
			tr = strings.Join(r.Transitions, "; ")
		}
		final := r.Final
		if !r.OK {
			final += " !"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.TrimSuffix(r.File, ".json"), ShortQuery(r.Query, 64), th, worst, final, tr)
	}
	tw.Flush()
}

// ShortQuery shortens a query for a table: without the service filter
// and the "shoplab." namespace, cut to n characters.
func ShortQuery(q string, n int) string {
	q = strings.ReplaceAll(q, "service:shoplab,", "")
	q = strings.ReplaceAll(q, "{service:shoplab}", "{*}")
	q = strings.ReplaceAll(q, "shoplab.", "")
	if r := []rune(q); len(r) > n {
		q = string(r[:n-1]) + "…"
	}
	return q
}

// Offenders returns the files of the results that are not OK, with why.
func Offenders(results []Result) []string {
	var out []string
	for _, r := range results {
		if !r.OK {
			out = append(out, r.File+": "+r.Why)
		}
	}
	return out
}
