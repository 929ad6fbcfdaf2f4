package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// TestSeedBulkUser: the generated orders are well-formed: 1-4 lines each
// (2.5 on average), totals equal to their lines, newest first by minute.
func TestSeedBulkUser(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()
	id, err := db.SeedBulkUser(ctx, "bulk@example.com", "Bulk", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var orders, lines, badTotals, distinctMinutes int
	err = db.Pool.QueryRow(ctx, `
SELECT (SELECT count(*) FROM orders WHERE customer_id = $1),
       (SELECT count(*) FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.customer_id = $1),
       (SELECT count(*) FROM orders o WHERE o.customer_id = $1 AND o.total <>
           (SELECT sum(oi.price * oi.quantity) FROM order_items oi WHERE oi.order_id = o.id)),
       (SELECT count(DISTINCT created_at) FROM orders WHERE customer_id = $1)`, id).Scan(&orders, &lines, &badTotals, &distinctMinutes)
	if err != nil {
		t.Fatal(err)
	}
	if orders != 1000 || lines != 2500 || badTotals != 0 || distinctMinutes != 1000 {
		t.Errorf("%d orders, %d lines, %d bad totals, %d distinct times; want 1000, 2500, 0, 1000", orders, lines, badTotals, distinctMinutes)
	}
	if _, err := db.SeedBulkUser(ctx, "bulk@example.com", "Again", 1); shop.ErrorCode(err) != shop.ECONFLICT {
		t.Errorf("same email again: %v, want ECONFLICT", err)
	}
}

// TestReportsStore: the report store's figures agree with the database,
// StreamReport yields every line newest first or only the first limit,
// and its errors are shop errors.
func TestReportsStore(t *testing.T) {
	t.Parallel()
	db, _ := seeded(t)
	ctx := t.Context()
	heavy := heavyUserID(t, db)
	r := postgres.NewReports(db.Pool, 5*time.Second)

	t.Run("Summary", func(t *testing.T) {
		s, err := r.ReportSummary(ctx, heavy)
		if err != nil {
			t.Fatal(err)
		}
		var orders, items, lines int
		var cents int64
		if err := db.Pool.QueryRow(ctx, `SELECT count(DISTINCT o.id), sum(oi.quantity), count(*),
(SELECT (sum(total) * 100)::bigint FROM orders WHERE customer_id = $1)
FROM orders o JOIN order_items oi ON oi.order_id = o.id WHERE o.customer_id = $1`, heavy).Scan(&orders, &items, &lines, &cents); err != nil {
			t.Fatal(err)
		}
		if s.User.Email != "heavy.user@example.com" || s.OrderCount != 120 || s.ItemsPurchased != items ||
			s.TotalSpent != shop.Money(cents) || s.Text.Orders != int64(orders) || s.Text.Lines != int64(lines) ||
			s.Text.Statuses != int64(orders*len("completed")) || s.Text.Quantities != int64(lines) {
			t.Errorf("summary %+v; database: %d orders with %d lines, %d items, %d cents", s, orders, lines, items, cents)
		}
	})

	t.Run("StreamAll", func(t *testing.T) {
		var n int
		var prev time.Time
		err := r.StreamReport(ctx, heavy, 0, func(l shop.ReportLine) error {
			if n > 0 && l.CreatedAt.After(prev) {
				t.Fatalf("line %d is newer than the one before", n)
			}
			prev = l.CreatedAt
			n++
			return nil
		})
		s, _ := r.ReportSummary(ctx, heavy)
		if err != nil || int64(n) != s.Text.Lines {
			t.Errorf("%d lines (%v), want %d", n, err, s.Text.Lines)
		}
	})

	t.Run("StreamLimit", func(t *testing.T) {
		n := 0
		if err := r.StreamReport(ctx, heavy, 7, func(shop.ReportLine) error { n++; return nil }); err != nil || n != 7 {
			t.Errorf("%d lines (%v), want 7", n, err)
		}
	})

	t.Run("FnErrorStops", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := r.StreamReport(ctx, heavy, 0, func(shop.ReportLine) error {
			if n++; n == 3 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || n != 3 {
			t.Errorf("%v after %d lines, want fn's error after 3", err, n)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		const nobody = "00000000-0000-4000-8000-000000000000"
		if _, err := r.ReportSummary(ctx, nobody); shop.ErrorCode(err) != shop.ENOTFOUND {
			t.Errorf("summary: %v", err)
		}
		if _, err := r.ReportUser(ctx, nobody); shop.ErrorCode(err) != shop.ENOTFOUND {
			t.Errorf("user: %v", err)
		}
	})

	t.Run("ErrCanceled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := r.StreamReport(cctx, heavy, 0, func(shop.ReportLine) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("%v, want context.Canceled", err)
		}
	})
}
