package pgtest

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/postgres"
)

func TestNewDatabaseAt(t *testing.T) {
	latest, err := appliedVersion(math.MaxInt64)
	if err != nil || latest == 0 {
		t.Fatalf("latest migration: %d, %v", latest, err)
	}
	vs, _ := versions()
	first := vs[0]
	// The newest version below UsersSplitTables, and a version with no
	// migration of its own between two that have one.
	before := vs[0]
	for _, v := range vs {
		if v < postgres.UsersSplitTables {
			before = v
		}
	}
	for _, tc := range []struct {
		name    string
		version int64
		want    int64
	}{
		{"Latest", math.MaxInt64, latest},
		{"BeforeUsersSplit", postgres.UsersSplitTables - 1, before},
		{"First", first, first},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := pool(t, NewDatabaseAt(t, tc.version))
			got, err := postgres.Migrator{Pool: pool, Out: io.Discard}.Version(t.Context())
			if err != nil || got != tc.want {
				t.Fatalf("version: got %d, %v; want %d", got, err, tc.want)
			}
			// The copy is a database of its own that tests may write to.
			if _, err := pool.Exec(t.Context(), "CREATE TABLE scratch (id int)"); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		for _, dsn := range []string{NewEmptyDatabase(t), NewDatabaseAt(t, first-1)} {
			var n int
			err := pool(t, dsn).QueryRow(t.Context(),
				`SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`).Scan(&n)
			if err != nil || n != 0 {
				t.Fatalf("relations in public: %d, %v; want none", n, err)
			}
		}
	})
}

// TestTemplates checks that one test binary migrates once per version,
// into a template no session may connect to, and that the databases copied
// from it go when their test ends.
func TestTemplates(t *testing.T) {
	const n = 6
	dsns := make(chan string, n)
	t.Run("Copies", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				dsn := NewDatabase(t)
				dsns <- dsn
				var c int
				if err := pool(t, dsn).QueryRow(t.Context(), "SELECT count(*) FROM products").Scan(&c); err != nil || c != 0 {
					t.Fatalf("products: %d, %v", c, err)
				}
			})
		}
	})
	close(dsns)

	s, err := serverFor(t.Context(), t, serverURL(t))
	if err != nil {
		t.Fatal(err)
	}
	latest, _ := appliedVersion(math.MaxInt64)
	var names []string
	for dsn := range dsns {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, cfg.Database)
	}
	var left int
	if err := s.admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&left); err != nil || left != 0 {
		t.Errorf("databases left after their tests: %d, %v; want none of %v", left, err, names)
	}

	var tmpls []string
	rows, err := s.admin.Query(t.Context(), "SELECT datname FROM pg_database WHERE starts_with(datname, $1) AND NOT datallowconn",
		templatePrefix+run+"_v")
	if err == nil {
		tmpls, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	want := fmt.Sprintf("%s%s_v%d", templatePrefix, run, latest)
	if err != nil || !slices.Contains(tmpls, want) {
		t.Errorf("this run's templates that allow no connections: %v, %v; want %s among them", tmpls, err, want)
	}
}

// TestCollect checks that a template goes once no keeper claims it, and
// stays while one does.
func TestCollect(t *testing.T) {
	s, err := serverFor(t.Context(), t, serverURL(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	suffix := randomHex(3)
	liveRun, deadRun := "plive"+suffix, "pdead"+suffix
	live, dead := templatePrefix+liveRun+"_v1", templatePrefix+deadRun+"_v1"
	// The keeper first, as in serverFor: another test binary may collect
	// at any moment.
	cfg, err := pgx.ParseConfig(s.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = templatePrefix + liveRun
	keeper, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer keeper.Close(ctx)
	for _, name := range []string{live, dead} {
		if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE template0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = s.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+quote(name))
		})
	}

	s.collect(ctx, t)

	for name, want := range map[string]bool{live: true, dead: false} {
		var exists bool
		if err := s.admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists != want {
			t.Errorf("%s exists after collect: %t, want %t", name, exists, want)
		}
	}
}

func pool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestBouncing: with PGTEST_PGBOUNCER set, a database's URL goes through
// the binary's pgbouncer in exec mode (another port), and DirectURL maps
// it back to the server; both reach the same database. (That pgbouncer
// pools by transaction is pgbouncertest's test.)
func TestBouncing(t *testing.T) {
	t.Setenv("PGTEST_PGBOUNCER", "1")
	ctx := t.Context()
	dsn := NewDatabase(t)
	direct := DirectURL(t, dsn)
	via, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pgx.ParseConfig(serverURL(t))
	if err != nil {
		t.Fatal(err)
	}
	if via.Port == srv.Port || via.DefaultQueryExecMode != pgx.QueryExecModeExec {
		t.Fatalf("bouncing URL %s: port %d (server's %d), mode %v; want pgbouncer's port and exec", dsn, via.Port, srv.Port, via.DefaultQueryExecMode)
	}
	d, err := pgx.ParseConfig(direct)
	if err != nil {
		t.Fatal(err)
	}
	if d.Port != srv.Port || d.Database != via.Database || d.DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
		t.Fatalf("DirectURL %s: want the server's port, the same database and pgx's default mode", direct)
	}
	// Both reach the same database: a table made through one is seen
	// through the other.
	for i, u := range []string{dsn, direct} {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		q := "CREATE TABLE bouncing (n int)"
		if i == 1 {
			q = "SELECT count(*) FROM bouncing"
		}
		_, err = conn.Exec(ctx, q)
		conn.Close(ctx)
		if err != nil {
			t.Fatalf("%s via %s: %v", q, u, err)
		}
	}
	t.Setenv("PGTEST_PGBOUNCER", "")
	if DirectURL(t, direct) != direct || Bouncing() {
		t.Fatal("without PGTEST_PGBOUNCER, DirectURL must return its argument")
	}
}
