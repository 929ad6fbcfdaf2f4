package telemetry_test

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository root, relative to the package directory
// (where go test runs a package's tests).
var repoRoot = filepath.Join("..", "..")

// codeMetrics returns the values of the string constants named Metric* in
// metrics.go.
func codeMetrics(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "metrics.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{} // value -> const name
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Metric") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s is not a string literal constant", name.Name)
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				if prev, dup := out[v]; dup {
					t.Errorf("%s and %s are both %q", prev, name.Name, v)
				}
				out[v] = name.Name
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no Metric* constants found in metrics.go")
	}
	return out
}

// foreignSection reports whether a heading of docs/metrics.md opens a
// section of metrics that are not shoplab's and not in metrics.go: the Go
// runtime metrics dd-trace-go sends, and the metrics the Datadog Agent's
// PostgreSQL integration collects ("From the Datadog Agent").
func foreignSection(heading string) (foreign, agent bool) {
	h := strings.ToLower(heading)
	agent = strings.Contains(h, "datadog agent")
	return agent || strings.Contains(h, "runtime"), agent
}

// docMetrics returns the metric names (without the shoplab. prefix) in the
// first column of the tables of docs/metrics.md, except the foreign
// sections (foreignSection). A shoplab. metric listed in the Agent's section
// is an error: it would escape this check.
func docMetrics(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	foreign, agent := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			foreign, agent = foreignSection(line)
			continue
		}
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if agent && strings.HasPrefix(name, "shoplab.") {
			t.Errorf("%s: %s is listed in the Datadog Agent's section", path, name)
		}
		if foreign {
			continue
		}
		if rest, ok := strings.CutPrefix(name, "shoplab."); ok {
			if out[rest] {
				t.Errorf("%s is documented twice", name)
			}
			out[rest] = true
		} else if name != "name" && !strings.HasPrefix(name, "---") && name != "" {
			t.Errorf("table row of %s without the shoplab. prefix: %q", path, name)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetricsCatalogue keeps docs/metrics.md and metrics.go in step.
func TestMetricsCatalogue(t *testing.T) {
	t.Parallel()
	code := codeMetrics(t)
	docs := docMetrics(t, filepath.Join(repoRoot, "docs", "metrics.md"))
	var missing, extra []string
	for v, name := range code {
		if !docs[v] {
			missing = append(missing, "shoplab."+v+" ("+name+")")
		}
	}
	for v := range docs {
		if _, ok := code[v]; !ok {
			extra = append(extra, "shoplab."+v)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	if len(missing) > 0 {
		t.Errorf("in metrics.go but not in docs/metrics.md:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("in docs/metrics.md but not in metrics.go:\n  %s", strings.Join(extra, "\n  "))
	}
}

// statsdArgs returns the argument count of the metric methods of
// statsd.ClientInterface, which tells them apart from same-named methods such
// as http.Header.Set, and false for other methods.
func statsdArgs(method string) (int, bool) {
	switch method {
	case "Incr", "Decr":
		return 3, true
	case "Count", "Gauge", "Distribution", "Histogram", "Timing", "TimeInMilliseconds", "Set":
		return 4, true
	case "CountWithTimestamp", "GaugeWithTimestamp":
		return 5, true
	}
	return 0, false
}

// literalMetricNames returns the positions of statsd metric calls in f whose
// name argument contains a string literal.
func literalMetricNames(fset *token.FileSet, f *ast.File) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if want, ok := statsdArgs(sel.Sel.Name); !ok || len(call.Args) != want {
			return true
		}
		hasLiteral := false
		ast.Inspect(call.Args[0], func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				hasLiteral = true
			}
			return !hasLiteral
		})
		if hasLiteral {
			out = append(out, fset.Position(call.Pos()).String()+": ."+sel.Sel.Name+" with a literal metric name")
		}
		return true
	})
	return out
}

// TestNoLiteralMetricNames scans every non-test Go file of the module for
// statsd calls naming their metric with a string literal instead of a
// telemetry.Metric* constant.
func TestNoLiteralMetricNames(t *testing.T) {
	t.Parallel()
	root := repoRoot
	fset := token.NewFileSet()
	var bad []string
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
				name == "vendor" || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		bad = append(bad, literalMetricNames(fset, f)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no Go files scanned")
	}
	if len(bad) > 0 {
		t.Errorf("use a telemetry.Metric* constant (service/telemetry/metrics.go) as the metric name:\n  %s", strings.Join(bad, "\n  "))
	}
}

func TestLiteralMetricNamesDetector(t *testing.T) {
	t.Parallel()
	const src = `package x
func f() {
	m.Incr("http.requests", nil, 1)                  // flagged
	m.Distribution("db." + name, 1, nil, 1)           // flagged
	m.Gauge(fmt.Sprintf("pool.%s", n), 1, nil, 1)     // flagged
	m.Count(telemetry.MetricDBQueryErrors, 1, nil, 1) // fine
	m.Incr(name, nil, 1)                              // fine: a parameter
	w.Header().Set("Content-Type", "text/plain")      // fine: not statsd
}`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := literalMetricNames(fset, f)
	if len(got) != 3 {
		t.Errorf("flagged %d calls, want 3: %v", len(got), got)
	}
}
