package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fixtureCount is the number of files under testdata: 2 dashboards,
// 2 monitors, 1 SLO.
const fixtureCount = 5

// copyFixtures copies testdata into a fresh folder the test may edit.
func copyFixtures(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata", p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func keys(extra map[string]string) func(string) string {
	env := map[string]string{"DD_API_KEY": testAPIKey, "DD_APP_KEY": testAppKey}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

// runTool runs the program on the folders under dir against endpoint.
func runTool(t *testing.T, getenv func(string) string, endpoint, dir string, extra ...string) (string, error) {
	t.Helper()
	args := []string{"datadog-apply",
		"-dashboards", filepath.Join(dir, "dashboards"),
		"-monitors", filepath.Join(dir, "monitors"),
		"-slos", filepath.Join(dir, "slos") + "," + filepath.Join(dir, "monitors", "slos"),
	}
	if endpoint != "" {
		args = append(args, "-endpoint", endpoint)
	}
	args = append(args, extra...)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, getenv, &stdout, &stderr)
	t.Logf("datadog-apply %s\n%s%s", strings.Join(extra, " "), stdout.String(), stderr.String())
	return stdout.String(), err
}

// actions maps "kind name" to the action word of each object line.
func actions(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[0] == "dashboard" || f[0] == "monitor" || f[0] == "slo") {
			m[f[0]+" "+f[1]] = strings.TrimSuffix(f[2], ":")
		}
	}
	return m
}

func wantAll(t *testing.T, out, action string) {
	t.Helper()
	got := actions(out)
	if len(got) != fixtureCount {
		t.Fatalf("%d object lines, want %d:\n%s", len(got), fixtureCount, out)
	}
	for obj, a := range got {
		if a != action {
			t.Errorf("%s: %q, want %q", obj, a, action)
		}
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeDD(t)
	dir := copyFixtures(t)
	// The endpoint from the environment this time, as make passes it.
	out, err := runTool(t, keys(map[string]string{"DD_API_URL": srv.URL}), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	wantAll(t, out, "create")
	if !strings.Contains(out, "dry run: 5 to create, 0 to update, 0 unchanged; nothing written") {
		t.Errorf("no dry-run summary:\n%s", out)
	}
	reqs, writes := fake.snapshot()
	if len(writes) > 0 {
		t.Errorf("a dry run wrote: %v", writes)
	}
	// It did read: one dashboard list, one monitor list per monitor, one
	// SLO list per SLO.
	want := []string{"GET /api/v1/dashboard", "GET /api/v1/monitor", "GET /api/v1/monitor", "GET /api/v1/slo"}
	if !slices.Equal(reqs, want) {
		t.Errorf("requests %v, want %v", reqs, want)
	}
}

func TestApplyCreatesThenLeavesUnchanged(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeDD(t)
	dir := copyFixtures(t)

	out, err := runTool(t, keys(nil), srv.URL, dir, "-apply")
	if err != nil {
		t.Fatal(err)
	}
	wantAll(t, out, "create")
	_, writes := fake.snapshot()
	slices.Sort(writes)
	want := []string{"POST /api/v1/dashboard", "POST /api/v1/dashboard", "POST /api/v1/monitor", "POST /api/v1/monitor", "POST /api/v1/slo"}
	if !slices.Equal(writes, want) {
		t.Fatalf("writes %v, want %v", writes, want)
	}
	for _, o := range []struct {
		k    kind
		name string
	}{{kindDashboard, "service"}, {kindDashboard, "checkout"}, {kindMonitor, "checkout_p99"}, {kindMonitor, "no_traffic"}, {kindSLO, "checkout_availability"}} {
		id, _ := fake.find(o.k, o.name)
		if id == "" {
			t.Errorf("%s %s was not created", o.k, o.name)
		} else if !strings.Contains(out, "created "+id) {
			t.Errorf("the output does not name %s %s's new id %s", o.k, o.name, id)
		}
	}
	// The file's read-only id (an exported dashboard carries one) is not sent.
	if id, _ := fake.find(kindDashboard, "checkout"); id == "abc-123-def" {
		t.Errorf("the dashboard kept the exported id")
	}

	// A re-run, dry or not, finds everything as the files say, despite the
	// ids and defaults the server added, and writes nothing.
	for _, extra := range [][]string{nil, {"-apply"}} {
		out, err = runTool(t, keys(nil), srv.URL, dir, extra...)
		if err != nil {
			t.Fatal(err)
		}
		wantAll(t, out, "unchanged")
	}
	if _, again := fake.snapshot(); len(again) != len(writes) {
		t.Errorf("the re-runs wrote: %v", again[len(writes):])
	}
}

func TestChangedFileUpdatesOnlyThatObject(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeDD(t)
	dir := copyFixtures(t)
	if _, err := runTool(t, keys(nil), srv.URL, dir, "-apply"); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		kind   kind
		id     string // shoplab id
		file   string
		edit   func(map[string]any)
		fields string
		path   string // the PUT, with %s for the remote id
		check  func(map[string]any) bool
	}{
		{
			name: "Monitor", kind: kindMonitor, id: "checkout_p99", file: "monitors/checkout_p99.json",
			edit: func(d map[string]any) {
				d["query"] = "percentile(last_5m):p99:checkout.duration{service:shoplab} > 3"
				d["options"].(map[string]any)["thresholds"].(map[string]any)["critical"] = 3
			},
			fields: "options.thresholds.critical, query", path: "/api/v1/monitor/%s",
			check: func(m map[string]any) bool { return strings.HasSuffix(m["query"].(string), "> 3") },
		},
		{
			name: "Dashboard", kind: kindDashboard, id: "service", file: "dashboards/service.json",
			edit: func(d map[string]any) {
				d["widgets"].([]any)[0].(map[string]any)["definition"].(map[string]any)["title"] = "Requests per route"
			},
			fields: "widgets[0].definition.title", path: "/api/v1/dashboard/%s",
			check: func(d map[string]any) bool {
				w := d["widgets"].([]any)[0].(map[string]any)
				return w["definition"].(map[string]any)["title"] == "Requests per route"
			},
		},
		{
			name: "SLO", kind: kindSLO, id: "checkout_availability", file: "slos/checkout_availability.json",
			edit: func(d map[string]any) {
				d["tags"] = []any{"shoplab_id:checkout_availability", "service:shoplab", "team:checkout"}
			},
			fields: "tags", path: "/api/v1/slo/%s",
			check: func(s map[string]any) bool { return slices.Contains(strList(s["tags"]), "team:checkout") },
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			editJSON(t, filepath.Join(dir, c.file), c.edit)
			remoteID, _ := fake.find(c.kind, c.id)
			_, before := fake.snapshot()

			out, err := runTool(t, keys(nil), srv.URL, dir)
			if err != nil {
				t.Fatal(err)
			}
			got := actions(out)
			for obj, a := range got {
				want := "unchanged"
				if obj == string(c.kind)+" "+c.id {
					want = "update"
				}
				if a != want {
					t.Errorf("dry run: %s %q, want %q", obj, a, want)
				}
			}
			if !strings.Contains(out, "update (fields: "+c.fields+") "+remoteID) {
				t.Errorf("dry run does not say update (fields: %s) %s:\n%s", c.fields, remoteID, out)
			}
			if _, w := fake.snapshot(); len(w) != len(before) {
				t.Errorf("the dry run wrote: %v", w[len(before):])
			}

			if _, err := runTool(t, keys(nil), srv.URL, dir, "-apply"); err != nil {
				t.Fatal(err)
			}
			_, after := fake.snapshot()
			want := []string{"PUT " + strings.Replace(c.path, "%s", remoteID, 1)}
			if !slices.Equal(after[len(before):], want) {
				t.Errorf("writes %v, want exactly %v", after[len(before):], want)
			}
			if id, obj := fake.find(c.kind, c.id); id != remoteID || !c.check(obj) {
				t.Errorf("remote %s (id %s, want %s) does not hold the change: %v", c.id, id, remoteID, obj)
			}

			out, err = runTool(t, keys(nil), srv.URL, dir)
			if err != nil {
				t.Fatal(err)
			}
			wantAll(t, out, "unchanged")
		})
	}
}

func editJSON(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	edit(d)
	if b, err = json.MarshalIndent(d, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMissingKeys(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeDD(t)
	dir := copyFixtures(t)
	for _, c := range []struct {
		name    string
		env     map[string]string
		want    string
		notWant string
	}{
		{"Both", map[string]string{}, "missing DD_API_KEY and DD_APP_KEY", ""},
		{"APIKey", map[string]string{"DD_APP_KEY": testAppKey}, "missing DD_API_KEY", "DD_APP_KEY"},
		{"AppKey", map[string]string{"DD_API_KEY": testAPIKey}, "missing DD_APP_KEY", "DD_API_KEY"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, extra := range [][]string{nil, {"-apply"}} {
				_, err := runTool(t, func(k string) string { return c.env[k] }, srv.URL, dir, extra...)
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want one saying %q", err, c.want)
				}
				if c.notWant != "" && strings.Contains(err.Error(), c.notWant) {
					t.Errorf("error %q names %s, which is set", err, c.notWant)
				}
			}
		})
	}
	if reqs, _ := fake.snapshot(); len(reqs) > 0 {
		t.Errorf("requests without keys: %v", reqs)
	}
}

func TestRefusesFileWithoutItsID(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeDD(t)
	for _, c := range []struct {
		name string
		file string
		edit func(map[string]any) // nil: write the file below instead
		body string
		want string
	}{
		{name: "MonitorWithoutTag", file: "monitors/checkout_p99.json",
			edit: func(d map[string]any) { d["tags"] = []any{"service:shoplab"} },
			want: "no shoplab_id:checkout_p99"},
		{name: "MonitorWithoutTags", file: "monitors/no_traffic.json",
			edit: func(d map[string]any) { delete(d, "tags") },
			want: "no shoplab_id:no_traffic"},
		{name: "MonitorWithOtherID", file: "monitors/checkout_p99.json",
			edit: func(d map[string]any) { d["tags"] = []any{"shoplab_id:checkout_p95"} },
			want: "carries shoplab_id:checkout_p95, want exactly shoplab_id:checkout_p99"},
		{name: "SLOWithoutTag", file: "slos/checkout_availability.json",
			edit: func(d map[string]any) { d["tags"] = []any{"service:shoplab"} },
			want: "no shoplab_id:checkout_availability"},
		{name: "DashboardWithoutToken", file: "dashboards/service.json",
			edit: func(d map[string]any) { d["description"] = "Requests, errors and latency per route." },
			want: "description has no token shoplab_id:service"},
		{name: "DashboardWithoutDescription", file: "dashboards/checkout.json",
			edit: func(d map[string]any) { delete(d, "description") },
			want: "description has no token shoplab_id:checkout"},
		{name: "UppercaseFileName", file: "monitors/Checkout.json",
			body: `{"name":"x","type":"query alert","query":"avg(last_5m):avg:a{*} > 1","tags":["shoplab_id:Checkout"]}`,
			want: "must be lowercase"},
		{name: "NotAModel", file: "monitors/bad_type.json",
			body: `{"name":"x","type":"no such type","query":"q","tags":["shoplab_id:bad_type"]}`,
			want: "datadogV1.Monitor could not parse it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyFixtures(t)
			path := filepath.Join(dir, c.file)
			if c.edit != nil {
				editJSON(t, path, c.edit)
			} else if err := os.WriteFile(path, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, extra := range [][]string{nil, {"-apply"}} {
				_, err := runTool(t, keys(nil), srv.URL, dir, extra...)
				if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want one naming %s and saying %q", err, path, c.want)
				}
			}
		})
	}
	// Files are checked before the first request: nothing half-applied.
	if reqs, _ := fake.snapshot(); len(reqs) > 0 {
		t.Errorf("requests despite a bad file: %v", reqs)
	}
}

func TestRefusesDuplicateRemoteObjects(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeDD(t)
	dir := copyFixtures(t)
	// Someone copied a monitor in the UI, tags and all.
	fake.mu.Lock()
	for _, id := range []int64{7, 8} {
		m := map[string]any{"name": "copy", "type": "query alert", "query": "q", "tags": []any{"shoplab_id:no_traffic"}}
		fillMonitor(id, m)
		fake.monitors[strconv.FormatInt(id, 10)] = m
	}
	fake.mu.Unlock()
	_, err := runTool(t, keys(nil), srv.URL, dir, "-apply")
	if err == nil || !strings.Contains(err.Error(), "2 monitors carry shoplab_id:no_traffic (ids 7, 8)") {
		t.Fatalf("error %v, want one naming both copies", err)
	}
	if _, writes := fake.snapshot(); len(writes) > 0 {
		t.Errorf("wrote despite the duplicates: %v", writes)
	}
}

func TestNoFiles(t *testing.T) {
	t.Parallel()
	_, srv := newFakeDD(t)
	_, err := runTool(t, keys(nil), srv.URL, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "no JSON files") {
		t.Fatalf("error %v, want no JSON files", err)
	}
}

// TestRepoAssets applies the repository's own dashboards, monitors and
// SLOs, where they exist, to the fake API: every file goes through the
// client's models and the server's checks, and a second run finds them all
// unchanged (no file keeps showing a difference that is not one).
func TestRepoAssets(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	var present []string
	for _, d := range []string{"dashboards", "monitors", "slos", "monitors/slos"} {
		if files, _ := filepath.Glob(filepath.Join(root, d, "*.json")); len(files) > 0 {
			present = append(present, d)
		}
	}
	if len(present) == 0 {
		t.Log("the repository has no dashboards/, monitors/ or slos/ JSON yet; the fixtures cover the tool")
		return
	}
	t.Logf("applying %v", present)
	fake, srv := newFakeDD(t)
	out, err := runTool(t, keys(nil), srv.URL, root, "-apply")
	if err != nil {
		t.Fatal(err)
	}
	_, writes := fake.snapshot()
	if len(writes) == 0 {
		t.Fatalf("nothing created:\n%s", out)
	}
	out, err = runTool(t, keys(nil), srv.URL, root)
	if err != nil {
		t.Fatal(err)
	}
	for obj, a := range actions(out) {
		if a != "unchanged" {
			t.Errorf("%s: %s after it was applied", obj, a)
		}
	}
}

func TestSite(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		site, want string
	}{
		{"", "datadog api https://api.datadoghq.com (dry run)"},
		{"datadoghq.eu", "datadog api https://api.datadoghq.eu (dry run)"},
		{"us5.datadoghq.com", "datadog api https://api.us5.datadoghq.com (dry run)"},
	} {
		// An empty folder stops the run before the first request.
		out, err := runTool(t, keys(map[string]string{"DD_SITE": c.site}), "", t.TempDir())
		if !strings.Contains(out, c.want+"\n") || err == nil || !strings.Contains(err.Error(), "no JSON files") {
			t.Errorf("DD_SITE=%q: output %q, error %v; want %q then no JSON files", c.site, out, err, c.want)
		}
	}
	_, err := runTool(t, keys(map[string]string{"DD_SITE": "datadog.example.com"}), "", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `DD_SITE "datadog.example.com"`) {
		t.Errorf("unknown site: error %v, want one naming DD_SITE", err)
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	decode := func(s string) any {
		var v any
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		name, want, have string
		paths            []string
	}{
		{"Equal", `{"a":1,"b":"x"}`, `{"a":1,"b":"x"}`, nil},
		{"NumbersByValue", `{"a":1,"b":0.5}`, `{"a":1.0,"b":5e-1}`, nil},
		{"DefaultsAndIDsIgnored", `{"o":{"t":1},"w":[{"d":1}]}`, `{"o":{"t":1,"def":true},"w":[{"id":7,"d":1}],"id":3}`, nil},
		{"EmptyMatchesMissing", `{"l":[],"m":{},"n":null}`, `{}`, nil},
		{"TagsAsSet", `{"tags":["a","b"]}`, `{"tags":["b","a"]}`, nil},
		{"NestedTagsInOrder", `{"x":{"tags":["a","b"]}}`, `{"x":{"tags":["b","a"]}}`, []string{"x.tags[0]", "x.tags[1]"}},
		{"Changed", `{"q":"a","o":{"t":{"c":2}}}`, `{"q":"b","o":{"t":{"c":3}}}`, []string{"o.t.c", "q"}},
		{"Missing", `{"q":"a"}`, `{}`, []string{"q"}},
		{"Length", `{"w":[1,2]}`, `{"w":[1]}`, []string{"w"}},
		{"Type", `{"w":{"a":1}}`, `{"w":"x"}`, []string{"w"}},
		{"NullWanted", `{"p":null}`, `{"p":3}`, []string{"p"}},
	} {
		if got := diff(decode(c.want), decode(c.have)); !slices.Equal(got, c.paths) {
			t.Errorf("%s: diff %v, want %v", c.name, got, c.paths)
		}
	}
}
