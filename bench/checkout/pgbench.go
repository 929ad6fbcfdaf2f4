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

	"github.com/shoplab/shoplab/service/postgres"
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
	OrderRate float64 `json:"orderRate"`
	// SoldOut: every unit of stock was sold (the hot scenario), so
	// OrderRate is the rate while stock lasted.
	SoldOut      bool     `json:"soldOut"`
	Oversold     int      `json:"oversold"`
	InvariantsOK bool     `json:"invariantsOk"`
	Failures     []string `json:"failures,omitempty"`
	Script       string   `json:"script"`
}

// pgbenchScript is the checkout transaction as the service runs it
// (service/postgres/checkout.go) with an Idempotency-Key, written for
// pgbench -M prepared (pgx also uses prepared statements): statement for
// statement, each under the service's `-- name:` line, in the same order,
// at the same timeouts, with the same writes (the key's claim and its
// stored response, the stock, the order and its lines, the outbox event
// that owes the confirmation mail). TestPgbenchScriptMatchesCheckout
// checks it against the statements a real checkout sends.
//
// What differs, because pgbench draws numbers and cannot read a result
// inside a pipeline:
//   - the cart's product ids come from bench_catalog in each statement
//     (an index lookup) instead of a uuid[] parameter, and the key, the
//     order id (md5 of the key) and totals are computed in SQL;
//   - the first round trip is two: pgbench's \gset (to branch on what was
//     locked) is not allowed in pipeline mode, so the products are locked
//     in a round trip of their own after BEGIN .. the key lookup. The row
//     locks are still held for exactly one round trip (the second), as in
//     the service: the hot row's throughput is comparable.
func pgbenchScript(sc scenario) string {
	var b strings.Builder
	b.WriteString("-- checkout with an Idempotency-Key, statement for statement as service/postgres/checkout.go runs it\n")
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
	b.WriteString("\\set key random(1, 9000000000000000000)\n")
	// The cart: distinct products of the drawn numbers, 1 unit each, as
	// (id, qty) like the service's unnest($1::uuid[], $2::int[]).
	cart := fmt.Sprintf("(SELECT DISTINCT product_id AS id, 1 AS qty FROM bench_catalog WHERE label = :label AND n IN (%s))", strings.Join(ns, ", "))
	const key = "('pgbench-' || :key::text)"
	const orderID = "md5('pgbench-' || :key::text)::uuid"
	// The order as JSON, for the outbox payload and the key's response.
	orderJSON := `(SELECT jsonb_build_object('id', ` + orderID + `, 'userId', :user::uuid, 'status', 'pending', 'total', sum(p.price * c.qty), 'createdAt', now(),
        'items', jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'orderId', ` + orderID + `, 'productId', p.id, 'quantity', c.qty, 'price', p.price,
            'product', jsonb_build_object('id', p.id, 'name', p.name, 'description', p.description, 'price', p.price, 'inventory', p.inventory - c.qty, 'createdAt', p.created_at))))
    FROM ` + cart + ` AS c JOIN products p ON p.id = c.id)`
	b.WriteString(`\startpipeline
-- name: tx.begin
BEGIN;
-- name: tx.set_lock_timeout
SET LOCAL lock_timeout = ` + strconv.FormatInt(postgres.DefaultCheckoutLockTimeout.Milliseconds(), 10) + `;
-- name: tx.set_statement_timeout
SET LOCAL statement_timeout = ` + strconv.FormatInt(postgres.DefaultCheckoutStatementTimeout.Milliseconds(), 10) + `;
-- name: checkout.claim_idempotency_key lock
INSERT INTO idempotency_keys AS k (idempotency_key, request_hash, expires_at)
VALUES (` + key + `, sha256(convert_to(` + key + `, 'UTF8')), now() + ` + strconv.FormatInt(postgres.DefaultIdempotencyTTL.Milliseconds(), 10) + `::bigint * interval '1 millisecond')
ON CONFLICT (idempotency_key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, order_id = NULL, response = NULL,
        created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE k.expires_at <= now()
RETURNING true;
-- name: checkout.find_idempotency_key
SELECT request_hash, response FROM idempotency_keys
WHERE idempotency_key = ` + key + ` AND order_id IS NOT NULL;
\endpipeline
-- name: checkout.lock_products lock
SELECT count(*) = (SELECT count(*) FROM ` + cart + ` AS c) AND coalesce(bool_and(l.user_exists), false) AS ok
FROM (SELECT p.id, p.name, p.description, (p.price * 100)::bigint, p.inventory, p.created_at,
             now(), EXISTS (SELECT 1 FROM customers u WHERE u.id = :user::uuid) AS user_exists
      FROM products p
      JOIN ` + cart + ` AS r ON p.id = r.id
      WHERE p.inventory >= r.qty
        AND NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.idempotency_key = ` + key + ` AND k.order_id IS NOT NULL)
      ORDER BY p.id
      FOR UPDATE OF p) l \gset
\if :ok
\startpipeline
-- name: checkout.reserve_stock
WITH r AS (
    UPDATE products p SET inventory = p.inventory - r.qty
    FROM ` + cart + ` AS r
    WHERE p.id = r.id AND p.inventory >= r.qty
    RETURNING 1
)
SELECT CASE WHEN count(*) = (SELECT count(*) FROM ` + cart + ` AS c) THEN count(*)::int
            ELSE ('checkout reserved ' || count(*))::int END
FROM r;
-- name: checkout.insert_order
WITH priced AS (
    SELECT c.id, c.qty, p.price FROM ` + cart + ` AS c JOIN products p ON p.id = c.id
), o AS (
    INSERT INTO orders (id, customer_id, status, total, created_at)
    SELECT ` + orderID + `, :user::uuid, 'pending', sum(qty * price), now() FROM priced
)
INSERT INTO order_items (id, order_id, product_id, quantity, price)
SELECT gen_random_uuid(), ` + orderID + `, priced.id, priced.qty, priced.price FROM priced;
-- name: outbox.enqueue
INSERT INTO outbox (kind, order_id, recipient, recipient_name, payload, trace_context)
VALUES ('order_confirmation', ` + orderID + `,
        (SELECT u.email FROM customers u WHERE u.id = :user::uuid),
        coalesce((SELECT u.name FROM customers u WHERE u.id = :user::uuid), ''),
        ` + orderJSON + `, '{}'::jsonb);
-- name: checkout.save_idempotency_key
UPDATE idempotency_keys SET order_id = ` + orderID + `, response = ` + orderJSON + `
WHERE idempotency_key = ` + key + `;
-- name: tx.commit
COMMIT;
\endpipeline
\else
\startpipeline
-- name: checkout.user_exists
SELECT EXISTS (SELECT 1 FROM customers u WHERE u.id = :user::uuid), now();
-- name: checkout.read_products
SELECT p.id, p.name, p.description, (p.price * 100)::bigint, p.inventory, p.created_at
FROM products p WHERE p.id IN (SELECT id FROM ` + cart + ` AS c);
-- name: tx.rollback
ROLLBACK;
\endpipeline
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
	sold, rate, oversold, failures, err := verify(ctx, pool, ds, -1)
	if err != nil {
		return nil, err
	}
	res.UnitsSold, res.OrderRate, res.Oversold = sold, rate, oversold
	res.SoldOut = sold >= ds.initial*len(ds.products)
	res.Failures = append(res.Failures, failures...)
	res.InvariantsOK = len(res.Failures) == 0
	return res, nil
}
