package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shoplab/shoplab/internal/benchkit"
)

// gate is one gated bench: what it builds, how one attempt measures, and
// the limits its ratios must stay under.
type gate struct {
	name    string
	builds  []string // packages: bench programs are built, service/ packages' tests compiled
	limits  []limit
	measure func(ctx context.Context, e *env) (measurement, error)
}

// limit is one gated ratio and its threshold. why gives the figures the
// threshold was chosen from (the median ratio of each `make bench-gate`
// run on the 2-core CI machine kind, shared with other work).
type limit struct {
	metric    string
	workload  string
	threshold float64
	why       string
}

// measurement is what one attempt of a gate measured.
type measurement struct {
	At       time.Time            `json:"at"`
	Seconds  float64              `json:"seconds"`
	Ratios   map[string]float64   `json:"ratios"` // metric -> median of Rounds[metric]
	Rounds   map[string][]float64 `json:"rounds"`
	Failures []string             `json:"failures,omitempty"` // hard failures: oversold stock, errors
	Details  string               `json:"details,omitempty"`  // the bench's own results file
	Plot     string               `json:"plot,omitempty"`     // vegeta's HTML latency plot
}

// row is one line of the summary.
type row struct {
	Gate      string    `json:"gate"`
	Metric    string    `json:"metric"`
	Workload  string    `json:"workload"`
	Ratio     float64   `json:"ratio"`
	Threshold float64   `json:"threshold"`
	Rounds    []float64 `json:"rounds"`
	Attempts  int       `json:"attempts"`
	Pass      bool      `json:"pass"`
	Failures  []string  `json:"failures,omitempty"`
	Why       string    `json:"why"`
	Details   string    `json:"details"`
	Plot      string    `json:"plot,omitempty"`
}

// gates are the ratio gates, in the order they run. Thresholds: see
// README "Performance gates" > "Ratio gates" for the measured figures.
func gates() []gate {
	return []gate{
		{name: "orders", builds: []string{"service/httpapi"}, measure: measureOrders, limits: []limit{{
			metric: "orders", workload: "GET /orders/{heavy user}: two statements vs the query-per-order loop (time)", threshold: 0.6,
			why: "measured 0.34 (median of 5 rounds; single rounds 0.28-0.47); the N+1 loop back gives ~1.0",
		}}},
		{name: "checkout", builds: []string{"bench/checkout"}, measure: measureCheckout, limits: []limit{{
			metric: "uniform", workload: "POST /orders/checkout, uniform carts: time per checkout vs pgbench, same transaction", threshold: 2.0,
			why: "measured 1.07 and 1.59 (median of the rounds; single rounds 0.99-1.72)",
		}, {
			metric: "hot", workload: "POST /orders/checkout, one hot product while stock lasts: orders/s vs pgbench's", threshold: 2.5,
			why: "measured 1.29 and 0.92 (median of the rounds; single rounds 0.34-1.48); the sold-out phase is shown apart in the details",
		}}},
		{name: "import", builds: []string{"bench/import"}, measure: measureImport, limits: []limit{{
			metric: "import", workload: "POST /admin/products/import, 20,000 rows (JSON) vs psql \\copy", threshold: 3.0,
			why: "measured 1.28 (median of 3 runs; single runs 0.55-1.32); a 20 µs sleep per row gives 15-20",
		}}},
		{name: "reports", builds: []string{"bench/reports"}, measure: measureReports, limits: []limit{{
			metric: "/health", workload: "GET /health p99 while 6 clients download a 20,000-order report vs idle", threshold: 4.0,
			why: "measured 1.50 (median of 3 rounds; single rounds 1.2-5.0)",
		}, {
			metric: "/products", workload: "GET /products p99 while 6 clients download a 20,000-order report vs idle", threshold: 4.0,
			why: "measured 1.59 (median of 3 rounds; single rounds 1.2-2.8)",
		}}},
		{name: "telemetry", builds: []string{"service/httpapi"}, measure: measureTelemetry, limits: []limit{{
			metric: "telemetry", workload: "mixed workload, telemetry on vs off (time)", threshold: 1.5,
			why: "measured 1.07 and 1.19 (median of 5 rounds; single rounds 1.07-1.43)",
		}}},
		{name: "search", builds: []string{"service/postgres"}, measure: measureSearch, limits: []limit{{
			metric: "search", workload: "product search on 100,000 products: trigram index vs none (time, 4 queries)", threshold: 0.2,
			why: "measured 0.019 (median of 3 rounds; single rounds 0.018-0.021)",
		}}},
	}
}

func gateNames() []string {
	var ns []string
	for _, g := range gates() {
		ns = append(ns, g.name)
	}
	return ns
}

// runGate measures g, and once more when a limit is exceeded or the bench
// reported a failure; it writes <dir>/<gate>.json and returns its rows.
func runGate(ctx context.Context, e *env, g gate, stdout io.Writer) ([]row, error) {
	var attempts []measurement
	var rows []row
	for attempt := 1; attempt <= 2; attempt++ {
		fmt.Fprintf(stdout, "bench-gate: %s, attempt %d ...\n", g.name, attempt)
		e.attempt = attempt
		start := time.Now()
		m, err := g.measure(ctx, e)
		if err != nil {
			m.Failures = append(m.Failures, err.Error())
		}
		m.At, m.Seconds = start.UTC(), benchkit.Round(time.Since(start).Seconds(), 1)
		attempts = append(attempts, m)
		rows = rows[:0]
		pass := true
		for _, l := range g.limits {
			r := row{Gate: g.name, Metric: l.metric, Workload: l.workload, Ratio: m.Ratios[l.metric], Threshold: l.threshold,
				Rounds: m.Rounds[l.metric], Attempts: attempt, Failures: m.Failures, Why: l.why,
				Details: g.name + ".json", Plot: m.Plot}
			_, measured := m.Ratios[l.metric]
			r.Pass = measured && len(m.Failures) == 0 && r.Ratio <= l.threshold
			pass = pass && r.Pass
			verdict := "pass"
			if !r.Pass {
				verdict = "FAIL"
			}
			fmt.Fprintf(stdout, "bench-gate: %-9s %-10s %.3f (threshold %.2f; rounds %v) %s in %.0fs %s\n",
				g.name, l.metric, r.Ratio, l.threshold, r.Rounds, verdict, m.Seconds, strings.Join(m.Failures, "; "))
			rows = append(rows, r)
		}
		if pass || ctx.Err() != nil {
			break
		}
	}
	err := benchkit.WriteJSON(e.path(g.name+".json"), map[string]any{"gate": g.name, "rows": rows, "attempts": attempts})
	return rows, err
}

// summaryTable is the Markdown summary; links are relative to the
// summary's directory.
func summaryTable(rows []row, summary, dir string, took time.Duration) string {
	rel, err := filepath.Rel(filepath.Dir(summary), dir)
	if err != nil {
		rel = dir
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Ratio gates (`make bench-gate`)\n\n%s, %s in all. Ratio: the service's cost in units of its reference, measured in the same run (median of the rounds); lower is better; a gate fails when it is over its threshold on two attempts in a row.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), took)
	b.WriteString("| workload | measured ratio | threshold | result | details |\n|---|---:|---:|---|---|\n")
	for _, r := range rows {
		res := "pass"
		if !r.Pass {
			res = "**FAIL**"
			if len(r.Failures) > 0 {
				res += ": " + strings.Join(r.Failures, "; ")
			}
		}
		if r.Attempts > 1 {
			res += fmt.Sprintf(" (attempt %d)", r.Attempts)
		}
		links := fmt.Sprintf("[%s](%s)", r.Details, filepath.ToSlash(filepath.Join(rel, r.Details)))
		if r.Plot != "" {
			links += fmt.Sprintf(", [latency plot](%s)", filepath.ToSlash(filepath.Join(rel, r.Plot)))
		}
		fmt.Fprintf(&b, "| %s | %.3f | %.2f | %s | %s |\n", strings.ReplaceAll(r.Workload, "|", "\\|"), r.Ratio, r.Threshold, res, links)
	}
	return b.String()
}

// benchLine is one result line of `go test -bench`.
type benchLine struct {
	name    string // without the -GOMAXPROCS suffix
	metrics map[string]float64
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

func parseBench(out string) []benchLine {
	var ls []benchLine
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		l := benchLine{name: procsSuffix.ReplaceAllString(f[0], ""), metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				l.metrics[f[i+1]] = v
			}
		}
		ls = append(ls, l)
	}
	return ls
}

// series is the values of metric of every line named name, in order (one
// per -count).
func series(ls []benchLine, name, metric string) []float64 {
	var xs []float64
	for _, l := range ls {
		if l.name == name {
			xs = append(xs, l.metrics[metric])
		}
	}
	return xs
}

func single(metric string, rounds []float64) measurement {
	return measurement{Ratios: map[string]float64{metric: benchkit.Round(benchkit.Median(rounds), 4)}, Rounds: map[string][]float64{metric: rounds}}
}

// saveOutput keeps a Go bench's output as the gate's details.
func saveOutput(e *env, name, out string) string {
	file := name + ".txt"
	_ = os.MkdirAll(e.path(""), 0o755)
	_ = os.WriteFile(e.path(file), []byte(out), 0o644)
	return file
}

// measureOrders: BenchmarkOrderHistory's two sub-benchmarks, 5 rounds of
// 20 requests each; each round's ratio is batched / n_plus_one.
func measureOrders(ctx context.Context, e *env) (measurement, error) {
	out, err := e.exec(ctx, "service/httpapi", "httpapi", "-test.run", "^$", "-test.bench", "^BenchmarkOrderHistory$",
		"-test.benchtime", "20x", "-test.count", "5")
	if err != nil {
		return measurement{}, err
	}
	ls := parseBench(out)
	b, n := series(ls, "BenchmarkOrderHistory/batched", "ns/op"), series(ls, "BenchmarkOrderHistory/n_plus_one", "ns/op")
	if len(b) == 0 || len(b) != len(n) {
		return measurement{}, fmt.Errorf("%d batched and %d n_plus_one results", len(b), len(n))
	}
	var rounds []float64
	for i := range b {
		rounds = append(rounds, benchkit.Round(b[i]/n[i], 4))
	}
	m := single("orders", rounds)
	m.Details = saveOutput(e, "orders", out)
	return m, nil
}

// measureTelemetry: BenchmarkTelemetryOverhead, 5 rounds of 60 workloads;
// each round's ratio is 1 + its overhead (the median of its iterations'
// on/off ratios, alternating which goes first).
func measureTelemetry(ctx context.Context, e *env) (measurement, error) {
	out, err := e.exec(ctx, "service/httpapi", "httpapi", "-test.run", "^$", "-test.bench", "^BenchmarkTelemetryOverhead$",
		"-test.benchtime", "60x", "-test.count", "5")
	if err != nil {
		return measurement{}, err
	}
	var rounds []float64
	for _, p := range series(parseBench(out), "BenchmarkTelemetryOverhead", "overhead-%") {
		rounds = append(rounds, benchkit.Round(1+p/100, 4))
	}
	if len(rounds) == 0 {
		return measurement{}, fmt.Errorf("no overhead-%% in the output")
	}
	m := single("telemetry", rounds)
	m.Details = saveOutput(e, "telemetry", out)
	return m, nil
}

// searchQueries are the searches the gate times: ones the trigram index
// serves (not the short term, which no index can).
var searchQueries = []string{"one_model_number", "rare_word", "two_words", "no_match"}

// measureSearch: BenchmarkProductSearch's indexed and unindexed searches,
// 3 rounds of 3 searches each; each round's ratio is the summed time of
// the queries with the index over without.
func measureSearch(ctx context.Context, e *env) (measurement, error) {
	out, err := e.exec(ctx, "service/postgres", "postgres", "-test.run", "^$",
		"-test.bench", "^BenchmarkProductSearch$/^(trigram_index|no_index)$/^("+strings.Join(searchQueries, "|")+")$",
		"-test.benchtime", "3x", "-test.count", "3")
	if err != nil {
		return measurement{}, err
	}
	ls := parseBench(out)
	var idx, none []float64
	for _, q := range searchQueries {
		a, b := series(ls, "BenchmarkProductSearch/trigram_index/"+q, "ns/op"), series(ls, "BenchmarkProductSearch/no_index/"+q, "ns/op")
		if len(a) == 0 || len(a) != len(b) {
			return measurement{}, fmt.Errorf("%s: %d indexed and %d unindexed results", q, len(a), len(b))
		}
		if idx == nil {
			idx, none = make([]float64, len(a)), make([]float64, len(a))
		}
		for i := range a {
			idx[i] += a[i]
			none[i] += b[i]
		}
	}
	var rounds []float64
	for i := range idx {
		rounds = append(rounds, benchkit.Round(idx[i]/none[i], 4))
	}
	m := single("search", rounds)
	m.Details = saveOutput(e, "search", out)
	return m, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// measureCheckout: bench-checkout, 3 rounds of both scenarios (3 s each)
// and their pgbench twins; its JSON has the median ratios.
func measureCheckout(ctx context.Context, e *env) (measurement, error) {
	m := measurement{Details: "checkout-bench.json", Plot: "checkout.html"}
	_, err := e.exec(ctx, ".", "checkout", "-shopd", e.shopd, "-server", e.server, "-duration", "3s", "-hot-stock", "500",
		"-rounds", "3", "-out", e.path(m.Details), "-plot", e.path(m.Plot))
	var rep struct {
		Ratios      map[string]float64   `json:"ratios"`
		RatioRounds map[string][]float64 `json:"ratioRounds"`
		Oversold    int                  `json:"oversold"`
		OK          bool                 `json:"ok"`
	}
	if rerr := readJSON(e.path(m.Details), &rep); rerr != nil {
		if err != nil {
			return m, err
		}
		return m, rerr
	}
	m.Ratios, m.Rounds = rep.Ratios, rep.RatioRounds
	if rep.Oversold > 0 {
		m.Failures = append(m.Failures, fmt.Sprintf("%d units oversold", rep.Oversold))
	}
	if !rep.OK || err != nil {
		m.Failures = append(m.Failures, "an invariant failed (see "+m.Details+")")
	}
	return m, nil
}

// measureImport: bench-import, 20,000 rows as JSON, 3 runs each of the
// API import and psql \copy back to back; each run's ratio is API / \copy.
func measureImport(ctx context.Context, e *env) (measurement, error) {
	m := measurement{Details: "import-bench.json"}
	if _, err := e.exec(ctx, ".", "import", "-shopd", e.shopd, "-server", e.server, "-sizes", "20000", "-formats", "json",
		"-largest-formats", "", "-runs", "3", "-out", e.path(m.Details)); err != nil {
		return m, err
	}
	var res struct {
		Cases []struct {
			RatioSamples []float64 `json:"ratioSamples"`
		} `json:"cases"`
	}
	if err := readJSON(e.path(m.Details), &res); err != nil {
		return m, err
	}
	if len(res.Cases) != 1 {
		return m, fmt.Errorf("%d cases, want 1", len(res.Cases))
	}
	s := single("import", res.Cases[0].RatioSamples)
	m.Ratios, m.Rounds = s.Ratios, s.Rounds
	return m, nil
}

// measureReports: bench-reports, 3 rounds of 3 s idle then 3 s while 6
// clients download a 20,000-order report; each round's ratio is the p99
// under load over the p99 idle, per endpoint.
func measureReports(ctx context.Context, e *env) (measurement, error) {
	m := measurement{Details: "reports-bench.json", Plot: "reports.html"}
	if _, err := e.exec(ctx, ".", "reports", "-shopd", e.shopd, "-server", e.server, "-orders", "20000", "-rounds", "3",
		"-duration", "3s", "-out", e.path(m.Details), "-plot", e.path(m.Plot)); err != nil {
		return m, err
	}
	var res struct {
		Rounds []struct {
			Idle map[string]struct {
				P99     float64 `json:"p99_ms"`
				Success float64 `json:"success"`
			} `json:"idle"`
			Load map[string]struct {
				P99     float64 `json:"p99_ms"`
				Success float64 `json:"success"`
			} `json:"load"`
		} `json:"rounds"`
	}
	if err := readJSON(e.path(m.Details), &res); err != nil {
		return m, err
	}
	m.Ratios, m.Rounds = map[string]float64{}, map[string][]float64{}
	for _, ep := range []string{"/health", "/products"} {
		for _, r := range res.Rounds {
			idle, load := r.Idle[ep], r.Load[ep]
			if idle.Success < 1 || load.Success < 1 {
				m.Failures = append(m.Failures, fmt.Sprintf("%s: failed requests (success %.3f idle, %.3f under load)", ep, idle.Success, load.Success))
			}
			if idle.P99 > 0 {
				m.Rounds[ep] = append(m.Rounds[ep], benchkit.Round(load.P99/idle.P99, 3))
			}
		}
		if len(m.Rounds[ep]) > 0 {
			m.Ratios[ep] = benchkit.Round(benchkit.Median(m.Rounds[ep]), 3)
		}
	}
	return m, nil
}
