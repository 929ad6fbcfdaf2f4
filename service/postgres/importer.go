package postgres

import (
	"context"
	"errors"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shoplab/shoplab/service/shop"
)

// skuIndex is the partial unique index on products (sku) WHERE sku IS NOT
// NULL (migration 00005), the arbiter of the import's upsert.
const skuIndex = "products_sku_key"

// The columns an import copies: straight into products, or with the SKU
// into the staging table.
var (
	importCols    = []string{"name", "description", "price", "inventory"}
	importColsSKU = []string{"name", "description", "price", "inventory", "sku"}
)

// createImportStagingSQL makes the session-local table that rows with a
// SKU (and every row after the first of them) are copied into before the
// upsert. A temporary table writes no WAL and has no index; it disappears
// at commit or rollback.
const createImportStagingSQL = `-- name: products.import_staging
CREATE TEMP TABLE import_staging (
    name        text          NOT NULL,
    description text,
    price       numeric(12,2) NOT NULL,
    inventory   integer       NOT NULL,
    sku         text
) ON COMMIT DROP`

// upsertImportSQL moves the staged rows into products in one statement:
// a row whose SKU a product already has updates that product (only when a
// value differs, so re-importing the same file rewrites nothing); every
// other row is a new product. It returns how many rows were created
// (xmax = 0 marks a freshly inserted row version). It waits on the row
// locks of products being bought or imported concurrently.
const upsertImportSQL = `-- name: products.import_upsert lock
WITH written AS (
    INSERT INTO products AS p (name, description, price, inventory, sku)
    SELECT name, description, price, inventory, sku FROM import_staging
    ON CONFLICT (sku) WHERE sku IS NOT NULL DO UPDATE
    SET name = EXCLUDED.name, description = EXCLUDED.description,
        price = EXCLUDED.price, inventory = EXCLUDED.inventory
    WHERE (p.name, p.description, p.price, p.inventory)
          IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.description, EXCLUDED.price, EXCLUDED.inventory)
    RETURNING xmax = 0 AS created
)
SELECT count(*) FILTER (WHERE created) FROM written`

// ImportProducts streams the rows of src into products with COPY in one
// transaction, pulling each row from src only when COPY asks for it, so
// memory stays flat whatever the row count.
//
// Rows go straight into products (COPY's fastest path) until the first
// row with a SKU. From that row on, they are copied into a temporary
// staging table and then upserted by SKU in one INSERT ... ON CONFLICT
// (sku) WHERE sku IS NOT NULL DO UPDATE, so re-importing a file updates
// its products instead of duplicating them.
//
// When src fails mid-stream (a bad row in an all-or-nothing import, a
// body over its limit), COPY is aborted, the transaction rolled back and
// src's error returned as is. The import runs on db.ImportPool when set
// and waits at most db.AcquireTimeout for its connection. Errors: EINVALID, ECONFLICT (a concurrent
// import of the same SKUs; retry), EUNAVAILABLE, EINTERNAL, or src's error.
func (db *DB) ImportProducts(ctx context.Context, src shop.ProductSource) (shop.ImportResult, error) {
	var res shop.ImportResult
	err := func() error {
		c, err := acquire(ctx, db.importPool(), db.AcquireTimeout)
		if err != nil {
			return err
		}
		defer c.Release() // before the analyze, which takes a connection of its own
		return inTx(ctx, c, nil, func(tx pgx.Tx) error {
			var err error
			if db.on(ctx, shop.SwitchRowByRowImport) {
				res, err = importRowByRow(ctx, tx, src)
			} else {
				res, err = importRows(ctx, tx, &copyRows{src: src})
			}
			return err
		})
	}()
	if srcErr := src.Err(); srcErr != nil {
		return shop.ImportResult{}, srcErr
	}
	if err != nil {
		return shop.ImportResult{}, wrapErr(err)
	}
	res.Analyzed, res.AnalyzeErr = db.analyzeAfterImport(ctx, res.Count())
	if res.AnalyzeErr != nil {
		res.AnalyzeErr = wrapErr(res.AnalyzeErr)
	}
	return res, nil
}

// An import is large, and refreshes the catalogue's statistics, when it
// wrote at least ImportAnalyzeMinRows rows and at least
// ImportAnalyzeFraction of the rows the planner believes products has
// (pg_class.reltuples, as of the last ANALYZE): the same 10% as
// autovacuum's default autovacuum_analyze_scale_factor, with a floor so
// that small imports cost no extra statement.
const (
	ImportAnalyzeMinRows  = 1000
	ImportAnalyzeFraction = 0.1
)

// importAnalyzeTimeout bounds the VACUUM (ANALYZE) of products.
const importAnalyzeTimeout = 2 * time.Minute

const productsReltuplesSQL = `-- name: products.reltuples
SELECT greatest(c.reltuples, 0)::float8 FROM pg_class c WHERE c.oid = 'products'::regclass`

// analyzeProductsSQL is what autovacuum would do after the import.
// VACUUM rather than a bare ANALYZE: the trigram GIN indexes (migration
// 00006) take the imported rows into their pending list (fastupdate),
// which every search then reads through in full, and only a VACUUM (or
// autovacuum's own analyze) merges it into the index: a bare ANALYZE left
// GET /products?q= at 64x its time on the seeded catalogue after a
// 100,000-row import. It also sets the visibility map of the new pages.
const analyzeProductsSQL = `-- name: products.analyze
VACUUM (ANALYZE) products`

// analyzeAfterImport runs VACUUM (ANALYZE) products after an import that
// wrote written rows, when the import is large (ImportAnalyzeMinRows,
// ImportAnalyzeFraction). PostgreSQL's own advice after a bulk load ("Run
// ANALYZE Afterwards", in "Populating a Database", section 14.4 of the
// manual): the planner otherwise keeps planning with the statistics of the
// table as it was, and autovacuum, which would refresh them, may be off or
// lag (it was off where the incident of docs/incidents.md row 1 happened:
// order history went from 4.7 ms to 13-16 ms after 12,000 products were
// imported).
//
// It runs after the commit, in the import's request: the answer then
// means "stored, and planned for", so the next request, a listing right
// after the import as in the incident, never meets the stale statistics;
// it adds a fraction of a second to an import of 100,000 rows that takes
// seconds (VACUUM reads the table once; ANALYZE samples it). It blocks no
// reads or writes. The client leaving does not cancel it (the rows are in).
// Telemetry: the products.reltuples and products.analyze statements' SQL
// spans and metrics (children of the import's span), ImportResult.Analyzed.
func (db *DB) analyzeAfterImport(ctx context.Context, written int) (bool, error) {
	if written < ImportAnalyzeMinRows {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), importAnalyzeTimeout)
	defer cancel()
	var believed float64
	if err := db.importPool().QueryRow(ctx, productsReltuplesSQL).Scan(&believed); err != nil {
		return false, err
	}
	if float64(written) < ImportAnalyzeFraction*believed {
		return false, nil
	}
	if _, err := db.importPool().Exec(ctx, analyzeProductsSQL); err != nil {
		return false, err
	}
	return true, nil
}

// importRows copies rows into products until the first row with a SKU,
// then the rest through the staging table and the upsert.
func importRows(ctx context.Context, tx pgx.Tx, rows *copyRows) (shop.ImportResult, error) {
	var res shop.ImportResult
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"products"}, importCols, rows)
	if err != nil {
		return res, err
	}
	res.Created = int(n)
	if rows.pending == nil {
		return res, nil
	}
	if _, err := tx.Exec(ctx, createImportStagingSQL); err != nil {
		return res, err
	}
	rows.withSKU = true
	staged, err := tx.CopyFrom(ctx, pgx.Identifier{"import_staging"}, importColsSKU, rows)
	if err != nil {
		return res, err
	}
	var created int
	if err := tx.QueryRow(ctx, upsertImportSQL).Scan(&created); err != nil {
		return res, err
	}
	res.Created += created
	res.Updated = int(staged) - created
	return res, nil
}

// copyRows adapts a shop.ProductSource to pgx.CopyFromSource. pgx calls it
// from its COPY goroutine and is done with it when CopyFrom returns.
// Without withSKU it ends, holding the row back in pending, at the first
// row that has a SKU; with withSKU it yields pending first, then the rest.
type copyRows struct {
	src     shop.ProductSource
	withSKU bool
	pending *shop.NewProduct
	cur     shop.NewProduct
	done    bool

	vals  [5]any
	cents big.Int // reused: pgx encodes each row before asking for the next
}

func (c *copyRows) Next() bool {
	if c.pending != nil && c.withSKU {
		c.cur, c.pending = *c.pending, nil
		return true
	}
	if c.done || c.pending != nil {
		return false
	}
	if !c.src.Next() {
		c.done = true
		return false
	}
	p := c.src.Product()
	if p.SKU != nil && !c.withSKU {
		c.pending = &p
		return false
	}
	c.cur = p
	return true
}

func (c *copyRows) Values() ([]any, error) {
	p := &c.cur
	c.cents.SetInt64(int64(p.Price))
	c.vals[0] = p.Name
	c.vals[1] = p.Description
	c.vals[2] = pgtype.Numeric{Int: &c.cents, Exp: -2, Valid: true}
	c.vals[3] = p.Inventory
	if !c.withSKU {
		return c.vals[:4], nil
	}
	c.vals[4] = p.SKU
	return c.vals[:5], nil
}

func (c *copyRows) Err() error { return c.src.Err() }

// importRowSQL inserts one imported product, or updates the product that
// has its SKU: the row-by-row-import switch's statement, one round trip
// per row. It returns whether the row was created (xmax = 0); an update
// that changed nothing returns no row.
const importRowSQL = `-- name: products.import_row lock
INSERT INTO products AS p (name, description, price, inventory, sku)
VALUES ($1, $2, $3::bigint / 100.0, $4, $5)
ON CONFLICT (sku) WHERE sku IS NOT NULL DO UPDATE
SET name = EXCLUDED.name, description = EXCLUDED.description,
    price = EXCLUDED.price, inventory = EXCLUDED.inventory
WHERE (p.name, p.description, p.price, p.inventory)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.description, EXCLUDED.price, EXCLUDED.inventory)
RETURNING xmax = 0`

// importRowByRow is the original's defect behind the row-by-row-import
// switch: one INSERT (a round trip) per product instead of COPY, so an
// import's duration grows with its rows times the round-trip time. Same
// results as importRows.
func importRowByRow(ctx context.Context, tx pgx.Tx, src shop.ProductSource) (shop.ImportResult, error) {
	var res shop.ImportResult
	for src.Next() {
		p := src.Product()
		var created bool
		err := tx.QueryRow(ctx, importRowSQL, p.Name, p.Description, int64(p.Price), p.Inventory, p.SKU).Scan(&created)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // an unchanged product
			res.Updated++
		case err != nil:
			return res, err
		case created:
			res.Created++
		default:
			res.Updated++
		}
	}
	return res, src.Err()
}
