// Command pgbouncer is `make bench-pgbouncer`: checkout throughput of one
// and two shopd instances on one database, directly and through a real
// pgbouncer in transaction pooling mode (docs/pgbouncer.md), in one run.
//
// It creates a fresh database (1,000 buyers, 100 products with ample
// stock), starts one pgbouncer in front of the server (internal/
// pgbouncertest), and for -rounds rounds runs each configuration for
// -duration: shopd x1 direct (pgx's default exec mode, cached prepared
// statements), shopd x1 direct with default_query_exec_mode=exec (the mode
// PgBouncer needs, without PgBouncer: what the mode costs), shopd x1
// through pgbouncer, x2 direct, x2 through pgbouncer. -workers clients send
// one-line carts round robin over the instances as fast as they are
// answered, while the PostgreSQL backends connected to the database are
// counted (the server connections each configuration needs). Configurations alternate within a round so that the noise of a
// shared machine spreads over all of them. It prints each run's
// checkouts per second and latency percentiles and the median of the
// rounds, fails when any answer is not a 201, and drops its database.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/pgbouncertest"
)

func main() { benchkit.Main("bench-pgbouncer", run) }

// setup is one configuration of the bench.
type setup struct {
	name      string
	instances int
	bouncer   bool
	execMode  bool // direct, but with default_query_exec_mode=exec
}

var setups = []setup{
	{name: "direct x1", instances: 1},
	{name: "direct exec x1", instances: 1, execMode: true},
	{name: "pgbouncer x1", instances: 1, bouncer: true},
	{name: "direct x2", instances: 2},
	{name: "pgbouncer x2", instances: 2, bouncer: true},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-pgbouncer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	shopd := fs.String("shopd", "bin/shopd", "shopd binary to start")
	server := fs.String("server", benchkit.DefaultServer(), "PostgreSQL server URL on which to create the bench database")
	duration := fs.Duration("duration", 8*time.Second, "duration of each configuration's run")
	rounds := fs.Int("rounds", 3, "rounds of every configuration; the summary is their median")
	workers := fs.Int("workers", 16, "concurrent clients")
	maxConns := fs.Int("db-max-conns", 10, "DB_MAX_CONNS of each shopd")
	poolSize := fs.Int("pool-size", 20, "pgbouncer's default_pool_size (server connections)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bin, err := benchkit.ShopdPath(*shopd)
	if err != nil {
		return err
	}
	db, err := benchkit.CreateDatabase(ctx, *server, "pgbouncer")
	if err != nil {
		return err
	}
	defer db.Drop()
	users, products, err := seed(ctx, db.URL)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench-pgbouncer: %d workers, %s per run, %d rounds, DB_MAX_CONNS=%d, pgbouncer default_pool_size=%d\n",
		*workers, *duration, *rounds, *maxConns, *poolSize)
	rps, backends := map[string][]float64{}, map[string][]float64{}
	for round := 1; round <= *rounds; round++ {
		for _, s := range setups {
			dsn := db.URL
			var b *pgbouncertest.Bouncer
			switch {
			case s.bouncer:
				// A fresh bouncer per run: the server connections an
				// earlier one keeps idle must not count in the next run.
				if b, err = pgbouncertest.Start(ctx, *server, pgbouncertest.Options{DefaultPoolSize: *poolSize}); err != nil {
					return err
				}
				dsn = b.URL(db.URL)
			case s.execMode:
				dsn = withParam(db.URL, "default_query_exec_mode", pgbouncertest.ExecMode)
			}
			r, err := measure(ctx, bin, dsn, db.URL, s.instances, *maxConns, *workers, *duration, users, products)
			if b != nil {
				_ = b.Stop()
			}
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			rps[s.name] = append(rps[s.name], r.rps)
			backends[s.name] = append(backends[s.name], float64(r.backends))
			fmt.Fprintf(stdout, "round %d  %-15s %7.1f checkouts/s  p50 %6.1f ms  p99 %6.1f ms  server backends %d\n",
				round, s.name, r.rps, ms(r.p50), ms(r.p99), r.backends)
		}
	}
	fmt.Fprintln(stdout, "median of the rounds:")
	base := median(rps[setups[0].name])
	for _, s := range setups {
		m := median(rps[s.name])
		fmt.Fprintf(stdout, "  %-15s %7.1f checkouts/s  (%.2fx %s)  server backends %.0f\n", s.name, m, m/base, setups[0].name, median(backends[s.name]))
	}
	return nil
}

// seed adds the buyers and products and returns their ids.
func seed(ctx context.Context, dsn string) (users, products []string, err error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `
INSERT INTO customers (email, name) SELECT 'bench' || i || '@example.com', 'Buyer ' || i FROM generate_series(1, 1000) i;
INSERT INTO products (name, description, price, inventory) SELECT 'Bench ' || i, 'ample', 10.00, 100000000 FROM generate_series(1, 100) i;
ANALYZE`); err != nil {
		return nil, nil, err
	}
	collect := func(sql string) ([]string, error) {
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if users, err = collect(`SELECT id::text FROM customers WHERE email LIKE 'bench%'`); err != nil {
		return nil, nil, err
	}
	products, err = collect(`SELECT id::text FROM products WHERE name LIKE 'Bench %'`)
	return users, products, err
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	// backends is the most PostgreSQL backends connected to the bench
	// database at once during the run (pg_stat_activity, sampled every
	// 200 ms over a direct connection, which is not counted).
	backends int
}

// measure starts n shopd on dsn, drives checkouts for d, stops them.
// direct is the database's URL without pgbouncer, for the sampling.
func measure(ctx context.Context, bin, dsn, direct string, n, maxConns, workers int, d time.Duration, users, products []string) (result, error) {
	var shops []*benchkit.Shopd
	defer func() {
		for _, s := range shops {
			s.Stop()
		}
	}()
	for range n {
		s, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{Bin: bin, DatabaseURL: dsn,
			Env: []string{fmt.Sprintf("DB_MAX_CONNS=%d", maxConns), "RELAY_ENABLED=false", "RATE_LIMIT=off"}})
		if err != nil {
			return result{}, err
		}
		shops = append(shops, s)
	}
	sampler, err := pgx.Connect(ctx, direct)
	if err != nil {
		return result{}, err
	}
	defer sampler.Close(context.WithoutCancel(ctx))
	var peak atomic.Int64
	sampled := make(chan error, 1)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	go func() {
		var err error
		for sampleCtx.Err() == nil {
			var c int64
			if err = sampler.QueryRow(sampleCtx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&c); err != nil {
				break
			}
			if c > peak.Load() {
				peak.Store(c)
			}
			select {
			case <-sampleCtx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		if sampleCtx.Err() != nil {
			err = nil
		}
		sampled <- err
	}()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var mu sync.Mutex
	var lat []time.Duration
	var bad atomic.Int64
	var firstBad atomic.Value
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop) && ctx.Err() == nil; i++ {
				body := fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`,
					users[rand.IntN(len(users))], products[rand.IntN(len(products))])
				t0 := time.Now()
				res, err := client.Post(shops[(w+i)%n].URL+"/orders/checkout", "application/json", strings.NewReader(body))
				if err != nil {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusCreated {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, res.Status)
					continue
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	stopSampling()
	if err := <-sampled; err != nil {
		return result{}, fmt.Errorf("sample pg_stat_activity: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	if n := bad.Load(); n > 0 {
		return result{}, fmt.Errorf("%d checkouts not answered 201 (first: %v)", n, firstBad.Load())
	}
	if len(lat) == 0 {
		return result{}, fmt.Errorf("no checkout answered in %s", d)
	}
	slices.Sort(lat)
	return result{rps: float64(len(lat)) / d.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], backends: int(peak.Load())}, nil
}

func withParam(dsn, k, v string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + k + "=" + v
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
