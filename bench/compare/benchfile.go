package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"golang.org/x/perf/benchfmt"
)

// side is one of the two builds compared.
type side int

const (
	base side = iota // BASE: the revision given with -base
	next             // the working tree, uncommitted changes included
)

func (s side) String() string {
	if s == base {
		return "base"
	}
	return "new"
}

// slot is one process run of one side in one round.
type slot struct {
	round int // from 1
	side  side
}

// schedule is the order of the runs: A, B, A, B, ... (BASE first in every
// round), one fresh process per slot, so that a slow spell of a shared
// machine lands on both sides alike instead of on whichever ran second.
func schedule(rounds int) []slot {
	s := make([]slot, 0, 2*rounds)
	for r := 1; r <= rounds; r++ {
		s = append(s, slot{r, base}, slot{r, next})
	}
	return s
}

// Units of the HTTP workloads' results, in the Go benchmark format
// (benchstat tidies "ns" to "sec").
const (
	unitNsOp    = "ns/op"     // wall time per request: elapsed / requests
	unitP50     = "p50-ns/op" // median request latency
	unitP99     = "p99-ns/op" // 99th percentile request latency
	unitCPUNsOp = "cpu-ns/op" // shopd's CPU time (user + system, all threads) per request
)

// httpResult is one measured HTTP workload in the Go benchmark format:
// BenchmarkHTTP/<name> <requests> <ns/op> <p50> <p99> <cpu-ns/op>. lat
// holds each request's latency, elapsed the loop's wall time, cpu shopd's
// CPU time over the loop. The cpu unit is left out when cpu is negative
// (not measurable).
func httpResult(config []benchfmt.Config, name string, lat []time.Duration, elapsed, cpu time.Duration) *benchfmt.Result {
	n := len(lat)
	r := &benchfmt.Result{Config: slices.Clone(config), Name: benchfmt.Name("HTTP/" + name), Iters: n}
	if n == 0 {
		return r
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	r.Values = []benchfmt.Value{
		{Value: math.Round(float64(elapsed.Nanoseconds()) / float64(n)), Unit: unitNsOp},
		{Value: float64(quantile(sorted, 0.50).Nanoseconds()), Unit: unitP50},
		{Value: float64(quantile(sorted, 0.99).Nanoseconds()), Unit: unitP99},
	}
	if cpu >= 0 {
		r.Values = append(r.Values, benchfmt.Value{Value: math.Round(float64(cpu.Nanoseconds()) / float64(n)), Unit: unitCPUNsOp})
	}
	return r
}

// quantile is the q-quantile of sorted by the nearest-rank method: the
// smallest value with at least q of the values at or below it.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// fileConfig is the file configuration written above the results of one
// package. Both sides must write the same keys and values: benchstat splits
// its tables by configuration, so a key that differed (a commit, say) would
// put base and new in different tables with nothing to compare.
func fileConfig(pkg string, goos, goarch, cpu string) []benchfmt.Config {
	c := []benchfmt.Config{{Key: "goos", Value: []byte(goos), File: true}, {Key: "goarch", Value: []byte(goarch), File: true}}
	if cpu != "" {
		c = append(c, benchfmt.Config{Key: "cpu", Value: []byte(cpu), File: true})
	}
	return append(c, benchfmt.Config{Key: "pkg", Value: []byte(pkg), File: true})
}

// readResults parses Go benchmark output (a `go test -bench` run, or a file
// written by writeResults) into results that own their memory. Lines that
// are not results or configuration (PASS, ok, logs) are skipped, as
// benchfmt does; a malformed Benchmark line is an error.
func readResults(r io.Reader, fileName string) ([]*benchfmt.Result, error) {
	var out []*benchfmt.Result
	rd := benchfmt.NewReader(r, fileName)
	for rd.Scan() {
		switch rec := rd.Result().(type) {
		case *benchfmt.Result:
			out = append(out, rec.Clone())
		case *benchfmt.SyntaxError:
			return nil, rec
		}
	}
	return out, rd.Err()
}

// writeResults writes results in the Go benchmark format: configuration
// lines where they change, then one Benchmark line per result.
func writeResults(w io.Writer, results []*benchfmt.Result) error {
	bw := benchfmt.NewWriter(w)
	for _, r := range results {
		if err := bw.Write(r); err != nil {
			return err
		}
	}
	return nil
}

// key names a benchmark across both sides: its package and full name.
func key(r *benchfmt.Result) string {
	if pkg := r.GetConfig("pkg"); pkg != "" {
		return pkg + " " + string(r.Name)
	}
	return string(r.Name)
}

// intersect keeps what both sides measured: the benchmarks (by package and
// name) that have results on both sides, and of those the units that both
// report. It returns the filtered results of each side and one line per
// thing skipped, saying which side lacked it, sorted.
func intersect(b, n []*benchfmt.Result) (bOut, nOut []*benchfmt.Result, skipped []string) {
	units := func(rs []*benchfmt.Result) map[string]map[string]bool {
		m := map[string]map[string]bool{}
		for _, r := range rs {
			k := key(r)
			if m[k] == nil {
				m[k] = map[string]bool{}
			}
			for _, v := range r.Values {
				m[k][unitOf(v)] = true
			}
		}
		return m
	}
	bu, nu := units(b), units(n)
	for k, us := range bu {
		if nu[k] == nil {
			skipped = append(skipped, fmt.Sprintf("%s: only in base", k))
			continue
		}
		for u := range us {
			if !nu[k][u] {
				skipped = append(skipped, fmt.Sprintf("%s %s: only in base", k, u))
			}
		}
	}
	for k, us := range nu {
		if bu[k] == nil {
			skipped = append(skipped, fmt.Sprintf("%s: only in new", k))
			continue
		}
		for u := range us {
			if !bu[k][u] {
				skipped = append(skipped, fmt.Sprintf("%s %s: only in new", k, u))
			}
		}
	}
	slices.Sort(skipped)
	keep := func(rs []*benchfmt.Result, other map[string]map[string]bool) []*benchfmt.Result {
		var out []*benchfmt.Result
		for _, r := range rs {
			ou := other[key(r)]
			if ou == nil {
				continue
			}
			c := r.Clone()
			c.Values = slices.DeleteFunc(c.Values, func(v benchfmt.Value) bool { return !ou[unitOf(v)] })
			if len(c.Values) > 0 {
				out = append(out, c)
			}
		}
		return out
	}
	return keep(b, nu), keep(n, bu), skipped
}

// unitOf is a value's unit as written (before benchfmt tidied it).
func unitOf(v benchfmt.Value) string {
	if v.OrigUnit != "" {
		return v.OrigUnit
	}
	return v.Unit
}
