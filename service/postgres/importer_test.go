package postgres_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// genSource yields n generated products, with a SKU from row withSKUFrom
// on (-1: none), and fails with err after failAfter rows (-1: never).
type genSource struct {
	n, withSKUFrom, failAfter int
	price                     shop.Money
	i                         int
	cur                       shop.NewProduct
	err                       error
	fail                      error
}

func (s *genSource) Next() bool {
	if s.failAfter >= 0 && s.i == s.failAfter {
		s.err = s.fail
		return false
	}
	if s.i >= s.n {
		return false
	}
	d := fmt.Sprintf("Description %d", s.i)
	s.cur = shop.NewProduct{Name: fmt.Sprintf("Generated %d", s.i), Description: &d, Price: s.price + shop.Money(s.i), Inventory: s.i % 100}
	if s.withSKUFrom >= 0 && s.i >= s.withSKUFrom {
		sku := fmt.Sprintf("GEN-%d", s.i)
		s.cur.SKU = &sku
	}
	s.i++
	return true
}
func (s *genSource) Product() shop.NewProduct { return s.cur }
func (s *genSource) Err() error               { return s.err }

func TestImportProducts(t *testing.T) {
	t.Parallel()
	db := postgres.New(pgtest.New(t))
	ctx := t.Context()
	count := func(t *testing.T) int {
		t.Helper()
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM products`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	boom := &shop.Error{Code: shop.EINVALID, Message: "bad row"}

	t.Run("OK", func(t *testing.T) {
		res, err := db.ImportProducts(ctx, &genSource{n: 1000, withSKUFrom: -1, failAfter: -1, price: 1000})
		if err != nil || res.Created != 1000 || res.Updated != 0 {
			t.Fatalf("%+v %v", res, err)
		}
		var cents int64
		if err := db.Pool.QueryRow(ctx, `SELECT (price * 100)::bigint FROM products WHERE name = 'Generated 999'`).Scan(&cents); err != nil || cents != 1999 {
			t.Errorf("price of row 999: %d cents %v, want 1999", cents, err)
		}
	})
	for _, c := range []struct {
		name                   string
		withSKUFrom, failAfter int
	}{
		{"SourceErrorRollsBackDirectCopy", -1, 500},
		{"SourceErrorRollsBackStagedCopy", 100, 500},
		{"SourceErrorOnFirstRow", -1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := count(t)
			_, err := db.ImportProducts(ctx, &genSource{n: 1000, withSKUFrom: c.withSKUFrom, failAfter: c.failAfter, fail: boom})
			if !errors.Is(err, boom) {
				t.Errorf("error %v, want the source's", err)
			}
			if n := count(t); n != before {
				t.Errorf("%d products, want %d: a failed import wrote rows", n, before)
			}
		})
	}
	t.Run("UpsertBySKU", func(t *testing.T) {
		before := count(t)
		res, err := db.ImportProducts(ctx, &genSource{n: 1000, withSKUFrom: 400, failAfter: -1, price: 100})
		if err != nil || res.Created != 1000 {
			t.Fatalf("%+v %v", res, err)
		}
		res, err = db.ImportProducts(ctx, &genSource{n: 1000, withSKUFrom: 400, failAfter: -1, price: 200})
		if err != nil || res.Created != 400 || res.Updated != 600 {
			t.Fatalf("re-import %+v %v, want 400 created (no SKU) and 600 updated", res, err)
		}
		if n := count(t); n != before+1400 {
			t.Errorf("%d products, want %d", n, before+1400)
		}
		var updated, stale int
		err = db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE (price * 100)::bigint <> 200 + substring(sku FROM 5)::int)
			FROM products WHERE sku LIKE 'GEN-%'`).Scan(&updated, &stale)
		if err != nil || updated != 600 || stale != 0 {
			t.Errorf("%d products with a SKU, %d of them with the old price (%v); want 600 and 0", updated, stale, err)
		}
	})
}
