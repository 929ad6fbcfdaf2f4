package telemetry_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/mocktracer"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/telemetry"
)

// scratchDB creates an empty database for t on the server of
// TEST_DATABASE_URL, drops it on cleanup, and returns a pool config for it.
func scratchDB(t *testing.T) *pgxpool.Config {
	t.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		t.Fatal("TEST_DATABASE_URL is not set: these tests need PostgreSQL, e.g. " +
			"TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to TEST_DATABASE_URL: %v", err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "telemetry_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("create scratch database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("drop scratch database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop scratch database %s: %v", name, err)
		}
	})
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	cfg.ConnConfig.Database = name
	return cfg
}

// newPool returns a pool on a scratch database whose connections carry
// tel's application_name and whose tracer is the QueryTracer (combined with
// extra tracers, if any), closed on cleanup. setup statements run first,
// through a connection without the tracer.
func newPool(t *testing.T, tel *telemetry.Telemetry, setup string, extra ...pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	return newPoolWith(t, tel, setup, nil, extra...)
}

// newPoolWith is newPool with configure applied to the pool config last.
func newPoolWith(t *testing.T, tel *telemetry.Telemetry, setup string, configure func(*pgxpool.Config), extra ...pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg := scratchDB(t)
	ctx := context.Background()
	if setup != "" {
		conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if _, err := conn.Exec(ctx, setup); err != nil {
			t.Fatalf("setup: %v", err)
		}
		_ = conn.Close(ctx)
	}
	cfg.MaxConns = 6
	cfg.ConnConfig.RuntimeParams["application_name"] = tel.Config.AppName
	var tr pgx.QueryTracer = telemetry.NewQueryTracer(tel)
	if len(extra) > 0 {
		tr = telemetry.MultiTracer(append([]pgx.QueryTracer{tr}, extra...)...)
	}
	cfg.ConnConfig.Tracer = tr
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// spansNamed returns the finished spans with operation op and resource res.
func spansNamed(mt mocktracer.Tracer, op, res string) []*mocktracer.Span {
	var out []*mocktracer.Span
	for _, s := range mt.FinishedSpans() {
		if s.OperationName() == op && s.Tag("resource.name") == res {
			out = append(out, s)
		}
	}
	return out
}

// eventually polls cond every 10ms for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
