package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/shoplab/shoplab/service/postgres"
)

// backfillUsersSplit runs `shopd backfill users-split`: flags override
// USERS_SPLIT_BATCH and USERS_SPLIT_PAUSE.
func backfillUsersSplit(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backfill users-split", flag.ContinueOnError)
	fs.SetOutput(stderr)
	batch := fs.Int("batch", int(cfg.UsersSplitBatch), "rows per batch, each its own transaction (env USERS_SPLIT_BATCH)")
	pause := fs.Duration("pause", cfg.UsersSplitPause, "throttle: pause after each batch, e.g. 50ms (env USERS_SPLIT_PAUSE)")
	restart := fs.Bool("restart", false, "ignore the position an interrupted run saved and start from the first row")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *batch <= 0 || *pause < 0 {
		return fmt.Errorf("backfill users-split: -batch must be positive and -pause not negative")
	}
	pool, err := openPool(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = postgres.New(pool).BackfillUsersSplit(ctx, postgres.BackfillOptions{
		BatchSize: *batch, Pause: *pause, Restart: *restart, Out: stdout,
	})
	return err
}

// errDifferences makes `shopd verify users-split` exit non-zero.
var errDifferences = errors.New("verify users-split: old and new differ (see the report above)")

// verifyUsersSplit runs `shopd verify users-split`: it prints the report
// and fails when any check found a difference.
func verifyUsersSplit(ctx context.Context, cfg config, stdout io.Writer) error {
	pool, err := openPool(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	r, err := postgres.New(pool).VerifyUsersSplit(ctx)
	if err != nil {
		return err
	}
	r.Write(stdout)
	if !r.OK() {
		return errDifferences
	}
	return nil
}
