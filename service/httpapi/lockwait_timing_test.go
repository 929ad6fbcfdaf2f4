package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// TestCheckoutLockWaitTimedOnLockStatement: a checkout that queues for a
// product's row lock, held by another session, has the wait on the statement
// that waited (checkout.lock_products) in db.query.duration, db.lock_wait,
// its span and its slow-query line, not on the tx.begin that opens its
// pipelined batch (issue 13). With an idempotency key the batch carries a
// second lock statement (the key's claim) in front of it; when the wait ends
// in lock_timeout the failing statement carries it.
func TestCheckoutLockWaitTimedOnLockStatement(t *testing.T) {
	mt := telemetrytest.MockTracer(t)
	e := newEnv(t)
	ctx := t.Context()
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user3@example.com'`)
	const hold = 600 * time.Millisecond
	e.db.CheckoutTimeouts.Lock = 1500 * time.Millisecond
	holdMS := float64(hold.Milliseconds())

	cases := []struct {
		name    string
		key     string
		hold    time.Duration // how long the other session keeps the lock
		status  int
		outcome string
	}{
		{"NoKey", "", hold, 201, telemetry.OutcomeOK},
		{"WithKey", "lock-timing-1", hold, 201, telemetry.OutcomeOK},
		{"LockTimeout", "", 3 * time.Second, 503, telemetry.OutcomeLockNotAvailable},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			product := e.id(t, `SELECT id::text FROM products WHERE inventory >= 10 ORDER BY id DESC OFFSET $1 LIMIT 1`, i)
			// A checkout of the product, uncontended, gives the lock
			// statement its baseline (the tracer's lock-wait estimate
			// subtracts it).
			e.stats.Reset()
			if res := e.do(t, "POST", "/orders/checkout", "application/json",
				fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product)); res.status != 201 {
				t.Fatalf("uncontended checkout: %d %s", res.status, res.body)
			}
			e.stats.WaitFor(t, telemetry.MetricDBQueryDuration, "query:checkout.lock_products")
			e.stats.Reset()
			e.logs.TakeAll()

			release := holdRowLock(t, e.db.Pool, product)
			defer release()
			traceID := uint64(8_100_000_000 + i)
			headers := []string{"X-Datadog-Trace-Id", fmt.Sprint(traceID), "X-Datadog-Parent-Id", "1"}
			if c.key != "" {
				headers = append(headers, "Idempotency-Key", c.key)
			}
			done := make(chan response, 1)
			go func() {
				done <- e.do(t, "POST", "/orders/checkout", "application/json",
					fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product), headers...)
			}()
			// The hold counts from when the checkout queues for the lock.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				var n int
				if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND application_name = $1 AND wait_event_type = 'Lock'`,
					e.tel.Config.AppName).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the checkout never waited for the lock")
				}
			}
			start := time.Now()
			var res response
			select {
			case res = <-done:
			case <-time.After(c.hold):
				release()
				res = <-done
			}
			if res.status != c.status {
				t.Fatalf("checkout: %d %s, want %d", res.status, res.body, c.status)
			}
			waited := time.Since(start)
			if waited < hold {
				t.Fatalf("checkout answered after %v, before the lock was released", waited)
			}

			d := e.stats.WaitFor(t, telemetry.MetricDBQueryDuration, "query:checkout.lock_products", "outcome:"+c.outcome)
			if d.Value < holdMS {
				t.Errorf("db.query.duration{query:checkout.lock_products} = %.1f ms, want >= %.0f", d.Value, holdMS)
			}
			w := e.stats.WaitFor(t, telemetry.MetricDBLockWait, "query:checkout.lock_products", "outcome:"+c.outcome)
			if w.Value < holdMS {
				t.Errorf("db.lock_wait{query:checkout.lock_products} = %.1f ms, want >= %.0f", w.Value, holdMS)
			}
			for _, m := range e.stats.Find(telemetry.MetricDBQueryDuration) {
				q, _ := m.Tag("query")
				ours := strings.HasPrefix(q, "checkout.") || strings.HasPrefix(q, "tx.")
				if ours && q != "checkout.lock_products" && m.Value >= 50 {
					t.Errorf("%s took %.1f ms, want small: only the lock statement waited", q, m.Value)
				}
			}
			if b := e.stats.Find(telemetry.MetricDBQueryDuration, "query:tx.begin"); len(b) == 0 {
				t.Error("no db.query.duration for tx.begin")
			}
			if c.key != "" {
				claim := e.stats.Find(telemetry.MetricDBLockWait, "query:checkout.claim_idempotency_key")
				if len(claim) != 1 || claim[0].Value >= 50 {
					t.Errorf("db.lock_wait of the key's claim: %v, want one small sample", claim)
				}
			}

			slow := e.logs.FilterMessage("slow query").All()
			if len(slow) != 1 {
				t.Fatalf("%d slow query lines, want 1 (the lock statement): %v", len(slow), slow)
			}
			f := slow[0].ContextMap()
			if f["query"] != "checkout.lock_products" || f["outcome"] != c.outcome {
				t.Errorf("slow query line names %v (outcome %v), want checkout.lock_products (%s)", f["query"], f["outcome"], c.outcome)
			}
			if ms, ok := f["lock_wait_ms"].(float64); !ok || ms < holdMS {
				t.Errorf("slow query lock_wait_ms = %v, want >= %.0f", f["lock_wait_ms"], holdMS)
			}
			if n := len(e.logs.FilterMessage("slow query").FilterField(zap.String("query", "tx.begin")).All()); n != 0 {
				t.Errorf("tx.begin logged as slow %d times", n)
			}

			var spanOK bool
			for _, s := range spansOf(mt, traceID) {
				if s.OperationName() != telemetry.SpanBatchQuery {
					continue
				}
				switch s.Tag("resource.name") {
				case "checkout.lock_products":
					ms, _ := s.Tag("db.lock_wait_ms").(float64)
					spanOK = ms >= holdMS && s.FinishTime().Sub(s.StartTime()) >= hold
				case "tx.begin":
					if d := s.FinishTime().Sub(s.StartTime()); d >= 50*time.Millisecond {
						t.Errorf("tx.begin span lasts %v, want small", d)
					}
				}
			}
			if !spanOK {
				t.Error("the checkout.lock_products span does not carry the wait")
			}
		})
	}
}
