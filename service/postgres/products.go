package postgres

import (
	"context"
	"errors"

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

const listProductsSQL = `-- name: products.list
SELECT ` + productCols + `, count(*) OVER ()
FROM products p
ORDER BY p.created_at DESC, p.id DESC
LIMIT $1 OFFSET $2`

const countProductsSQL = `-- name: products.count
SELECT count(*) FROM products`

// ListProducts returns a page of products, newest first, and the total.
// Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) ListProducts(ctx context.Context, f shop.ProductFilter) ([]shop.Product, int, error) {
	rows, err := db.Pool.Query(ctx, listProductsSQL, f.Limit, (f.Page-1)*f.Limit)
	if err != nil {
		return nil, 0, wrapErr(err)
	}
	defer rows.Close()
	ps := []shop.Product{}
	total := 0
	for rows.Next() {
		var p shop.Product
		if err := scanProduct(rows, &p, &total); err != nil {
			return nil, 0, wrapErr(err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, wrapErr(err)
	}
	if len(ps) == 0 {
		// A page past the end still reports the total.
		if err := db.Pool.QueryRow(ctx, countProductsSQL).Scan(&total); err != nil {
			return nil, 0, wrapErr(err)
		}
	}
	return ps, total, nil
}

const productByIDSQL = `-- name: products.get
SELECT ` + productCols + ` FROM products p WHERE p.id = $1`

// Product returns one product. Errors: ENOTFOUND, EUNAVAILABLE, EINTERNAL.
func (db *DB) Product(ctx context.Context, id string) (shop.Product, error) {
	var p shop.Product
	err := scanProduct(db.Pool.QueryRow(ctx, productByIDSQL, id), &p)
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
	err := scanProduct(db.Pool.QueryRow(ctx, insertProductSQL, np.Name, np.Description, int64(np.Price), np.Inventory, np.SKU), &p)
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

const lowInventorySQL = `-- name: products.low_inventory
SELECT ` + productCols + ` FROM products p
WHERE p.inventory <= $1
ORDER BY p.inventory, p.id`

// LowInventory lists products with inventory <= threshold, lowest first.
// Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) LowInventory(ctx context.Context, threshold int) ([]shop.Product, error) {
	rows, err := db.Pool.Query(ctx, lowInventorySQL, threshold)
	if err != nil {
		return nil, wrapErr(err)
	}
	ps, err := collectProducts(rows)
	if err != nil {
		return nil, wrapErr(err)
	}
	return ps, nil
}
