package main

import (
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/internal/pgtest"
)

// TestUsersSplitCommands runs the runbook's commands in order on a
// database from before the split that holds a customer, a merchant who
// bought and a typeless user: verify fails (exit non-zero) until the
// backfill has run, then passes and reports them; migrate up-to stops at
// the version asked; the contract step goes through with migrate up.
func TestUsersSplitCommands(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.NewDatabaseAt(t, 10)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		INSERT INTO users (email, name, user_type) VALUES ('c@x.test', 'C', 'customer'), ('m@x.test', 'M', 'merchant'), ('t@x.test', 'T', NULL);
		INSERT INTO orders (user_id, total) SELECT id, 1 FROM users WHERE email IN ('m@x.test', 't@x.test')`); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": dsn, "USERS_SPLIT_BATCH": "1", "USERS_SPLIT_PAUSE": "1ms"}
	shopd := func(args ...string) (string, error) {
		var out strings.Builder
		err := run(ctx, append([]string{"shopd"}, args...), func(k string) string { return env[k] }, &out, io.Discard)
		return out.String(), err
	}

	if out, err := shopd("migrate", "up-to", "12"); err != nil || !strings.Contains(out, "00012_users_split_sync.sql") || strings.Contains(out, "00013") {
		t.Fatalf("migrate up-to 12: %v\n%s", err, out)
	}
	if out, err := shopd("verify", "users-split"); err == nil || !strings.Contains(out, "FAIL") {
		t.Fatalf("verify before the backfill: %v, want an error\n%s", err, out)
	}
	out, err := shopd("backfill", "users-split", "-pause", "0s")
	if err != nil || !strings.Contains(out, "users 3/3 (100.0%)") || !strings.Contains(out, "in 5 batches") {
		t.Fatalf("backfill (1 row a batch from USERS_SPLIT_BATCH): %v\n%s", err, out)
	}
	out, err = shopd("verify", "users-split")
	if err != nil || !strings.Contains(out, "typeless 1") || !strings.Contains(out, "merchant-buyers         1") || !strings.Contains(out, "old and new agree") {
		t.Fatalf("verify after the backfill: %v\n%s", err, out)
	}
	if out, err := shopd("migrate", "up"); err != nil || !strings.Contains(out, "00017_users_split_contract.sql") {
		t.Fatalf("migrate up: %v\n%s", err, out)
	}
	if out, err := shopd("verify", "users-split"); err != nil || !strings.Contains(out, "contract step has run") {
		t.Fatalf("verify after contract: %v\n%s", err, out)
	}
	// Migrations after the split's revert as usual; the contract does not.
	if out, err := shopd("migrate", "down-to", "17"); err != nil {
		t.Fatalf("migrate down-to 17 (the migrations after the contract): %v\n%s", err, out)
	}
	if out, err := shopd("migrate", "down"); err == nil || !strings.Contains(err.Error(), "irreversible") {
		t.Fatalf("migrate down after contract: %v, want irreversible\n%s", err, out)
	}
}
