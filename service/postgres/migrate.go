package postgres

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/shoplab/shoplab/migrations"
)

// Migrate runs a goose command ("up", "down" or "status") with the
// embedded migrations, printing what it did to out.
func Migrate(ctx context.Context, pool *pgxpool.Pool, command string, out io.Writer) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	switch command {
	case "up":
		res, err := p.Up(ctx)
		for _, r := range res {
			fmt.Fprintf(out, "migrated up %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
		}
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		if len(res) == 0 {
			fmt.Fprintln(out, "schema is up to date")
		}
	case "down":
		r, err := p.Down(ctx)
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		fmt.Fprintf(out, "migrated down %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
	case "status":
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		for _, s := range st {
			at := "pending"
			if s.State == goose.StateApplied {
				at = "applied " + s.AppliedAt.Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(out, "%-40s %s\n", s.Source.Path, at)
		}
	default:
		return fmt.Errorf("unknown migrate command %q (want up, down or status)", command)
	}
	return nil
}
