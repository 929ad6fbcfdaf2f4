package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/shoplab/shoplab/internal/moncheck"
)

// Expectations are a scenario's expectations/<name>.json. Monitors are
// named by their file id (monitors/<id>.json).
type Expectations struct {
	// Fire must ALERT during the fault phase (or within the first half of
	// the recovery phase, the window catching up) and be OK again at the
	// end of the recovery phase.
	Fire []string `json:"fire"`
	// MayFire may alert or not: the fault's side effects (a lock that
	// also times checkouts out). Every monitor in neither list must stay
	// quiet throughout: never ALERT, never NO DATA with notify_no_data.
	MayFire []string `json:"may_fire"`
	// Invariants to check at the end: "stock" (no product below zero;
	// per product, stock consumed = units in the run's orders),
	// "one-order-per-201" (the run's orders are exactly those its 201s
	// acknowledged), "one-mail-per-order" (the sink accepted one mail per
	// order).
	Invariants []string `json:"invariants"`
	// Status restricts the answers of a load (by Load.Name, or
	// "load/kind" for one kind of it) to status classes: "2xx", "3xx", "4xx", "5xx", "0xx" (transport errors).
	Status map[string][]string `json:"status,omitempty"`
	// Diagnosis: the first query of the runbook of each monitor named
	// here, evaluated over the fault phase, must have as its top group one
	// carrying the tag Tag:Value.
	Diagnosis []DiagnosisExpectation `json:"diagnosis"`
	// ExpectedViolations are invariants (of Invariants) the fault must
	// break: a defect switch that oversells breaks "stock". The run fails
	// when one of them holds.
	ExpectedViolations []string `json:"expected_violations,omitempty"`
	// Signatures are the fault's signature in the telemetry: a query's
	// value per phase, bounded (see Signature).
	Signatures []Signature `json:"signatures,omitempty"`
	// CaughtBy names what catches the fault, as data printed in the
	// timeline: e.g. "regression_test", "monitor", "gate" (a performance
	// budget), "invariant". Not checked by the run; chaos/incidents.json
	// and its test keep them true.
	CaughtBy map[string]string `json:"caught_by,omitempty"`
	// Bounds, per load (by Load.Name, or "load/kind" for one kind of it):
	// every answer within MaxMs (never a hang) and, with RetryAfter, every
	// 5xx a 503 carrying a Retry-After header (a failure the client may
	// retry, never a 500).
	Bounds map[string]Bound `json:"bounds,omitempty"`
	// Recovery, when set, is measured: the time from the heal to the first
	// 2xx answer of Load/Kind completed after it (the run's JSON has it as
	// recovery); it must be within WithinS seconds.
	Recovery *RecoveryExpectation `json:"recovery,omitempty"`
	// Outage, when set, is measured: the window in which Load/Kind failed
	// after the fault was injected (Outage in the report); its downtime
	// must be at most MaxS seconds, and it must have happened (a fault
	// that failed nothing did not happen).
	Outage *OutageExpectation `json:"outage,omitempty"`
}

// OutageExpectation names the answers whose failures make the outage
// (e.g. load "buyers", kind "checkout") and bounds its downtime: MaxS at
// full scale, CompressedMaxS in compressed runs (the fault's own timing
// may differ between them, as the failover's does: production's and the
// test's pg_auto_failover settings).
type OutageExpectation struct {
	Load           string  `json:"load"`
	Kind           string  `json:"kind"`
	MaxS           float64 `json:"max_s"`
	CompressedMaxS float64 `json:"compressed_max_s"`
}

// Bound is how a load's answers must be bounded.
type Bound struct {
	MaxMs      float64 `json:"max_ms"`
	RetryAfter bool    `json:"retry_after"`
}

// RecoveryExpectation names the answers that say the service is back
// (e.g. load "buyers", kind "checkout") and how soon they must come.
type RecoveryExpectation struct {
	Load    string  `json:"load"`
	Kind    string  `json:"kind"`
	WithinS float64 `json:"within_s"`
}

// Signature bounds one figure of one phase. Query is a metric query over
// the capture (evaluated as one interval per phase: the phase's sum for an
// .as_count() query, its highest point otherwise, over all groups), or
// ProcPeakRSS: the first shopd's peak resident memory in the phase, in MiB
// (benchkit's /proc reading, its peak reset at the start of each phase).
type Signature struct {
	Label string `json:"label"`
	Query string `json:"query"`
	// Phase is "healthy", "fault" or "recovery".
	Phase string `json:"phase"`
	// Above: the value must be greater; AtMost: not greater. No data
	// counts as 0.
	Above  *float64 `json:"above,omitempty"`
	AtMost *float64 `json:"at_most,omitempty"`
	// SkipS skips the first seconds of the phase: requests the previous
	// phase started (an import begun with a switch on finishes with it).
	SkipS float64 `json:"skip_s,omitempty"`
}

// SignatureLag: shopd's DogStatsD client flushes every 2 s and the capture
// stamps samples on arrival, so a phase's figures arrive up to that much
// after it. A fault signature's window ends that much after the fault; a
// recovery's starts that much after the heal.
const SignatureLag = 2500 * time.Millisecond

// ProcPeakRSS is the Signature query of shopd's peak resident memory in
// the phase, in MiB.
const ProcPeakRSS = "proc:peak_rss_mib"

// DiagnosisExpectation says where a runbook's first query must point.
type DiagnosisExpectation struct {
	Monitor string `json:"monitor"`
	Tag     string `json:"tag"`
	Value   string `json:"value"`
	// Min, when set, is the least value the top group must reach (its
	// sum, or its highest point): e.g. a round trip of at least 150 ms.
	Min *float64 `json:"min,omitempty"`
}

// Invariant names.
const (
	InvStock         = "stock"
	InvOrderPer201   = "one-order-per-201"
	InvMailPerOrder  = "one-mail-per-order"
	expectationsPath = "chaos/expectations"
)

// LoadExpectations reads root/chaos/expectations/<name>.json, rejecting
// unknown fields and invariants.
func LoadExpectations(root, name string) (*Expectations, error) {
	path := filepath.Join(root, expectationsPath, name+".json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w for %s: %v", errNoExpectations, name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var x Expectations
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("chaos: %s: %w", path, err)
	}
	for _, inv := range x.Invariants {
		if !slices.Contains([]string{InvStock, InvOrderPer201, InvMailPerOrder}, inv) {
			return nil, fmt.Errorf("chaos: %s: unknown invariant %q", path, inv)
		}
	}
	for _, inv := range x.ExpectedViolations {
		if !slices.Contains(x.Invariants, inv) {
			return nil, fmt.Errorf("chaos: %s: expected violation %q is not among the invariants", path, inv)
		}
	}
	for _, sg := range x.Signatures {
		if !slices.Contains([]string{"healthy", "fault", "recovery"}, sg.Phase) || sg.Above == nil && sg.AtMost == nil {
			return nil, fmt.Errorf("chaos: %s: signature %q needs a phase (healthy, fault, recovery) and a bound (above, at_most)", path, sg.Label)
		}
	}
	return &x, nil
}

// check verifies that every monitor named exists and none is both to fire
// and optional, and that every diagnosis names a monitor that must fire.
func (x *Expectations) check(mons []moncheck.Monitor) error {
	ids := map[string]bool{}
	for _, m := range mons {
		ids[MonitorID(m)] = true
	}
	for _, id := range slices.Concat(x.Fire, x.MayFire) {
		if !ids[id] {
			return fmt.Errorf("chaos: expectations name monitor %q, which is not in monitors/", id)
		}
	}
	for _, id := range x.Fire {
		if slices.Contains(x.MayFire, id) {
			return fmt.Errorf("chaos: expectations: %s both in fire and may_fire", id)
		}
	}
	for _, d := range x.Diagnosis {
		if !slices.Contains(x.Fire, d.Monitor) {
			return fmt.Errorf("chaos: expectations: the diagnosis of %s, which is not in fire", d.Monitor)
		}
	}
	return nil
}

// MonitorID is a monitor's file id: its file name without .json.
func MonitorID(m moncheck.Monitor) string { return strings.TrimSuffix(m.File, ".json") }

// firstQueryRE finds a runbook's machine-readable first diagnosis query:
// a line "First query: `<metric query>`" in its Diagnosis section.
var firstQueryRE = regexp.MustCompile("(?m)^First query: `([^`]+)`")

// FirstQuery returns the first diagnosis query of the runbook at path (see
// runbooks/TEMPLATE.md), or an error when it has none.
func FirstQuery(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	m := firstQueryRE.FindSubmatch(data)
	if m == nil {
		return "", fmt.Errorf("%s: no \"First query: `...`\" line", path)
	}
	return string(m[1]), nil
}

func loadMonitors(root string) ([]moncheck.Monitor, error) {
	return moncheck.LoadMonitors(filepath.Join(root, "monitors"))
}
