// Package pgcluster starts PostgreSQL clusters of its own for tests that
// need a server to themselves: a primary (initdb in a temporary directory,
// a free port) and hot standbys of it made by scripts/replica.sh, the
// project's replica script. Tests that stop, pause or break a server use
// these, never the shared one of TEST_DATABASE_URL.
//
// The servers run as the postgres user: as root, the programs run through
// runuser -u postgres. The PostgreSQL 15 binaries are looked up in PG_BIN,
// else /usr/lib/postgresql/15/bin; when they are missing the test fails
// naming `make deps`.
package pgcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/internal/pgproc"
)

// Cluster is a PostgreSQL server started by this package.
type Cluster struct {
	// Dir is its data directory.
	Dir string
	// Port is the port it listens on, on 127.0.0.1.
	Port int
	// primary is the cluster a standby follows; nil for a primary.
	primary *Cluster
	// slot is a standby's replication slot on its primary.
	slot string
}

// URL returns the URL of database db on the cluster, as user postgres.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// binDir returns the directory of the PostgreSQL programs, failing the test
// when initdb is not there.
func binDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("PG_BIN")
	if dir == "" {
		dir = "/usr/lib/postgresql/15/bin"
	}
	if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
		t.Fatalf("pgcluster: no PostgreSQL 15 server programs in %s (set PG_BIN, or run `make deps`): %v", dir, err)
	}
	return dir
}

// asPostgres returns a command that runs name as the postgres user.
func asPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

// run runs cmd and fails the test with its output when it fails.
func run(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgcluster: %s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := pgproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// tempDir makes a directory the postgres user owns, removed on cleanup.
func tempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoplab-pgcluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cred, err := pgproc.PostgresCredential()
	if err != nil {
		t.Fatalf("pgcluster: running as root needs a postgres user (make deps installs PostgreSQL): %v", err)
	}
	if err := pgproc.Chown(cred, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Primary starts a new primary cluster (initdb, trust authentication, a
// free port, replication allowed from the loopback, fsync off) and stops it
// on cleanup.
func Primary(t testing.TB) *Cluster {
	t.Helper()
	bin := binDir(t)
	dir := tempDir(t)
	c := &Cluster{Dir: filepath.Join(dir, "primary"), Port: FreePort(t)}
	run(t, asPostgres(t.Context(), filepath.Join(bin, "initdb"), "-D", c.Dir, "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8", "--locale=C.UTF-8"))
	conf := fmt.Sprintf(`
port = %d
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 40
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
`, c.Port, c.Dir)
	appendFile(t, filepath.Join(c.Dir, "postgresql.conf"), conf)
	appendFile(t, filepath.Join(c.Dir, "pg_hba.conf"), "host replication all 127.0.0.1/32 trust\n")
	c.start(t, bin)
	t.Cleanup(func() { c.stopNow(bin) })
	return c
}

// Standby makes a hot standby of primary with scripts/replica.sh create (a
// replication slot, pg_basebackup -R, a free port) and destroys it on
// cleanup (before the primary stops).
func Standby(t testing.TB, primary *Cluster) *Cluster {
	t.Helper()
	binDir(t)
	dir := tempDir(t)
	c := &Cluster{Dir: filepath.Join(dir, "standby"), Port: FreePort(t), primary: primary}
	c.slot = fmt.Sprintf("pgcluster_%d", c.Port)
	t.Cleanup(func() {
		out, err := c.script(context.Background(), "destroy").CombinedOutput()
		if err != nil {
			t.Errorf("pgcluster: replica.sh destroy: %v\n%s", err, out)
		}
	})
	run(t, c.script(t.Context(), "create"))
	return c
}

// script returns the command that runs scripts/replica.sh verb for the
// standby c.
func (c *Cluster) script(ctx context.Context, verb string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(), "scripts", "replica.sh"), verb)
	cmd.Env = append(os.Environ(),
		"PRIMARY_HOST=127.0.0.1", "PRIMARY_PORT="+strconv.Itoa(c.primary.Port),
		"REPLICA_PORT="+strconv.Itoa(c.Port), "REPLICA_DIR="+c.Dir, "REPLICA_SLOT="+c.slot)
	return cmd
}

// Stop stops a standby with scripts/replica.sh stop.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	run(t, c.script(t.Context(), "stop"))
}

// Start starts a stopped standby with scripts/replica.sh start.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	run(t, c.script(t.Context(), "start"))
}

// Script runs scripts/replica.sh verb for the standby c and returns its
// output and error.
func (c *Cluster) Script(ctx context.Context, verb string) (string, error) {
	out, err := c.script(ctx, verb).CombinedOutput()
	return string(out), err
}

func (c *Cluster) start(t testing.TB, bin string) {
	t.Helper()
	run(t, asPostgres(t.Context(), filepath.Join(bin, "pg_ctl"), "-D", c.Dir, "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60", "start"))
}

// stopNow stops the cluster at once, if it runs.
func (c *Cluster) stopNow(bin string) {
	_ = asPostgres(context.Background(), filepath.Join(bin, "pg_ctl"), "-D", c.Dir, "-m", "immediate", "-w", "stop").Run()
}

// Exec runs sql on database db of the cluster.
func (c *Cluster) Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	conn := c.Connect(t, db)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("pgcluster: %s on port %d: %v", sql, c.Port, err)
	}
}

// Connect opens a connection to database db of the cluster, closed on
// cleanup.
func (c *Cluster) Connect(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.URL(db))
	if err != nil {
		t.Fatalf("pgcluster: connect to port %d: %v", c.Port, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// WaitReplayed waits until the standby has replayed the primary's WAL up to
// its current insert position: everything committed on the primary before
// the call, even what its asynchronous commits have not written yet
// (pg_current_wal_lsn would lag behind those).
func (c *Cluster) WaitReplayed(t testing.TB) {
	t.Helper()
	p := c.primary.Connect(t, "postgres")
	var lsn string
	if err := p.QueryRow(t.Context(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	s := c.Connect(t, "postgres")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var done bool
		if err := s.QueryRow(t.Context(), `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, lsn).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgcluster: the standby on port %d did not replay up to %s in 30s", c.Port, lsn)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func appendFile(t testing.TB, name, text string) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// repoRoot is the repository root: three directories above this file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}
