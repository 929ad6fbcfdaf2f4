// Command scaling is `make bench-scaling`: it measures the figures of
// docs/scaling.md's capacity model on this machine and prints them as the
// doc's tables.
//
//  1. CPU per checkout. It runs bench-checkout (-checkout, the built
//     bench/checkout program) with the uniform and hot scenarios, the hot
//     product's stock high enough never to sell out, for -rounds rounds,
//     and reads, per scenario and round, the checkouts (201 answers), the
//     CPU seconds of the shopd process and of the PostgreSQL backends
//     serving it (/proc/<pid>/stat, sampled by bench-checkout), and the
//     same for pgbench running the same transaction. checkouts/s per core
//     = checkouts / CPU seconds. The hot scenario's orders/s is the hot
//     row's serial throughput, and its inverse the row lock's hold time.
//  2. Flash sale. With pgbench only, on a database of its own: one
//     product's stock split across N rows (-slots, e.g. 1,4,16), each
//     checkout taking one row with stock (SKIP LOCKED from a random start,
//     then a waiting pick as the fallback), against the same script on
//     -flash-products products of one row each, in one run per round. It
//     checks that the units sold equal the stock consumed, that no row went
//     below zero, and, in a last run with little stock, that the sale
//     sells exactly its stock and then refuses.
//  3. Connections. The server's max_connections and
//     superuser_reserved_connections, for the connection budget.
//
// It writes everything to -out as JSON.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/internal/benchkit"
)

type options struct {
	server        string
	shopd         string
	checkout      string
	pgbench       string
	out           string
	rounds        int
	duration      time.Duration
	workers       int
	slots         []int
	flashProducts int
	skipCheckout  bool
	skipFlash     bool
	dedicated     bool
	pgBin         string
}

func main() { benchkit.Main("bench-scaling", run) }

// run parses args (the flags below) and runs the measurements; -h prints
// them.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	var slots string
	fs := flag.NewFlagSet("bench-scaling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", benchkit.DefaultServer(), "PostgreSQL server URL on which to create the bench databases")
	fs.StringVar(&o.shopd, "shopd", "bin/shopd", "shopd binary, passed to bench-checkout")
	fs.StringVar(&o.checkout, "checkout", "bin/bench-checkout", "bench-checkout binary (go build -o bin/bench-checkout ./bench/checkout)")
	fs.StringVar(&o.pgbench, "pgbench", "pgbench", "pgbench binary")
	fs.StringVar(&o.out, "out", "bench/results/scaling.json", "where to write the JSON results")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of every measurement; tables give the median and the spread (min-max)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "duration of each load run")
	fs.IntVar(&o.workers, "workers", 8, "concurrent requests (vegeta workers) and pgbench clients")
	fs.StringVar(&slots, "slots", "1,4,16", "flash sale: rows the hot product's stock is split across, comma-separated")
	fs.IntVar(&o.flashProducts, "flash-products", 100, "flash sale: products of the many-products reference run (one row each)")
	fs.BoolVar(&o.dedicated, "dedicated", true, "run on a PostgreSQL cluster of its own (initdb in a temporary directory, a free port; as the postgres user when root), so that all its CPU time is the bench's; false: on -server")
	fs.StringVar(&o.pgBin, "pg-bin", pgBinDir, "directory of initdb and pg_ctl, for -dedicated")
	fs.BoolVar(&o.skipCheckout, "no-checkout", false, "skip the CPU-per-checkout measurement")
	fs.BoolVar(&o.skipFlash, "no-flash", false, "skip the flash-sale measurement")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.rounds < 1 || o.workers < 1 || o.duration < time.Second {
		return errors.New("-rounds and -workers must be at least 1, -duration at least 1s")
	}
	for _, s := range strings.Split(slots, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("-slots: %q is not a row count from 1 to 1000", s)
		}
		o.slots = append(o.slots, n)
	}
	if o.flashProducts < 2 {
		return errors.New("-flash-products must be at least 2")
	}
	return measure(ctx, o, stdout)
}

// report is what the JSON file holds.
type report struct {
	StartedAt time.Time      `json:"startedAt"`
	Config    map[string]any `json:"config"`
	// Server is "dedicated" (a cluster of the bench's own) or the -server
	// URL.
	Server      string        `json:"server"`
	Connections connections   `json:"connections"`
	Checkout    *checkoutPart `json:"checkout,omitempty"`
	Flash       *flashPart    `json:"flash,omitempty"`
}

// connections is the server's connection budget.
type connections struct {
	MaxConnections      int `json:"maxConnections"`
	SuperuserReserved   int `json:"superuserReservedConnections"`
	AvailableToNonSuper int `json:"availableToNonSuperusers"`
}

func measure(ctx context.Context, o options, stdout io.Writer) error {
	rep := report{StartedAt: time.Now().UTC(), Config: map[string]any{
		"rounds": o.rounds, "duration": o.duration.String(), "workers": o.workers,
		"slots": o.slots, "flashProducts": o.flashProducts,
	}}
	pmPID := 0
	if o.dedicated {
		c, err := startCluster(ctx, o.pgBin)
		if err != nil {
			return err
		}
		defer c.stop()
		o.server, pmPID = c.URL, c.pmPID
		rep.Server = "dedicated"
		fmt.Fprintf(stdout, "dedicated PostgreSQL cluster on 127.0.0.1:%d (postmaster pid %d)\n", c.port, c.pmPID)
	} else {
		rep.Server = benchkit.Redact(o.server)
	}
	conns, err := serverConnections(ctx, o.server)
	if err != nil {
		return err
	}
	rep.Connections = conns
	fmt.Fprintf(stdout, "server: max_connections %d, superuser_reserved_connections %d\n\n",
		conns.MaxConnections, conns.SuperuserReserved)

	if !o.skipCheckout {
		part, err := measureCheckout(ctx, o, pmPID, stdout)
		if err != nil {
			return fmt.Errorf("checkout: %w", err)
		}
		rep.Checkout = part
		if o.dedicated {
			w, err := measureWAL(ctx, o, part.uniformScript)
			if err != nil {
				return fmt.Errorf("WAL per checkout: %w", err)
			}
			part.WAL = w
		}
	}
	if !o.skipFlash {
		part, err := measureFlash(ctx, o, stdout)
		if err != nil {
			return fmt.Errorf("flash sale: %w", err)
		}
		rep.Flash = part
	}
	if rep.Checkout != nil {
		printCheckout(stdout, rep.Checkout)
		if rep.Checkout.WAL != nil {
			printWAL(stdout, rep.Checkout.WAL)
		}
	}
	if rep.Flash != nil {
		printFlash(stdout, rep.Flash)
	}
	if err := benchkit.WriteJSON(o.out, rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresults written to %s\n", o.out)
	if rep.Flash != nil && !rep.Flash.OK {
		return errors.New("flash sale: invariant check failed (see above)")
	}
	return nil
}

func serverConnections(ctx context.Context, server string) (connections, error) {
	var c connections
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return c, fmt.Errorf("connect to %s: %w", benchkit.Redact(server), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int`).
		Scan(&c.MaxConnections, &c.SuperuserReserved)
	c.AvailableToNonSuper = c.MaxConnections - c.SuperuserReserved
	return c, err
}

// spread is the median and the range of a figure over the rounds.
type spread struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Rounds []float64 `json:"rounds,omitempty"`
}

func newSpread(xs []float64, decimals int) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := spread{Rounds: make([]float64, len(xs))}
	for i, x := range xs {
		s.Rounds[i] = benchkit.Round(x, decimals)
		if i == 0 || x < s.Min {
			s.Min = x
		}
		if i == 0 || x > s.Max {
			s.Max = x
		}
	}
	s.Median = benchkit.Round(benchkit.Median(xs), decimals)
	s.Min, s.Max = benchkit.Round(s.Min, decimals), benchkit.Round(s.Max, decimals)
	return s
}

// String is "median (min-max)".
func (s spread) String() string {
	if len(s.Rounds) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%s-%s)", num(s.Median), num(s.Min), num(s.Max))
}

func num(x float64) string {
	switch {
	case x >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	default:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
}
