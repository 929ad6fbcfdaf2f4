package postgres

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shoplab/shoplab/service/shop"
)

// productCols is the select list that scanProduct reads.
const productCols = `p.id::text, p.name, p.description, (p.price * 100)::bigint, p.inventory, p.sku, p.created_at`

// scanProduct reads productCols into p, then any extra columns into extra.
func scanProduct(row pgx.Row, p *shop.Product, extra ...any) error {
	var cents int64
	dest := append([]any{&p.ID, &p.Name, &p.Description, &cents, &p.Inventory, &p.SKU, &p.CreatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return err
	}
	p.Price = shop.Money(cents)
	return nil
}

func collectProducts(rows pgx.Rows) ([]shop.Product, error) {
	defer rows.Close()
	ps := []shop.Product{}
	for rows.Next() {
		var p shop.Product
		if err := scanProduct(rows, &p); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, rows.Err()
}

// productTotal is the number of products: the sum of the counter rows that
// migration 00018's statement-level triggers keep exact on every INSERT,
// COPY, DELETE and TRUNCATE of products. It reads 16 rows whatever the
// catalogue's size, where count(*) OVER () read and sorted every product
// to fill the first page's total (0.46 ms became 63 ms at 100,000
// products; docs/incidents.md, row 1).
const productTotal = `(SELECT sum(c.n) FROM product_counts c)::bigint`

// The four listing statements: page-numbered (with a count) or keyset
// (after a cursor, no count), of the whole catalogue or of the products
// missing a description. Keyset pages have statements of their own rather
// than an "$n IS NULL OR" predicate, so that even a generic plan seeks
// products_created_at_idx (or the partial products_missing_description_idx)
// straight to the cursor instead of scanning up to it. The catalogue's
// numbered page reads only its rows (OFFSET + LIMIT of the index) and the
// counter; the missing-description list still counts its matches with
// count(*) OVER (), a cost that grows with the products missing a
// description (the backfill's worklist, read by admins), not with the
// catalogue.
const listProductsSQL = `-- name: products.list
SELECT ` + productCols + `, ` + productTotal + `
FROM products p
ORDER BY p.created_at DESC, p.id DESC
LIMIT $1 OFFSET $2`

const listProductsAfterSQL = `-- name: products.list_after
SELECT ` + productCols + `
FROM products p
WHERE (p.created_at, p.id) < ($2, $3::uuid)
ORDER BY p.created_at DESC, p.id DESC
LIMIT $1`

const listMissingDescriptionSQL = `-- name: products.missing_description
SELECT ` + productCols + `, count(*) OVER ()
FROM products p
WHERE p.description IS NULL
ORDER BY p.created_at DESC, p.id DESC
LIMIT $1 OFFSET $2`

const listMissingDescriptionAfterSQL = `-- name: products.missing_description_after
SELECT ` + productCols + `
FROM products p
WHERE p.description IS NULL AND (p.created_at, p.id) < ($2, $3::uuid)
ORDER BY p.created_at DESC, p.id DESC
LIMIT $1`

// countProductsSQL is the total of a page past the end: the counter for
// the catalogue, a count of the missing descriptions otherwise.
const countProductsSQL = `-- name: products.count
SELECT CASE WHEN $1::bool THEN (SELECT count(*) FROM products p WHERE p.description IS NULL)
            ELSE ` + productTotal + ` END`

// ListProducts returns a page of products, newest first: by page number
// with the total, or after f.After without counting. Next is set when more
// products follow. Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) ListProducts(ctx context.Context, f shop.ProductFilter) (shop.ProductPage, error) {
	c, err := db.conn(ctx)
	if err != nil {
		return shop.ProductPage{}, wrapErr(err)
	}
	defer c.Release()
	if f.After != nil {
		sql := listProductsAfterSQL
		if f.MissingDescription {
			sql = listMissingDescriptionAfterSQL
		}
		// One more than asked tells whether a next page exists.
		rows, err := c.Query(ctx, sql, f.Limit+1, f.After.CreatedAt, f.After.ID)
		if err != nil {
			return shop.ProductPage{}, wrapErr(err)
		}
		ps, err := collectProducts(rows)
		if err != nil {
			return shop.ProductPage{}, wrapErr(err)
		}
		page := shop.ProductPage{Products: ps, Total: -1}
		if len(ps) > f.Limit {
			page.Products = ps[:f.Limit]
			page.Next = cursorOf(page.Products[f.Limit-1])
		}
		return page, nil
	}

	sql := listProductsSQL
	if f.MissingDescription {
		sql = listMissingDescriptionSQL
	}
	offset := (f.Page - 1) * f.Limit
	rows, err := c.Query(ctx, sql, f.Limit, offset)
	if err != nil {
		return shop.ProductPage{}, wrapErr(err)
	}
	page := shop.ProductPage{Products: []shop.Product{}}
	if err := scanCounted(rows, &page); err != nil {
		return shop.ProductPage{}, wrapErr(err)
	}
	if len(page.Products) == 0 {
		// A page past the end still reports the total.
		if err := c.QueryRow(ctx, countProductsSQL, f.MissingDescription).Scan(&page.Total); err != nil {
			return shop.ProductPage{}, wrapErr(err)
		}
	}
	if n := len(page.Products); n > 0 && offset+n < page.Total {
		page.Next = cursorOf(page.Products[n-1])
	}
	return page, nil
}

// scanCounted reads rows of productCols plus a total column (the counter,
// or a count(*) OVER ()) into page.
func scanCounted(rows pgx.Rows, page *shop.ProductPage) error {
	defer rows.Close()
	for rows.Next() {
		var p shop.Product
		if err := scanProduct(rows, &p, &page.Total); err != nil {
			return err
		}
		page.Products = append(page.Products, p)
	}
	return rows.Err()
}

func cursorOf(p shop.Product) *shop.Cursor {
	return &shop.Cursor{CreatedAt: p.CreatedAt, ID: p.ID}
}

// searchProductsSQL finds the products whose name or description contains
// the term: $1 is the ILIKE pattern '%term%' (the term's \, % and _
// escaped), $2 the term as typed. The two ILIKEs are served by the GIN
// trigram indexes (a BitmapOr) when the term has trigrams, i.e. three
// characters or more. Ranking, best first: matches in the name before
// matches in the description only; in the name, the earlier the term
// appears, the better (a name that starts with it first), then the shorter
// the name (the closer the match: the exact name comes first); then newest.
// The matches are collected once as narrow rows (id and rank keys), counted,
// and only the page's rows are joined back to products. Ranking by trigram
// similarity() instead cost 3-4x on common terms (it computes trigrams of
// every match), and count(*) OVER () over wide rows spilled to disk.
const searchProductsSQL = `-- name: products.search
WITH matches AS MATERIALIZED (
    SELECT p.id, p.created_at, strpos(lower(p.name), lower($2)) AS pos, char_length(p.name) AS len
    FROM products p
    WHERE p.name ILIKE $1 OR p.description ILIKE $1
), page AS (
    SELECT m.* FROM matches m
    ORDER BY m.pos = 0, m.pos, m.len, m.created_at DESC, m.id DESC
    LIMIT $3 OFFSET $4
)
SELECT ` + productCols + `, (SELECT count(*) FROM matches)
FROM page JOIN products p ON p.id = page.id
ORDER BY page.pos = 0, page.pos, page.len, page.created_at DESC, page.id DESC`

const searchCountSQL = `-- name: products.search_count
SELECT count(*) FROM products p WHERE p.name ILIKE $1 OR p.description ILIKE $1`

// likeEscaper escapes the LIKE wildcards % and _ and the escape character
// itself (\, LIKE's default), so that user input matches literally.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// SearchProducts returns a page of the products whose name or description
// contains s.Query literally and case-insensitively, best match first
// (searchProductsSQL), with the total number of matches. The statement runs
// under SearchTimeouts.Statement: past it, Postgres cancels it and the
// error is EUNAVAILABLE with a retry delay, never EINTERNAL. Text Postgres
// cannot hold (NUL, invalid UTF-8) is EINVALID; callers should have refused
// it already (shop.ParseSearchQuery). Errors: EUNAVAILABLE, EINVALID,
// EINTERNAL.
func (db *DB) SearchProducts(ctx context.Context, s shop.ProductSearch) (shop.ProductPage, error) {
	pattern := "%" + likeEscaper.Replace(s.Query) + "%"
	page := shop.ProductPage{Products: []shop.Product{}}
	offset := (s.Page - 1) * s.Limit
	c, err := db.conn(ctx)
	if err != nil {
		return shop.ProductPage{}, wrapErr(err)
	}
	defer c.Release()
	err = inTx(ctx, c, db.SearchTimeouts.setLocal(), func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, searchProductsSQL, pattern, s.Query, s.Limit, offset)
		if err != nil {
			return err
		}
		if err := scanCounted(rows, &page); err != nil {
			return err
		}
		if len(page.Products) == 0 && offset > 0 {
			// A page past the end still reports the total.
			return tx.QueryRow(ctx, searchCountSQL, pattern).Scan(&page.Total)
		}
		return nil
	})
	if err != nil {
		return shop.ProductPage{}, wrapErr(err)
	}
	return page, nil
}

const productByIDSQL = `-- name: products.get
SELECT ` + productCols + ` FROM products p WHERE p.id = $1`

// Product returns one product. Errors: ENOTFOUND, EUNAVAILABLE, EINTERNAL.
func (db *DB) Product(ctx context.Context, id string) (shop.Product, error) {
	var p shop.Product
	c, err := db.conn(ctx)
	if err != nil {
		return p, wrapErr(err)
	}
	defer c.Release()
	err = scanProduct(c.QueryRow(ctx, productByIDSQL, id), &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, shop.Errorf(shop.ENOTFOUND, "Product not found")
	}
	if err != nil {
		return p, wrapErr(err)
	}
	return p, nil
}

const insertProductSQL = `-- name: products.insert
INSERT INTO products AS p (name, description, price, inventory, sku)
VALUES ($1, $2, $3::bigint / 100.0, $4, $5)
RETURNING ` + productCols

// CreateProduct stores a validated product. Errors: EINVALID, ECONFLICT
// (another product has its SKU), EUNAVAILABLE, EINTERNAL.
func (db *DB) CreateProduct(ctx context.Context, np shop.NewProduct) (shop.Product, error) {
	var p shop.Product
	c, err := db.conn(ctx)
	if err != nil {
		return p, wrapErr(err)
	}
	defer c.Release()
	err = scanProduct(c.QueryRow(ctx, insertProductSQL, np.Name, np.Description, int64(np.Price), np.Inventory, np.SKU), &p)
	if err != nil {
		e := wrapErr(err)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.ConstraintName == skuIndex {
			e.Message = "Another product already has this sku."
			e.Fields = []shop.FieldError{{Field: "sku", Code: "taken", Message: "sku is already used by another product"}}
		}
		return p, e
	}
	return p, nil
}

const updateProductSQL = `-- name: products.update
UPDATE products AS p SET
    name        = COALESCE($2, p.name),
    description = CASE WHEN $6 THEN NULL ELSE COALESCE($3, p.description) END,
    price       = COALESCE($4::bigint / 100.0, p.price),
    inventory   = COALESCE($5, p.inventory)
WHERE p.id = $1
RETURNING ` + productCols

// UpdateProduct applies a validated patch in one statement (the row lock
// serialises it with checkouts) and returns the product as stored.
// Errors: ENOTFOUND, EINVALID, EUNAVAILABLE, EINTERNAL.
func (db *DB) UpdateProduct(ctx context.Context, id string, patch shop.ProductPatch) (shop.Product, error) {
	var cents *int64
	if patch.Price != nil {
		c := int64(*patch.Price)
		cents = &c
	}
	var p shop.Product
	c, err := db.conn(ctx)
	if err != nil {
		return p, wrapErr(err)
	}
	defer c.Release()
	err = scanProduct(c.QueryRow(ctx, updateProductSQL, id, patch.Name, patch.Description, cents, patch.Inventory, patch.ClearDescription), &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, shop.Errorf(shop.ENOTFOUND, "Product not found")
	}
	if err != nil {
		return p, wrapErr(err)
	}
	return p, nil
}

const lowInventorySQL = `-- name: products.low_inventory
SELECT ` + productCols + ` FROM products p
WHERE p.inventory <= $1
ORDER BY p.inventory, p.id`

// LowInventory lists products with inventory <= threshold, lowest first.
// Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) LowInventory(ctx context.Context, threshold int) ([]shop.Product, error) {
	c, err := db.conn(ctx)
	if err != nil {
		return nil, wrapErr(err)
	}
	defer c.Release()
	rows, err := c.Query(ctx, lowInventorySQL, threshold)
	if err != nil {
		return nil, wrapErr(err)
	}
	ps, err := collectProducts(rows)
	if err != nil {
		return nil, wrapErr(err)
	}
	return ps, nil
}
