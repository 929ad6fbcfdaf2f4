package relay_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/internal/pgtest"
)

// TestRelayMarkSurvivesLostConnection checks that a mail sent while the
// database's connections are lost (as when the primary dies and the
// standby is promoted) is marked sent once the database answers again,
// instead of staying claimed and going out a second time after the lease.
func TestRelayMarkSurvivesLostConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	o := e.checkout(t, ctx, e.buyers[0], line(e.fan, 1))
	// The send takes 500 ms: time to end every connection of the relay's
	// pool (the pool holds them since the claim, so the mark uses a dead
	// one without a ping first).
	e.smtp.SetDelay(500 * time.Millisecond)
	r := e.relay(t, "failover")
	// Directly, also under PGTEST_PGBOUNCER: there the connections ended
	// are pgbouncer's to the server, which the relay's next statement
	// meets as PostgreSQL's primary dying.
	killer, err := pgx.Connect(ctx, pgtest.DirectURL(t, e.db.Pool.Config().ConnString()))
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(ctx)
	killed := make(chan int, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for e.smtp.Sessions() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		var n int
		_ = killer.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n)
		killed <- n
	}()
	st, err := r.Drain(ctx)
	if n := <-killed; n == 0 {
		t.Fatal("no connection was ended during the send: the test proved nothing")
	}
	if err != nil || st.Sent != 1 {
		t.Fatalf("drain: %+v %v", st, err)
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE order_id = $1 AND status = 'sent' AND claim_id IS NULL`, o.ID); n != 1 {
		t.Error("the mail went out but its event is not marked sent: it would go out again after the lease")
	}
	if got := byOrder(t, e.smtp.Messages()); len(got) != 1 {
		t.Errorf("%d mails, want 1", len(got))
	}
}
