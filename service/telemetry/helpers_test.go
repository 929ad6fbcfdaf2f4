package telemetry_test

import (
	"testing"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/mocktracer"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/telemetry"
)

// scratchDB creates an empty database for t (pgtest: on TEST_DATABASE_URL's
// server, or a container's), dropped on cleanup, and returns a pool config
// for it.
func scratchDB(t *testing.T) *pgxpool.Config {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewEmptyDatabase(t))
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
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
	ctx := t.Context()
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
