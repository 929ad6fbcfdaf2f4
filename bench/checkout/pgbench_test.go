package main

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// recorder is a pgx tracer that records the round trips a connection
// makes: each query alone, each batch with all its statements.
type recorder struct {
	mu    sync.Mutex
	trips [][]string
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips = append(r.trips, []string{d.SQL})
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *recorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	var trip []string
	for _, q := range d.Batch.QueuedQueries {
		trip = append(trip, q.SQL)
	}
	r.trips = append(r.trips, trip)
	return ctx
}

func (r *recorder) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *recorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func (r *recorder) take() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.trips
	r.trips = nil
	return t
}

// statement is a statement normalised for comparison: its `-- name:`
// (without the telemetry flags after it) and the tables it writes or locks.
type statement struct {
	name   string
	writes string
}

var (
	nameRE  = regexp.MustCompile(`(?m)^-- name: (\S+)`)
	writeRE = regexp.MustCompile(`(?i)\b(INSERT INTO|UPDATE|FOR UPDATE OF)\s+(\w+)`)
)

func normalise(sql string) statement {
	s := statement{name: "(unnamed) " + strings.Join(strings.Fields(sql), " ")}
	if m := nameRE.FindStringSubmatch(sql); m != nil {
		s.name = m[1]
	}
	var ws []string
	for _, m := range writeRE.FindAllStringSubmatch(sql, -1) {
		verb := strings.ToUpper(m[1])
		if verb == "FOR UPDATE OF" {
			verb = "LOCK" // the alias: the lock statement locks products (p)
		}
		ws = append(ws, verb+" "+strings.ToLower(m[2]))
	}
	slices.Sort(ws)
	s.writes = strings.Join(slices.Compact(ws), ", ")
	return s
}

// scriptTrips splits a pgbench script into the round trips of its two
// paths: ok (the \if branch: everything was locked) and refused (\else).
// A pipeline is one round trip; a statement outside one is a round trip of
// its own.
func scriptTrips(script string) (ok, refused [][]statement) {
	var trip []statement
	var cur strings.Builder
	branch := "" // "", "if", "else"
	inPipeline := false
	add := func(t []statement) {
		if branch != "else" {
			ok = append(ok, t)
		}
		if branch != "if" {
			refused = append(refused, t)
		}
	}
	for _, line := range strings.Split(script, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == `\startpipeline`:
			inPipeline, trip = true, nil
		case t == `\endpipeline`:
			inPipeline = false
			add(trip)
		case strings.HasPrefix(t, `\if`):
			branch = "if"
		case t == `\else`:
			branch = "else"
		case t == `\endif`:
			branch = ""
		case strings.HasPrefix(t, `\`):
			// \set: no statement
		case cur.Len() == 0 && (t == "" || (strings.HasPrefix(t, "--") && !strings.HasPrefix(t, "-- name:"))):
			// a comment outside any statement
		default:
			cur.WriteString(line + "\n")
			if strings.HasSuffix(t, ";") || strings.HasSuffix(t, `\gset`) {
				st := normalise(strings.TrimSuffix(strings.TrimSuffix(cur.String(), "\n"), `\gset`))
				cur.Reset()
				if inPipeline {
					trip = append(trip, st)
				} else {
					add([]statement{st})
				}
			}
		}
	}
	return ok, refused
}

func normaliseTrips(trips [][]string) [][]statement {
	var out [][]statement
	for _, t := range trips {
		var n []statement
		for _, sql := range t {
			n = append(n, normalise(strings.TrimSuffix(strings.TrimSpace(sql), ";")))
		}
		out = append(out, n)
	}
	return out
}

func flat(trips [][]statement) []statement {
	var out []statement
	for _, t := range trips {
		out = append(out, t...)
	}
	return out
}

// TestPgbenchScriptMatchesCheckout runs real checkouts with an
// Idempotency-Key (one placed, one refused for want of stock) through
// postgres.DB with a pgx tracer, and checks that the pgbench script sends
// the same statements (by their `-- name:` and the tables each writes or
// locks) in the same order on both paths, grouped in the same round trips
// but for the one documented difference: pgbench locks the products in a
// round trip of its own, since its \gset is not allowed in a pipeline.
func TestPgbenchScriptMatchesCheckout(t *testing.T) {
	ctx := t.Context()
	db, err := benchkit.CreateDatabase(ctx, benchkit.DefaultServer(), "checkout_sql")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Drop)
	rec := &recorder{}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = rec
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := createCatalogTable(ctx, pool); err != nil {
		t.Fatal(err)
	}
	ds, err := createDataset(ctx, pool, "sql", 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	store := postgres.New(pool)
	checkout := func(key string) error {
		_, err := store.Checkout(ctx, shop.CheckoutRequest{UserID: ds.user, IdempotencyKey: key,
			Items: []shop.CartLine{{ProductID: ds.products[0], Quantity: 1}}})
		return err
	}
	// A warm-up on the other product: the users schema is detected once.
	if _, err := store.Checkout(ctx, shop.CheckoutRequest{UserID: ds.user, IdempotencyKey: "warm",
		Items: []shop.CartLine{{ProductID: ds.products[1], Quantity: 1}}}); err != nil {
		t.Fatal(err)
	}
	rec.take()
	if err := checkout("placed"); err != nil {
		t.Fatal(err)
	}
	placed := normaliseTrips(rec.take())
	if err := checkout("refused"); shop.ErrorCode(err) != shop.ECONFLICT {
		t.Fatalf("second checkout of the last unit: %v, want ECONFLICT", err)
	}
	refused := normaliseTrips(rec.take())

	ok, no := scriptTrips(pgbenchScript(scenario{name: "sql", products: 2, stock: 1, maxLines: 1}))
	for _, c := range []struct {
		path            string
		service, script [][]statement
	}{{"placed", placed, ok}, {"refused", refused, no}} {
		if len(c.service) != 2 {
			t.Errorf("%s: the service made %d round trips, want 2: %v", c.path, len(c.service), c.service)
		}
		if got, want := flat(c.script), flat(c.service); !slices.Equal(got, want) {
			t.Errorf("%s: the pgbench script's statements differ from the service's:\nscript:  %v\nservice: %v", c.path, got, want)
		}
		// pgbench's first two round trips are the service's first, split
		// before the lock.
		if len(c.script) == 3 && len(c.service) == 2 {
			last := c.script[1]
			if len(last) != 1 || last[0].name != "checkout.lock_products" {
				t.Errorf("%s: pgbench's second round trip is %v, want the lock alone", c.path, last)
			}
			if !slices.Equal(c.script[2], c.service[1]) {
				t.Errorf("%s: last round trip: script %v, service %v", c.path, c.script[2], c.service[1])
			}
		} else {
			t.Errorf("%s: pgbench makes %d round trips, want 3 (the service's 2, the first split before the lock)", c.path, len(c.script))
		}
	}
}
