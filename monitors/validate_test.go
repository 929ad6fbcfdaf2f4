package monitors_test

// Offline validation of the Datadog assets: dashboards/*.json,
// monitors/*.json, slos/*.json and runbooks/*.md, against the models of
// datadog-api-client-go and the catalogues in docs/. Every failure names the
// file and the field.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"

	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// repoRoot is the repository root, relative to the package directory
// (where go test runs a package's tests).
var repoRoot = ".."

// globalTags are the tag keys every metric carries (unified service tags).
var globalTags = map[string]bool{"env": true, "service": true, "version": true}

// metricInfo is one row of docs/metrics.md.
type metricInfo struct {
	typ   string          // count, gauge, distribution
	tags  map[string]bool // tag keys besides the global ones
	agent bool            // from the "From the Datadog Agent" section
}

// catalogue reads the tables of docs/metrics.md: shoplab's metrics and the
// Datadog Agent's PostgreSQL metrics (the runtime section is ignored). The
// tags cell lists tag keys in backquotes; what is in parentheses describes
// their values and is skipped.
func catalogue(t *testing.T, root string) map[string]metricInfo {
	t.Helper()
	path := filepath.Join(root, "docs", "metrics.md")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]metricInfo{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			section = strings.ToLower(line)
			continue
		}
		if strings.Contains(section, "runtime") || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if name == "name" || strings.HasPrefix(name, "---") {
			continue
		}
		info := metricInfo{typ: strings.TrimSpace(cells[2]), tags: map[string]bool{},
			agent: strings.Contains(section, "datadog agent")}
		for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(stripParens(cells[3]), -1) {
			info.tags[m[1]] = true
		}
		out[name] = info
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no metrics found", path)
	}
	return out
}

// stripParens removes parenthesised text (nested or not).
func stripParens(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// incidents returns the row numbers of the table of docs/incidents.md.
func incidents(t *testing.T, root string) map[int]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docs", "incidents.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\|\s*(\d+)\s*\|`).FindAllStringSubmatch(string(data), -1) {
		n, _ := strconv.Atoi(m[1])
		out[n] = true
	}
	if len(out) == 0 {
		t.Fatal("docs/incidents.md: no numbered rows")
	}
	return out
}

// parsedQuery is one query of an asset, parsed with ddquery: a metric
// query of a dashboard request or an SLO, a dashboard formula over its
// request's queries, or a monitor's query.
type parsedQuery struct {
	where string // "file: $.json.path"
	text  string
	refs  []ddquery.MetricRef
	// metric is true for a metric query (not a formula, not a monitor).
	metric bool
}

// syntaxError formats a ddquery parse error with the file, the field path
// and the parser's position.
func syntaxError(where string, err error) string {
	var se *ddquery.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s: does not parse with ddquery at column %d: %s (query %q)", where, se.Pos+1, se.Msg, se.Query)
	}
	return fmt.Sprintf("%s: does not parse with ddquery: %v", where, err)
}

// requestQueries parses the queries of one decoded request-like struct v
// (a dashboard widget request or an SLO time slice query) found at path:
// the "queries" + "formulas" shape (each formula evaluated over the named
// queries with ddquery.ParseFormula) and the older "q" string. fail is
// called with each parse error, naming file, field path and position.
func requestQueries(v reflect.Value, where string, fail func(string)) []parsedQuery {
	var out []parsedQuery
	if q := v.FieldByName("Q"); q.IsValid() && q.Kind() == reflect.Pointer && q.Type().Elem().Kind() == reflect.String && !q.IsNil() {
		at := where + ".q"
		if pq, err := ddquery.ParseQuery(q.Elem().String()); err != nil {
			fail(syntaxError(at, err))
		} else {
			out = append(out, parsedQuery{where: at, text: pq.String(), refs: pq.Metrics(), metric: true})
		}
	}
	queries, formulas := v.FieldByName("Queries"), v.FieldByName("Formulas")
	if !queries.IsValid() || queries.Kind() != reflect.Slice {
		return out
	}
	named := map[string]*ddquery.Query{}
	for i := range queries.Len() {
		at := fmt.Sprintf("%s.queries[%d]", where, i)
		def := queries.Index(i).FieldByName("FormulaAndFunctionMetricQueryDefinition")
		if !def.IsValid() || def.IsNil() {
			fail(at + ": not a metrics query: ddquery evaluates metric queries only")
			continue
		}
		m := def.Interface().(*datadogV1.FormulaAndFunctionMetricQueryDefinition)
		pq, err := ddquery.ParseQuery(m.Query)
		if err != nil {
			fail(syntaxError(at+".query", err))
			named[m.Name] = nil // known name, unusable query: no second error in the formulas
			continue
		}
		named[m.Name] = pq
		out = append(out, parsedQuery{where: at + ".query", text: m.Query, refs: pq.Metrics(), metric: true})
	}
	if formulas.IsValid() && formulas.Kind() == reflect.Slice {
		for i := range formulas.Len() {
			at := fmt.Sprintf("%s.formulas[%d].formula", where, i)
			text := formulas.Index(i).FieldByName("Formula").String()
			broken := false
			for name, q := range named {
				broken = broken || q == nil && regexp.MustCompile(`\b`+regexp.QuoteMeta(name)+`\b`).MatchString(text)
			}
			if broken {
				continue
			}
			pf, err := ddquery.ParseFormula(text, named)
			if err != nil {
				fail(syntaxError(at, err))
				continue
			}
			out = append(out, parsedQuery{where: at, text: text, refs: pf.Metrics()})
		}
	}
	return out
}

// checkQuery checks that every metric of a parsed query is in the
// catalogue and is filtered and grouped only by tags it carries, written
// normalised.
func checkQuery(t *testing.T, cat map[string]metricInfo, q parsedQuery) {
	t.Helper()
	where := q.where
	if len(q.refs) == 0 {
		t.Errorf("%s: no metric found in query %q", where, q.text)
	}
	for _, r := range q.refs {
		info, ok := cat[r.Name]
		if !ok {
			t.Errorf("%s: metric %s is not in docs/metrics.md", where, r.Name)
			continue
		}
		known := func(key string) bool { return globalTags[key] || info.tags[key] }
		for _, f := range r.Filters {
			if v, ok := strings.CutPrefix(f, "$"); ok {
				if !globalTags[v] {
					t.Errorf("%s: %s: template variable %s is not env, service or version", where, r.Name, f)
				}
				continue
			}
			tag := strings.TrimPrefix(f, "!")
			key, _, _ := strings.Cut(tag, ":")
			if !known(key) {
				t.Errorf("%s: %s has no tag %q (docs/metrics.md lists %v)", where, r.Name, key, sortedKeys(info.tags))
			}
			if n := ddquery.NormalizeTag(tag); n != tag && !strings.Contains(tag, "*") {
				t.Errorf("%s: %s: tag %q is not as Datadog stores it: %q", where, r.Name, tag, n)
			}
		}
		for _, key := range r.GroupBy {
			if !known(key) {
				t.Errorf("%s: %s is grouped by %q, a tag it does not carry (docs/metrics.md lists %v)", where, r.Name, key, sortedKeys(info.tags))
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// walkModel walks a decoded datadog-api-client-go value and reports every
// key the model did not know (AdditionalProperties), every object that did
// not decode (UnparsedObject), and every oneOf union with no variant chosen,
// with the path of the field. visit is called on every struct.
func walkModel(v reflect.Value, path string, fail func(path, msg string), visit func(v reflect.Value, path string)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkModel(v.Elem(), path, fail, visit)
		}
		return
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walkModel(v.Index(i), fmt.Sprintf("%s[%d]", path, i), fail, visit)
		}
		return
	case reflect.Map:
		for _, k := range v.MapKeys() {
			walkModel(v.MapIndex(k), fmt.Sprintf("%s.%v", path, k), fail, visit)
		}
		return
	case reflect.Struct:
	default:
		return
	}
	typ := v.Type()
	if f := v.FieldByName("UnparsedObject"); f.IsValid() && !f.IsZero() {
		raw, _ := json.Marshal(f.Interface())
		fail(path, fmt.Sprintf("does not decode into %s (unknown or invalid value): %.300s", typ.Name(), raw))
		return
	}
	if f := v.FieldByName("AdditionalProperties"); f.IsValid() && f.Len() > 0 {
		fail(path, fmt.Sprintf("unknown field(s) %v for %s", sortedKeys(f.Interface().(map[string]any)), typ.Name()))
	}
	// A oneOf union: UnparsedObject is an interface and every other field a
	// pointer to a variant; exactly one must be set.
	if f, ok := typ.FieldByName("UnparsedObject"); ok && f.Type.Kind() == reflect.Interface {
		chosen := 0
		for i := range typ.NumField() {
			if typ.Field(i).Name != "UnparsedObject" && !v.Field(i).IsNil() {
				chosen++
			}
		}
		if chosen != 1 {
			fail(path, fmt.Sprintf("%s: %d variants match, want exactly 1", typ.Name(), chosen))
		}
	}
	if visit != nil {
		visit(v, path)
	}
	// Nullable wrappers (datadog.NullableX) keep their value unexported:
	// walk what Get returns.
	if v.CanAddr() {
		if get := v.Addr().MethodByName("Get"); get.IsValid() && get.Type().NumIn() == 0 && get.Type().NumOut() == 1 {
			walkModel(get.Call(nil)[0], path, fail, visit)
		}
	}
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if !sf.IsExported() || sf.Name == "UnparsedObject" || sf.Name == "AdditionalProperties" {
			continue
		}
		name := sf.Name
		if tag, _, _ := strings.Cut(sf.Tag.Get("json"), ","); tag != "" {
			name = tag
		}
		walkModel(v.Field(i), path+"."+name, fail, visit)
	}
}

// decodeStrict decodes the JSON file into model and walks it; it returns
// every query found anywhere in it, parsed with ddquery (parse errors fail
// the test with the file, the field path and the position).
func decodeStrict(t *testing.T, root, file string, model any) []parsedQuery {
	t.Helper()
	data, err := os.ReadFile(file)
	if rel, err := filepath.Rel(root, file); err == nil {
		file = rel
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, model); err != nil {
		t.Errorf("%s: does not decode into %T: %v", file, model, err)
		return nil
	}
	var queries []parsedQuery
	fail := func(msg string) { t.Errorf("%s", msg) }
	walkModel(reflect.ValueOf(model), "$", func(path, msg string) {
		t.Errorf("%s: %s: %s", file, path, msg)
	}, func(v reflect.Value, path string) {
		if q, ok := v.Addr().Interface().(*datadogV1.ServiceLevelObjectiveQuery); ok {
			for _, side := range []struct{ field, text string }{{"numerator", q.Numerator}, {"denominator", q.Denominator}} {
				at := file + ": " + path + "." + side.field
				if pq, err := ddquery.ParseQuery(side.text); err != nil {
					fail(syntaxError(at, err))
				} else {
					queries = append(queries, parsedQuery{where: at, text: side.text, refs: pq.Metrics(), metric: true})
				}
			}
			return
		}
		queries = append(queries, requestQueries(v, file+": "+path, fail)...)
	})
	return queries
}

func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	fs, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	return fs
}

var runbookLinkRE = regexp.MustCompile(`runbooks/([a-z0-9-]+)\.md`)

// widgetInfo is a leaf widget of a dashboard: its title, the runbooks its
// custom links point at and its metrics.
type widgetInfo struct {
	where    string
	title    string
	runbooks map[string]bool
	metrics  map[string]bool
}

// leafWidgets flattens the group widgets of a dashboard.
func leafWidgets(t *testing.T, file string, ws []datadogV1.Widget, path string, out *[]widgetInfo) {
	t.Helper()
	for i, w := range ws {
		where := fmt.Sprintf("%s: %s[%d]", file, path, i)
		def := w.Definition
		if g := def.GroupWidgetDefinition; g != nil {
			if g.GetTitle() == "" {
				t.Errorf("%s.definition.title: group widget without a title", where)
			}
			leafWidgets(t, file, g.Widgets, fmt.Sprintf("%s[%d].definition.widgets", path, i), out)
			continue
		}
		variant := reflect.ValueOf(def)
		var chosen reflect.Value
		for j := range variant.NumField() {
			if f := variant.Field(j); f.Kind() == reflect.Pointer && !f.IsNil() {
				chosen = f.Elem()
			}
		}
		if !chosen.IsValid() {
			continue // reported by the walk
		}
		info := widgetInfo{where: where, runbooks: map[string]bool{}, metrics: map[string]bool{}}
		if title := chosen.FieldByName("Title"); title.IsValid() && title.Kind() == reflect.Pointer && !title.IsNil() {
			info.title = strings.TrimSpace(title.Elem().String())
		}
		if links := chosen.FieldByName("CustomLinks"); links.IsValid() {
			for _, l := range links.Interface().([]datadogV1.WidgetCustomLink) {
				for _, m := range runbookLinkRE.FindAllStringSubmatch(l.GetLink(), -1) {
					info.runbooks[m[1]] = true
				}
			}
		}
		walkModel(chosen, "", func(string, string) {}, func(v reflect.Value, _ string) {
			for _, q := range requestQueries(v, where, func(string) {}) { // errors: reported by decodeStrict
				for _, r := range q.refs {
					info.metrics[r.Name] = true
				}
			}
		})
		*out = append(*out, info)
	}
}

// monitorInfo is what the cross-checks need of a monitor.
type monitorInfo struct {
	file      string
	runbooks  []string
	dashboard string
	metrics   []string
}

func TestAssets(t *testing.T) {
	t.Parallel()
	root := repoRoot
	cat := catalogue(t, root)
	rows := incidents(t, root)

	// Dashboards.
	dashMetrics := map[string]map[string]bool{} // dashboard file base -> metrics
	var widgets []widgetInfo
	for _, file := range files(t, filepath.Join(root, "dashboards"), "*.json") {
		rel, _ := filepath.Rel(root, file)
		var d datadogV1.Dashboard
		queries := decodeStrict(t, root, file, &d)
		base := strings.TrimSuffix(filepath.Base(file), ".json")
		dashMetrics[base] = map[string]bool{}
		for _, q := range queries {
			checkQuery(t, cat, q)
			for _, r := range q.refs {
				dashMetrics[base][r.Name] = true
			}
		}
		if d.GetLayoutType() != datadogV1.DASHBOARDLAYOUTTYPE_ORDERED {
			t.Errorf("%s: layout_type %q, want ordered", rel, d.GetLayoutType())
		}
		var vars []string
		for _, v := range d.TemplateVariables {
			vars = append(vars, v.Name)
			if v.GetPrefix() != v.Name || v.GetDefault() != "*" {
				t.Errorf("%s: template_variables %s: want prefix %q and default \"*\"", rel, v.Name, v.Name)
			}
		}
		if !slices.Equal(vars, []string{"env", "service", "version"}) {
			t.Errorf("%s: template_variables %v, want [env service version]", rel, vars)
		}
		for _, q := range queries {
			if q.metric && (!strings.Contains(q.text, "$env") || !strings.Contains(q.text, "$service")) {
				t.Errorf("%s: %q: not filtered by $env and $service", q.where, q.text)
			}
		}
		leafWidgets(t, rel, d.Widgets, "widgets", &widgets)
	}

	// SLOs.
	for _, file := range files(t, filepath.Join(root, "slos"), "*.json") {
		rel, _ := filepath.Rel(root, file)
		var s datadogV1.ServiceLevelObjective
		queries := decodeStrict(t, root, file, &s)
		for _, q := range queries {
			checkQuery(t, cat, q)
		}
		checkTags(t, rel, s.Tags, rows)
	}

	// Monitors.
	var monitors []monitorInfo
	runbookMetrics := map[string]map[string]bool{} // metric -> runbooks of its monitors
	for _, file := range files(t, filepath.Join(root, "monitors"), "*.json") {
		rel, _ := filepath.Rel(root, file)
		var m datadogV1.Monitor
		queries := decodeStrict(t, root, file, &m)
		if pm, err := ddquery.ParseMonitor(m.Query); err != nil {
			t.Errorf("%s", syntaxError(rel+": $.query", err))
		} else {
			queries = append(queries, parsedQuery{where: rel + ": $.query", text: m.Query, refs: pm.Metrics()})
			if th := m.GetOptions().Thresholds; th != nil && th.Critical != nil && *th.Critical != pm.Threshold {
				t.Errorf("%s: $.options.thresholds.critical %v differs from the query's threshold %v", rel, *th.Critical, pm.Threshold)
			}
		}
		mi := monitorInfo{file: rel}
		for _, q := range queries {
			checkQuery(t, cat, q)
			for _, r := range q.refs {
				if !slices.Contains(mi.metrics, r.Name) {
					mi.metrics = append(mi.metrics, r.Name)
				}
			}
		}
		if typ := m.GetType(); typ != datadogV1.MONITORTYPE_METRIC_ALERT && typ != datadogV1.MONITORTYPE_QUERY_ALERT {
			t.Errorf("%s: type %q, want \"metric alert\" or \"query alert\"", rel, typ)
		}
		if m.GetName() == "" {
			t.Errorf("%s: name is empty", rel)
		}
		msg := m.GetMessage()
		for _, want := range []string{"{{#is_alert}}", "{{#is_recovery}}"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message lacks %s", rel, want)
			}
		}
		for _, l := range runbookLinkRE.FindAllStringSubmatch(msg, -1) {
			mi.runbooks = append(mi.runbooks, l[1])
			if _, err := os.Stat(filepath.Join(root, "runbooks", l[1]+".md")); err != nil {
				t.Errorf("%s: message: runbook runbooks/%s.md does not exist", rel, l[1])
			}
		}
		if len(mi.runbooks) == 0 {
			t.Errorf("%s: message: no runbook link (runbooks/<name>.md)", rel)
		}
		if d := regexp.MustCompile(`dashboards/([a-z0-9-]+)\.json`).FindStringSubmatch(msg); d == nil {
			t.Errorf("%s: message: names no dashboard to open (dashboards/<name>.json)", rel)
		} else if dm, ok := dashMetrics[d[1]]; !ok {
			t.Errorf("%s: message: dashboard dashboards/%s.json does not exist", rel, d[1])
		} else {
			mi.dashboard = d[1]
			for _, name := range mi.metrics {
				if !dm[name] {
					t.Errorf("%s: query: metric %s is not on dashboards/%s.json, the dashboard the message opens", rel, name, d[1])
				}
			}
		}
		checkTags(t, rel, m.Tags, rows)
		if _, ok := m.GetPriorityOk(); !ok {
			t.Errorf("%s: priority is not set", rel)
		}
		checkOptions(t, rel, m, mi.metrics, cat)
		for _, name := range mi.metrics {
			if runbookMetrics[name] == nil {
				runbookMetrics[name] = map[string]bool{}
			}
			for _, r := range mi.runbooks {
				runbookMetrics[name][r] = true
			}
		}
		monitors = append(monitors, mi)
	}

	// Widgets: a title each; a link to a runbook when a metric of theirs has one.
	for _, w := range widgets {
		if w.title == "" {
			t.Errorf("%s.definition.title: widget without a title", w.where)
		}
		want := map[string]bool{}
		for name := range w.metrics {
			for r := range runbookMetrics[name] {
				want[r] = true
			}
		}
		if len(want) == 0 {
			continue
		}
		linked := false
		for r := range w.runbooks {
			linked = linked || want[r]
		}
		if !linked {
			t.Errorf("%s.definition.custom_links: widget %q shows monitored metrics %v but links none of their runbooks %v",
				w.where, w.title, sortedKeys(w.metrics), sortedKeys(want))
		}
	}

	// Every runbook (but the template) answers a monitor.
	linked := map[string]bool{}
	for _, m := range monitors {
		for _, r := range m.runbooks {
			linked[r] = true
		}
	}
	template := sections(t, filepath.Join(root, "runbooks", "TEMPLATE.md"))
	for _, file := range files(t, filepath.Join(root, "runbooks"), "*.md") {
		name := strings.TrimSuffix(filepath.Base(file), ".md")
		if name == "TEMPLATE" {
			continue
		}
		if !linked[name] {
			t.Errorf("runbooks/%s.md: linked by no monitor", name)
		}
		if got := sections(t, file); !slices.Equal(got, template) {
			t.Errorf("runbooks/%s.md: sections %q, want the template's %q (runbooks/TEMPLATE.md)", name, got, template)
		}
		checkFirstQuery(t, file)
	}

	// Every shoplab metric of the catalogue is on a dashboard.
	onDashboard := map[string]bool{}
	for _, dm := range dashMetrics {
		for name := range dm {
			onDashboard[name] = true
		}
	}
	for _, name := range sortedKeys(cat) {
		if !cat[name].agent && !onDashboard[name] {
			t.Errorf("docs/metrics.md: %s is on no dashboard", name)
		}
	}
}

var firstQueryRE = regexp.MustCompile("^First query: `([^`]+)`$")

// checkFirstQuery requires the runbook's Diagnosis section to hold one line
// "First query: `<metric query>`" (runbooks/TEMPLATE.md), whose query
// parses with ddquery: chaos evaluates it over a scenario's fault phase.
func checkFirstQuery(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	section, n := "", 0
	for line := range strings.SplitSeq(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.TrimSpace(h)
		}
		m := firstQueryRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		rel := "runbooks/" + filepath.Base(file)
		if section != "Diagnosis" {
			t.Errorf("%s: the first query is in section %q, want Diagnosis", rel, section)
		}
		if _, err := ddquery.ParseQuery(m[1]); err != nil {
			t.Errorf("%s: first query %s: %v", rel, m[1], err)
		}
	}
	if n != 1 {
		t.Errorf("runbooks/%s: %d \"First query: `...`\" lines in Diagnosis, want 1", filepath.Base(file), n)
	}
}

// sections returns the level-2 headings of a markdown file, outside code
// blocks.
func sections(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	code := false
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			code = !code
		}
		if h, ok := strings.CutPrefix(line, "## "); ok && !code {
			out = append(out, strings.TrimSpace(h))
		}
	}
	return out
}

// checkTags requires service:shoplab and an incident:<n> tag naming a row
// of docs/incidents.md; problem 8's symptoms also carry symptom:<name>.
func checkTags(t *testing.T, file string, tags []string, rows map[int]bool) {
	t.Helper()
	if !slices.Contains(tags, "service:shoplab") {
		t.Errorf("%s: tags: no service:shoplab", file)
	}
	n := 0
	for _, tag := range tags {
		v, ok := strings.CutPrefix(tag, "incident:")
		if !ok {
			continue
		}
		n++
		row, err := strconv.Atoi(v)
		if err != nil || !rows[row] {
			t.Errorf("%s: tags: %s is not a row of docs/incidents.md", file, tag)
		}
		if row == 8 && !slices.ContainsFunc(tags, func(s string) bool { return strings.HasPrefix(s, "symptom:") }) {
			t.Errorf("%s: tags: incident:8 needs a symptom:<name> tag naming which of problem 8's symptoms it guards", file)
		}
	}
	if n == 0 {
		t.Errorf("%s: tags: no incident:<n> tag", file)
	}
}

// checkOptions requires the options the monitors must choose on purpose.
func checkOptions(t *testing.T, file string, m datadogV1.Monitor, metrics []string, cat map[string]metricInfo) {
	t.Helper()
	o := m.GetOptions()
	th := o.GetThresholds()
	if _, ok := th.GetCriticalOk(); !ok {
		t.Errorf("%s: options.thresholds.critical is not set", file)
	}
	if _, ok := th.GetWarningOk(); !ok {
		t.Errorf("%s: options.thresholds.warning is not set", file)
	}
	if _, ok := th.GetCriticalRecoveryOk(); !ok {
		t.Errorf("%s: options.thresholds.critical_recovery is not set", file)
	}
	if _, ok := th.GetWarningOk(); ok && !strings.Contains(m.GetMessage(), "{{#is_warning}}") {
		t.Errorf("%s: message lacks {{#is_warning}} though a warning threshold is set", file)
	}
	if _, ok := o.GetEvaluationDelayOk(); !ok {
		t.Errorf("%s: options.evaluation_delay is not set", file)
	}
	if _, ok := o.GetRenotifyIntervalOk(); !ok {
		t.Errorf("%s: options.renotify_interval is not set", file)
	}
	if _, ok := o.GetNotifyNoDataOk(); !ok {
		t.Errorf("%s: options.notify_no_data is not set", file)
	}
	if o.GetNotifyNoData() {
		if _, ok := o.GetNoDataTimeframeOk(); !ok {
			t.Errorf("%s: options.no_data_timeframe is not set though notify_no_data is true", file)
		}
	}
	for _, name := range metrics {
		if cat[name].typ == "distribution" && o.GetRequireFullWindow() {
			t.Errorf("%s: options.require_full_window must be false: %s is a distribution", file, name)
		}
	}
}

// TestQueryErrors proves that a query or formula outside ddquery's subset
// fails with the file, the field path and the parser's position, and that
// the metrics of formulas come from their named queries.
func TestQueryErrors(t *testing.T) {
	t.Parallel()
	const dash = `{"title":"x","layout_type":"ordered","widgets":[{"definition":{"type":"timeseries","title":"t","requests":[
		{"queries":[{"data_source":"metrics","name":"query1","query":"sum:a.b{$env} by {route}.as_count()"},
		            {"data_source":"metrics","name":"query2","query":"avg:c.d{*}.fill(zero)"},
		            {"data_source":"metrics","name":"query3","query":"max:e.f{*}"}],
		 "formulas":[{"formula":"100 * query1 / query3"},{"formula":"query2"},{"formula":"abs(query1)"},{"formula":"query4"}]},
		{"q":"avg:g.h{Route:/X}"}]}}]}`
	var d datadogV1.Dashboard
	if err := json.Unmarshal([]byte(dash), &d); err != nil {
		t.Fatal(err)
	}
	var errs []string
	var got []parsedQuery
	walkModel(reflect.ValueOf(&d), "$", func(path, msg string) { t.Errorf("%s: %s", path, msg) }, func(v reflect.Value, path string) {
		got = append(got, requestQueries(v, "d.json: "+path, func(s string) { errs = append(errs, s) })...)
	})
	wantErrs := []string{
		"d.json: $.widgets[0].definition.TimeseriesWidgetDefinition.requests[0].queries[1].query: does not parse with ddquery at column 11: unsupported function .fill()",
		"d.json: $.widgets[0].definition.TimeseriesWidgetDefinition.requests[0].formulas[2].formula: does not parse with ddquery at column 1: unsupported function abs()",
		"d.json: $.widgets[0].definition.TimeseriesWidgetDefinition.requests[0].formulas[3].formula: does not parse with ddquery at column 1: formula names \"query4\"",
		"d.json: $.widgets[0].definition.TimeseriesWidgetDefinition.requests[1].q: does not parse with ddquery at column 9",
	}
	if len(errs) != len(wantErrs) {
		t.Fatalf("errors:\n%s\nwant %d", strings.Join(errs, "\n"), len(wantErrs))
	}
	for i, want := range wantErrs {
		if !strings.HasPrefix(errs[i], want) {
			t.Errorf("error %d = %s\nwant prefix %s", i, errs[i], want)
		}
	}
	var names []string
	for _, q := range got {
		for _, r := range q.refs {
			names = append(names, r.Name)
		}
	}
	if want := []string{"a.b", "e.f", "a.b", "e.f"}; !slices.Equal(names, want) {
		t.Errorf("metrics of queries and formulas = %v, want %v", names, want)
	}
}

// TestWalkModelFindsUnknownFields proves the walk fails on what the
// client's models would silently keep or drop.
func TestWalkModelFindsUnknownFields(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"top-level":   `{"title":"x","layout_type":"ordered","widgets":[],"colour":"red"}`,
		"nested":      `{"title":"x","layout_type":"ordered","widgets":[{"definition":{"type":"timeseries","title":"t","requests":[{"queries":[{"data_source":"metrics","name":"q","query":"avg:a{*}","extra":1}]}]}}]}`,
		"bad enum":    `{"title":"x","layout_type":"ordered","widgets":[{"definition":{"type":"timeseries","title":"t","requests":[{"display_type":"wiggly"}]}}]}`,
		"no variant":  `{"title":"x","layout_type":"ordered","widgets":[{"definition":{"type":"no_such_widget","title":"t"}}]}`,
		"template tv": `{"title":"x","layout_type":"ordered","widgets":[],"template_variables":[{"name":"env","prefix":"env","defualt":"*"}]}`,
	}
	for name, js := range cases {
		var d datadogV1.Dashboard
		if err := json.Unmarshal([]byte(js), &d); err != nil {
			continue // refused outright: also a failure in decodeStrict
		}
		failed := false
		walkModel(reflect.ValueOf(&d), "$", func(string, string) { failed = true }, nil)
		if !failed {
			t.Errorf("%s: walk found nothing wrong in %s", name, js)
		}
	}
	var ok datadogV1.Dashboard
	if err := json.Unmarshal([]byte(`{"title":"x","layout_type":"ordered","widgets":[{"definition":{"type":"timeseries","title":"t","requests":[{"queries":[{"data_source":"metrics","name":"q","query":"avg:a{*}"}],"display_type":"line"}]}}]}`), &ok); err != nil {
		t.Fatal(err)
	}
	walkModel(reflect.ValueOf(&ok), "$", func(path, msg string) { t.Errorf("valid dashboard: %s: %s", path, msg) }, nil)
}
