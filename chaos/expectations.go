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
	// Bounds, per load (by Load.Name, or "load/kind" for one kind of it):
	// every answer within MaxMs (never a hang) and, with RetryAfter, every
	// 5xx a 503 carrying a Retry-After header (a failure the client may
	// retry, never a 500).
	Bounds map[string]Bound `json:"bounds,omitempty"`
	// Recovery, when set, is measured: the time from the heal to the first
	// 2xx answer of Load/Kind completed after it (the run's JSON has it as
	// recovery); it must be within WithinS seconds.
	Recovery *RecoveryExpectation `json:"recovery,omitempty"`
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
