// Command reports is `make bench-reports`: does generating big order
// reports starve the rest of the service (seed problem 6)?
//
// It creates a fresh database on a PostgreSQL server, seeds the demo data
// plus one user with -orders orders (generated in SQL), starts bin/shopd
// on a free port, and measures GET /health and GET /products with vegeta
// in -rounds rounds of two phases: idle, then while -downloaders clients
// download that user's full report in a loop (honouring 429 +
// Retry-After). Alternating the phases within one run spreads the noise of
// a shared machine over both alike. It prints the latency percentiles of
// each phase over all rounds and their ratios, and shopd's resident memory
// before the reports and at its peak (VmRSS, VmHWM from /proc), and writes
// them to -out as JSON. The database is dropped at the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/service/postgres"
)

type options struct {
	shopd       string
	shopdEnv    string
	rounds      int
	server      string
	orders      int
	downloaders int
	format      string
	rate        int
	duration    time.Duration
	out         string
	plot        string
}

func main() { benchkit.Main("bench-reports", run) }

// run parses args (the flags below) and runs the bench, or, with
// -download-loop, the download clients' child process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench-reports", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.shopd, "shopd", "bin/shopd", "shopd binary to start")
	fs.StringVar(&o.shopdEnv, "shopd-env", "", "extra environment of shopd, comma-separated: REPORTS_MAX_CONNS=2,...")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of (idle phase, load phase): noise from outside hits both phases alike")
	fs.StringVar(&o.server, "server", benchkit.DefaultServer(), "PostgreSQL server to create the benchmark database on")
	fs.IntVar(&o.orders, "orders", 100000, "orders of the report user")
	fs.IntVar(&o.downloaders, "downloaders", 6, "clients downloading the full report in a loop under load")
	fs.StringVar(&o.format, "format", "csv", "report format to download: txt, csv, ndjson")
	fs.IntVar(&o.rate, "rate", 100, "requests per second to each of /health and /products")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured phase")
	fs.StringVar(&o.out, "out", "bench/results/reports.json", "where to write the results")
	fs.StringVar(&o.plot, "plot", "bench/results/reports.html", "where to write vegeta's HTML latency plot of every phase (empty: none)")
	loop := fs.String("download-loop", "", "internal: download this URL with -downloaders clients until SIGTERM, then print the counts")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *loop != "" {
		downloadLoop(ctx, *loop, o.downloaders, stdout, stderr)
		return nil
	}
	return bench(ctx, o, stdout)
}

// Latency is one endpoint's latency summary in one phase, in milliseconds.
type Latency struct {
	Requests uint64  `json:"requests"`
	Success  float64 `json:"success"`
	P50      float64 `json:"p50_ms"`
	P95      float64 `json:"p95_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// Round is one idle phase followed by one load phase.
type Round struct {
	Idle map[string]Latency `json:"idle"`
	Load map[string]Latency `json:"load"`
}

// Endpoint compares an endpoint idle and under report load, over all rounds.
type Endpoint struct {
	Idle     Latency `json:"idle"`
	Load     Latency `json:"load"`
	P50Ratio float64 `json:"p50_ratio"`
	P99Ratio float64 `json:"p99_ratio"`
}

// Results is what the benchmark writes to -out.
type Results struct {
	When        time.Time           `json:"when"`
	Machine     map[string]any      `json:"machine"`
	Orders      int                 `json:"orders"`
	Lines       int                 `json:"lines"`
	Format      string              `json:"format"`
	Downloaders int                 `json:"downloaders"`
	Rate        int                 `json:"rate_per_endpoint"`
	Duration    string              `json:"phase_duration"`
	Rounds      []Round             `json:"rounds"`
	ShopdEnv    string              `json:"shopd_env,omitempty"`
	Endpoints   map[string]Endpoint `json:"endpoints"`
	Memory      struct {
		BaselineRSSMB float64 `json:"baseline_rss_mb"`
		PeakRSSMB     float64 `json:"peak_rss_mb"`
		GrowthMB      float64 `json:"growth_mb"`
	} `json:"memory"`
	Reports struct {
		SingleSeconds float64 `json:"single_download_seconds"`
		SingleMB      float64 `json:"single_download_mb"`
		FirstByteMS   float64 `json:"single_download_first_byte_ms"`
		Completed     int64   `json:"completed_under_load"`
		Rejected      int64   `json:"rejected_429_under_load"`
		MB            float64 `json:"mb_under_load"`
	} `json:"reports"`
	Goals struct {
		P99Within2x      bool `json:"p99_within_2x"`
		MemoryUnder50MB  bool `json:"memory_growth_under_50mb"`
		NoFailedRequests bool `json:"no_failed_requests"`
	} `json:"goals"`
}

func bench(ctx context.Context, o options, stdout io.Writer) error {
	if _, ok := map[string]bool{"txt": true, "csv": true, "ndjson": true}[o.format]; !ok {
		return fmt.Errorf("-format %q: want txt, csv or ndjson", o.format)
	}
	res := &Results{When: time.Now().UTC(), Orders: o.orders, Format: o.format, Downloaders: o.downloaders,
		Rate: o.rate, Duration: o.duration.String(), Endpoints: map[string]Endpoint{}, ShopdEnv: o.shopdEnv,
		Machine: map[string]any{"cpus": runtime.NumCPU(), "go": runtime.Version(), "os": runtime.GOOS}}

	// A missing binary fails before any database work.
	if _, err := benchkit.ShopdPath(o.shopd); err != nil {
		return err
	}

	// A fresh migrated database with the demo data and the report user.
	db, err := benchkit.CreateDatabase(ctx, o.server, "reports")
	if err != nil {
		return err
	}
	defer db.Drop()
	dsn := db.URL
	userID, lines, err := seed(ctx, dsn, o.orders, stdout)
	if err != nil {
		return err
	}
	res.Lines = lines

	// shopd on a free port.
	var env []string
	if o.shopdEnv != "" {
		env = strings.Split(o.shopdEnv, ",")
	}
	srv, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{Bin: o.shopd, DatabaseURL: dsn, Env: env})
	if err != nil {
		return err
	}
	defer srv.Stop()
	base := srv.URL
	fmt.Fprintf(stdout, "shopd pid %d on %s; user with %d orders, %d lines\n", srv.PID, base, o.orders, lines)

	targets := map[string]string{"/health": base + "/health", "/products": base + "/products?page=1&limit=20"}
	attack(targets, o.rate, 2*time.Second, nil, nil, "") // warm-up, not measured
	var plot *benchkit.Plot
	if o.plot != "" {
		plot = benchkit.NewPlot(fmt.Sprintf("GET /health and GET /products, idle and while %d clients download reports (bench-reports)", o.downloaders))
	}
	before, err := srv.Memory()
	if err != nil {
		return err
	}
	res.Memory.BaselineRSSMB = mb(before.RSS)

	// One download alone: how big and how long, and warm caches.
	reportURL := fmt.Sprintf("%s/reports/orders/%s?format=%s", base, userID, o.format)
	start := time.Now()
	n, firstByte, status, err := download(ctx, reportURL)
	if err != nil || status != 200 {
		return fmt.Errorf("single download: status %d: %v", status, err)
	}
	res.Reports.SingleSeconds = time.Since(start).Seconds()
	res.Reports.SingleMB = float64(n) / (1 << 20)
	res.Reports.FirstByteMS = float64(firstByte.Microseconds()) / 1000
	fmt.Fprintf(stdout, "one %s report: %.1f MB in %.2f s (first byte after %.1f ms)\n", o.format, res.Reports.SingleMB, res.Reports.SingleSeconds, res.Reports.FirstByteMS)

	idle := map[string]*vegeta.Metrics{}
	load := map[string]*vegeta.Metrics{}
	for name := range targets {
		idle[name], load[name] = &vegeta.Metrics{}, &vegeta.Metrics{}
	}
	var completed, rejected, bytes atomic.Int64
	for i := 1; i <= o.rounds; i++ {
		fmt.Fprintf(stdout, "round %d/%d: %d req/s to each endpoint for %s idle, then for %s while %d clients download the report in a loop\n",
			i, o.rounds, o.rate, o.duration, o.duration, o.downloaders)
		var r Round
		r.Idle = attack(targets, o.rate, o.duration, idle, plot, "idle")
		dl, err := startDownloaders(reportURL, o.downloaders)
		if err != nil {
			return err
		}
		sleep(ctx, time.Second) // let the reports get going
		r.Load = attack(targets, o.rate, o.duration, load, plot, "reports")
		counts, err := dl.stop()
		if err != nil {
			return err
		}
		completed.Add(counts.Completed)
		rejected.Add(counts.Rejected)
		bytes.Add(counts.Bytes)
		res.Rounds = append(res.Rounds, r)
		for _, name := range []string{"/health", "/products"} {
			fmt.Fprintf(stdout, "  %-9s p99 %7.2f ms idle, %7.2f ms under load\n", name, r.Idle[name].P99, r.Load[name].P99)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	after, err := srv.Memory()
	if err != nil {
		return err
	}
	res.Memory.PeakRSSMB = mb(after.Peak)
	res.Memory.GrowthMB = res.Memory.PeakRSSMB - res.Memory.BaselineRSSMB
	res.Reports.Completed, res.Reports.Rejected = completed.Load(), rejected.Load()
	res.Reports.MB = float64(bytes.Load()) / (1 << 20)

	res.Goals.P99Within2x, res.Goals.NoFailedRequests = true, true
	for _, name := range []string{"/health", "/products"} {
		e := Endpoint{Idle: summarize(idle[name]), Load: summarize(load[name])}
		e.P50Ratio, e.P99Ratio = e.Load.P50/e.Idle.P50, e.Load.P99/e.Idle.P99
		res.Endpoints[name] = e
		res.Goals.P99Within2x = res.Goals.P99Within2x && e.P99Ratio <= 2
		res.Goals.NoFailedRequests = res.Goals.NoFailedRequests && e.Idle.Success == 1 && e.Load.Success == 1
	}
	res.Goals.MemoryUnder50MB = res.Memory.GrowthMB < 50
	printResults(stdout, res)
	if err := benchkit.WriteJSON(o.out, res); err != nil {
		return err
	}
	if plot != nil {
		if err := plot.WriteFile(o.plot); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "latency plot: %s\n", o.plot)
	}
	fmt.Fprintf(stdout, "results: %s\n", o.out)
	return nil
}

// mb is bytes in MB (MiB).
func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// seed loads the demo data and a user with n orders into the (migrated)
// database, and returns the user's id and line count.
func seed(ctx context.Context, dsn string, n int, stdout io.Writer) (string, int, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return "", 0, err
	}
	defer pool.Close()
	db := postgres.New(pool)
	if _, err := db.Seed(ctx); err != nil {
		return "", 0, err
	}
	start := time.Now()
	id, err := db.SeedBulkUser(ctx, "report.user@example.com", "Report User", n)
	if err != nil {
		return "", 0, err
	}
	var lines int
	err = pool.QueryRow(ctx, `SELECT count(*) FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.customer_id = $1`, id).Scan(&lines)
	fmt.Fprintf(stdout, "seeded a user with %d orders in %s\n", n, time.Since(start).Round(time.Millisecond))
	return id, lines, err
}

// attack sends rate requests per second to each target for d, all at
// once, and returns each target's latency summary. Each result is also
// added to acc[target] when acc is not nil, and to plot as the series
// "<phase> <target>".
func attack(targets map[string]string, rate int, d time.Duration, acc map[string]*vegeta.Metrics, plot *benchkit.Plot, phase string) map[string]Latency {
	out := map[string]Latency{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, u := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := vegeta.NewAttacker(vegeta.Timeout(10*time.Second), vegeta.KeepAlive(true))
			var m vegeta.Metrics
			for r := range a.Attack(vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: u}), vegeta.Rate{Freq: rate, Per: time.Second}, d, phase+" "+name) {
				m.Add(r)
				plot.Add(r)
				if acc != nil {
					acc[name].Add(r) // one goroutine per target: no sharing
				}
			}
			mu.Lock()
			out[name] = summarize(&m)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// summarize closes m and returns its latency summary in milliseconds.
func summarize(m *vegeta.Metrics) Latency {
	m.Close()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latency{Requests: m.Requests, Success: m.Success, P50: ms(m.Latencies.P50),
		P95: ms(m.Latencies.P95), P99: ms(m.Latencies.P99), Max: ms(m.Latencies.Max)}
}

// downloadCounts are what a download loop did.
type downloadCounts struct {
	Completed, Rejected, Bytes int64
}

// downloaders is a child process running downloadLoop: the download
// clients live in their own process, so that their reading and garbage
// collection do not delay vegeta's measurements in this one.
type downloaders struct {
	cmd *exec.Cmd
	out strings.Builder
}

func startDownloaders(url string, n int) (*downloaders, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	d := &downloaders{cmd: exec.Command(self, "-download-loop", url, "-downloaders", strconv.Itoa(n))}
	d.cmd.Stdout, d.cmd.Stderr = &d.out, os.Stderr
	return d, d.cmd.Start()
}

// stop ends the loop (SIGTERM: downloads in flight are abandoned) and
// returns its counts.
func (d *downloaders) stop() (downloadCounts, error) {
	var c downloadCounts
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		return c, fmt.Errorf("download loop: %w", err)
	}
	err := json.Unmarshal([]byte(d.out.String()), &c)
	return c, err
}

// downloadLoop runs n clients downloading u in a loop, honouring 429 and
// Retry-After, until ctx ends; then it prints their counts as JSON.
func downloadLoop(ctx context.Context, u string, n int, stdout, stderr io.Writer) {
	var completed, rejected, bytes atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n, _, status, err := download(ctx, u)
				switch {
				case status == 200 && err == nil:
					completed.Add(1)
					bytes.Add(n)
				case status == http.StatusTooManyRequests:
					rejected.Add(1)
					sleep(ctx, time.Duration(n)*time.Second) // n is Retry-After here
				case ctx.Err() == nil:
					fmt.Fprintf(stderr, "download: status %d: %v\n", status, err)
					sleep(ctx, time.Second)
				}
			}
		}()
	}
	wg.Wait()
	_ = json.NewEncoder(stdout).Encode(downloadCounts{completed.Load(), rejected.Load(), bytes.Load()})
}

// download GETs u and reads the whole body. It returns the bytes read and
// the time to the first byte; for a 429, the Retry-After in seconds.
func download(ctx context.Context, u string) (int64, time.Duration, int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusTooManyRequests {
		s, _ := strconv.Atoi(res.Header.Get("Retry-After"))
		_, _ = io.Copy(io.Discard, res.Body)
		return int64(max(s, 1)), 0, res.StatusCode, nil
	}
	var first [1]byte
	if _, err := io.ReadFull(res.Body, first[:]); err != nil {
		return 0, 0, res.StatusCode, err
	}
	firstByte := time.Since(start)
	n, err := io.Copy(io.Discard, res.Body)
	return n + 1, firstByte, res.StatusCode, err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func printResults(w io.Writer, r *Results) {
	fmt.Fprintf(w, "\nGET /health and GET /products at %d req/s each; %d rounds of %s idle then %s while %d clients download %d-order %s reports; all rounds together:\n\n",
		r.Rate, len(r.Rounds), r.Duration, r.Duration, r.Downloaders, r.Orders, r.Format)
	fmt.Fprintf(w, "| endpoint | phase | requests | success | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range []string{"/health", "/products"} {
		e := r.Endpoints[name]
		for _, p := range []struct {
			phase string
			l     Latency
		}{{"idle", e.Idle}, {"reports", e.Load}} {
			fmt.Fprintf(w, "| %s | %s | %d | %.1f%% | %.2f | %.2f | %.2f | %.2f |\n", name, p.phase, p.l.Requests, 100*p.l.Success, p.l.P50, p.l.P95, p.l.P99, p.l.Max)
		}
		fmt.Fprintf(w, "| %s | ratio | | | %.2fx | %.2fx | %.2fx | |\n", name, e.P50Ratio, e.Load.P95/e.Idle.P95, e.P99Ratio)
	}
	m := r.Memory
	fmt.Fprintf(w, "\nshopd memory: %.1f MB resident before reports, %.1f MB peak (VmHWM): growth %.1f MB\n", m.BaselineRSSMB, m.PeakRSSMB, m.GrowthMB)
	rp := r.Reports
	fmt.Fprintf(w, "reports under load: %d completed (%.0f MB), %d refused with 429\n", rp.Completed, rp.MB, rp.Rejected)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "goal p99 under load <= 2x idle: %s; memory growth < 50 MB: %s; no failed requests: %s\n",
		verdict(r.Goals.P99Within2x), verdict(r.Goals.MemoryUnder50MB), verdict(r.Goals.NoFailedRequests))
}
