package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/internal/benchkit"
)

// walPart is the WAL that uniform checkouts write: what a replica must
// receive and replay, and what the primary must flush, per checkout.
type walPart struct {
	Transactions     int     `json:"transactions"`
	Bytes            int64   `json:"bytes"`
	BytesPerCheckout float64 `json:"bytesPerCheckout"`
	// FullPageImages is pg_stat_wal's wal_fpi over the run: the run
	// starts right after a CHECKPOINT, so every page's first change
	// writes a whole page image (the worst case; a longer run between
	// checkpoints writes fewer per checkout).
	FullPageImages int64 `json:"fullPageImages"`
}

// measureWAL runs bench-checkout's pgbench twin of a uniform checkout
// (its script, the same statements as the service's) for a few seconds
// on a fresh database of the dedicated cluster, where nothing else
// writes, and divides the WAL written (pg_current_wal_lsn before and
// after) by the checkouts.
func measureWAL(ctx context.Context, o options, script string) (*walPart, error) {
	if script == "" {
		return nil, fmt.Errorf("bench-checkout's JSON has no uniform pgbench script")
	}
	bin, db, pool, err := pgbenchDatabase(ctx, o, "scaling_wal")
	if err != nil {
		return nil, err
	}
	defer db.Drop()
	defer pool.Close()
	// bench_catalog and a data set as bench/checkout makes them (db.go).
	const label = "wal"
	var user string
	err = pool.QueryRow(ctx, `INSERT INTO customers (email, name) VALUES ('bench-wal@example.com', 'Bench WAL') RETURNING id::text`).Scan(&user)
	if err != nil {
		return nil, err
	}
	_, err = pool.Exec(ctx, `
CREATE TABLE bench_catalog (label text NOT NULL, n integer NOT NULL, product_id uuid NOT NULL, PRIMARY KEY (label, n));
WITH p AS (
    INSERT INTO products (name, description, price, inventory)
    SELECT 'Bench wal ' || i, 'bench product', 1 + (i % 50) + 0.99, 1000000
    FROM generate_series(1, 100) AS i
    RETURNING id
)
INSERT INTO bench_catalog (label, n, product_id)
SELECT 'wal', row_number() OVER (ORDER BY id), id FROM p;
CHECKPOINT`)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-scaling-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "checkout.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return nil, err
	}
	var start string
	var fpi int64
	if err := pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, wal_fpi FROM pg_stat_wal`).Scan(&start, &fpi); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-n", "-M", "prepared", "-f", file, "-c", strconv.Itoa(o.workers), "-j", "2", "-T", "5",
		"-D", "label="+label, "-D", "user="+user, db.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	w := &walPart{}
	err = pool.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - $1::pg_lsn)::bigint,
       (SELECT count(*) FROM orders o JOIN customers u ON u.id = o.customer_id WHERE u.email = 'bench-wal@example.com')::int,
       (SELECT wal_fpi FROM pg_stat_wal) - $2`, start, fpi).
		Scan(&w.Bytes, &w.Transactions, &w.FullPageImages)
	if err != nil {
		return nil, err
	}
	if w.Transactions == 0 {
		return nil, fmt.Errorf("no checkout in the WAL run:\n%s", out)
	}
	w.BytesPerCheckout = benchkit.Round(float64(w.Bytes)/float64(w.Transactions), 0)
	return w, nil
}

func printWAL(w io.Writer, p *walPart) {
	fmt.Fprintf(w, "WAL per uniform checkout (pgbench twin, dedicated cluster, 5 s after a CHECKPOINT): %.0f bytes (%d bytes for %d checkouts, %d full-page images)\n",
		p.BytesPerCheckout, p.Bytes, p.Transactions, p.FullPageImages)
}

// pgbenchDatabase finds the pgbench binary (-pgbench) and creates a fresh
// migrated database named for label, with a pool on it: what the WAL and
// flash-sale runs start from. The caller drops the database and closes
// the pool.
func pgbenchDatabase(ctx context.Context, o options, label string) (bin string, db *benchkit.Database, pool *pgxpool.Pool, err error) {
	if bin, err = exec.LookPath(o.pgbench); err != nil {
		return "", nil, nil, fmt.Errorf("%s not found (%w); make deps installs postgresql-15, which has it", o.pgbench, err)
	}
	if db, err = benchkit.CreateDatabase(ctx, o.server, label); err != nil {
		return "", nil, nil, err
	}
	if pool, err = pgxpool.New(ctx, db.URL); err != nil {
		db.Drop()
		return "", nil, nil, err
	}
	return bin, db, pool, nil
}
