package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// bench_catalog numbers each data set's products 1..n, so that pgbench
// scripts can pick them with random(1, n).
const createCatalogSQL = `CREATE TABLE IF NOT EXISTS bench_catalog (
    label      text    NOT NULL,
    n          integer NOT NULL,
    product_id uuid    NOT NULL,
    PRIMARY KEY (label, n)
)`

func createCatalogTable(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, createCatalogSQL)
	return err
}

func dropCatalogTable(ctx context.Context, pool *pgxpool.Pool, shared bool) {
	if shared {
		_, _ = pool.Exec(ctx, "DROP TABLE IF EXISTS bench_catalog")
	}
}

// dataset is a buyer and the products a scenario (or its pgbench twin) buys.
type dataset struct {
	label    string
	user     string
	products []string
	initial  int
}

// createDataset inserts a user and n products with stock each, numbered
// 1..n in bench_catalog under label.
func createDataset(ctx context.Context, pool *pgxpool.Pool, label string, n, stock int) (dataset, error) {
	ds := dataset{label: label + "-" + randomHex(4), initial: stock}
	err := pool.QueryRow(ctx, `INSERT INTO customers (email, name) VALUES ($1, $2) RETURNING id::text`,
		"bench-"+ds.label+"@example.com", "Bench "+ds.label).Scan(&ds.user)
	if err != nil {
		return ds, err
	}
	rows, err := pool.Query(ctx, `
INSERT INTO products (name, description, price, inventory)
SELECT 'Bench ' || $1 || ' ' || i, 'bench product', 1 + (i % 50) + 0.99, $3
FROM generate_series(1, $2) AS i
RETURNING id::text`, ds.label, n, stock)
	if err != nil {
		return ds, err
	}
	ds.products, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return ds, err
	}
	_, err = pool.Exec(ctx, `
INSERT INTO bench_catalog (label, n, product_id)
SELECT $1, r.n, r.id FROM unnest($2::uuid[]) WITH ORDINALITY AS r(id, n)`, ds.label, ds.products)
	return ds, err
}

// verify checks the invariants of ds against the database: no stock below
// zero; for every product, initial stock minus final stock equals the units
// in orders; every order's total equals the sum of its lines; and, when
// orders >= 0, the buyer has exactly that many orders (one per 201).
// It also returns the rate at which orders were placed between the first
// and the last (by the orders' transaction timestamps): with limited stock,
// the rate while stock lasted, and the units sold beyond a product's
// initial stock (oversold: must be 0).
func verify(ctx context.Context, pool *pgxpool.Pool, ds dataset, orders int) (sold int, orderRate float64, oversold int, failures []string, err error) {
	rows, err := pool.Query(ctx, `
SELECT p.id::text, p.inventory, coalesce(sum(oi.quantity), 0)::int
FROM products p LEFT JOIN order_items oi ON oi.product_id = p.id
WHERE p.id = ANY($1::uuid[])
GROUP BY p.id`, ds.products)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	seen := 0
	for rows.Next() {
		var id string
		var inv, units int
		if err := rows.Scan(&id, &inv, &units); err != nil {
			rows.Close()
			return 0, 0, 0, nil, err
		}
		seen++
		sold += units
		oversold += max(0, units-ds.initial)
		if inv < 0 {
			failures = append(failures, fmt.Sprintf("%s: product %s has stock %d", ds.label, id, inv))
		}
		if ds.initial-inv != units {
			failures = append(failures, fmt.Sprintf("%s: product %s: stock %d -> %d (consumed %d) but %d units sold",
				ds.label, id, ds.initial, inv, ds.initial-inv, units))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, 0, nil, err
	}
	if seen != len(ds.products) {
		failures = append(failures, fmt.Sprintf("%s: %d of %d products found", ds.label, seen, len(ds.products)))
	}
	var nOrders, badTotals int
	var span float64
	err = pool.QueryRow(ctx, `
SELECT count(*), count(*) FILTER (WHERE o.total <> (SELECT sum(oi.quantity * oi.price) FROM order_items oi WHERE oi.order_id = o.id)),
       coalesce(extract(epoch FROM max(o.created_at) - min(o.created_at)), 0)::float8
FROM orders o WHERE o.customer_id = $1`, ds.user).Scan(&nOrders, &badTotals, &span)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	if badTotals > 0 {
		failures = append(failures, fmt.Sprintf("%s: %d orders whose total is not the sum of their lines", ds.label, badTotals))
	}
	if orders >= 0 && nOrders != orders {
		failures = append(failures, fmt.Sprintf("%s: %d orders in the database but %d answers were 201", ds.label, nOrders, orders))
	}
	if span > 0 {
		orderRate = float64(nOrders-1) / span
	}
	return sold, orderRate, oversold, failures, nil
}
