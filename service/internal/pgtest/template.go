package pgtest

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"

	"github.com/shoplab/shoplab/internal/pgbouncertest"
	"github.com/shoplab/shoplab/migrations"
	"github.com/shoplab/shoplab/service/postgres"
)

// Templates.
//
// A test binary migrates once per schema version, into a template database
// named shoplab_tmpl_<run>_v<version>, where <run> is the binary's pid and
// a random part (pids repeat across the machines that share a server). Each
// test's database is then CREATE DATABASE ... TEMPLATE it, which copies
// files instead of running SQL.
//
// A test binary has no hook to drop its templates when it exits (that
// would take a TestMain in every package), so they are garbage collected
// instead: while a binary runs, one idle session of its own, the keeper,
// stays connected to the server with the application_name
// shoplab_tmpl_<run>. The keeper is never closed; its session ends when the
// process does, however it ends. Whenever a test binary first connects to a
// server, it drops every shoplab_tmpl_ database that no live keeper
// claims. The templates of a run therefore stay on the server until the next
// test binary starts, and never longer.
//
// CREATE DATABASE ... TEMPLATE fails while another session is connected to
// the template, so a template is created under a lock (one at a time per
// binary), every connection that migrated it is closed, and it is then
// altered to ALLOW_CONNECTIONS false so that no one connects to it later.

const templatePrefix = "shoplab_tmpl_"

// run names this test binary's keeper and templates on every server.
var run = fmt.Sprintf("p%dr%s", os.Getpid(), randomHex(3))

// servers holds, per server URL, what this test binary keeps there. It is
// the package's only state besides the container: templates are shared by
// every test of the binary, which is their point.
var servers struct {
	sync.Mutex
	m map[string]*server
}

// server is one PostgreSQL server as this test binary uses it.
type server struct {
	url string
	// admin creates and drops the databases. It connects to the server
	// URL's own database, never to a template.
	admin *pgxpool.Pool
	// keeper is the idle session whose application_name claims this run's
	// templates; never closed (see above).
	keeper *pgx.Conn

	mu        sync.Mutex       // held while a template is created
	templates map[int64]string // migration version -> template name

	// bouncer is the pgbouncer in front of this server when
	// PGTEST_PGBOUNCER is set, started by the first test that needs it
	// and ended with the test binary (pgbouncertest's Pdeathsig).
	bouncer func() (*pgbouncertest.Bouncer, error)
}

// serverFor returns this binary's server at serverURL, connecting to it
// and collecting stale templates there on first use.
func serverFor(ctx context.Context, t testing.TB, serverURL string) (*server, error) {
	servers.Lock()
	defer servers.Unlock()
	if s := servers.m[serverURL]; s != nil {
		return s, nil
	}
	if u, err := url.Parse(serverURL); err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("%s: want a postgres:// URL", redact(serverURL))
	}
	kcfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redact(serverURL), err)
	}
	kcfg.RuntimeParams["application_name"] = templatePrefix + run
	// The keeper outlives ctx's test; pgx uses ctx for connecting only.
	keeper, err := pgx.ConnectConfig(ctx, kcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(serverURL), err)
	}
	acfg, err := pgxpool.ParseConfig(serverURL)
	if err != nil {
		_ = keeper.Close(ctx)
		return nil, fmt.Errorf("%s: %w", redact(serverURL), err)
	}
	acfg.MaxConns = 4
	acfg.ConnConfig.RuntimeParams["application_name"] = "pgtest"
	admin, err := pgxpool.NewWithConfig(ctx, acfg)
	if err != nil {
		_ = keeper.Close(ctx)
		return nil, fmt.Errorf("connect to %s: %w", redact(serverURL), err)
	}
	s := &server{url: serverURL, admin: admin, keeper: keeper, templates: map[int64]string{}}
	s.bouncer = sync.OnceValues(func() (*pgbouncertest.Bouncer, error) {
		// Many tests run in parallel, each with its own database (a pool of
		// its own in pgbouncer): room for all their clients.
		return pgbouncertest.Start(context.Background(), serverURL, pgbouncertest.Options{MaxClientConn: 2000})
	})
	s.collect(ctx, t)
	if servers.m == nil {
		servers.m = map[string]*server{}
	}
	servers.m[serverURL] = s
	return s, nil
}

// collectStale lists the templates whose run has no keeper connected.
const collectStale = `
SELECT d.datname FROM pg_database d
WHERE starts_with(d.datname, 'shoplab_tmpl_')
  AND NOT EXISTS (SELECT FROM pg_stat_activity a
                  WHERE starts_with(a.application_name, 'shoplab_tmpl_')
                    AND starts_with(d.datname, a.application_name || '_v'))`

// collect drops the templates of runs that have ended. A failure is only
// logged: another binary may be dropping the same, or they may belong to
// a role that may not drop them; the next run tries again.
func (s *server) collect(ctx context.Context, t testing.TB) {
	rows, err := s.admin.Query(ctx, collectStale)
	if err != nil {
		t.Logf("pgtest: list stale templates: %v", err)
		return
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Logf("pgtest: list stale templates: %v", err)
		return
	}
	for _, name := range stale {
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop stale template %s: %v", name, err)
		}
	}
}

// template returns the name of the database to copy for a database
// migrated up to and including version: template0 when no migration is
// that old, else this run's template at the newest migration not newer than
// version, which it creates on first use.
func (s *server) template(ctx context.Context, version int64) (string, error) {
	v, err := appliedVersion(version)
	if err != nil {
		return "", err
	}
	if v == 0 {
		return "template0", nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if name, ok := s.templates[v]; ok {
		return name, nil
	}
	name := fmt.Sprintf("%s%s_v%d", templatePrefix, run, v)
	if err := s.createTemplate(ctx, name, v); err != nil {
		// Leave nothing half made behind; the next test tries again.
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = s.admin.Exec(dctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)")
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	s.templates[v] = name
	return name, nil
}

// createTemplate creates name, migrates it up to version with the
// service's own Migrator (what `shopd migrate` runs), closes every
// connection to it and forbids new ones.
func (s *server) createTemplate(ctx context.Context, name string, version int64) error {
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE template0"); err != nil {
		return err
	}
	// The Migrator takes its connection settings from a pool, and opens and
	// closes a connection of its own; this pool never connects.
	pool, err := pgxpool.New(ctx, s.databaseURL(name))
	if err != nil {
		return err
	}
	err = postgres.Migrator{Pool: pool, Out: io.Discard}.UpTo(ctx, version)
	pool.Close()
	if err != nil {
		return err
	}
	_, err = s.admin.Exec(ctx, "ALTER DATABASE "+quote(name)+" ALLOW_CONNECTIONS false")
	return err
}

// versions lists the embedded migrations' versions, oldest first.
var versions = sync.OnceValues(func() ([]int64, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return nil, err
	}
	var vs []int64
	for _, n := range names {
		v, err := goose.NumericComponent(n)
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", n, err)
		}
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs, nil
})

// appliedVersion returns the newest migration version not newer than
// version, 0 if there is none: the version that migrating up to version
// ends at.
func appliedVersion(version int64) (int64, error) {
	vs, err := versions()
	if err != nil {
		return 0, err
	}
	var v int64
	for _, m := range vs {
		if m <= version {
			v = m
		}
	}
	return v, nil
}
