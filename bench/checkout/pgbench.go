package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

type pgbenchResult struct {
	Clients      int      `json:"clients"`
	Seconds      float64  `json:"seconds"`
	Transactions int      `json:"transactions"`
	TPS          float64  `json:"tps"`
	LatencyMs    float64  `json:"latencyAvgMs"`
	UnitsSold    int      `json:"unitsSold"`
	CPU          cpuUsage `json:"cpu"`
	// OrderRate is orders per second between the first and the last order.
	OrderRate    float64  `json:"orderRate"`
	InvariantsOK bool     `json:"invariantsOk"`
	Failures     []string `json:"failures,omitempty"`
	Script       string   `json:"script"`
}

// pgbenchScript is the checkout transaction as the service runs it
// (service/postgres/checkout.go), written for pgbench -M prepared (pgx also
// uses prepared statements): the same statements, grouped in the same round
// trips (\startpipeline mirrors a pgx.Batch), at the same timeouts. The
// differences: each statement finds the cart's product ids in
// bench_catalog (pgbench draws numbers, not uuids), the total is computed
// in SQL instead of Go, and ids come from gen_random_uuid().
func pgbenchScript(sc scenario) string {
	var b strings.Builder
	b.WriteString("-- checkout, as service/postgres/checkout.go runs it\n")
	fmt.Fprintf(&b, "\\set k random(1, %d)\n", sc.maxLines)
	var ns []string
	for i := 1; i <= sc.maxLines; i++ {
		if i == 1 {
			fmt.Fprintf(&b, "\\set n%d random(1, %d)\n", i, sc.products)
		} else {
			fmt.Fprintf(&b, "\\set n%d CASE WHEN :k >= %d THEN random(1, %d) ELSE 0 END\n", i, i, sc.products)
		}
		ns = append(ns, fmt.Sprintf(":n%d", i))
	}
	// The cart: distinct products of the drawn numbers, 1 unit each. Every
	// statement reads it from bench_catalog (an index lookup), so that the
	// transaction keeps the service's round trips.
	cart := fmt.Sprintf("cart AS (SELECT DISTINCT product_id AS id, 1 AS qty FROM bench_catalog WHERE label = :label AND n IN (%s))", strings.Join(ns, ", "))
	b.WriteString(`\startpipeline
BEGIN;
SET LOCAL lock_timeout = 2000;
SET LOCAL statement_timeout = 5000;
\endpipeline
WITH ` + cart + `
SELECT count(*) = (SELECT count(*) FROM cart) AND coalesce(bool_and(l.user_exists), false) AS ok
  FROM (SELECT p.id, p.name, p.description, (p.price * 100)::bigint, p.inventory, p.created_at,
               now(), EXISTS (SELECT 1 FROM customers u WHERE u.id = :user::uuid) AS user_exists
        FROM products p JOIN cart r ON p.id = r.id
        WHERE p.inventory >= r.qty ORDER BY p.id FOR UPDATE OF p) l \gset
\if :ok
\startpipeline
WITH ` + cart + `
UPDATE products p SET inventory = p.inventory - r.qty
  FROM cart r WHERE p.id = r.id AND p.inventory >= r.qty;
WITH ` + cart + `, priced AS (
    SELECT cart.id, cart.qty, p.price FROM cart JOIN products p ON p.id = cart.id
), o AS (
    INSERT INTO orders (id, customer_id, status, total, created_at)
    SELECT gen_random_uuid(), :user::uuid, 'pending', sum(qty * price), now() FROM priced
    RETURNING id
)
INSERT INTO order_items (id, order_id, product_id, quantity, price)
SELECT gen_random_uuid(), o.id, priced.id, priced.qty, priced.price FROM o, priced;
\endpipeline
COMMIT;
\else
\startpipeline
SELECT EXISTS (SELECT 1 FROM customers WHERE id = :user::uuid), now();
WITH ` + cart + `
SELECT p.id, p.name, p.description, (p.price * 100)::bigint, p.inventory, p.created_at FROM products p WHERE p.id IN (SELECT id FROM cart);
\endpipeline
ROLLBACK;
\endif
`)
	return b.String()
}

// pgbenchAppName is the application_name of pgbench's sessions.
const pgbenchAppName = "bench_pgbench"

var (
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	txRE      = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	latencyRE = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	failedRE  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// runPgbench runs the scenario's transaction with pgbench on a fresh data
// set of the same shape, at the same concurrency and duration, then checks
// the same invariants.
func runPgbench(ctx context.Context, o options, pool *pgxpool.Pool, dsn string, sc scenario) (*pgbenchResult, error) {
	bin, err := lookPath(o.pgbench)
	if err != nil {
		return nil, err
	}
	ds, err := createDataset(ctx, pool, "pgbench-"+sc.name, sc.products, sc.stock)
	if err != nil {
		return nil, err
	}
	script := pgbenchScript(sc)
	dir, err := os.MkdirTemp("", "bench-checkout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "checkout.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return nil, err
	}
	secs := max(1, int(o.duration.Seconds()+0.5))
	clients := max(1, o.workers)
	args := []string{"-n", "-M", "prepared", "-f", file,
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)), "-T", strconv.Itoa(secs),
		"-D", "label=" + ds.label, "-D", "user=" + ds.user, dsn}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PGAPPNAME="+pgbenchAppName)
	probe := newCPUProbe(ctx, pool, pgbenchAppName, 0, childrenCPU)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	res := &pgbenchResult{Clients: clients, Seconds: float64(secs), Script: script}
	res.CPU = probe.stop(ctx)
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no tps in pgbench output:\n%s", out)
	}
	res.TPS, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := txRE.FindSubmatch(out); m != nil {
		res.Transactions, _ = strconv.Atoi(string(m[1]))
	}
	if m := latencyRE.FindSubmatch(out); m != nil {
		res.LatencyMs, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := failedRE.FindSubmatch(out); m != nil && string(m[1]) != "0" {
		res.Failures = append(res.Failures, fmt.Sprintf("pgbench-%s: %s failed transactions", sc.name, m[1]))
	}
	sold, rate, failures, err := verify(ctx, pool, ds, -1)
	if err != nil {
		return nil, err
	}
	res.UnitsSold, res.OrderRate = sold, rate
	res.Failures = append(res.Failures, failures...)
	res.InvariantsOK = len(res.Failures) == 0
	return res, nil
}
