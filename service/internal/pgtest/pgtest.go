// Package pgtest gives each test a fresh, migrated PostgreSQL database that
// is dropped when the test ends. The server comes from TEST_DATABASE_URL;
// without it, from a testcontainers Postgres when a Docker engine answers;
// otherwise the test fails and says how to provide one. It never skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"math"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/shoplab/shoplab/service/postgres"
)

// New returns a pool on a fresh migrated database, closed and dropped when
// the test ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return NewWithConfig(t, nil)
}

// NewWithConfig is New with a hook to adjust the pool config (a tracer,
// pool size) before the pool opens.
func NewWithConfig(t testing.TB, configure func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	dsn := NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewDatabase creates a fresh migrated database and returns its URL; it is
// dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return NewDatabaseAt(t, math.MaxInt64)
}

// NewDatabaseAt is NewDatabase migrated up to and including version only,
// for tests that walk later migrations themselves.
func NewDatabaseAt(t testing.TB, version int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	server := serverURL(t)
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", redact(server), err)
	}
	defer admin.Close(ctx)

	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "shoplab_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})

	u, _ := url.Parse(server)
	u.Path = "/" + name
	dsn := u.String()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer pool.Close()
	if err := (postgres.Migrator{Pool: pool, Out: io.Discard}).UpTo(ctx, version); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// serverURL returns TEST_DATABASE_URL, or starts a container.
func serverURL(t testing.TB) string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := tcpostgres.Run(ctx, "postgres:15-alpine",
		tcpostgres.WithDatabase("postgres"), tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies())
	if err != nil {
		t.Fatalf("pgtest: no database for tests. Set TEST_DATABASE_URL to a PostgreSQL server the tests may create databases on "+
			"(e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable; `make test` does this for the local server), "+
			"or run a Docker engine so that testcontainers can start one. Starting a container failed: %v", err)
	}
	t.Cleanup(func() { _ = c.Terminate(context.Background()) })
	u, err := c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "TEST_DATABASE_URL"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return strings.TrimSpace(u.String())
}
