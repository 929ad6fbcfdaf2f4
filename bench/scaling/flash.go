package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/service/postgres"
)

// flashSchemaSQL is the flash sale's stock, in the bench database only
// (the service does not have it; docs/scaling.md describes the design):
// a product's stock split across rows ("slots"), the rows' sum being the
// product's stock. flash_catalog numbers each run's products 1..n, so that
// pgbench can pick one with random(1, n).
const flashSchemaSQL = `
CREATE TABLE flash_catalog (
    label      text    NOT NULL,
    n          integer NOT NULL,
    product_id uuid    NOT NULL REFERENCES products (id),
    PRIMARY KEY (label, n)
);
CREATE TABLE flash_slots (
    product_id uuid    NOT NULL REFERENCES products (id),
    slot       integer NOT NULL,
    inventory  integer NOT NULL CHECK (inventory >= 0),
    PRIMARY KEY (product_id, slot)
)`

// pickSlotSQL locks one slot of the product with stock. The first pick
// (skip = true) starts at a random slot (:r) and goes round with SKIP
// LOCKED, passing over the slots other checkouts hold. The waiting pick is
// the fallback when every slot with stock is held (more buyers than
// slots): it takes slots in slot order, because a row whose lock it waited
// for and whose stock Postgres then re-checks and finds gone stays locked
// to the end of the transaction while the pick goes on to the next slot;
// two buyers walking the slots from different starts would deadlock (the
// sell-out run found it). It returns -1 when no slot has stock left (sold
// out).
func pickSlotSQL(skip bool) string {
	order, wait := "(s.slot + :r::int) % :nslots::int", ""
	if skip {
		wait = " SKIP LOCKED"
	} else {
		order = "s.slot"
	}
	return `SELECT coalesce(max(l.slot), -1) AS slot FROM (
    SELECT s.slot FROM flash_slots s
    JOIN flash_catalog c ON c.product_id = s.product_id
    WHERE c.label = :label AND c.n = :pn AND s.inventory >= 1
    ORDER BY ` + order + `
    LIMIT 1
    FOR UPDATE OF s` + wait + `) l \gset`
}

// flashScript is a checkout of one unit of a flash-sale product, in the
// shape of service/postgres/checkout.go's transaction (the same writes:
// the idempotency key's claim and stored response, the stock, the order
// and its line, the outbox event): round trip 1 claims the key, then the
// slot is locked in a round trip of its own (pgbench's \gset cannot run
// in a pipeline, as in bench/checkout's twin), round trip 2 decrements the
// slot, writes the order and commits. The slot's lock is held for round
// trip 2, as the product row's is in the service. With asyncCommit the
// transaction sets synchronous_commit off, so COMMIT does not wait for its
// WAL to reach the disk: not a setting for orders (a crash loses the last
// commits), only a measure of how much of the row's hold is that flush.
func flashScript(asyncCommit bool) string {
	const key = "('flash-' || :key::text)"
	const orderID = "md5('flash-' || :key::text)::uuid"
	const product = "(SELECT product_id FROM flash_catalog WHERE label = :label AND n = :pn)"
	return `-- flash-sale checkout: one unit from one of the product's stock slots
\set pn random(1, :nprod)
\set r random(0, :nslots - 1)
\set key random(1, 9000000000000000000)
\startpipeline
BEGIN;
` + asyncCommitSQL(asyncCommit) + `SET LOCAL lock_timeout = ` + strconv.FormatInt(postgres.DefaultCheckoutLockTimeout.Milliseconds(), 10) + `;
SET LOCAL statement_timeout = ` + strconv.FormatInt(postgres.DefaultCheckoutStatementTimeout.Milliseconds(), 10) + `;
INSERT INTO idempotency_keys (idempotency_key, request_hash, expires_at)
VALUES (` + key + `, sha256(convert_to(` + key + `, 'UTF8')), now() + interval '1 day');
\endpipeline
` + pickSlotSQL(true) + `
\if :slot < 0
` + pickSlotSQL(false) + `
\endif
\if :slot >= 0
\startpipeline
UPDATE flash_slots SET inventory = inventory - 1
WHERE product_id = ` + product + ` AND slot = :slot::int;
WITH p AS (SELECT id, price FROM products WHERE id = ` + product + `),
o AS (
    INSERT INTO orders (id, customer_id, status, total, created_at)
    SELECT ` + orderID + `, :user::uuid, 'pending', p.price, now() FROM p
)
INSERT INTO order_items (id, order_id, product_id, quantity, price)
SELECT gen_random_uuid(), ` + orderID + `, p.id, 1, p.price FROM p;
INSERT INTO outbox (kind, order_id, recipient, recipient_name, payload, trace_context)
SELECT 'order_confirmation', ` + orderID + `, u.email, u.name, jsonb_build_object('id', ` + orderID + `, 'slot', :slot::int), '{}'::jsonb
FROM customers u WHERE u.id = :user::uuid;
UPDATE idempotency_keys SET order_id = ` + orderID + `, response = jsonb_build_object('id', ` + orderID + `)
WHERE idempotency_key = ` + key + `;
COMMIT;
\endpipeline
\else
ROLLBACK;
\endif
`
}

func asyncCommitSQL(on bool) string {
	if on {
		return "SET LOCAL synchronous_commit = off;\n"
	}
	return ""
}

// flashPart is the flash-sale measurement.
type flashPart struct {
	Script string     `json:"script"`
	Runs   []flashRun `json:"runs"`
	// Summary is, per configuration (its label), the orders/s over the
	// rounds and its ratio to the many-products run of the same round.
	Summary []flashSummary `json:"summary"`
	SellOut flashRun       `json:"sellOut"`
	OK      bool           `json:"ok"`
}

type flashSummary struct {
	Config       string `json:"config"`
	OrdersPerSec spread `json:"ordersPerSec"`
	ToMany       spread `json:"toManyProducts"`
	LockMs       spread `json:"lockStatementMs"`
	FallbackMs   spread `json:"fallbackStatementMs"`
	CommitTripMs spread `json:"commitRoundTripMs"`
	// HoldMs is 1000 / orders per second of a one-row product: with
	// more buyers than rows, the row always has a waiter, so each order
	// holds it that long.
	HoldMs spread `json:"holdMsPerOrder"`
}

// flashRun is one pgbench run of the flash script.
type flashRun struct {
	Config       string  `json:"config"`
	Round        int     `json:"round"`
	Products     int     `json:"products"`
	Slots        int     `json:"slots"`
	Stock        int     `json:"stockPerProduct"`
	Clients      int     `json:"clients"`
	Seconds      float64 `json:"seconds"`
	Transactions int     `json:"transactions"`
	Orders       int     `json:"orders"`
	OrdersPerSec float64 `json:"ordersPerSec"`
	// LockMs is the average latency of the SKIP LOCKED pick (its wait
	// included), FallbackMs of the waiting pick where it ran, and
	// CommitTripMs of round trip 2 (decrement .. COMMIT), during which
	// the slot is held.
	LockMs       float64  `json:"lockStatementMs"`
	FallbackMs   float64  `json:"fallbackStatementMs"`
	CommitTripMs float64  `json:"commitRoundTripMs"`
	UnitsLeft    int      `json:"unitsLeft"`
	Failures     []string `json:"failures,omitempty"`
}

// measureFlash runs the flash script for each slot count and for many
// products, -rounds times, then a sell-out run, on a fresh database.
func measureFlash(ctx context.Context, o options, stdout io.Writer) (*flashPart, error) {
	bin, db, pool, err := pgbenchDatabase(ctx, o, "scaling")
	if err != nil {
		return nil, err
	}
	defer db.Drop()
	defer pool.Close()
	if _, err := pool.Exec(ctx, flashSchemaSQL); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-scaling-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := flashScript(false)
	file, asyncFile := filepath.Join(dir, "flash.sql"), filepath.Join(dir, "flash-async.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(asyncFile, []byte(flashScript(true)), 0o644); err != nil {
		return nil, err
	}
	part := &flashPart{Script: script, OK: true}
	fmt.Fprintf(stdout, "\n== flash sale: pgbench, %d clients, %s per run, %d rounds\n", o.workers, o.duration, o.rounds)

	type config struct {
		label           string
		products, slots int
		file            string
	}
	var configs []config
	for _, n := range o.slots {
		configs = append(configs, config{fmt.Sprintf("1 product, %d rows", n), 1, n, file})
	}
	// One row again, COMMIT not waiting for the WAL flush: the flush's
	// share of the row's hold time.
	configs = append(configs, config{"1 product, 1 row, synchronous_commit off", 1, 1, asyncFile})
	many := config{fmt.Sprintf("%d products, 1 row each", o.flashProducts), o.flashProducts, 1, file}
	configs = append(configs, many)
	const totalStock = 10_000_000 // per product: more than a run sells
	for round := 1; round <= o.rounds; round++ {
		for _, c := range configs {
			run, err := flashRunOnce(ctx, bin, pool, db.URL, c.file, o, c.products, c.slots, totalStock)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.label, err)
			}
			run.Config, run.Round = c.label, round
			if run.UnitsLeft != c.products*totalStock-run.Orders {
				run.Failures = append(run.Failures, fmt.Sprintf("%d units left of %d after %d orders", run.UnitsLeft, c.products*totalStock, run.Orders))
			}
			if run.Orders != run.Transactions {
				run.Failures = append(run.Failures, fmt.Sprintf("%d orders for %d transactions with stock to spare", run.Orders, run.Transactions))
			}
			part.OK = part.OK && len(run.Failures) == 0
			fmt.Fprintf(stdout, "round %d, %-26s %7.1f orders/s  pick %6.2f ms  commit trip %6.2f ms  %s\n",
				round, c.label+":", run.OrdersPerSec, run.LockMs, run.CommitTripMs, okText(run.Failures))
			part.Runs = append(part.Runs, run)
		}
	}
	manyByRound := map[int]float64{}
	for _, r := range part.Runs {
		if r.Config == many.label {
			manyByRound[r.Round] = r.OrdersPerSec
		}
	}
	for _, c := range configs {
		var ops, to, lock, fallback, trip, hold []float64
		for _, r := range part.Runs {
			if r.Config != c.label {
				continue
			}
			ops = append(ops, r.OrdersPerSec)
			if m := manyByRound[r.Round]; m > 0 {
				to = append(to, r.OrdersPerSec/m)
			}
			lock, fallback, trip = append(lock, r.LockMs), append(fallback, r.FallbackMs), append(trip, r.CommitTripMs)
			hold = append(hold, 1000/r.OrdersPerSec)
		}
		s := flashSummary{Config: c.label, OrdersPerSec: newSpread(ops, 1), ToMany: newSpread(to, 2),
			LockMs: newSpread(lock, 2), FallbackMs: newSpread(fallback, 2), CommitTripMs: newSpread(trip, 2)}
		if c.products == 1 && c.slots == 1 {
			s.HoldMs = newSpread(hold, 2)
		}
		part.Summary = append(part.Summary, s)
	}

	// Sell-out: little stock, unevenly split across the most slots, far
	// more buyers than units in the run: exactly the stock must sell, every
	// slot must end at 0 and the rest must be refused.
	slots := o.slots[len(o.slots)-1]
	for _, n := range o.slots {
		slots = max(slots, n)
	}
	stock := 30*slots + slots/2
	so, err := flashRunOnce(ctx, bin, pool, db.URL, file, options{workers: o.workers, duration: 3 * time.Second}, 1, slots, stock)
	if err != nil {
		return nil, fmt.Errorf("sell-out: %w", err)
	}
	so.Config = fmt.Sprintf("sell-out: 1 product, %d rows, %d units", slots, stock)
	if so.Orders != stock || so.UnitsLeft != 0 {
		so.Failures = append(so.Failures, fmt.Sprintf("%d orders and %d units left of %d", so.Orders, so.UnitsLeft, stock))
	}
	if so.Transactions <= stock {
		so.Failures = append(so.Failures, fmt.Sprintf("only %d transactions for %d units: the run never reached the sold-out phase", so.Transactions, stock))
	}
	part.SellOut = so
	part.OK = part.OK && len(so.Failures) == 0
	fmt.Fprintf(stdout, "%s: %d transactions, %d orders, %d units left  %s\n", so.Config, so.Transactions, so.Orders, so.UnitsLeft, okText(so.Failures))
	return part, nil
}

func okText(failures []string) string {
	if len(failures) == 0 {
		return "invariants OK"
	}
	return "FAILED: " + strings.Join(failures, "; ")
}

var (
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	txRE      = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	failedRE  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
	stmtLatRE = regexp.MustCompile(`(?m)^\s+([0-9.]+)\s+[0-9]+\s+(.*)$`)
)

// flashRunOnce creates products products of stock units each, split as
// evenly as possible across slots rows, runs pgbench on them and counts
// what was sold.
func flashRunOnce(ctx context.Context, bin string, pool *pgxpool.Pool, dsn, file string, o options, products, slots, stock int) (flashRun, error) {
	run := flashRun{Products: products, Slots: slots, Stock: stock, Clients: o.workers}
	var b [4]byte
	_, _ = rand.Read(b[:])
	label := hex.EncodeToString(b[:])
	var user string
	err := pool.QueryRow(ctx, `INSERT INTO customers (email, name) VALUES ($1, $2) RETURNING id::text`,
		"flash-"+label+"@example.com", "Flash "+label).Scan(&user)
	if err != nil {
		return run, err
	}
	_, err = pool.Exec(ctx, `
WITH p AS (
    INSERT INTO products (name, description, price, inventory)
    SELECT 'Flash ' || $1 || ' ' || i, 'flash sale product', 19.99, $3
    FROM generate_series(1, $2) AS i
    RETURNING id
), c AS (
    INSERT INTO flash_catalog (label, n, product_id)
    SELECT $1, row_number() OVER (ORDER BY id), id FROM p
    RETURNING product_id
)
INSERT INTO flash_slots (product_id, slot, inventory)
SELECT c.product_id, s, $3 / $4 + CASE WHEN s < $3 % $4 THEN 1 ELSE 0 END
FROM c, generate_series(0, $4 - 1) AS s`, label, products, stock, slots)
	if err != nil {
		return run, err
	}
	secs := max(1, int(o.duration.Seconds()+0.5))
	args := []string{"-n", "-M", "prepared", "-r", "-f", file,
		"-c", strconv.Itoa(o.workers), "-j", strconv.Itoa(min(o.workers, 2)), "-T", strconv.Itoa(secs),
		"-D", "label=" + label, "-D", "user=" + user, "-D", "nprod=" + strconv.Itoa(products), "-D", "nslots=" + strconv.Itoa(slots), dsn}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PGAPPNAME=bench_scaling_flash")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return run, fmt.Errorf("%v: %s", err, out)
	}
	run.Seconds = float64(secs)
	if m := txRE.FindSubmatch(out); m != nil {
		run.Transactions, _ = strconv.Atoi(string(m[1]))
	}
	if m := tpsRE.FindSubmatch(out); m == nil {
		return run, fmt.Errorf("no tps in pgbench output:\n%s", out)
	}
	if m := failedRE.FindSubmatch(out); m != nil && string(m[1]) != "0" {
		run.Failures = append(run.Failures, fmt.Sprintf("%s failed transactions", m[1]))
	}
	// Per-statement latencies (-r), in script order: the first pick is the
	// SKIP LOCKED one, the second the waiting one; a pipeline's time is
	// reported on its \endpipeline, and the second is round trip 2.
	picks, pipes := 0, 0
	for _, m := range stmtLatRE.FindAllSubmatch(out, -1) {
		ms, _ := strconv.ParseFloat(string(m[1]), 64)
		cmdText := strings.TrimSpace(string(m[2]))
		switch {
		case strings.HasPrefix(cmdText, "SELECT coalesce(max(l.slot)"):
			picks++
			if picks == 1 {
				run.LockMs = ms
			} else {
				run.FallbackMs = ms
			}
		case cmdText == `\endpipeline`:
			pipes++
			if pipes == 2 {
				run.CommitTripMs = ms
			}
		}
	}
	var negative, units int
	err = pool.QueryRow(ctx, `
SELECT (SELECT count(*) FROM orders WHERE customer_id = $2::uuid)::int,
       (SELECT coalesce(sum(s.inventory), 0) FROM flash_slots s JOIN flash_catalog c ON c.product_id = s.product_id WHERE c.label = $1)::int,
       (SELECT count(*) FROM flash_slots s JOIN flash_catalog c ON c.product_id = s.product_id WHERE c.label = $1 AND s.inventory < 0)::int,
       (SELECT coalesce(sum(oi.quantity), 0) FROM order_items oi JOIN flash_catalog c ON c.product_id = oi.product_id WHERE c.label = $1)::int`,
		label, user).Scan(&run.Orders, &run.UnitsLeft, &negative, &units)
	if err != nil {
		return run, err
	}
	if negative > 0 {
		run.Failures = append(run.Failures, fmt.Sprintf("%d slots below zero", negative))
	}
	if units != run.Orders {
		run.Failures = append(run.Failures, fmt.Sprintf("%d units in order lines for %d orders", units, run.Orders))
	}
	if sold := products*stock - run.UnitsLeft; sold != units {
		run.Failures = append(run.Failures, fmt.Sprintf("stock consumed %d but %d units sold", sold, units))
	}
	run.OrdersPerSec = benchkit.Round(float64(run.Orders)/run.Seconds, 1)
	return run, nil
}

func printFlash(w io.Writer, p *flashPart) {
	fmt.Fprintf(w, "\n### Flash sale: one product's stock across N rows (pgbench, median (min-max) of the rounds)\n\n")
	fmt.Fprintln(w, "| configuration | orders/s | vs many products, same round | row held per order, ms (1 row: 1000 / orders/s) | SKIP LOCKED pick ms | waiting pick ms (wait included) | round trip 2 ms (decrement .. COMMIT) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, s := range p.Summary {
		hold := "-"
		if len(s.HoldMs.Rounds) > 0 {
			hold = s.HoldMs.String()
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", s.Config, s.OrdersPerSec, s.ToMany, hold, s.LockMs, s.FallbackMs, s.CommitTripMs)
	}
	fmt.Fprintf(w, "\n%s: %d transactions, %d orders, %d units left: %s\n", p.SellOut.Config, p.SellOut.Transactions, p.SellOut.Orders, p.SellOut.UnitsLeft, okText(p.SellOut.Failures))
}
