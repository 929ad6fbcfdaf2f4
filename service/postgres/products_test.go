package postgres_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

func ptr[T any](v T) *T { return &v }

// addProduct inserts a product directly and returns its id.
func addProduct(t *testing.T, db *postgres.DB, name string, desc *string) string {
	t.Helper()
	p, err := db.CreateProduct(t.Context(), shop.NewProduct{Name: name, Description: desc, Price: 100, Inventory: 5})
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}

func names(ps []shop.Product) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

func TestSearchProducts(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()
	for _, p := range []struct {
		name string
		desc *string
	}{
		{"Mega Zorblamp", nil},
		{"Zorblamp Deluxe", ptr("Brighter.")},
		{"Plain Shade", ptr("Fits any ZORBLAMP.")},
		{"Zorblamp", nil},
		{"Desk Zorblamp Holder", nil},
		{"100% cotton_tee", ptr("Soft.")},
		{"100 cotton tee", nil},
		{"1000 cottonXtee rags", nil},
		{`back\slash`, nil},
	} {
		addProduct(t, db, p.name, p.desc)
	}
	search := func(t *testing.T, q string) shop.ProductPage {
		t.Helper()
		page, err := db.SearchProducts(ctx, shop.ProductSearch{Query: q, Page: 1, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		return page
	}

	t.Run("RankedExactPrefixContainsDescription", func(t *testing.T) {
		got := names(search(t, "zorblamp").Products)
		want := []string{"Zorblamp", "Zorblamp Deluxe", "Mega Zorblamp", "Desk Zorblamp Holder", "Plain Shade"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("ranking %q, want %q", got, want)
		}
	})
	t.Run("CaseInsensitive", func(t *testing.T) {
		if got := names(search(t, "COTTON_TEE").Products); len(got) != 1 || got[0] != "100% cotton_tee" {
			t.Errorf("COTTON_TEE found %q", got)
		}
	})
	t.Run("PercentIsLiteral", func(t *testing.T) {
		if got := names(search(t, "100%").Products); len(got) != 1 || got[0] != "100% cotton_tee" {
			t.Errorf("100%% found %q, want only the 100%% tee", got)
		}
	})
	t.Run("UnderscoreIsLiteral", func(t *testing.T) {
		if got := names(search(t, "_").Products); len(got) != 1 || got[0] != "100% cotton_tee" {
			t.Errorf("_ found %q, want only the name with an underscore", got)
		}
		if got := names(search(t, "cotton_tee").Products); len(got) != 1 {
			t.Errorf("cotton_tee found %q (an unescaped _ would match cottonXtee)", got)
		}
	})
	t.Run("BackslashIsLiteral", func(t *testing.T) {
		if got := names(search(t, `\`).Products); len(got) != 1 || got[0] != `back\slash` {
			t.Errorf(`\ found %q`, got)
		}
		if got := search(t, `\%`).Total; got != 0 {
			t.Errorf(`\%% found %d products, want 0`, got)
		}
	})
	t.Run("PagedWithTotal", func(t *testing.T) {
		// Seeded: 5 names and 4 descriptions per item kind, e.g. "Desk Lamp 1..5".
		all := search(t, "desk")
		p2, err := db.SearchProducts(ctx, shop.ProductSearch{Query: "desk", Page: 2, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if p2.Total != all.Total || len(p2.Products) != 3 || p2.Products[0].ID != all.Products[3].ID {
			t.Errorf("page 2 of 3: total %d/%d, %q vs %q", p2.Total, all.Total, names(p2.Products), names(all.Products[3:6]))
		}
	})
	t.Run("PastTheEndKeepsTotal", func(t *testing.T) {
		p, err := db.SearchProducts(ctx, shop.ProductSearch{Query: "zorblamp", Page: 9, Limit: 10})
		if err != nil || p.Total != 5 || len(p.Products) != 0 {
			t.Errorf("page 9: total %d, %d products, %v", p.Total, len(p.Products), err)
		}
	})
	t.Run("NoMatch", func(t *testing.T) {
		if p := search(t, "no such thing at all"); p.Total != 0 || len(p.Products) != 0 || p.Products == nil {
			t.Errorf("no match: %+v", p)
		}
	})
	t.Run("ErrInvalidText", func(t *testing.T) {
		// The HTTP edge refuses these first; the store still never calls them internal.
		for _, q := range []string{"a\x00b", "\xff\xfe"} {
			_, err := db.SearchProducts(ctx, shop.ProductSearch{Query: q, Page: 1, Limit: 10})
			if shop.ErrorCode(err) != shop.EINVALID {
				t.Errorf("%q: %v, want EINVALID", q, err)
			}
		}
	})
	t.Run("UsesTrigramIndexes", func(t *testing.T) {
		// 109 rows are cheaper to scan; forbid it to see that the indexes can serve the ILIKEs.
		plan := explain(t, db, "SET LOCAL enable_seqscan = off", postgres.SearchProductsSQL, "%zorblamp%", "zorblamp", 10, 0)
		for _, idx := range []string{"products_name_trgm_idx", "products_description_trgm_idx"} {
			if !strings.Contains(plan, idx) {
				t.Errorf("plan does not use %s:\n%s", idx, plan)
			}
		}
	})
}

// explain returns the EXPLAIN output of sql with args after setup, in a
// transaction rolled back afterwards.
func explain(t *testing.T, db *postgres.DB, setup, sql string, args ...any) string {
	t.Helper()
	ctx := t.Context()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if setup != "" {
		if _, err := tx.Exec(ctx, setup); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestSearchTimeout: a search that runs past its statement_timeout (here:
// stuck behind an ACCESS EXCLUSIVE lock, as under a careless migration) is
// EUNAVAILABLE with a retry delay, not internal.
func TestSearchTimeout(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	db.SearchTimeouts = postgres.Timeouts{Statement: 200 * time.Millisecond}
	ctx := t.Context()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, "LOCK TABLE products IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = db.SearchProducts(ctx, shop.ProductSearch{Query: "desk", Page: 1, Limit: 10})
	var se *shop.Error
	if !errors.As(err, &se) || se.Code != shop.EUNAVAILABLE || se.RetryAfter <= 0 {
		t.Fatalf("search behind a lock: %v, want EUNAVAILABLE with RetryAfter", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Errorf("cause %v, want statement_timeout (57014)", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v, want about the 200ms timeout", d)
	}
}

// TestListProductsKeyset: keyset pages cover every product exactly once,
// ties on created_at included, and agree with numbered pages.
func TestListProductsKeyset(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()
	// Ten products created in one statement share created_at: the id breaks the tie.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO products (name, price, inventory, created_at)
SELECT 'Twin ' || i, 1, 1, '2030-01-01T00:00:00Z' FROM generate_series(1, 10) i`); err != nil {
		t.Fatal(err)
	}
	for _, missing := range []bool{false, true} {
		t.Run(fmt.Sprintf("MissingDescription=%v", missing), func(t *testing.T) {
			numbered, err := db.ListProducts(ctx, shop.ProductFilter{Page: 1, Limit: 1000, MissingDescription: missing})
			if err != nil {
				t.Fatal(err)
			}
			want := 110
			if missing {
				want = 30 // 20 seeded + 10 twins
			}
			if numbered.Total != want || len(numbered.Products) != want || numbered.Next != nil {
				t.Fatalf("one numbered page: total %d, %d products, next %v; want %d", numbered.Total, len(numbered.Products), numbered.Next, want)
			}
			var got []shop.Product
			f := shop.ProductFilter{Page: 1, Limit: 7, MissingDescription: missing}
			for pages := 0; ; pages++ {
				if pages > want {
					t.Fatal("keyset pages do not end")
				}
				page, err := db.ListProducts(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if f.After != nil && page.Total != -1 {
					t.Errorf("keyset page counted %d", page.Total)
				}
				got = append(got, page.Products...)
				if page.Next == nil {
					break
				}
				f.After = page.Next
			}
			if len(got) != want {
				t.Fatalf("keyset pages gave %d products, want %d", len(got), want)
			}
			for i := range got {
				if got[i].ID != numbered.Products[i].ID {
					t.Fatalf("keyset order differs from numbered order at %d", i)
				}
				if missing && got[i].Description != nil {
					t.Fatalf("%s has a description", got[i].Name)
				}
			}
		})
	}
	t.Run("UsesIndexes", func(t *testing.T) {
		after := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		for sql, idx := range map[string]string{
			postgres.ListProductsAfterSQL:           "products_created_at_idx",
			postgres.ListMissingDescriptionAfterSQL: "products_missing_description_idx",
		} {
			if plan := explain(t, db, "SET LOCAL enable_seqscan = off", sql, 10, after, "00000000-0000-4000-8000-000000000000"); !strings.Contains(plan, idx) {
				t.Errorf("plan does not use %s:\n%s", idx, plan)
			}
		}
	})
}

func TestUpdateProduct(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()
	id := addProduct(t, db, "Patchable", nil)

	t.Run("Partial", func(t *testing.T) {
		p, err := db.UpdateProduct(ctx, id, shop.ProductPatch{Price: ptr(shop.Money(1234))})
		if err != nil {
			t.Fatal(err)
		}
		if p.Price != 1234 || p.Name != "Patchable" || p.Inventory != 5 || p.Description != nil {
			t.Errorf("after a price patch: %+v", p)
		}
	})
	t.Run("AllFields", func(t *testing.T) {
		p, err := db.UpdateProduct(ctx, id, shop.ProductPatch{Name: ptr("Patched"), Description: ptr("Now described."), Price: ptr(shop.Money(99)), Inventory: ptr(0)})
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != "Patched" || p.Description == nil || *p.Description != "Now described." || p.Price != 99 || p.Inventory != 0 {
			t.Errorf("after a full patch: %+v", p)
		}
	})
	t.Run("ClearDescription", func(t *testing.T) {
		p, err := db.UpdateProduct(ctx, id, shop.ProductPatch{ClearDescription: true})
		if err != nil || p.Description != nil {
			t.Errorf("clear: %+v %v", p, err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := db.UpdateProduct(ctx, "00000000-0000-4000-8000-000000000000", shop.ProductPatch{Inventory: ptr(1)})
		if shop.ErrorCode(err) != shop.ENOTFOUND {
			t.Errorf("unknown id: %v", err)
		}
	})
	t.Run("ErrBlankDescriptionRefusedByDatabase", func(t *testing.T) {
		// Validation never sends one; CHECK products_description_not_blank
		// stops a bug that would.
		_, err := db.UpdateProduct(ctx, id, shop.ProductPatch{Description: ptr("   ")})
		if shop.ErrorCode(err) != shop.EINVALID {
			t.Errorf("blank description: %v, want EINVALID", err)
		}
	})
}

// TestDescriptionMigrationPath proves the plan of docs/api-evolution.md
// on a seeded database (20 products without a description):
//   - why CHECK (description IS NOT NULL) is not added now, not even NOT
//     VALID: it breaks v1 creations without a description AND any update
//     of a product still missing one, such as a checkout's stock UPDATE;
//   - that after the backfill, NOT VALID + VALIDATE + SET NOT NULL succeed.
func TestDescriptionMigrationPath(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()
	const addRequired = `ALTER TABLE products ADD CONSTRAINT products_description_required CHECK (description IS NOT NULL) NOT VALID`
	missing := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM products WHERE description IS NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("NotValidNowBreaksV1AndCheckout", func(t *testing.T) {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		if _, err := tx.Exec(ctx, addRequired); err != nil {
			t.Fatalf("adding NOT VALID over 20 NULLs: %v (NOT VALID skips the existing rows)", err)
		}
		for name, sql := range map[string]string{
			"v1 creation": `INSERT INTO products (name, price, inventory) VALUES ('No description', 1, 1)`,
			"stock update of a product without a description": `UPDATE products SET inventory = inventory - 1
WHERE id = (SELECT id FROM products WHERE description IS NULL LIMIT 1)`,
		} {
			if _, err := tx.Exec(ctx, "SAVEPOINT s"); err != nil {
				t.Fatal(err)
			}
			_, err := tx.Exec(ctx, sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
				t.Errorf("%s under the NOT VALID constraint: %v, want check_violation", name, err)
			}
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT s"); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("BackfillThenValidate", func(t *testing.T) {
		if n := missing(); n != 20 {
			t.Fatalf("%d missing before the backfill, want 20", n)
		}
		for {
			page, err := db.ListProducts(ctx, shop.ProductFilter{Page: 1, Limit: 7, MissingDescription: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Products) == 0 {
				break
			}
			for _, p := range page.Products {
				if _, err := db.UpdateProduct(ctx, p.ID, shop.ProductPatch{Description: ptr("Backfilled: " + p.Name)}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if n := missing(); n != 0 {
			t.Fatalf("%d missing after the backfill", n)
		}
		for _, sql := range []string{
			addRequired,
			`ALTER TABLE products VALIDATE CONSTRAINT products_description_required`,
			`ALTER TABLE products ALTER COLUMN description SET NOT NULL`,
		} {
			if _, err := db.Pool.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		_, err := db.CreateProduct(ctx, shop.NewProduct{Name: "v1 style", Price: 1, Inventory: 1})
		if shop.ErrorCode(err) != shop.EINVALID {
			t.Errorf("creation without a description after the migration: %v, want EINVALID", err)
		}
	})
}

func TestLikeEscaping(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`100%`:      `100\%`,
		`_`:         `\_`,
		`a\b`:       `a\\b`,
		`\%_`:       `\\\%\_`,
		`it's "ok"`: `it's "ok"`,
	} {
		if got := postgres.EscapeLike(in); got != want {
			t.Errorf("EscapeLike(%q) = %q, want %q", in, got, want)
		}
	}
}
