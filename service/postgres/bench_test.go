package postgres_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// benchProducts is the size of the benchmark catalogue.
const benchProducts = 100_000

var (
	benchAdjectives = strings.Fields(`compact deluxe ergonomic foldable heavy-duty lightweight modular portable premium rugged ` +
		`slim smart solid sturdy vintage wireless adjustable classic quiet rechargeable`)
	benchMaterials = strings.Fields(`bamboo steel oak walnut aluminium leather linen cotton ceramic glass copper wool ` +
		`canvas granite marble`)
	benchNouns = strings.Fields(`lamp desk chair shelf stool mug kettle blender toaster backpack wallet jacket scarf ` +
		`blanket pillow rug mirror clock speaker headphones keyboard mouse monitor charger cable adapter tripod ` +
		`notebook planner pen pencil easel drill hammer wrench ladder bucket planter vase candle teapot skillet ` +
		`saucepan grater cutlery tumbler bottle cooler tent`)
	benchWords = strings.Fields(`a an the and with for of in on to from by durable everyday use home office travel ` +
		`kitchen garden outdoor indoor gift friendly easy clean care hand made crafted finish design colour ` +
		`black white grey natural blue green red warm soft smooth sturdy light compact fits most standard ` +
		`size comes set two three four pack includes spare parts warranty year long lasting quality tested ` +
		`safe certified recycled materials packaging eco water resistant stain proof quick dry machine ` +
		`washable dishwasher oven microwave storage space saving stackable nesting wall mount ready`)
)

// loadCatalogue fills db with n generated products by COPY, builds the
// trigram indexes afterwards (as a bulk load would) and analyses the table.
// About 20% have no description, like the seed.
func loadCatalogue(b *testing.B, db *postgres.DB, n int) {
	b.Helper()
	ctx := b.Context()
	exec(b, db, `DROP INDEX products_name_trgm_idx, products_description_trgm_idx`)
	r := rand.New(rand.NewPCG(7, 42))
	pick := func(words []string) string { return words[r.IntN(len(words))] }
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	i := 0
	copied, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"products"},
		[]string{"name", "description", "price", "inventory", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			name := fmt.Sprintf("%s %s %s M-%05d", pick(benchAdjectives), pick(benchMaterials), pick(benchNouns), i)
			var desc *string
			if r.IntN(5) != 0 {
				ws := make([]string, 8+r.IntN(12))
				for j := range ws {
					ws[j] = pick(benchWords)
				}
				d := strings.Join(ws, " ") + "."
				desc = &d
			}
			return []any{name, desc, fmt.Sprintf("%d.%02d", 1+r.IntN(500), r.IntN(100)), r.IntN(200), base.Add(time.Duration(i) * time.Second)}, nil
		}))
	if err != nil || copied != int64(n) {
		b.Fatalf("copy: %d rows, %v", copied, err)
	}
	loaded := time.Since(start)
	start = time.Now()
	exec(b, db, `CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops)`)
	exec(b, db, `CREATE INDEX products_description_trgm_idx ON products USING gin (description gin_trgm_ops)`)
	indexed := time.Since(start)
	exec(b, db, `VACUUM ANALYZE products`)
	b.Logf("loaded %d products by COPY in %v; built both trigram indexes in %v", n, loaded.Round(time.Millisecond), indexed.Round(time.Millisecond))
}

func exec(b *testing.B, db *postgres.DB, sql string) {
	b.Helper()
	if _, err := db.Pool.Exec(b.Context(), sql); err != nil {
		b.Fatalf("%s: %v", sql, err)
	}
}

// BenchmarkProductSearch measures GET /products?q= 's statement
// (SearchProducts, first page of 20) on 100,000 products in one run: first
// with the pg_trgm GIN indexes of migration 00006, then after dropping
// them. Compare the ns/op of trigram_index/X and no_index/X. The log shows
// each query's plan and timing from EXPLAIN ANALYZE. Also measured: a deep
// numbered page of GET /products (OFFSET) against the keyset page at the
// same depth. Run it with `make bench-search`.
func BenchmarkProductSearch(b *testing.B) {
	db := postgres.New(pgtest.New(b))
	db.SearchTimeouts = postgres.Timeouts{Statement: time.Minute}
	loadCatalogue(b, db, benchProducts)
	ctx := b.Context()

	queries := []struct{ name, q string }{
		{"one_model_number", "M-04217"},      // one product
		{"rare_word", "teapot"},              // ~1/50 of names
		{"common_word", "kitchen"},           // in many descriptions
		{"two_words", "walnut desk"},         // a phrase in names
		{"no_match", "zorblamp"},             // nothing: the index answers at once
		{"short_term", "oa"},                 // under 3 characters: no trigram to use
		{"wildcards_literal", "100% cotton"}, // escaped % : matches nothing
	}
	for _, mode := range []string{"trigram_index", "no_index"} {
		if mode == "no_index" {
			exec(b, db, `DROP INDEX products_name_trgm_idx, products_description_trgm_idx`)
			exec(b, db, `ANALYZE products`)
		}
		for _, c := range queries {
			var matches int
			b.Run(mode+"/"+c.name, func(b *testing.B) {
				for b.Loop() {
					page, err := db.SearchProducts(ctx, shop.ProductSearch{Query: c.q, Page: 1, Limit: 20})
					if err != nil {
						b.Fatal(err)
					}
					matches = page.Total
				}
				b.ReportMetric(float64(matches), "matches")
			})
			b.Logf("%s %q: %d matches; %s", mode, c.q, matches, explainAnalyze(b, db, c.q))
		}
	}

	deep := benchProducts/20 - 1 // the last numbered page of 20
	var after *shop.Cursor
	b.Run("list/numbered_deep_page", func(b *testing.B) {
		for b.Loop() {
			page, err := db.ListProducts(ctx, shop.ProductFilter{Page: deep, Limit: 20})
			if err != nil || len(page.Products) != 20 {
				b.Fatalf("%d products, %v", len(page.Products), err)
			}
			after = page.Next
		}
	})
	b.Run("list/keyset_same_depth", func(b *testing.B) {
		for b.Loop() {
			page, err := db.ListProducts(ctx, shop.ProductFilter{Limit: 20, After: after})
			if err != nil || len(page.Products) != 20 {
				b.Fatalf("%d products, %v", len(page.Products), err)
			}
		}
	})
}

// explainAnalyze runs the search statement under EXPLAIN (ANALYZE) and
// returns its scan nodes and execution time on one line.
func explainAnalyze(b *testing.B, db *postgres.DB, q string) string {
	b.Helper()
	rows, err := db.Pool.Query(b.Context(), "EXPLAIN (ANALYZE, COSTS OFF) "+postgres.SearchProductsSQL,
		"%"+postgres.EscapeLike(q)+"%", q, 20, 0)
	if err != nil {
		b.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		b.Fatal(err)
	}
	var keep []string
	for _, l := range lines {
		t := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "->"))
		if strings.Contains(t, "Scan") || strings.HasPrefix(t, "Execution Time") {
			if i := strings.Index(t, " (actual"); i > 0 && !strings.HasPrefix(t, "Execution") {
				t = t[:i]
			}
			keep = append(keep, strings.TrimSpace(t))
		}
	}
	return strings.Join(keep, "; ")
}
