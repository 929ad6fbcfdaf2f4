// Command compare is `make bench-compare BASE=<git rev>`: what a change
// does to the hot paths, before it is merged.
//
// It extracts BASE (git archive) into a temporary directory and builds
// shopd there and in the working tree (uncommitted changes included), plus
// the go test benchmark binaries of service/httpapi in both trees (go test
// -c). Then it runs the same workloads against each side in -rounds rounds,
// interleaved: base, new, base, new, ... each run a fresh process:
//
//   - HTTP: a fresh database, migrated and seeded by that side's own shopd
//     (`shopd migrate up`, `shopd seed`), then that side's `shopd serve`,
//     and one client sending each workload back to back for -benchtime
//     (products_list, product_get, search, order_history, checkout,
//     import_100) after a warm-up. Each gives BenchmarkHTTP/<workload>
//     with its wall ns/op, p50 and p99 latency and shopd's CPU per request.
//   - go test: each side's test binary runs BenchmarkOrderHistory/batched
//     and BenchmarkTelemetryOverhead (unless -gotest=false).
//
// The results of each side are Go benchmark-format lines; what both sides
// measured (same benchmark, same unit) is written to
// bench/results/compare/{base,new}.txt, anything only one side has is
// listed as skipped, and benchstat's comparison (golang.org/x/perf, run
// as `go tool benchstat`) of base against new is printed and written,
// with a header naming both sides, to -out.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/perf/benchfmt"

	"github.com/shoplab/shoplab/internal/benchkit"
)

func main() { benchkit.Main("bench-compare", run) }

// goBench is one go test benchmark run in both trees.
type goBench struct {
	pkg       string // package directory, relative to the tree's root
	bench     string // -test.bench
	benchtime string // -test.benchtime
}

// goBenches are the go test benchmarks of the hot paths: order history
// through the real router (its batched store, not the N+1 baseline), and
// the mixed workload's telemetry on/off cost.
var goBenches = []goBench{
	{"service/httpapi", "^BenchmarkOrderHistory$/^batched$", "100x"},
	{"service/httpapi", "^BenchmarkTelemetryOverhead$", "30x"},
}

type options struct {
	base      string
	rounds    int
	benchtime time.Duration
	workloads []workload
	gotest    bool
	server    string
	out       string
	keep      bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.base, "base", "", "git revision to compare the working tree against (required): HEAD~1, main, a sha")
	fs.IntVar(&o.rounds, "rounds", 6, "rounds of (base, new); benchstat needs 6 per side for a 95% confidence interval")
	fs.DurationVar(&o.benchtime, "benchtime", time.Second, "how long each HTTP workload is measured per run")
	only := fs.String("workloads", "", "comma-separated HTTP workloads to run (default all): "+workloadNames())
	fs.BoolVar(&o.gotest, "gotest", true, "also run the go test benchmarks (BenchmarkOrderHistory/batched, BenchmarkTelemetryOverhead) of both trees")
	fs.StringVar(&o.server, "server", benchkit.DefaultServer(), "PostgreSQL server to create the databases on (each run gets a fresh one)")
	fs.StringVar(&o.out, "out", "bench/results/compare.txt", "where to write the comparison; the samples go to <dir of out>/compare/{base,new}.txt")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (BASE's tree, both builds, logs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.base == "" {
		return errors.New("no -base: say what to compare against, e.g. make bench-compare BASE=HEAD~1")
	}
	if o.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	ws, err := pickWorkloads(*only)
	if err != nil {
		return err
	}
	o.workloads = ws
	return compare(ctx, o, stdout, stderr)
}

func workloadNames() string {
	var s []string
	for _, w := range workloads {
		s = append(s, w.name)
	}
	return strings.Join(s, ",")
}

func pickWorkloads(list string) ([]workload, error) {
	if list == "" {
		return workloads, nil
	}
	var out []workload
	for name := range strings.SplitSeq(list, ",") {
		i := slices.IndexFunc(workloads, func(w workload) bool { return w.name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("unknown workload %q; known: %s", name, workloadNames())
		}
		out = append(out, workloads[i])
	}
	return out, nil
}

// build is one side's binaries.
type build struct {
	tree   string            // the source tree's root
	shopd  string            // its shopd binary
	tests  map[string]string // package dir -> its test binary; absent when it did not build
	commit string            // what it was built from, for the header
}

func compare(ctx context.Context, o options, stdout, stderr io.Writer) error {
	began := time.Now()
	root, err := gitOut(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("not in a git repository: %w", err)
	}
	sha, err := gitOut(ctx, root, "rev-parse", "--verify", "--end-of-options", o.base+"^{commit}")
	if err != nil {
		return fmt.Errorf("BASE %q is not a commit: %w", o.base, err)
	}
	head, _ := gitOut(ctx, root, "rev-parse", "--short", "HEAD")
	dirty, _ := gitOut(ctx, root, "status", "--porcelain", "--untracked-files=no")
	tmp, err := os.MkdirTemp("", "shoplab-compare-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(stderr, "bench-compare: keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	var builds [2]build
	baseTree := filepath.Join(tmp, "base", "src")
	fmt.Fprintf(stderr, "bench-compare: extracting %s (%s) into %s\n", o.base, sha[:12], baseTree)
	if err := extract(ctx, root, sha, baseTree, filepath.Join(tmp, "base.tar")); err != nil {
		return err
	}
	builds[base] = build{tree: baseTree, commit: fmt.Sprintf("%s (%s)", o.base, sha[:12])}
	builds[next] = build{tree: root, commit: "working tree at " + head}
	if dirty != "" {
		builds[next].commit += " + uncommitted changes"
	}
	var skipped []string
	for s := range builds {
		b := &builds[s]
		dir := filepath.Join(tmp, side(s).String())
		b.shopd = filepath.Join(dir, "shopd")
		fmt.Fprintf(stderr, "bench-compare: building %s: shopd\n", side(s))
		if err := goCmd(ctx, b.tree, stderr, "build", "-o", b.shopd, "./service/cmd/shopd"); err != nil {
			return fmt.Errorf("build %s's shopd: %w", side(s), err)
		}
		b.tests = map[string]string{}
		if !o.gotest {
			continue
		}
		for _, g := range goBenches {
			if _, ok := b.tests[g.pkg]; ok {
				continue
			}
			bin := filepath.Join(dir, strings.ReplaceAll(g.pkg, "/", "_")+".test")
			fmt.Fprintf(stderr, "bench-compare: building %s: go test -c ./%s\n", side(s), g.pkg)
			var out bytes.Buffer
			if err := goCmd(ctx, b.tree, &out, "test", "-c", "-o", bin, "./"+g.pkg); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				skipped = append(skipped, fmt.Sprintf("go test benchmarks of %s: %s's test binary did not build: %s", g.pkg, side(s), firstLine(out.String())))
				continue
			}
			b.tests[g.pkg] = bin
		}
	}

	cfg := machineConfig()
	var results [2][]*benchfmt.Result
	unsupported := map[string]string{} // workload -> why, once a side does not serve it
	slots := schedule(o.rounds)
	for i, sl := range slots {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		rs, err := runHTTP(ctx, o, builds[sl.side], sl.side, cfg, unsupported, filepath.Join(tmp, fmt.Sprintf("shopd-%s-%d.log", sl.side, sl.round)), stderr)
		if err != nil {
			return fmt.Errorf("round %d, %s, HTTP workloads: %w", sl.round, sl.side, err)
		}
		results[sl.side] = append(results[sl.side], rs...)
		n := len(rs)
		if o.gotest {
			rs, err := runGoBenches(ctx, o, builds[sl.side])
			if err != nil {
				return fmt.Errorf("round %d, %s, go test benchmarks: %w", sl.round, sl.side, err)
			}
			results[sl.side] = append(results[sl.side], rs...)
			n += len(rs)
		}
		fmt.Fprintf(stderr, "bench-compare: run %d/%d: round %d %-4s %d results in %s\n",
			i+1, len(slots), sl.round, sl.side, n, time.Since(t0).Round(100*time.Millisecond))
	}
	for _, w := range o.workloads {
		if why, ok := unsupported[w.name]; ok {
			skipped = append(skipped, fmt.Sprintf("HTTP/%s: %s", w.name, why))
		}
	}

	bRes, nRes, only := intersect(results[base], results[next])
	skipped = append(skipped, only...)
	samples := filepath.Join(filepath.Dir(o.out), "compare")
	if err := os.MkdirAll(samples, 0o755); err != nil {
		return err
	}
	files := [2]string{filepath.Join(samples, "base.txt"), filepath.Join(samples, "new.txt")}
	for s, rs := range [2][]*benchfmt.Result{bRes, nRes} {
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "# bench-compare %s: %s\n", side(s), builds[s].commit)
		if err := writeResults(&buf, rs); err != nil {
			return err
		}
		if err := os.WriteFile(files[s], buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	var table bytes.Buffer
	if len(bRes) > 0 {
		var errb bytes.Buffer
		cmd := exec.CommandContext(ctx, "go", "tool", "benchstat", "base="+files[base], "new="+files[next])
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, &table, &errb
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("benchstat: %w: %s", err, errb.String())
		}
	}

	var rep bytes.Buffer
	fmt.Fprintf(&rep, "bench-compare: base = %s, new = %s\n", builds[base].commit, builds[next].commit)
	fmt.Fprintf(&rep, "%d rounds, interleaved (base, new, base, new, ...), a fresh process and database per run; HTTP workloads %s each after %d warm-up requests; %s in all\n",
		o.rounds, o.benchtime, warmups, time.Since(began).Round(time.Second))
	fmt.Fprintf(&rep, "samples: %s, %s\n\n", files[base], files[next])
	if len(bRes) == 0 {
		rep.WriteString("nothing measured on both sides: no comparison\n")
	}
	rep.Write(table.Bytes())
	if len(skipped) > 0 {
		rep.WriteString("\nskipped (not measured on both sides):\n")
		for _, s := range skipped {
			fmt.Fprintf(&rep, "  %s\n", s)
		}
	}
	if _, err := stdout.Write(rep.Bytes()); err != nil {
		return err
	}
	return os.WriteFile(o.out, rep.Bytes(), 0o644)
}

// runHTTP is one HTTP run of one side: a fresh database migrated and
// seeded by the side's shopd, a fresh `shopd serve`, every workload not
// yet known unsupported measured in turn. A workload whose warm-up fails
// is added to unsupported and skipped from then on.
func runHTTP(ctx context.Context, o options, b build, s side, cfg []benchfmt.Config, unsupported map[string]string, logPath string, stderr io.Writer) ([]*benchfmt.Result, error) {
	dsn, drop, err := emptyDatabase(ctx, o.server, s.String())
	if err != nil {
		return nil, err
	}
	defer drop()
	env := append(os.Environ(), "DATABASE_URL="+dsn, "LOG_LEVEL=warn")
	for _, args := range [][]string{{"migrate", "up"}, {"seed"}} {
		cmd := exec.CommandContext(ctx, b.shopd, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("shopd %s: %w: %s", strings.Join(args, " "), err, lastLines(string(out), 5))
		}
	}
	fx, err := loadFixtures(ctx, dsn)
	if err != nil {
		return nil, err
	}
	srv, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{Bin: b.shopd, DatabaseURL: dsn, LogPath: logPath,
		// /admin/products/import open: no token, not production.
		Env: []string{"ADMIN_TOKEN=", "APP_ENV=development"}})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer client.CloseIdleConnections()
	var out []*benchfmt.Result
	seq := 0
	for _, w := range o.workloads {
		if _, ok := unsupported[w.name]; ok {
			continue
		}
		lat, elapsed, cpu, err := measure(ctx, client, srv.URL, srv.PID, fx, w, o.benchtime, &seq)
		if errors.Is(err, errUnsupported) {
			unsupported[w.name] = fmt.Sprintf("%s does not serve it (%v)", s, err)
			fmt.Fprintf(stderr, "bench-compare: %s: HTTP/%s skipped: %v\n", s, w.name, err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.name, err)
		}
		out = append(out, httpResult(cfg, w.name, lat, elapsed, cpu))
	}
	return out, nil
}

// runGoBenches runs each go test benchmark once in b's test binary (a
// fresh process each; the tests create their own databases on the server).
func runGoBenches(ctx context.Context, o options, b build) ([]*benchfmt.Result, error) {
	var out []*benchfmt.Result
	for _, g := range goBenches {
		bin, ok := b.tests[g.pkg]
		if !ok {
			continue
		}
		cmd := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", g.bench, "-test.benchtime", g.benchtime,
			"-test.count", "1", "-test.benchmem", "-test.timeout", "10m")
		cmd.Dir = filepath.Join(b.tree, g.pkg)
		cmd.Env = append(os.Environ(), "TEST_DATABASE_URL="+o.server)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s -test.bench %s: %w: %s", g.pkg, g.bench, err, lastLines(stdout.String()+stderr.String(), 10))
		}
		rs, err := readResults(&stdout, g.pkg)
		if err != nil {
			return nil, fmt.Errorf("%s -test.bench %s: %w", g.pkg, g.bench, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// emptyDatabase creates an empty database on the server (each side
// migrates it with its own migrations) and returns its URL and a function
// that drops it.
func emptyDatabase(ctx context.Context, server, label string) (string, func(), error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", nil, fmt.Errorf("server URL %s: not a URL", benchkit.Redact(server))
	}
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", benchkit.Redact(server), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var r [6]byte
	_, _ = rand.Read(r[:])
	name := "shoplab_bench_compare_" + label + "_" + hex.EncodeToString(r[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	drop := func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(c, server)
		if err == nil {
			_, err = conn.Exec(c, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			_ = conn.Close(c)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-compare: drop database %s: %v\n", name, err)
		}
	}
	return u.String(), drop, nil
}

// machineConfig is the file configuration of the HTTP results, the same on
// both sides.
func machineConfig() []benchfmt.Config {
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fileConfig("shopd over HTTP (bench/compare)", runtime.GOOS, runtime.GOARCH, cpu)
}

// extract writes the tree of commit sha into dir, through a tar file
// (git archive), so that nothing in the repository changes.
func extract(ctx context.Context, root, sha, dir, tarPath string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := gitOut(ctx, root, "archive", "--format=tar", "-o", tarPath, sha); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xf", tarPath, "-C", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("tar -xf: %w: %s", err, out)
	}
	return os.Remove(tarPath)
}

func gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// goCmd runs the go command in dir with its output to w.
func goCmd(ctx context.Context, dir string, w io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, w, w
	return cmd.Run()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
