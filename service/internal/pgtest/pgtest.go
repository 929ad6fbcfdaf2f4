// Package pgtest gives each test a fresh, migrated PostgreSQL database that
// is dropped when the test ends. The server comes from TEST_DATABASE_URL;
// without it, from one testcontainers Postgres per test binary when a
// Docker engine answers; otherwise the test fails and says how to provide
// one. It never skips.
//
// Migrating is the slow part, so a test binary migrates once per schema
// version, into a template database, and each test's database is a copy of
// it (CREATE DATABASE ... TEMPLATE). See template.go for how templates are
// named, kept and collected on a server that several test binaries,
// engineers and CI share.
//
// With PGTEST_PGBOUNCER=1 in the environment (make test-pgbouncer), the
// URLs and pools it hands out go through one real pgbouncer per test
// binary, in transaction pooling mode, with default_query_exec_mode=exec
// (docs/pgbouncer.md): the same tests then prove that the stores work
// behind PgBouncer. Creating, copying and dropping databases stays direct.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
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
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
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

// NewEmptyDatabase creates a fresh database without any schema (a copy of
// template0, not even goose's version table) and returns its URL; it is
// dropped when the test ends. It is NewDatabaseAt(t, 0).
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return NewDatabaseAt(t, 0)
}

// NewDatabaseAt is NewDatabase migrated up to and including version only,
// for tests that walk later migrations themselves. A version below the
// first migration's gives an empty database (see NewEmptyDatabase).
func NewDatabaseAt(t testing.TB, version int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := serverFor(ctx, t, serverURL(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	src, err := s.template(ctx, version)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := "shoplab_test_" + randomHex(6)
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE "+quote(src)); err != nil {
		t.Fatalf("pgtest: create database %s from %s: %v", name, src, err)
	}
	dsn := s.databaseURL(name)
	if Bouncing() {
		b, err := s.bouncer()
		if err != nil {
			t.Fatalf("pgtest: PGTEST_PGBOUNCER is set: %v", err)
		}
		dsn = b.URL(dsn)
	}
	t.Cleanup(func() {
		// t.Context() has ended by now: the drop has its own bound.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	return dsn
}

// DirectURL returns dsn, a URL this package handed out, as it reaches the
// server directly: without the pgbouncer of PGTEST_PGBOUNCER (and its
// exec mode), for what must not go through transaction pooling
// (migrations, docs/pgbouncer.md). Without PGTEST_PGBOUNCER it is dsn.
func DirectURL(t testing.TB, dsn string) string {
	t.Helper()
	if !Bouncing() {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	srv, err := url.Parse(serverURL(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Host = srv.Host
	q := u.Query()
	q.Del("default_query_exec_mode")
	u.RawQuery = q.Encode()
	return u.String()
}

// Bouncing reports whether PGTEST_PGBOUNCER asks for the databases to be
// reached through pgbouncer.
func Bouncing() bool {
	v := os.Getenv("PGTEST_PGBOUNCER")
	return v != "" && v != "0" && v != "false"
}

// serverURL returns TEST_DATABASE_URL, or the URL of this test binary's
// container, started by the first test that needs it.
func serverURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	u, err := container()
	if err != nil {
		t.Fatalf("pgtest: no database for tests. Set TEST_DATABASE_URL to a PostgreSQL server the tests may create databases on "+
			"(e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable; `make test` does this for the local server), "+
			"or run a Docker engine so that testcontainers can start one. Starting a container failed: %v", err)
	}
	return u
}

// container starts one PostgreSQL container per test binary, on its first
// call; later calls return the same URL, or the same error without trying
// again. The container lives as long as the test binary: testcontainers'
// reaper (Ryuk) removes it once the binary has exited, since no test may
// end it while others still use it.
var container = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := tcpostgres.Run(ctx, "postgres:15-alpine",
		tcpostgres.WithDatabase("postgres"), tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies())
	if err != nil {
		return "", err
	}
	u, err := c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = c.Terminate(context.Background())
		return "", err
	}
	return u, nil
})

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// databaseURL is the server's URL with the database replaced by name.
func (s *server) databaseURL(name string) string {
	u, _ := url.Parse(s.url) // parsed already by serverFor
	u.Path = "/" + name
	return u.String()
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

// quote quotes a database name the helper made up.
func quote(name string) string { return pgx.Identifier{name}.Sanitize() }
