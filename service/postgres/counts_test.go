package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// total is GET /products' pagination.total as the store reports it.
func total(t *testing.T, db *postgres.DB, page int) int {
	t.Helper()
	p, err := db.ListProducts(t.Context(), shop.ProductFilter{Page: page, Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	return p.Total
}

func countAll(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM products`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestProductTotal: the catalogue's total comes from the counter that
// migration 00018's statement-level triggers keep, and stays exact through
// every way products are written: the seed's INSERT ... SELECT, single
// creates, COPY imports (direct and through the SKU upsert, whose updated
// rows are not new), a rolled-back import, DELETE and TRUNCATE.
func TestProductTotal(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()
	check := func(t *testing.T, step string) {
		t.Helper()
		want := countAll(t, db)
		if got := total(t, db, 1); got != want {
			t.Fatalf("after %s: total %d, count(*) %d", step, got, want)
		}
		// A page past the end reports it too (its own statement).
		if got := total(t, db, 100_000); got != want {
			t.Fatalf("after %s: total past the end %d, count(*) %d", step, got, want)
		}
	}
	check(t, "seed")
	addProduct(t, db, "One more", nil)
	check(t, "create")
	if _, err := db.ImportProducts(ctx, &genSource{n: 300, withSKUFrom: 100, failAfter: -1, price: 100}); err != nil {
		t.Fatal(err)
	}
	check(t, "import")
	if res, err := db.ImportProducts(ctx, &genSource{n: 300, withSKUFrom: 100, failAfter: -1, price: 200}); err != nil || res.Updated != 200 {
		t.Fatalf("%+v %v", res, err)
	}
	check(t, "re-import (upsert)")
	if _, err := db.ImportProducts(ctx, &genSource{n: 300, withSKUFrom: -1, failAfter: 200, fail: shop.Errorf(shop.EINVALID, "bad")}); err == nil {
		t.Fatal("failing import succeeded")
	}
	check(t, "rolled-back import")
	if _, err := db.Pool.Exec(ctx, `DELETE FROM products WHERE name LIKE 'Generated %' AND sku IS NULL`); err != nil {
		t.Fatal(err)
	}
	check(t, "delete")
	if _, err := db.Pool.Exec(ctx, `TRUNCATE products CASCADE`); err != nil {
		t.Fatal(err)
	}
	check(t, "truncate")
	if got := total(t, db, 1); got != 0 {
		t.Fatalf("total %d after truncate", got)
	}
	addProduct(t, db, "After truncate", nil)
	check(t, "create after truncate")
}

// TestProductTotalConcurrentWriters: writers do not queue behind each
// other's counter row. An import's transaction held open (it holds the
// counter row it updated until its commit) does not block a create on
// another connection, and concurrent creates leave the total exact.
func TestProductTotalConcurrentWriters(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `INSERT INTO products (name, price, inventory) SELECT 'Open ' || g, 1, 1 FROM generate_series(1, 50) g`); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := db.CreateProduct(cctx, shop.NewProduct{Name: "Beside an open import", Price: 100, Inventory: 1}); err != nil {
		t.Fatalf("create beside an open inserting transaction: %v (it waited for the other's counter row)", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				if _, err := db.CreateProduct(ctx, shop.NewProduct{Name: "Concurrent " + string(rune('a'+w)) + string(rune('a'+i)), Price: 100, Inventory: 1}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := total(t, db, 1), countAll(t, db); got != want || want != 100+1+200+50 {
		t.Fatalf("total %d, count(*) %d, want %d", got, want, 100+1+200+50)
	}
}

// TestListProductsPlan: the first page of GET /products reads its rows
// through products_created_at_idx and the counter rows: no sequential scan
// of products, no window aggregate over all of them, whatever the size.
func TestListProductsPlan(t *testing.T) {
	t.Parallel()
	db := postgres.New(pgtest.New(t))
	ctx := t.Context()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO products (name, price, inventory, created_at)
		SELECT 'Bulk ' || g, 1, 100, now() - g * interval '1 second' FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `ANALYZE products`); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		plan := explainPrepared(t, db, mode, postgres.ListProductsSQL, "20", "0")
		if strings.Contains(plan, "Seq Scan on products") || strings.Contains(plan, "WindowAgg") || !strings.Contains(plan, "products_created_at_idx") {
			t.Errorf("%s plan of the first page reads every product:\n%s", mode, plan)
		}
	}
	if got := total(t, db, 1); got != 20000 {
		t.Errorf("total %d, want 20000", got)
	}
}

// explainPrepared prepares sql and explains its execution with args
// (literals) under plan_cache_mode mode: force_generic_plan shows the plan
// that a statement cached by pgx runs after its fifth execution.
func explainPrepared(t *testing.T, db *postgres.DB, mode, sql string, args ...string) string {
	t.Helper()
	ctx := t.Context()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	defer conn.Exec(context.WithoutCancel(ctx), `RESET plan_cache_mode`) //nolint:errcheck
	defer conn.Exec(context.WithoutCancel(ctx), `DEALLOCATE explained`)  //nolint:errcheck
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `PREPARE explained AS `+sql); err != nil {
		t.Fatal(err)
	}
	var lines []string
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE explained(`+strings.Join(args, ", ")+`)`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestImportAnalyzes: an import large against what the planner believes
// the catalogue holds refreshes its statistics after the commit; a small
// one does not (no extra statement).
func TestImportAnalyzes(t *testing.T) {
	t.Parallel()
	db := postgres.New(pgtest.New(t))
	ctx := t.Context()
	reltuples := func(t *testing.T) float64 {
		t.Helper()
		var n float64
		if err := db.Pool.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'products'::regclass`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	res, err := db.ImportProducts(ctx, &genSource{n: postgres.ImportAnalyzeMinRows - 1, withSKUFrom: -1, failAfter: -1, price: 100})
	if err != nil || res.Analyzed {
		t.Fatalf("small import: %+v %v, want not analyzed", res, err)
	}
	if n := reltuples(t); n > 0 {
		t.Fatalf("reltuples %v after a small import: analyzed", n)
	}
	res, err = db.ImportProducts(ctx, &genSource{n: 5000, withSKUFrom: -1, failAfter: -1, price: 100})
	if err != nil || !res.Analyzed || res.AnalyzeErr != nil {
		t.Fatalf("large import: %+v %v, want analyzed", res, err)
	}
	if n := reltuples(t); n != 5000+postgres.ImportAnalyzeMinRows-1 {
		t.Fatalf("reltuples %v after a large import, want %d", n, 5000+postgres.ImportAnalyzeMinRows-1)
	}
	// Once the planner believes in 26,000 rows, a 1,000-row import is
	// under 10% of them and leaves the statistics alone.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO products (name, price, inventory) SELECT 'Bulk ' || g, 1, 1 FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `ANALYZE products`); err != nil {
		t.Fatal(err)
	}
	res, err = db.ImportProducts(ctx, &genSource{n: postgres.ImportAnalyzeMinRows, withSKUFrom: -1, failAfter: -1, price: 100})
	if err != nil || res.Analyzed {
		t.Fatalf("import of 4%% of the table: %+v %v, want not analyzed", res, err)
	}
}
