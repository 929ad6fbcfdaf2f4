// Command checkout is `make bench-checkout`: it load-tests POST
// /orders/checkout with vegeta over two scenarios, checks that no stock was
// oversold, and compares the service's throughput with pgbench running the
// same SQL transaction at the same concurrency.
//
// By default it creates a fresh database on the PostgreSQL server named by
// -server (or $BENCH_DATABASE_URL, $TEST_DATABASE_URL), migrates it, creates
// its own users and products, starts bin/shopd on a free port against it,
// runs the scenarios, runs pgbench, prints a table, writes
// bench/results/checkout.json and drops the database. With -url it drives a
// service that is already running instead; -db must then name that service's
// database (the bench adds its own products and users there, and a
// bench_catalog table that it drops at the end).
//
// Scenarios:
//
//   - hot: every request buys 1 unit of one low-stock product (-hot-stock):
//     a few succeed, then every buyer must get a clean 409.
//   - uniform: carts of 1 to -max-lines distinct products drawn uniformly
//     from a catalogue of -products products with ample stock.
//
// After each scenario it verifies, in the database, that no product of the
// scenario has negative stock, that for every product initial stock minus
// final stock equals the units in orders, and that the number of orders
// equals the number of 201 answers; it exits non-zero when any check fails
// or when the service answered a 500.
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/internal/benchkit"
)

type options struct {
	server      string
	url         string
	db          string
	shopd       string
	pgbench     string
	out         string
	plot        string
	duration    time.Duration
	rate        int
	workers     int
	products    int
	maxLines    int
	hotStock    int
	stock       int
	dbMaxConns  int
	rounds      int
	appName     string
	scenarios   string
	keep        bool
	skipPgbench bool
}

func main() { benchkit.Main("bench-checkout", run) }

// run parses args (the flags below) and runs the bench; -h prints them.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench-checkout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", benchkit.DefaultServer(), "PostgreSQL server URL on which to create the bench database")
	fs.StringVar(&o.url, "url", "", "base URL of a running service to drive instead of starting bin/shopd (needs -db)")
	fs.StringVar(&o.db, "db", "", "database URL of the service given by -url")
	fs.StringVar(&o.shopd, "shopd", "bin/shopd", "shopd binary to start")
	fs.StringVar(&o.pgbench, "pgbench", "pgbench", "pgbench binary")
	fs.StringVar(&o.out, "out", "bench/results/checkout.json", "where to write the JSON results")
	fs.StringVar(&o.plot, "plot", "bench/results/checkout.html", "where to write vegeta's HTML latency plot of the service's requests (empty: none)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "duration of each scenario (and of each pgbench run)")
	fs.IntVar(&o.rate, "rate", 0, "requests per second; 0 = as fast as -workers allow (needed for a fair ratio to pgbench)")
	fs.IntVar(&o.workers, "workers", 8, "concurrent requests (vegeta workers) and pgbench clients")
	fs.IntVar(&o.products, "products", 100, "catalogue size of the uniform scenario")
	fs.IntVar(&o.maxLines, "max-lines", 3, "largest cart of the uniform scenario (lines of distinct products)")
	fs.IntVar(&o.hotStock, "hot-stock", 1000, "initial stock of the hot product: low for the demand, so that it sells out early in the run")
	fs.IntVar(&o.stock, "stock", 1_000_000, "initial stock of each uniform product")
	fs.IntVar(&o.dbMaxConns, "db-max-conns", 20, "DB_MAX_CONNS of the started shopd")
	fs.IntVar(&o.rounds, "rounds", 1, "rounds of (every scenario, then its pgbench twin); ratios are the median of the rounds'")
	fs.StringVar(&o.appName, "app-name", "shoplab_bench", "application_name of the service's sessions (PGAPPNAME), to measure their CPU")
	fs.StringVar(&o.scenarios, "scenarios", "hot,uniform", "scenarios to run, comma-separated")
	fs.BoolVar(&o.keep, "keep", false, "keep the bench database")
	fs.BoolVar(&o.skipPgbench, "no-pgbench", false, "skip the pgbench comparison")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	return bench(ctx, o, stdout)
}

// report is what the JSON file holds.
type report struct {
	StartedAt time.Time        `json:"startedAt"`
	Config    map[string]any   `json:"config"`
	Scenarios []scenarioResult `json:"scenarios"`
	// Ratios are, per scenario, the median over the rounds of the
	// service's time per checkout relative to pgbench's running the same
	// transaction (uniform: pgbench tps / service req/s; hot: pgbench's
	// orders/s while stock lasted / the service's).
	Ratios      map[string]float64   `json:"ratios,omitempty"`
	RatioRounds map[string][]float64 `json:"ratioRounds,omitempty"`
	Oversold    int                  `json:"oversold"`
	OK          bool                 `json:"ok"`
}

func bench(ctx context.Context, o options, stdout io.Writer) error {
	rep := report{StartedAt: time.Now().UTC(), Config: map[string]any{
		"duration": o.duration.String(), "rate": o.rate, "workers": o.workers, "products": o.products,
		"maxLines": o.maxLines, "hotStock": o.hotStock, "stock": o.stock, "dbMaxConns": o.dbMaxConns, "rounds": o.rounds,
	}, Ratios: map[string]float64{}, RatioRounds: map[string][]float64{}}

	dsn := o.db
	if o.url == "" {
		// A missing binary fails before any database work.
		if _, err := benchkit.ShopdPath(o.shopd); err != nil {
			return err
		}
		db, err := benchkit.CreateDatabase(ctx, o.server, "checkout")
		if err != nil {
			return err
		}
		dsn = db.URL
		if o.keep {
			fmt.Fprintf(stdout, "bench database: %s (kept)\n", benchkit.Redact(dsn))
		} else {
			defer db.Drop()
		}
	} else if dsn == "" {
		return errors.New("-url needs -db, the service's database URL, to create data and verify the invariants")
	}

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()

	base, svcPID := o.url, 0
	if base == "" {
		srv, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{Bin: o.shopd, DatabaseURL: dsn, Env: []string{
			"DB_MAX_CONNS=" + strconv.Itoa(o.dbMaxConns),
			"PGAPPNAME=" + o.appName,
		}})
		if err != nil {
			return err
		}
		defer srv.Stop()
		base, svcPID = srv.URL, srv.PID
		fmt.Fprintf(stdout, "shopd started at %s (DB_MAX_CONNS=%d)\n", base, o.dbMaxConns)
	}
	if err := createCatalogTable(ctx, pool); err != nil {
		return err
	}
	defer dropCatalogTable(context.WithoutCancel(ctx), pool, o.url != "")

	fmt.Fprintf(stdout, "checkout bench: %s per scenario, rate %s, %d workers\n\n", o.duration, rateText(o.rate), o.workers)
	rep.OK = true
	var plot *benchkit.Plot
	if o.plot != "" {
		plot = benchkit.NewPlot("POST /orders/checkout (bench-checkout)")
	}
	for round := 1; round <= o.rounds; round++ {
		for _, name := range splitList(o.scenarios) {
			sc, err := newScenario(name, o)
			if err != nil {
				return err
			}
			res, err := runScenario(ctx, o, pool, base, svcPID, sc, plot)
			if err != nil {
				return fmt.Errorf("scenario %s: %w", name, err)
			}
			res.Round = round
			if !o.skipPgbench {
				pg, err := runPgbench(ctx, o, pool, dsn, sc)
				if err != nil {
					return fmt.Errorf("pgbench %s: %w", name, err)
				}
				res.Pgbench = pg
				if pg.TPS > 0 {
					res.RatioToPgbench = res.RequestsPerSec / pg.TPS
				}
				if pg.OrderRate > 0 {
					res.OrderRateRatio = res.OrderRate / pg.OrderRate
				}
				if r := floorRatio(res); r > 0 {
					rep.RatioRounds[name] = append(rep.RatioRounds[name], benchkit.Round(r, 3))
				}
				if !pg.InvariantsOK {
					res.Failures = append(res.Failures, pg.Failures...)
				}
			}
			res.OK = len(res.Failures) == 0
			rep.OK = rep.OK && res.OK
			rep.Oversold += res.Oversold
			rep.Scenarios = append(rep.Scenarios, res)
			printScenario(stdout, res)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	for name, rs := range rep.RatioRounds {
		rep.Ratios[name] = benchkit.Round(benchkit.Median(rs), 3)
		fmt.Fprintf(stdout, "%s: time per checkout / pgbench's, median of %d rounds: %.2fx (rounds %v)\n", name, len(rs), rep.Ratios[name], rs)
	}
	if plot != nil {
		if err := plot.WriteFile(o.plot); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "latency plot written to %s\n", o.plot)
	}
	printTable(stdout, rep.Scenarios)

	if err := benchkit.WriteJSON(o.out, rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresults written to %s\n", o.out)
	if !rep.OK {
		return errors.New("invariant check failed (see above)")
	}
	fmt.Fprintln(stdout, "invariants hold: no stock below zero, stock consumed = units sold, one order per 201")
	return nil
}

// floorRatio is how many times pgbench's time per checkout the service
// takes in one round: for a scenario whose stock ran out (hot), orders
// per second while stock lasted, pgbench's over the service's; otherwise
// transactions per second, pgbench's over the service's requests per second.
func floorRatio(r scenarioResult) float64 {
	p := r.Pgbench
	if p == nil {
		return 0
	}
	if r.SelloutSeconds > 0 || p.SoldOut {
		if r.OrderRate > 0 {
			return p.OrderRate / r.OrderRate
		}
		return 0
	}
	if r.RequestsPerSec > 0 {
		return p.TPS / r.RequestsPerSec
	}
	return 0
}

func rateText(r int) string {
	if r <= 0 {
		return "unthrottled"
	}
	return fmt.Sprintf("%d/s", r)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lookPath resolves a binary the way exec does, with a clear error.
func lookPath(bin string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("%s not found (%w)", bin, err)
	}
	return p, nil
}
