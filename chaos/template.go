package chaos

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/moncheck"
)

// Template is a migrated and seeded database that a series of runs clones
// (Options.Template) instead of migrating and seeding a database each: go
// test makes one per test binary. The seed is deterministic (fixed ids and
// clock), so a clone is the database a run would have made itself.
type Template struct {
	// DB is the template database; nobody may connect to it while runs
	// clone it.
	DB *benchkit.Database
	// Fixture is what moncheck.Seed picked in it: the same in every clone.
	Fixture *moncheck.Fixture
}

// NewTemplate creates, migrates and seeds a template database on the
// PostgreSQL server serverURL, then forbids connections to it (CREATE
// DATABASE ... TEMPLATE fails while anyone is connected to the template).
// The caller must Drop it.
func NewTemplate(ctx context.Context, serverURL string) (*Template, error) {
	db, err := benchkit.CreateDatabase(ctx, serverURL, "chaos_template")
	if err != nil {
		return nil, err
	}
	fx, err := moncheck.Seed(ctx, db.URL)
	if err == nil {
		err = allowConnections(ctx, serverURL, db.Name, false)
	}
	if err != nil {
		db.Drop()
		return nil, fmt.Errorf("chaos: template %s: %w", db.Name, err)
	}
	return &Template{DB: db, Fixture: fx}, nil
}

// Drop drops the template database.
func (t *Template) Drop() { t.DB.Drop() }

// clone creates a run's database from the template, with a copy of its
// fixture.
func (t *Template) clone(ctx context.Context, serverURL, label string) (*benchkit.Database, *moncheck.Fixture, error) {
	db, err := benchkit.CloneDatabase(ctx, serverURL, label, t.DB.Name)
	if err != nil {
		return nil, nil, err
	}
	fx := &moncheck.Fixture{Heavy: t.Fixture.Heavy, Users: slices.Clone(t.Fixture.Users), Products: slices.Clone(t.Fixture.Products)}
	return db, fx, nil
}

func allowConnections(ctx context.Context, serverURL, name string, allow bool) error {
	c, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %t", pgx.Identifier{name}.Sanitize(), allow))
	return err
}
