// Command import is `make bench-import`: it measures POST
// /admin/products/import against the floor of loading the same rows with
// psql's \copy, in the same run, on a database of its own.
//
// It creates a fresh database on the server named by -server (default:
// BENCH_DATABASE_URL, else TEST_DATABASE_URL, else the local PostgreSQL),
// migrates it (the migrations `shopd migrate up` runs), starts `shopd
// serve` as a subprocess on a free port of 127.0.0.1 (internal/benchkit
// does both), and generates products in the
// original generator's shape ("Bulk Import Product i", price 10-509,
// inventory 10-109). For every size and format it empties the table and
// imports the rows through the API, then empties it and loads the same rows
// with `psql -c "\copy products(...) FROM ..."`, -runs times, and reports
// medians: API time, rows per second, \copy time, the ratio of the two
// (the median of each run's ratio: an API import and its \copy run back to
// back, so they share the load of a busy machine), and the service's peak
// memory growth: its peak resident memory during the import (VmHWM of
// /proc/<pid>/status, reset through /proc/<pid>/clear_refs before each
// import) minus its resident memory when idle after a warm-up import
// (VmRSS), the largest over the runs. psql's time includes starting psql
// and connecting (some 30-40 ms: most of it at 1,000 rows). It prints a
// table, writes the figures to -out as JSON, then stops shopd and drops
// the database. Every step is bounded by -timeout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/internal/benchkit"
)

// Goals of issue 5 for the largest import.
const (
	goalRatio       = 2.0 // API time / \copy time
	goalGrowthBytes = 100 << 20
)

func main() { benchkit.Main("bench-import", run) }

// run parses args (the flags below) and runs the bench within -timeout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		shopd   = fs.String("shopd", "bin/shopd", "shopd binary to start")
		server  = fs.String("server", benchkit.DefaultServer(), "PostgreSQL URL of a database on the server where the bench database is created")
		sizes   = fs.String("sizes", "1000,100000", "row counts to import, comma-separated")
		formats = fs.String("formats", "json", "body formats to import at every size: json, ndjson, csv")
		extra   = fs.String("largest-formats", "ndjson,csv,json-sku", "further formats measured at the largest size only (json-sku: every row has a SKU, the upsert path)")
		runs    = fs.Int("runs", 5, "runs per case; the table shows medians")
		out     = fs.String("out", "bench/results/import.json", "where to write the results")
		timeout = fs.Duration("timeout", 10*time.Minute, "bound on the whole run")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	return bench(ctx, benchConfig{shopd: *shopd, server: *server, sizes: *sizes, formats: *formats, extra: *extra,
		runs: *runs, out: *out}, stdout, stderr)
}

// benchConfig is run's flags.
type benchConfig struct {
	shopd, server, sizes, formats, extra string
	runs                                 int
	out                                  string
}

// benchCase is one size and format.
type benchCase struct {
	Rows   int    `json:"rows"`
	Format string `json:"format"`
	// Medians over the runs.
	APIMillis    float64   `json:"apiMillis"`
	RowsPerSec   float64   `json:"rowsPerSec"`
	CopyMillis   float64   `json:"copyMillis"`
	Ratio        float64   `json:"ratio"`                 // median of the runs' API/\copy ratios
	GrowthBytes  int64     `json:"peakMemoryGrowthBytes"` // peak RSS during the import minus the idle RSS, largest of the runs
	RatioSamples []float64 `json:"ratioSamples"`
	BodyBytes    int64     `json:"bodyBytes"`
	APISamples   []float64 `json:"apiMillisSamples"`
	CopySamples  []float64 `json:"copyMillisSamples"`
	GrowthSample []int64   `json:"peakMemoryGrowthBytesSamples"`
}

type results struct {
	Date          time.Time   `json:"date"`
	Command       string      `json:"command"`
	GoVersion     string      `json:"goVersion"`
	CPUs          int         `json:"cpus"`
	Postgres      string      `json:"postgres"`
	Runs          int         `json:"runs"`
	LoadAverage   []string    `json:"loadAverageAtStartAndEnd"` // /proc/loadavg: how busy the shared machine was
	BaselineRSS   int64       `json:"shopdBaselineRSSBytes"`
	HWMResettable bool        `json:"peakResetPerImport"`
	Cases         []benchCase `json:"cases"`
	Goal          struct {
		Rows        int     `json:"rows"`
		Ratio       float64 `json:"ratio"`
		RatioMet    bool    `json:"ratioWithin2x"`
		GrowthBytes int64   `json:"peakMemoryGrowthBytes"`
		GrowthMet   bool    `json:"growthUnder100MB"`
		Note        string  `json:"note"`
	} `json:"goal"`
}

func bench(ctx context.Context, cfg benchConfig, stdout, stderr io.Writer) error {
	shopdBin, server, sizeList, formatList, extraList, runs, out := cfg.shopd, cfg.server, cfg.sizes, cfg.formats, cfg.extra, cfg.runs, cfg.out
	shopdBin, err := benchkit.ShopdPath(shopdBin)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("psql"); err != nil {
		return fmt.Errorf("psql is needed for the \\copy floor: %w", err)
	}
	var sizes []int
	for _, s := range strings.Split(sizeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad size %q", s)
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	largest := sizes[len(sizes)-1]

	// A fresh migrated database, dropped at the end.
	db, err := benchkit.CreateDatabase(ctx, server, "import")
	if err != nil {
		return err
	}
	defer db.Drop()
	dsn := db.URL
	tmp, err := os.MkdirTemp("", "bench-import-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// /admin/products/import open: no token, not production.
	srv, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{Bin: shopdBin, DatabaseURL: dsn,
		Env: []string{"ADMIN_TOKEN=", "APP_ENV=development"}, LogPath: filepath.Join(tmp, "shopd.log")})
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Fprintf(stderr, "bench-import: shopd pid %d on %s, database %s, log %s\n", srv.PID, srv.URL, benchkit.Redact(dsn), srv.LogPath)

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	res := results{Date: time.Now().UTC(), Command: "make bench-import", GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Runs: runs}
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&res.Postgres)
	res.LoadAverage = append(res.LoadAverage, loadAvg())

	// Warm up: the pool's connections, statement caches, the heap.
	warm := genRows(100)
	warmBody := filepath.Join(tmp, "warm.json")
	if err := writeBody(warmBody, "json", warm); err != nil {
		return err
	}
	if _, err := importFile(ctx, srv, warmBody, "json", 100, 0); err != nil {
		return fmt.Errorf("warm-up import: %w", err)
	}
	time.Sleep(time.Second)
	idle, err := srv.Memory()
	if err != nil {
		return err
	}
	res.BaselineRSS = idle.RSS
	res.HWMResettable = srv.ResetPeak() == nil

	var cases []benchCase
	for _, n := range sizes {
		fs := strings.Split(formatList, ",")
		if n == largest && extraList != "" {
			fs = append(fs, strings.Split(extraList, ",")...)
		}
		rows := genRows(n)
		for _, f := range fs {
			f = strings.TrimSpace(f)
			// The \copy floor loads the same columns: with the SKU for json-sku.
			copyFormat := "copy"
			if f == "json-sku" {
				copyFormat = "copy-sku"
			}
			copyFile := filepath.Join(tmp, fmt.Sprintf("rows-%d.%s", n, copyFormat))
			if err := writeBody(copyFile, copyFormat, rows); err != nil {
				return err
			}
			bodyFile := filepath.Join(tmp, fmt.Sprintf("body-%d.%s", n, f))
			if err := writeBody(bodyFile, f, rows); err != nil {
				return err
			}
			st, _ := os.Stat(bodyFile)
			c := benchCase{Rows: n, Format: f, BodyBytes: st.Size()}
			for r := 0; r < runs; r++ {
				if err := truncate(ctx, conn); err != nil {
					return err
				}
				m, err := importFile(ctx, srv, bodyFile, f, n, res.BaselineRSS)
				if err != nil {
					return fmt.Errorf("%d rows %s: %w", n, f, err)
				}
				if err := expectCount(ctx, conn, n); err != nil {
					return fmt.Errorf("after the API import: %w", err)
				}
				if err := truncate(ctx, conn); err != nil {
					return err
				}
				cd, err := psqlCopy(ctx, dsn, copyFile, copyFormat == "copy-sku")
				if err != nil {
					return err
				}
				if err := expectCount(ctx, conn, n); err != nil {
					return fmt.Errorf("after \\copy: %w", err)
				}
				c.APISamples = append(c.APISamples, benchkit.Millis(m.elapsed))
				c.CopySamples = append(c.CopySamples, benchkit.Millis(cd))
				c.GrowthSample = append(c.GrowthSample, m.growth)
				c.RatioSamples = append(c.RatioSamples, round2(benchkit.Millis(m.elapsed)/benchkit.Millis(cd)))
				fmt.Fprintf(stderr, "bench-import: %7d rows %-6s run %d: API %8.1f ms, \\copy %8.1f ms, peak growth %5.1f MB\n",
					n, f, r+1, benchkit.Millis(m.elapsed), benchkit.Millis(cd), float64(m.growth)/(1<<20))
			}
			c.APIMillis, c.CopyMillis = benchkit.Median(c.APISamples), benchkit.Median(c.CopySamples)
			c.RowsPerSec = float64(n) / (c.APIMillis / 1000)
			c.Ratio = benchkit.Median(c.RatioSamples)
			c.GrowthBytes = slices.Max(c.GrowthSample)
			cases = append(cases, c)
		}
	}
	res.Cases = cases
	res.LoadAverage = append(res.LoadAverage, loadAvg())
	for _, c := range cases {
		if c.Rows == largest && c.Format == "json" {
			res.Goal.Rows, res.Goal.Ratio, res.Goal.GrowthBytes = c.Rows, round2(c.Ratio), c.GrowthBytes
			res.Goal.RatioMet = c.Ratio <= goalRatio
			res.Goal.GrowthMet = c.GrowthBytes < goalGrowthBytes
		}
	}
	res.Goal.Note = "goal of issue 5 for the original's JSON body at the largest size: API time within 2x of \\copy measured in the same run, peak memory growth under 100 MB"

	printTable(stdout, res)
	if out != "" {
		if err := benchkit.WriteJSON(out, res); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench-import: wrote %s\n", out)
	}
	return nil
}

func printTable(w io.Writer, res results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rows\tformat\tAPI time\trows/s\t\\copy time\tratio\tpeak mem growth\t")
	for _, c := range res.Cases {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%.2fx\t%.1f MB\t\n", c.Rows, c.Format, benchkit.FormatMillis(c.APIMillis),
			benchkit.Thousands(int64(math.Round(c.RowsPerSec))), benchkit.FormatMillis(c.CopyMillis), c.Ratio, float64(c.GrowthBytes)/(1<<20))
	}
	tw.Flush()
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "\nmedians of %d runs (ratio: median of each run's API/\\copy); shopd idle RSS %.1f MB; load average %s\n",
		res.Runs, float64(res.BaselineRSS)/(1<<20), strings.Join(res.LoadAverage, " -> "))
	if res.Goal.Rows > 0 {
		fmt.Fprintf(w, "goal at %d rows (json): ratio %.2fx <= 2x %s; peak memory growth %.1f MB < 100 MB %s\n",
			res.Goal.Rows, res.Goal.Ratio, verdict(res.Goal.RatioMet), float64(res.Goal.GrowthBytes)/(1<<20), verdict(res.Goal.GrowthMet))
	}
}

// product is one generated row, in the original generator's shape.
type product struct {
	name, description, sku string
	price, inventory       int
}

func genRows(n int) []product {
	rng := mrand.New(mrand.NewPCG(5, 1000))
	rows := make([]product, n)
	for i := range rows {
		rows[i] = product{
			name:        fmt.Sprintf("Bulk Import Product %d", i+1),
			description: fmt.Sprintf("Description for bulk import product %d", i+1),
			price:       10 + rng.IntN(500),
			inventory:   10 + rng.IntN(100),
			sku:         fmt.Sprintf("BULK-%d", i+1),
		}
	}
	return rows
}

// writeBody writes rows as an import body (json, ndjson, csv with a
// header; json-sku: json with a SKU per row, which takes the import's
// upsert path) or as the headerless CSV that \copy loads ("copy", and
// "copy-sku" with the SKU column).
func writeBody(path, format string, rows []product) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	type row struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Price       int    `json:"price"`
		Inventory   int    `json:"inventory"`
		SKU         string `json:"sku,omitempty"`
	}
	obj := func(p product) string {
		r := row{Name: p.name, Description: p.description, Price: p.price, Inventory: p.inventory}
		if format == "json-sku" {
			r.SKU = p.sku
		}
		b, _ := json.Marshal(r) // strings and ints: cannot fail
		return string(b)
	}
	switch format {
	case "json", "json-sku":
		w.WriteString(`{"products":[`)
		for i, p := range rows {
			if i > 0 {
				w.WriteString(",")
			}
			w.WriteString(obj(p))
		}
		w.WriteString("]}")
	case "ndjson":
		for _, p := range rows {
			w.WriteString(obj(p) + "\n")
		}
	case "csv", "copy", "copy-sku":
		cw := csv.NewWriter(w)
		if format == "csv" {
			_ = cw.Write([]string{"name", "description", "price", "inventory"})
		}
		for _, p := range rows {
			rec := []string{p.name, p.description, strconv.Itoa(p.price), strconv.Itoa(p.inventory)}
			if format == "copy-sku" {
				rec = append(rec, p.sku)
			}
			_ = cw.Write(rec)
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown format %q", format)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

var contentTypes = map[string]string{"json": "application/json", "json-sku": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}

// client posts the imports: 100,000 rows take seconds, not minutes.
var client = &http.Client{Timeout: 5 * time.Minute}

type measure struct {
	elapsed time.Duration
	growth  int64
}

// importFile posts the body in path to srv and checks the 201 and its
// count. The peak RSS is reset first, so the peak is this import's own;
// growth is it minus baseline, the idle service's RSS.
func importFile(ctx context.Context, srv *benchkit.Shopd, path, format string, want int, baseline int64) (measure, error) {
	f, err := os.Open(path)
	if err != nil {
		return measure{}, err
	}
	defer f.Close()
	st, _ := f.Stat()
	_ = srv.ResetPeak()
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/admin/products/import", f)
	if err != nil {
		return measure{}, err
	}
	req.ContentLength = st.Size()
	req.Header.Set("Content-Type", contentTypes[format])
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return measure{}, err
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	elapsed := time.Since(start)
	mem, err := srv.Memory()
	if err != nil {
		return measure{}, err
	}
	var a struct{ Count int }
	if res.StatusCode != 201 || json.Unmarshal(b, &a) != nil || a.Count != want {
		return measure{}, fmt.Errorf("import answered %d %s, want 201 with count %d", res.StatusCode, trim(b), want)
	}
	return measure{elapsed: elapsed, growth: max(0, mem.Peak-baseline)}, nil
}

func psqlCopy(ctx context.Context, dsn, file string, withSKU bool) (time.Duration, error) {
	cols := "name, description, price, inventory"
	if withSKU {
		cols += ", sku"
	}
	cmd := exec.CommandContext(ctx, "psql", dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
		fmt.Sprintf(`\copy products(%s) FROM '%s' WITH (FORMAT csv)`, cols, file))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("psql \\copy: %v: %s", err, stderr.String())
	}
	return time.Since(start), nil
}

func truncate(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, "TRUNCATE products CASCADE")
	return err
}

func expectCount(ctx context.Context, conn *pgx.Conn, want int) error {
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n); err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("%d products, want %d", n, want)
	}
	return nil
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func round2(x float64) float64 { return benchkit.Round(x, 2) }

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
