package postgres_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
)

// The relay's behaviour (claim loop, retries, dead letters, metrics, spans)
// is tested in package relay, on this store; these are the store's own.

// outboxDB is a fresh database with one buyer and a lamp (35.00, 2 in
// stock).
type outboxDB struct {
	db                 *postgres.DB
	buyer, email, lamp string
}

func newOutboxDB(t *testing.T) *outboxDB {
	t.Helper()
	e := &outboxDB{db: postgres.New(pgtest.New(t)), email: "buyer0@example.com"}
	if err := e.db.Pool.QueryRow(t.Context(), `INSERT INTO customers (email, name) VALUES ($1, 'Buyer 0') RETURNING id::text`, e.email).Scan(&e.buyer); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(t.Context(), `INSERT INTO products (name, price, inventory) VALUES ('Lamp', 35.00, 2) RETURNING id::text`).Scan(&e.lamp); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *outboxDB) checkout(t *testing.T) shop.Order {
	t.Helper()
	o, err := e.db.Checkout(t.Context(), shop.CheckoutRequest{UserID: e.buyer, Items: []shop.CartLine{{ProductID: e.lamp, Quantity: 1}}})
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	return o.Order
}

func (e *outboxDB) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCheckoutNoOutboxEventNoOrder checks the other direction of "an order
// exists iff its mail is owed": when the event cannot be written, the order
// is rolled back too.
func TestCheckoutNoOutboxEventNoOrder(t *testing.T) {
	t.Parallel()
	e := newOutboxDB(t)
	ctx := t.Context()
	if _, err := e.db.Pool.Exec(ctx, `
		CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'outbox is broken'; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse();`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Checkout(ctx, shop.CheckoutRequest{UserID: e.buyer, Items: []shop.CartLine{{ProductID: e.lamp, Quantity: 1}}}); shop.ErrorCode(err) != shop.EINTERNAL {
		t.Fatalf("checkout with a failing outbox: %v, want EINTERNAL", err)
	}
	if n := e.count(t, `SELECT count(*) FROM orders`); n != 0 {
		t.Errorf("%d orders without their mail", n)
	}
	if n := e.count(t, `SELECT inventory FROM products WHERE id = $1`, e.lamp); n != 2 {
		t.Errorf("lamp stock %d after a rolled-back checkout, want 2", n)
	}
}

// TestOutboxClaimIsALease checks that a claim returns the due events in id
// order with what the mail needs, counts an attempt, and keeps them off
// other claims while its lease runs.
func TestOutboxClaimIsALease(t *testing.T) {
	t.Parallel()
	e := newOutboxDB(t)
	ctx := t.Context()
	first, second := e.checkout(t), e.checkout(t)
	evs, err := e.db.ClaimOutbox(ctx, "a", 1, time.Hour)
	if err != nil || len(evs) != 1 {
		t.Fatalf("claim: %+v %v", evs, err)
	}
	ev := evs[0]
	var c shop.OrderConfirmation
	if err := json.Unmarshal(ev.Payload, &c); err != nil || c.OrderID != first.ID || len(c.Lines) != 1 || c.Total != first.Total {
		t.Errorf("payload %s: %+v %v", ev.Payload, c, err)
	}
	if ev.OrderID != first.ID || ev.Recipient != e.email || ev.RecipientName != "Buyer 0" || ev.Attempts != 1 || ev.ClaimID == "" || ev.CreatedAt.IsZero() {
		t.Errorf("event %+v", ev)
	}
	evs, err = e.db.ClaimOutbox(ctx, "b", 10, time.Hour)
	if err != nil || len(evs) != 1 || evs[0].OrderID != second.ID {
		t.Fatalf("second claim: %+v %v", evs, err)
	}
	if evs, err := e.db.ClaimOutbox(ctx, "c", 10, time.Hour); err != nil || len(evs) != 0 {
		t.Errorf("claim under live leases: %+v %v", evs, err)
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE claimed_by IN ('a', 'b') AND next_attempt_at > now() + interval '50 minutes'`); n != 2 {
		t.Errorf("%d events leased for an hour", n)
	}
	s, err := e.db.OutboxStatus(ctx)
	if err != nil || s.Pending != 2 || s.Due != 0 || s.Dead != 0 || s.OldestPendingOrder != first.ID {
		t.Errorf("status %+v %v", s, err)
	}
}

// TestOutboxResultsOnlyUnderTheClaim checks that sent, retry, dead and
// release are recorded only under the claim that took the event, and
// report a claim that has expired as lost.
func TestOutboxResultsOnlyUnderTheClaim(t *testing.T) {
	t.Parallel()
	e := newOutboxDB(t)
	ctx := t.Context()
	o := e.checkout(t)
	claim := func() shop.OutboxClaim {
		t.Helper()
		evs, err := e.db.ClaimOutbox(ctx, "r", 10, time.Hour)
		if err != nil || len(evs) != 1 {
			t.Fatalf("claim: %+v %v", evs, err)
		}
		return evs[0].OutboxClaim
	}
	c := claim()
	stale := shop.OutboxClaim{ID: c.ID, ClaimID: "00000000-0000-4000-8000-000000000000"}
	if lost, err := e.db.MarkOutboxRetry(ctx, stale, 0, "x"); err != nil || !lost {
		t.Errorf("retry under another claim: lost %v, %v", lost, err)
	}
	if n, err := e.db.ReleaseOutbox(ctx, []shop.OutboxClaim{stale}); err != nil || n != 0 {
		t.Errorf("release under another claim: %d %v", n, err)
	}

	// Released: due at once, the attempt not counted.
	if n, err := e.db.ReleaseOutbox(ctx, []shop.OutboxClaim{c}); err != nil || n != 1 {
		t.Fatalf("release: %d %v", n, err)
	}
	if n := e.count(t, `SELECT attempts FROM outbox WHERE id = $1 AND claim_id IS NULL AND next_attempt_at <= now()`, c.ID); n != 0 {
		t.Errorf("attempts %d after a release, want 0", n)
	}

	// Retried: the error kept, due after the delay.
	c = claim()
	if lost, err := e.db.MarkOutboxRetry(ctx, c, time.Hour, "451 mailbox busy"); err != nil || lost {
		t.Fatalf("retry: lost %v, %v", lost, err)
	}
	if lost, err := e.db.MarkOutboxSent(ctx, c); err != nil || !lost {
		t.Errorf("sent under a claim already used: lost %v, %v", lost, err)
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE id = $1 AND last_error = '451 mailbox busy' AND next_attempt_at > now() + interval '50 minutes'`, c.ID); n != 1 {
		t.Error("retry not recorded")
	}

	// Dead, then requeued with a fresh budget.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE outbox SET next_attempt_at = now() WHERE id = $1`, c.ID); err != nil {
		t.Fatal(err)
	}
	c = claim()
	if lost, err := e.db.MarkOutboxDead(ctx, c, "550 no such mailbox"); err != nil || lost {
		t.Fatalf("dead: lost %v, %v", lost, err)
	}
	if s, err := e.db.OutboxStatus(ctx); err != nil || s.Dead != 1 || s.Pending != 0 || s.OldestPending != 0 || s.OldestPendingOrder != "" {
		t.Errorf("status with one dead: %+v %v", s, err)
	}
	if _, err := e.db.RequeueDead(ctx, []string{"nope"}); shop.ErrorCode(err) != shop.EINVALID {
		t.Errorf("bad id: %v", err)
	}
	if n, err := e.db.RequeueDead(ctx, []string{o.ID}); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE id = $1 AND status = 'pending' AND attempts = 0`, c.ID); n != 1 {
		t.Error("requeued event not pending with a fresh budget")
	}

	// Sent, then purged once past the retention.
	c = claim()
	if lost, err := e.db.MarkOutboxSent(ctx, c); err != nil || lost {
		t.Fatalf("sent: lost %v, %v", lost, err)
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE id = $1 AND status = 'sent' AND sent_at IS NOT NULL AND last_error IS NULL`, c.ID); n != 1 {
		t.Error("sent not recorded")
	}
	if _, err := e.db.PurgeSentOutbox(ctx, 0); shop.ErrorCode(err) != shop.EINVALID {
		t.Errorf("purge with no retention: %v", err)
	}
	if n, err := e.db.PurgeSentOutbox(ctx, time.Hour); err != nil || n != 0 {
		t.Errorf("purge of a fresh sent event: %d %v", n, err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE outbox SET sent_at = now() - interval '2 hours' WHERE id = $1`, c.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.db.PurgeSentOutbox(ctx, time.Hour); err != nil || n != 1 {
		t.Errorf("purge: %d %v", n, err)
	}
}
