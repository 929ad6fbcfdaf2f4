package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/perf/benchfmt"
)

func TestSchedule(t *testing.T) {
	t.Run("Interleaved", func(t *testing.T) {
		want := []slot{{1, base}, {1, next}, {2, base}, {2, next}, {3, base}, {3, next}}
		if got := schedule(3); !slices.Equal(got, want) {
			t.Errorf("schedule(3) = %v, want %v", got, want)
		}
	})
	t.Run("OneRound", func(t *testing.T) {
		if got := schedule(1); !slices.Equal(got, []slot{{1, base}, {1, next}}) {
			t.Errorf("schedule(1) = %v", got)
		}
	})
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(d, c.q); got != c.want {
			t.Errorf("quantile(1..100ms, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := quantile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("quantile of one = %v", got)
	}
}

var testConfig = fileConfig("shopd over HTTP (bench/compare)", "linux", "amd64", "Test CPU")

// TestHTTPResultFormat: a measured workload is written as one Go
// benchmark line, and benchfmt reads it back with benchstat's tidied
// units.
func TestHTTPResultFormat(t *testing.T) {
	lat := []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	r := httpResult(testConfig, "order_history", lat, 12*time.Millisecond, 4*time.Millisecond)
	var buf bytes.Buffer
	if err := writeResults(&buf, []*benchfmt.Result{r}); err != nil {
		t.Fatal(err)
	}
	want := `goos: linux
goarch: amd64
cpu: Test CPU
pkg: shopd over HTTP (bench/compare)

BenchmarkHTTP/order_history 4 3e+06 ns/op 2e+06 p50-ns/op 4e+06 p99-ns/op 1e+06 cpu-ns/op
`
	if buf.String() != want {
		t.Fatalf("written:\n%s\nwant:\n%s", buf.String(), want)
	}

	got, err := readResults(&buf, "new.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("read %d results, want 1", len(got))
	}
	g := got[0]
	if string(g.Name) != "HTTP/order_history" || g.Iters != 4 || g.GetConfig("pkg") != "shopd over HTTP (bench/compare)" {
		t.Errorf("read name %q iters %d pkg %q", g.Name, g.Iters, g.GetConfig("pkg"))
	}
	for unit, want := range map[string]float64{"sec/op": 3e-3, "p50-sec/op": 2e-3, "p99-sec/op": 4e-3, "cpu-sec/op": 1e-3} {
		if v, ok := g.Value(unit); !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", unit, v, ok, want)
		}
	}

	t.Run("NoCPU", func(t *testing.T) {
		r := httpResult(testConfig, "x", lat, 12*time.Millisecond, -1)
		if _, ok := r.Value(unitCPUNsOp); ok || len(r.Values) != 3 {
			t.Errorf("values %v: want no cpu unit when it cannot be measured", r.Values)
		}
	})
}

// TestReadGoTestOutput: a go test -bench run's output, logs and custom
// metrics included, parses into results.
func TestReadGoTestOutput(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/shoplab/shoplab/service/httpapi
cpu: Test CPU
BenchmarkOrderHistory/batched-2         	     100	   4069123 ns/op	 1098765 B/op	    9817 allocs/op
BenchmarkTelemetryOverhead-2   	      30	  13180000 ns/op	         4.100 overhead-%	   6400000 off-ns/workload	   6660000 on-ns/workload	  813000 B/op	    8476 allocs/op
--- BENCH: BenchmarkTelemetryOverhead-2
    telemetry_bench_test.go:99: some log line
PASS
ok  	github.com/shoplab/shoplab/service/httpapi	12.3s
`
	rs, err := readResults(strings.NewReader(out), "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	if v, ok := rs[1].Value("overhead-%"); !ok || v != 4.1 {
		t.Errorf("overhead-%% = %v %v", v, ok)
	}
	if v, ok := rs[1].Value("off-sec/workload"); !ok || v != 6.4e-3 {
		t.Errorf("off-sec/workload = %v %v", v, ok)
	}
	if key(rs[0]) != "github.com/shoplab/shoplab/service/httpapi OrderHistory/batched-2" {
		t.Errorf("key = %q", key(rs[0]))
	}

	t.Run("Malformed", func(t *testing.T) {
		if _, err := readResults(strings.NewReader("BenchmarkX 10 12 ns/op 13\n"), "x"); err == nil {
			t.Error("no error for a value without a unit")
		}
	})
}

// TestIntersect: what one side lacks (a whole benchmark, or one unit of
// it) is left out of both and listed.
func TestIntersect(t *testing.T) {
	res := func(name string, units ...string) *benchfmt.Result {
		r := &benchfmt.Result{Config: slices.Clone(testConfig), Name: benchfmt.Name(name), Iters: 1}
		for i, u := range units {
			r.Values = append(r.Values, benchfmt.Value{Value: float64(i + 1), Unit: u})
		}
		return r
	}
	baseRes := []*benchfmt.Result{res("HTTP/a", "ns/op", "p99-ns/op"), res("HTTP/old", "ns/op"), res("HTTP/a", "ns/op", "p99-ns/op")}
	newRes := []*benchfmt.Result{res("HTTP/a", "ns/op", "p99-ns/op", "cpu-ns/op"), res("HTTP/search", "ns/op"), res("HTTP/a", "ns/op", "p99-ns/op", "cpu-ns/op")}
	b, n, skipped := intersect(baseRes, newRes)
	pkg := "shopd over HTTP (bench/compare) "
	wantSkipped := []string{pkg + "HTTP/a cpu-ns/op: only in new", pkg + "HTTP/old: only in base", pkg + "HTTP/search: only in new"}
	if !slices.Equal(skipped, wantSkipped) {
		t.Errorf("skipped:\n%s\nwant:\n%s", strings.Join(skipped, "\n"), strings.Join(wantSkipped, "\n"))
	}
	for s, rs := range [][]*benchfmt.Result{b, n} {
		if len(rs) != 2 {
			t.Fatalf("side %d kept %d results, want the 2 of HTTP/a", s, len(rs))
		}
		for _, r := range rs {
			var units []string
			for _, v := range r.Values {
				units = append(units, v.Unit)
			}
			if string(r.Name) != "HTTP/a" || !slices.Equal(units, []string{"ns/op", "p99-ns/op"}) {
				t.Errorf("side %d kept %s %v", s, r.Name, units)
			}
		}
	}
	if len(newRes[0].Values) != 3 {
		t.Error("intersect modified its input")
	}
}

func TestImportBody(t *testing.T) {
	var a, b struct {
		Products []struct {
			Name  string
			Price json.Number
		}
	}
	if err := json.Unmarshal(importBody(1, 100), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(importBody(2, 100), &b); err != nil {
		t.Fatal(err)
	}
	if len(a.Products) != 100 || a.Products[0].Price != "10.00" {
		t.Fatalf("rows %d, first price %q", len(a.Products), a.Products[0].Price)
	}
	if a.Products[5].Name == b.Products[5].Name {
		t.Errorf("imports 1 and 2 share the name %q", a.Products[5].Name)
	}
}

func TestProcessCPU(t *testing.T) {
	c0, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn some CPU
	}
	c1, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c1 < c0 {
		t.Errorf("CPU went back from %v to %v", c0, c1)
	}
}

// TestBenchstat: files written by writeResults are what `go tool
// benchstat` compares, base against new, in one table per package.
func TestBenchstat(t *testing.T) {
	dir := t.TempDir()
	var files [2]string
	for s, ms := range [2]time.Duration{2 * time.Millisecond, 4 * time.Millisecond} {
		var rs []*benchfmt.Result
		for i := range 6 {
			d := ms + time.Duration(i)*10*time.Microsecond
			rs = append(rs, httpResult(testConfig, "checkout", []time.Duration{d, d}, 2*d, d))
		}
		var buf bytes.Buffer
		if err := writeResults(&buf, rs); err != nil {
			t.Fatal(err)
		}
		files[s] = filepath.Join(dir, side(s).String()+".txt")
		if err := os.WriteFile(files[s], buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("go", "tool", "benchstat", "base="+files[base], "new="+files[next]).CombinedOutput()
	if err != nil {
		t.Fatalf("benchstat: %v\n%s", err, out)
	}
	for _, want := range []string{"pkg: shopd over HTTP (bench/compare)", "vs base", "HTTP/checkout", "p99-sec/op", "cpu-sec/op", "+98.77% (p=0.002 n=6)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("benchstat output lacks %q:\n%s", want, out)
		}
	}
}
