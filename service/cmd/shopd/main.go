// Command shopd is the shoplab service: `shopd serve` runs the HTTP API
// (and an outbox relay), `shopd relay` only the relay, `shopd outbox`
// inspects and requeues order confirmations,
// `shopd migrate up|down|status` manages the schema, `shopd token`
// issues and revokes buyer tokens, `shopd seed` loads the
// demo dataset, `shopd setup` does what a fresh machine needs (create
// the database, migrate, seed when empty), and `shopd backfill|verify
// users-split` carry out the users split (docs/schema-split.md).
// Configuration comes from the environment: `shopd help config` lists it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shopd:", err)
		os.Exit(1)
	}
}

const usage = `usage: shopd <command>

commands:
  serve                 run the HTTP API (graceful shutdown on SIGTERM/SIGINT)
  migrate up|down|status
                        apply, revert one, or list the schema migrations
  migrate up-to|down-to VERSION
                        apply pending migrations up to VERSION, or revert those above it
                        (a migration that hits its lock_timeout is retried with backoff)
  backfill users-split [-batch N] [-pause D] [-restart]
                        copy users into customers/merchants and set orders.customer_id in
                        batches; resumes where an interrupted run stopped
  verify users-split    compare users with customers/merchants and every order with its
                        customer; exits non-zero on any difference
  seed                  load the demo dataset (deterministic; a re-run adds nothing)
  setup                 create the database if missing, migrate up, seed when empty
  relay                 send the outbox's order confirmations (serve runs one too)
  outbox status         count pending and dead confirmations, age of the oldest
  outbox requeue-dead [order-id...]
                        give dead confirmations (all, or those orders') new attempts
  token issue EMAIL     issue a buyer token to an existing customer (printed once; only its
                        hash is stored)
  token revoke TOKEN|ID revoke a buyer token (the token itself, or its id from token list)
  token list EMAIL      list a customer's tokens: ids, created, last used, revoked
  config NAME...        print the value shopd uses for each variable (set or default)
  help config [-markdown]
                        list every environment variable with its default and meaning

configuration: environment variables; shopd help config lists them (so does README.md)`

// run is the whole program; main only calls it. It owns config, signals
// (through ctx) and shutdown, and keeps no package-level state, so tests
// can run it side by side.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("no command given")
	}
	switch args[1] {
	case "help", "-h", "--help":
		if len(args) > 2 && args[2] == "config" {
			return helpConfig(args[3:], stdout, stderr)
		}
		fmt.Fprintln(stdout, usage)
		return nil
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	switch args[1] {
	case "serve":
		return serve(ctx, cfg, stdout)
	case "migrate":
		if len(args) < 3 {
			return fmt.Errorf("migrate needs up, down or status")
		}
		return migrate(ctx, cfg, strings.Join(args[2:], " "), stdout)
	case "backfill", "verify":
		if len(args) < 3 || args[2] != "users-split" {
			return fmt.Errorf("%s needs a subject: users-split", args[1])
		}
		if args[1] == "verify" {
			return verifyUsersSplit(ctx, cfg, stdout)
		}
		return backfillUsersSplit(ctx, cfg, args[3:], stdout, stderr)
	case "seed":
		return seed(ctx, cfg, stdout)
	case "setup":
		return setup(ctx, cfg, stdout)
	case "relay":
		return relayCommand(ctx, cfg, stdout)
	case "outbox":
		return outbox(ctx, cfg, args[2:], stdout)
	case "token":
		return tokenCommand(ctx, cfg, args[2:], stdout)
	case "config":
		return printConfig(cfg, args[2:], stdout)
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", args[1])
}
