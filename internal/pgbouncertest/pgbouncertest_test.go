package pgbouncertest_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/pgbouncertest"
)

// TestExecModeThroughTransactionPooling runs, through a real pgbouncer in
// transaction pooling mode with one server connection shared by two
// clients, what shoplab's stores do: queries with parameters, a
// transaction with SET LOCAL sent with its BEGIN, a batch that leaves a
// transaction open across round trips, COPY FROM and a cursor. With
// default_query_exec_mode=exec every one works; with pgx's default
// (cache_statement) the second client trips over the first one's
// prepared statement, which is why docs/pgbouncer.md asks for exec.
func TestExecModeThroughTransactionPooling(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, err := benchkit.CreateDatabase(ctx, benchkit.DefaultServer(), "pgbouncertest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Drop)
	dsn := db.URL
	b := pgbouncertest.New(t, dsn, pgbouncertest.Options{DefaultPoolSize: 1})
	via := b.URL(dsn)
	if !strings.Contains(via, "default_query_exec_mode=exec") {
		t.Fatalf("URL %s lacks the exec mode", via)
	}

	t.Run("Exec", func(t *testing.T) {
		a, c := connect(t, via), connect(t, via)
		for i := range 20 {
			for _, conn := range []*pgx.Conn{a, c} {
				var n int64
				var s string
				if err := conn.QueryRow(ctx, "SELECT $1::int8 + 1, $2::text", i, "x").Scan(&n, &s); err != nil || n != int64(i+1) || s != "x" {
					t.Fatalf("query %d: %v (%d, %q)", i, err, n, s)
				}
			}
		}
		// SET LOCAL with BEGIN, then a second round trip in the same
		// transaction: it must be the same server connection.
		b1 := &pgx.Batch{}
		b1.Queue("BEGIN")
		b1.Queue("SET LOCAL statement_timeout = 1234")
		b1.Queue("SELECT current_setting('statement_timeout'), pg_backend_pid()")
		var timeout string
		var pid1, pid2 int32
		br := a.SendBatch(ctx, b1)
		for range 2 {
			if _, err := br.Exec(); err != nil {
				t.Fatal(err)
			}
		}
		if err := br.QueryRow().Scan(&timeout, &pid1); err != nil {
			t.Fatal(err)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.QueryRow(ctx, "SELECT current_setting('statement_timeout'), pg_backend_pid()").Scan(&timeout, &pid2); err != nil {
			t.Fatal(err)
		}
		if timeout != "1234ms" || pid1 != pid2 {
			t.Fatalf("open transaction across round trips: timeout %q, backends %d then %d", timeout, pid1, pid2)
		}
		if _, err := a.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		// SET LOCAL ended with the transaction: nothing leaked to the
		// server connection the other client gets next.
		if err := c.QueryRow(ctx, "SELECT current_setting('statement_timeout')").Scan(&timeout); err != nil || timeout != "0" {
			t.Fatalf("statement_timeout after COMMIT, other client: %q, %v", timeout, err)
		}
		// COPY FROM and a cursor, each in a transaction.
		if _, err := a.Exec(ctx, "CREATE TABLE bouncer_copy (id int8, name text)"); err != nil {
			t.Fatal(err)
		}
		tx, err := a.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"bouncer_copy"}, []string{"id", "name"},
			pgx.CopyFromRows([][]any{{int64(1), "a"}, {int64(2), "b"}, {int64(3), "c"}}))
		if err != nil || n != 3 {
			t.Fatalf("copy: %d, %v", n, err)
		}
		if _, err := tx.Exec(ctx, "DECLARE cur NO SCROLL CURSOR FOR SELECT id FROM bouncer_copy ORDER BY id"); err != nil {
			t.Fatal(err)
		}
		var sum int64
		for range 3 {
			var id int64
			if err := tx.QueryRow(ctx, "FETCH 1 FROM cur").Scan(&id); err != nil {
				t.Fatal(err)
			}
			sum += id
		}
		if err := tx.Commit(ctx); err != nil || sum != 6 {
			t.Fatalf("cursor: sum %d, %v", sum, err)
		}
	})

	t.Run("CacheStatementBreaks", func(t *testing.T) {
		plain := strings.Replace(via, "default_query_exec_mode=exec", "default_query_exec_mode=cache_statement", 1)
		a, c := connect(t, plain), connect(t, plain)
		var err error
		for i := 0; i < 10 && err == nil; i++ {
			for _, conn := range []*pgx.Conn{a, c} {
				var n int64
				if err = conn.QueryRow(ctx, "SELECT $1::int8", i).Scan(&n); err != nil {
					break
				}
			}
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "42P05" && pgErr.Code != "26000") {
			t.Fatalf("cache_statement through transaction pooling: %v, want prepared statement already exists (42P05) or does not exist (26000)", err)
		}
	})
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// TestMissingBinary: without pgbouncer in $PATH the helper finds
// Debian's, or says to run make deps.
func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	p, err := pgbouncertest.Path()
	switch {
	case err == nil && p != "/usr/sbin/pgbouncer":
		t.Fatalf("Path = %s with an empty PATH", p)
	case err != nil && !strings.Contains(err.Error(), "make deps"):
		t.Fatalf("error %q does not name make deps", err)
	}
}

// TestRetarget: a bouncer pointed at a port where no PostgreSQL listens
// fails its clients; once retargeted at the server (what a failover's
// reconfiguration does) new clients get through, without a restart.
func TestRetarget(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	server := benchkit.DefaultServer()
	wrong, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	wrong.Host = "127.0.0.1:1" // nothing listens on port 1
	b := pgbouncertest.New(t, wrong.String(), pgbouncertest.Options{
		Settings: map[string]string{"server_login_retry": "0", "query_wait_timeout": "2"}})
	via := b.URL(server)
	if conn, err := pgx.Connect(ctx, via); err == nil {
		err = conn.Ping(ctx)
		_ = conn.Close(ctx)
		if err == nil {
			t.Fatal("a query through a bouncer aimed at nothing succeeded")
		}
	}
	if err := b.Retarget(server); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, via)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Retarget: %v\n%s", err, b.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
