// Command gate is `make bench-gate`: the ratio gates. Each runs a short
// version of one bench, compares the service with its reference measured
// in the same run (the query-per-order loop, pgbench running the same
// checkout, psql \copy, the idle service, telemetry off, no search
// index), takes the median ratio of several rounds, and fails when it is
// over its threshold twice in a row (one retry absorbs a burst of noise
// from the shared machine). Every ratio reads "the service's cost in
// units of its reference": lower is better.
//
// It writes one JSON file per gate (every attempt, its rounds and the
// bench's own output) and the HTTP benches' vegeta latency plots under
// -dir, and -summary: one Markdown table of workload, ratio, threshold,
// pass/fail and details. It exits non-zero when a gate fails.
//
// The thresholds and the figures they were chosen from are in gates.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoplab/shoplab/internal/benchkit"
)

func main() { benchkit.Main("bench-gate", run) }

// env is what every gate needs: the binaries built at the start, where to
// write, and where to log the benches' own output.
type env struct {
	root    string // the repository root
	bin     string // directory of the built bench and test binaries
	dir     string // results directory
	shopd   string
	server  string
	log     io.Writer
	attempt int
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-gate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	shopd := fs.String("shopd", "bin/shopd", "shopd binary the HTTP benches start")
	server := fs.String("server", benchkit.DefaultServer(), "PostgreSQL server on which the benches create their databases")
	dir := fs.String("dir", "bench/results/gate", "where to write each gate's JSON and plots")
	summary := fs.String("summary", "bench/results/summary.md", "where to write the summary table")
	only := fs.String("only", "", "gates to run, comma-separated (default: all): "+strings.Join(gateNames(), ","))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	e := &env{root: root, dir: *dir, server: *server, log: stderr}
	if e.shopd, err = benchkit.ShopdPath(*shopd); err != nil {
		return err
	}
	for _, tool := range []string{"pgbench", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed (Debian: apt-get install postgresql-client-15 postgresql-15): %w", tool, err)
		}
	}
	selected := gates()
	if *only != "" {
		want := strings.Split(*only, ",")
		selected = slices.DeleteFunc(selected, func(g gate) bool { return !slices.Contains(want, g.name) })
	}
	if e.bin, err = os.MkdirTemp("", "bench-gate-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.bin)
	start := time.Now()
	if err := e.build(ctx, selected); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench-gate: built the benches in %s\n", time.Since(start).Round(time.Second))

	var rows []row
	failed := 0
	for _, g := range selected {
		rs, err := runGate(ctx, e, g, stdout)
		if err != nil {
			return fmt.Errorf("gate %s: %w", g.name, err)
		}
		for _, r := range rs {
			if !r.Pass {
				failed++
			}
		}
		rows = append(rows, rs...)
	}
	took := time.Since(start).Round(time.Second)
	table := summaryTable(rows, *summary, e.dir, took)
	if err := os.MkdirAll(filepath.Dir(*summary), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*summary, []byte(table), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s\nbench-gate: summary written to %s\n", table, *summary)
	if failed > 0 {
		return fmt.Errorf("%d of %d ratio gates failed (see %s)", failed, len(rows), *summary)
	}
	return nil
}

// build builds the bench programs and test binaries the selected gates run.
func (e *env) build(ctx context.Context, gs []gate) error {
	seen := map[string]bool{}
	for _, g := range gs {
		for _, pkg := range g.builds {
			if seen[pkg] {
				continue
			}
			seen[pkg] = true
			out := filepath.Join(e.bin, filepath.Base(pkg))
			args := []string{"build", "-o", out, "./" + pkg}
			if strings.HasPrefix(pkg, "service/") {
				args = []string{"test", "-c", "-o", out, "./" + pkg}
			}
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir, cmd.Stdout, cmd.Stderr = e.root, e.log, e.log
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
			}
		}
	}
	return nil
}

// exec runs one of the built binaries in dir (relative to the root) and
// returns its output, stdout and stderr together, also copied to the log.
func (e *env) exec(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, name), args...)
	cmd.Dir = filepath.Join(e.root, dir)
	var out strings.Builder
	cmd.Stdout = io.MultiWriter(&out, e.log)
	cmd.Stderr = cmd.Stdout
	cmd.Env = append(os.Environ(), "TEST_DATABASE_URL="+e.server, "BENCH_DATABASE_URL="+e.server)
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// path is a results file of this attempt's gate, absolute.
func (e *env) path(name string) string {
	if filepath.IsAbs(e.dir) {
		return filepath.Join(e.dir, name)
	}
	return filepath.Join(e.root, e.dir, name)
}
