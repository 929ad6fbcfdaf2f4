package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Incidents is chaos/incidents.json: the one list of incidents (the
// original's eight problems and the four symptoms of problem 8), each with
// its defect switch, chaos scenarios, regression tests, dashboards,
// monitors and runbooks. docs/incidents.md's matrix is rendered from it
// (RenderMatrix) and chaos/incidents_test.go checks both against the
// repository.
type Incidents struct {
	About string `json:"about"`
	// Pending are scenarios that other branches add: named in the matrix,
	// allowed to be missing from Scenarios() until they land.
	Pending struct {
		About string   `json:"about"`
		Names []string `json:"names"`
	} `json:"pending_scenarios"`
	Incidents []Incident `json:"incidents"`
}

// Incident is one row of the matrix.
type Incident struct {
	// ID is the problem's number ("1".."8") or a symptom of 8 ("8a"...).
	ID    string `json:"id"`
	Title string `json:"title"`
	// Tag is the tag its own monitors carry: incident:<n> or
	// symptom:<name>.
	Tag string `json:"tag"`
	// Switch is the defect switch that brings it back ("" for none).
	Switch    string   `json:"switch"`
	Scenarios []string `json:"scenarios"`
	// Tests are "path: TestA, TestB" (each a func of that file).
	Tests      []string `json:"tests"`
	Dashboards []string `json:"dashboards"`
	// Monitors are its own monitors (they carry Tag); AlsoFires are other
	// rows' monitors that its incident fires.
	Monitors  []string `json:"monitors"`
	AlsoFires []string `json:"also_fires,omitempty"`
	Runbooks  []string `json:"runbooks"`
	// Note says why a column is empty, or what else to know.
	Note string `json:"note,omitempty"`
}

// LoadIncidents reads root/chaos/incidents.json, refusing unknown fields.
func LoadIncidents(root string) (*Incidents, error) {
	data, err := os.ReadFile(filepath.Join(root, "chaos", "incidents.json"))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var x Incidents
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("chaos/incidents.json: %w", err)
	}
	return &x, nil
}

// Matrix markers in docs/incidents.md: the text between them is
// RenderMatrix's.
const (
	MatrixBegin = "<!-- matrix: rendered from chaos/incidents.json by `go test ./chaos -run TestIncidentMatrix -update-incidents`; do not edit by hand -->"
	MatrixEnd   = "<!-- end of matrix -->"
)

// RenderMatrix renders the matrix as a Markdown table, links relative to
// docs/.
func (x *Incidents) RenderMatrix() string {
	var b strings.Builder
	b.WriteString("| # | Incident | Switch | Chaos scenarios | Regression tests | Dashboards | Monitors | Runbooks |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	links := func(names []string, format string) string {
		var out []string
		for _, n := range names {
			out = append(out, fmt.Sprintf(format, n, n))
		}
		return strings.Join(out, ", ")
	}
	or := func(s, none string) string {
		if s == "" {
			return none
		}
		return s
	}
	for _, in := range x.Incidents {
		sw := "none"
		if in.Switch != "" {
			sw = "`" + in.Switch + "`"
		}
		var scen []string
		for _, s := range in.Scenarios {
			scen = append(scen, "`"+s+"`")
		}
		mons := links(in.Monitors, "[%s](../monitors/%s.json)")
		if len(in.AlsoFires) > 0 {
			mons = strings.TrimPrefix(mons+"; also fires "+links(in.AlsoFires, "[%s](../monitors/%s.json)"), "; ")
		}
		title := in.Title + " (`" + in.Tag + "`)"
		if in.Note != "" {
			title += ". " + in.Note
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", in.ID, title, sw,
			or(strings.Join(scen, ", "), "none"),
			strings.Join(in.Tests, "; "),
			links(in.Dashboards, "[%s](../dashboards/%s.json)"),
			or(mons, "none (see the note)"),
			or(links(in.Runbooks, "[%s](../runbooks/%s.md)"), "none (see the note)"))
	}
	return b.String()
}
