package chaos

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateIncidents = flag.Bool("update-incidents", false, "rewrite docs/incidents.md's matrix from chaos/incidents.json")

// TestIncidentMatrix checks chaos/incidents.json, the one list of
// incidents, against the repository, and docs/incidents.md's matrix
// against it: every scenario named exists in Scenarios() with its
// expectations (or is pending on another branch, and then not yet there);
// every monitor exists and carries its row's tag, and every monitor of
// monitors/ is in the matrix under a row of its tag; every runbook,
// dashboard, switch and test function exists.
func TestIncidentMatrix(t *testing.T) {
	root := RepoRoot()
	x, err := LoadIncidents(root)
	if err != nil {
		t.Fatal(err)
	}
	mons, err := loadMonitors(root)
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string][]string{}
	for _, m := range mons {
		var f struct {
			Tags []string `json:"tags"`
		}
		data, err := os.ReadFile(filepath.Join(root, "monitors", m.File))
		if err == nil {
			err = json.Unmarshal(data, &f)
		}
		if err != nil {
			t.Fatal(err)
		}
		tags[MonitorID(m)] = f.Tags
	}
	var flags struct {
		Flags map[string]json.RawMessage `json:"flags"`
	}
	if data, err := os.ReadFile(filepath.Join(root, "chaos", "flags.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(data, &flags); err != nil {
		t.Fatal(err)
	}
	exists := func(rel string) bool { _, err := os.Stat(filepath.Join(root, rel)); return err == nil }
	named := map[string]bool{}
	listed := map[string]bool{}
	for _, in := range x.Incidents {
		if in.Switch != "" && flags.Flags[in.Switch] == nil {
			t.Errorf("%s: switch %q is not in chaos/flags.json", in.ID, in.Switch)
		}
		if len(in.Scenarios) == 0 || len(in.Tests) == 0 || len(in.Dashboards) == 0 {
			t.Errorf("%s: needs scenarios, tests and dashboards", in.ID)
		}
		if (len(in.Monitors) == 0 || len(in.Runbooks) == 0 || in.Switch == "") && in.Note == "" {
			t.Errorf("%s: an empty switch, monitor or runbook column needs a note saying why", in.ID)
		}
		for _, s := range in.Scenarios {
			named[s] = true
			if slices.Contains(x.Pending.Names, s) {
				continue
			}
			if Find(s) == nil {
				t.Errorf("%s: scenario %q is not in Scenarios() (nor pending)", in.ID, s)
			} else if _, err := LoadExpectations(root, s); err != nil {
				t.Errorf("%s: scenario %q: %v", in.ID, s, err)
			}
		}
		for _, id := range in.Monitors {
			listed[id] = true
			if tg, ok := tags[id]; !ok {
				t.Errorf("%s: monitor %q is not in monitors/", in.ID, id)
			} else if !slices.Contains(tg, in.Tag) {
				t.Errorf("%s: monitor %s's tags %v lack %s", in.ID, id, tg, in.Tag)
			}
		}
		for _, id := range in.AlsoFires {
			if _, ok := tags[id]; !ok {
				t.Errorf("%s: monitor %q (also_fires) is not in monitors/", in.ID, id)
			}
		}
		for _, rb := range in.Runbooks {
			if !exists("runbooks/" + rb + ".md") {
				t.Errorf("%s: runbook %s is not in runbooks/", in.ID, rb)
			}
		}
		for _, d := range in.Dashboards {
			if !exists("dashboards/" + d + ".json") {
				t.Errorf("%s: dashboard %s is not in dashboards/", in.ID, d)
			}
		}
		for _, tst := range in.Tests {
			checkTests(t, root, in.ID, tst)
		}
	}
	for _, p := range x.Pending.Names {
		if Find(p) != nil {
			t.Errorf("pending scenario %s is in Scenarios() now: remove it from pending_scenarios", p)
		}
		if !named[p] {
			t.Errorf("pending scenario %s is in no row", p)
		}
	}
	for _, s := range Scenarios() {
		if !named[s.Name] {
			t.Errorf("scenario %s is in no row of chaos/incidents.json", s.Name)
		}
	}
	for _, m := range mons {
		if id := MonitorID(m); !listed[id] {
			t.Errorf("monitor %s (tags %v) is in no row's monitors", id, tags[id])
		}
	}
	checkMatrixDoc(t, root, x)
}

// checkTests checks "path: TestA, TestB/sub": the file exists and declares
// each function.
func checkTests(t *testing.T, root, id, spec string) {
	t.Helper()
	path, names, ok := strings.Cut(spec, ": ")
	if !ok {
		t.Errorf("%s: test %q: want \"path: TestA, TestB\"", id, spec)
		return
	}
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Errorf("%s: %v", id, err)
		return
	}
	for _, n := range strings.Split(names, ",") {
		fn, _, _ := strings.Cut(strings.TrimSpace(n), "/")
		if !strings.Contains(string(data), "func "+fn+"(") {
			t.Errorf("%s: %s declares no func %s", id, path, fn)
		}
	}
}

// checkMatrixDoc compares docs/incidents.md's matrix with the rendering
// (or rewrites it with -update-incidents).
func checkMatrixDoc(t *testing.T, root string, x *Incidents) {
	t.Helper()
	path := filepath.Join(root, "docs", "incidents.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, MatrixBegin), strings.Index(doc, MatrixEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/incidents.md: no matrix between %q and %q", MatrixBegin, MatrixEnd)
	}
	want := MatrixBegin + "\n\n" + x.RenderMatrix() + "\n"
	if got := doc[i:j]; got != want {
		if *updateIncidents {
			if err := os.WriteFile(path, []byte(doc[:i]+want+doc[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("docs/incidents.md's matrix differs from chaos/incidents.json; run go test ./chaos -run TestIncidentMatrix -update-incidents")
	}
}
