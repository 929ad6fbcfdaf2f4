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
	"os"
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
	duration    time.Duration
	rate        int
	workers     int
	products    int
	maxLines    int
	hotStock    int
	stock       int
	dbMaxConns  int
	appName     string
	scenarios   string
	keep        bool
	skipPgbench bool
}

func main() {
	var o options
	flag.StringVar(&o.server, "server", benchkit.DefaultServer(), "PostgreSQL server URL on which to create the bench database")
	flag.StringVar(&o.url, "url", "", "base URL of a running service to drive instead of starting bin/shopd (needs -db)")
	flag.StringVar(&o.db, "db", "", "database URL of the service given by -url")
	flag.StringVar(&o.shopd, "shopd", "bin/shopd", "shopd binary to start")
	flag.StringVar(&o.pgbench, "pgbench", "pgbench", "pgbench binary")
	flag.StringVar(&o.out, "out", "bench/results/checkout.json", "where to write the JSON results")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "duration of each scenario (and of each pgbench run)")
	flag.IntVar(&o.rate, "rate", 0, "requests per second; 0 = as fast as -workers allow (needed for a fair ratio to pgbench)")
	flag.IntVar(&o.workers, "workers", 8, "concurrent requests (vegeta workers) and pgbench clients")
	flag.IntVar(&o.products, "products", 100, "catalogue size of the uniform scenario")
	flag.IntVar(&o.maxLines, "max-lines", 3, "largest cart of the uniform scenario (lines of distinct products)")
	flag.IntVar(&o.hotStock, "hot-stock", 1000, "initial stock of the hot product: low for the demand, so that it sells out early in the run")
	flag.IntVar(&o.stock, "stock", 1_000_000, "initial stock of each uniform product")
	flag.IntVar(&o.dbMaxConns, "db-max-conns", 20, "DB_MAX_CONNS of the started shopd")
	flag.StringVar(&o.appName, "app-name", "shoplab_bench", "application_name of the service's sessions (PGAPPNAME), to measure their CPU")
	flag.StringVar(&o.scenarios, "scenarios", "hot,uniform", "scenarios to run, comma-separated")
	flag.BoolVar(&o.keep, "keep", false, "keep the bench database")
	flag.BoolVar(&o.skipPgbench, "no-pgbench", false, "skip the pgbench comparison")
	flag.Parse()

	ctx := context.Background()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench-checkout:", err)
		os.Exit(1)
	}
}

// report is what the JSON file holds.
type report struct {
	StartedAt time.Time        `json:"startedAt"`
	Config    map[string]any   `json:"config"`
	Scenarios []scenarioResult `json:"scenarios"`
	OK        bool             `json:"ok"`
}

func run(ctx context.Context, o options, stdout io.Writer) error {
	rep := report{StartedAt: time.Now().UTC(), Config: map[string]any{
		"duration": o.duration.String(), "rate": o.rate, "workers": o.workers, "products": o.products,
		"maxLines": o.maxLines, "hotStock": o.hotStock, "stock": o.stock, "dbMaxConns": o.dbMaxConns,
	}}

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
	for _, name := range splitList(o.scenarios) {
		sc, err := newScenario(name, o)
		if err != nil {
			return err
		}
		res, err := runScenario(ctx, o, pool, base, svcPID, sc)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", name, err)
		}
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
			if !pg.InvariantsOK {
				res.Failures = append(res.Failures, pg.Failures...)
			}
		}
		res.OK = len(res.Failures) == 0
		rep.OK = rep.OK && res.OK
		rep.Scenarios = append(rep.Scenarios, res)
		printScenario(stdout, res)
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
