package main

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/internal/benchkit"
)

// TestFlashSaleSellsExactlyItsStock runs the flash-sale script with more
// buyers than slots and far more demand than stock, unevenly split: every
// unit must sell exactly once (no slot below zero, stock consumed = units
// in orders = orders), every slot must end empty, and the buyers after the
// last unit must be refused, not fail.
func TestFlashSaleSellsExactlyItsStock(t *testing.T) {
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		t.Fatalf("pgbench not found (%v): run make deps (it installs postgresql-15, which has pgbench)", err)
	}
	ctx := t.Context()
	db, err := benchkit.CreateDatabase(ctx, benchkit.DefaultServer(), "scaling_flash")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Drop)
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, flashSchemaSQL); err != nil {
		t.Fatal(err)
	}
	file := t.TempDir() + "/flash.sql"
	if err := os.WriteFile(file, []byte(flashScript(false)), 0o644); err != nil {
		t.Fatal(err)
	}

	const slots, stock = 4, 4*15 + 3
	run, err := flashRunOnce(ctx, bin, pool, db.URL, file, options{workers: 8, duration: 2 * time.Second}, 1, slots, stock)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Failures) > 0 {
		t.Errorf("invariants: %v", run.Failures)
	}
	if run.Orders != stock || run.UnitsLeft != 0 {
		t.Errorf("%d orders, %d units left; want %d orders, 0 left", run.Orders, run.UnitsLeft, stock)
	}
	if run.Transactions <= stock {
		t.Errorf("%d transactions for %d units: the run never reached the sold-out phase", run.Transactions, stock)
	}
	var empty int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM flash_slots WHERE inventory = 0`).Scan(&empty); err != nil {
		t.Fatal(err)
	}
	if empty != slots {
		t.Errorf("%d of %d slots empty after the sell-out", empty, slots)
	}
	if run.LockMs <= 0 || run.CommitTripMs <= 0 {
		t.Errorf("per-statement latencies not read from pgbench -r: pick %.3f ms, round trip 2 %.3f ms", run.LockMs, run.CommitTripMs)
	}
}
