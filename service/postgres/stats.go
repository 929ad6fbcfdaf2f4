package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Planner statistics. PostgreSQL plans every statement from per-table
// statistics that only ANALYZE (or autovacuum, which runs it when a table
// has changed enough) refreshes. When they describe a table as it was
// before a bulk load, the planner picks plans for the small table: right
// after 1,000,000 order lines were loaded, order history's items statement
// seq-scanned order_items and hash-joined every product (3.9 ms became
// 570 ms; docs/incidents.md, row 1). The importer analyzes products after
// a large import itself (importer.go); for rows written by other means,
// shopd serve runs AnalyzeStale every minute when autovacuum is off.

const autovacuumSQL = `-- name: stats.autovacuum
SELECT current_setting('autovacuum')::bool`

// Autovacuum reports whether the server's autovacuum is on (SHOW
// autovacuum). Errors: EUNAVAILABLE, EINTERNAL.
func (db *DB) Autovacuum(ctx context.Context) (bool, error) {
	var on bool
	if err := db.Pool.QueryRow(ctx, autovacuumSQL).Scan(&on); err != nil {
		return false, wrapErr(err)
	}
	return on, nil
}

// staleTablesSQL lists the tables of the current schema whose statistics
// autovacuum would refresh now with its default settings: changed rows
// since the last ANALYZE (pg_stat_user_tables.n_mod_since_analyze) at
// least autovacuum_analyze_threshold (50) plus
// autovacuum_analyze_scale_factor (10%) of the rows the planner believes
// the table holds (pg_class.reltuples; -1, never analyzed, counts as 0).
const staleTablesSQL = `-- name: stats.stale_tables
SELECT s.relname::text
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema()
  AND s.n_mod_since_analyze >= 50 + 0.1 * greatest(c.reltuples, 0)
ORDER BY s.relname`

// AnalyzeStale runs ANALYZE on every table of the schema whose statistics
// are stale by autovacuum's default rule (staleTablesSQL) and returns
// their names, in order. It does what autovacuum's analyze would on a
// server where autovacuum is off. ANALYZE samples at most 300 x
// default_statistics_target rows per table, so its cost is bounded
// whatever the table's size, and it blocks no reads or writes. The change
// counts it reads are the server's cumulative statistics, which a backend
// reports when it goes idle (within seconds). Errors: EUNAVAILABLE,
// EINTERNAL; the tables analyzed before a failure are returned with it.
func (db *DB) AnalyzeStale(ctx context.Context) ([]string, error) {
	rows, err := db.Pool.Query(ctx, staleTablesSQL)
	if err != nil {
		return nil, wrapErr(err)
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrapErr(err)
	}
	var done []string
	for _, table := range stale {
		if _, err := db.Pool.Exec(ctx, "-- name: stats.analyze\nANALYZE "+pgx.Identifier{table}.Sanitize()); err != nil {
			return done, wrapErr(err)
		}
		done = append(done, table)
	}
	return done, nil
}
