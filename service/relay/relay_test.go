package relay_test

import (
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"

	"github.com/shoplab/shoplab/service/internal/smtptest"
	"github.com/shoplab/shoplab/service/relay"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// TestRelayEveryCheckoutOneMailToTheBuyer checks that the relay sends every checkout one mail, to its buyer, with the order's id, lines, quantities, prices and total, and nothing more on a second pass.
func TestRelayEveryCheckoutOneMailToTheBuyer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	orders := []struct {
		o shop.Order
		b buyer
	}{
		{e.checkout(t, ctx, e.buyers[0], line(e.fan, 2), line(e.cable, 1)), e.buyers[0]},
		{e.checkout(t, ctx, e.buyers[1], line(e.lamp, 1)), e.buyers[1]},
		{e.checkout(t, ctx, e.buyers[2], line(e.fan, 3), line(e.cable, 4), line(e.lamp, 1)), e.buyers[2]},
		{e.checkout(t, ctx, e.buyers[0], line(e.cable, 5)), e.buyers[0]},
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE status = 'pending'`); n != len(orders) {
		t.Fatalf("%d pending events after %d checkouts", n, len(orders))
	}
	st, err := e.relay(t, "r1").Drain(ctx)
	if err != nil || st.Sent != len(orders) || st.Retried+st.Dead+st.Released != 0 {
		t.Fatalf("drain: %+v %v", st, err)
	}
	got := byOrder(t, e.smtp.Messages())
	if len(got) != len(orders) {
		t.Fatalf("%d mails for %d orders", len(got), len(orders))
	}
	for _, want := range orders {
		m, ok := got[want.o.ID]
		if !ok {
			t.Errorf("no mail for order %s", want.o.ID)
			continue
		}
		if len(m.To) != 1 || m.To[0] != want.b.email {
			t.Errorf("order %s mailed to %v, want %s", want.o.ID, m.To, want.b.email)
		}
		to, err := mail.ParseAddress(m.Header.Get("To"))
		if err != nil || to.Address != want.b.email || to.Name != want.b.name {
			t.Errorf("To header %q (%v)", m.Header.Get("To"), err)
		}
		text, html := textPart(t, m)
		wantText := []string{"Hello " + want.b.name + ",", "Order:  " + want.o.ID, "Total: " + want.o.Total.String()}
		for _, it := range want.o.Items {
			wantText = append(wantText, fmt.Sprintf("%d x %s at %s = %s", it.Quantity, e.products[it.ProductID], it.Price, it.Price*shop.Money(it.Quantity)))
		}
		for _, s := range wantText {
			if !strings.Contains(text, s) {
				t.Errorf("order %s: text lacks %q:\n%s", want.o.ID, s, text)
			}
		}
		if strings.Count(text, " x ") != len(want.o.Items) {
			t.Errorf("order %s: text has %d lines, want %d", want.o.ID, strings.Count(text, " x "), len(want.o.Items))
		}
		if !strings.Contains(html, want.o.Total.String()) || strings.Contains(html, "<b>& Co</b>") {
			t.Errorf("order %s: html part wrong or unescaped:\n%s", want.o.ID, html)
		}
	}
	// Nothing more is owed: a second pass sends nothing.
	if st, err := e.relay(t, "r2").Drain(ctx); err != nil || st.Claimed != 0 {
		t.Errorf("second drain: %+v %v", st, err)
	}
	if n := len(e.smtp.Messages()); n != len(orders) {
		t.Errorf("%d mails after a second drain", n)
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE status = 'sent' AND attempts = 1 AND sent_at IS NOT NULL`); n != len(orders) {
		t.Errorf("%d events sent at the first attempt, want %d", n, len(orders))
	}
}

// TestRelayFailedCheckoutLeavesNothingToSend checks that a failed checkout leaves neither an order nor an outbox event, so a relay finds nothing to send.
func TestRelayFailedCheckoutLeavesNothingToSend(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for name, c := range map[string]struct {
		req  shop.CheckoutRequest
		code shop.Code
	}{
		"ErrInsufficientStock": {shop.CheckoutRequest{UserID: e.buyers[0].id, Items: []shop.CartLine{line(e.fan, 1), line(e.lamp, 3)}}, shop.ECONFLICT},
		"ErrUnknownProduct":    {shop.CheckoutRequest{UserID: e.buyers[0].id, Items: []shop.CartLine{line("00000000-0000-4000-8000-000000000000", 1)}}, shop.ENOTFOUND},
		"ErrUnknownUser":       {shop.CheckoutRequest{UserID: "00000000-0000-4000-8000-000000000000", Items: []shop.CartLine{line(e.fan, 1)}}, shop.ENOTFOUND},
		"ErrInvalidCart":       {shop.CheckoutRequest{UserID: e.buyers[0].id}, shop.EINVALID},
	} {
		if _, err := e.db.Checkout(ctx, c.req); shop.ErrorCode(err) != c.code {
			t.Errorf("%s: got %v, want %s", name, err, c.code)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM outbox`) + e.count(t, `SELECT count(*) FROM orders`); n != 0 {
		t.Fatalf("%d orders and events after failed checkouts", n)
	}
	if st, err := e.relay(t, "r").Drain(ctx); err != nil || st.Claimed != 0 {
		t.Errorf("drain: %+v %v", st, err)
	}
	if n := len(e.smtp.Messages()); n != 0 {
		t.Errorf("%d mails for failed checkouts", n)
	}
}

// TestRelaySMTPDownDuring100Checkouts checks that 100 checkouts succeed while the mail server is down, the relay keeps retrying, and once the server is back every mail arrives exactly once.
func TestRelaySMTPDownDuring100Checkouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.smtp.Stop()
	stop := run(t, e.relay(t, "r1"))

	const n = 100
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for w := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 5 {
				o, err := e.db.Checkout(ctx, shop.CheckoutRequest{UserID: e.buyers[i%3].id, Items: []shop.CartLine{line(e.fan, 1)}})
				if err != nil {
					t.Errorf("checkout %d with the mail server down: %v", i, err)
					continue
				}
				ids <- o.Order.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	want := map[string]bool{}
	for id := range ids {
		want[id] = true
	}
	if len(want) != n {
		t.Fatalf("%d orders placed, want %d", len(want), n)
	}
	// The relay keeps trying while the server is down.
	waitUntil(t, 20*time.Second, "the relay never retried", func() bool {
		return e.count(t, `SELECT count(*) FROM outbox WHERE last_error IS NOT NULL`) >= 20
	})
	if got := len(e.smtp.Messages()); got != 0 {
		t.Fatalf("%d mails while the server was down", got)
	}
	if p := e.count(t, `SELECT count(*) FROM outbox WHERE status = 'pending'`); p != n {
		t.Fatalf("%d pending, want %d", p, n)
	}

	e.smtp.Start()
	back := time.Now()
	e.smtp.WaitFor(t, n, 60*time.Second)
	t.Logf("all %d mails delivered %v after the server came back (backoff max 100ms)", n, time.Since(back).Round(time.Millisecond))
	waitUntil(t, 20*time.Second, "not every event marked sent", func() bool {
		return e.count(t, `SELECT count(*) FROM outbox WHERE status = 'sent'`) == n
	})
	// A few more polls: nothing is sent twice.
	time.Sleep(200 * time.Millisecond)
	stop()
	msgs := e.smtp.Messages()
	if len(msgs) != n {
		t.Fatalf("%d mails for %d orders", len(msgs), n)
	}
	got := byOrder(t, msgs)
	for id := range want {
		if _, ok := got[id]; !ok {
			t.Errorf("order %s never mailed", id)
		}
	}
	e.stats.WaitForSum(t, func(v float64) bool { return v >= 20 }, telemetry.MetricOutboxRetried, "reason:"+relay.ReasonUnavailable)
	e.stats.WaitForSum(t, telemetrytest.Equals(n), telemetry.MetricOutboxSent)
	if dead := e.count(t, `SELECT count(*) FROM outbox WHERE status = 'dead'`); dead != 0 {
		t.Errorf("%d dead events", dead)
	}
}

// TestTwoRelaysSendEachMailOnce checks that two relays on one database share the work and send each mail once, without losing a claim.
func TestTwoRelaysSendEachMailOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	const n = 150
	for i := range n {
		e.checkout(t, ctx, e.buyers[i%3], line(e.cable, 1))
	}
	e.smtp.SetDelay(2 * time.Millisecond)
	small := func(c *relay.Config) { c.BatchSize = 5 }
	run(t, e.relay(t, "relay-a", small))
	run(t, e.relay(t, "relay-b", small))
	e.smtp.WaitFor(t, n, 60*time.Second)
	waitUntil(t, 20*time.Second, "not every event marked sent", func() bool {
		return e.count(t, `SELECT count(*) FROM outbox WHERE status = 'sent'`) == n
	})
	time.Sleep(200 * time.Millisecond)
	msgs := e.smtp.Messages()
	if len(msgs) != n {
		t.Fatalf("%d mails for %d orders", len(msgs), n)
	}
	if got := byOrder(t, msgs); len(got) != n {
		t.Errorf("%d distinct orders mailed, want %d", len(got), n)
	}
	// Both relays did part of the work, and no claim was ever lost.
	for _, r := range []string{"relay-a", "relay-b"} {
		c := e.count(t, `SELECT count(*) FROM outbox WHERE claimed_by = $1`, r)
		if c == 0 {
			t.Errorf("%s sent nothing: the test did not exercise concurrency", r)
		}
		t.Logf("%s sent %d of %d", r, c, n)
	}
	e.stats.WaitForSum(t, telemetrytest.Equals(n), telemetry.MetricOutboxSent)
	if lost := e.stats.Sum(telemetry.MetricOutboxLeaseLost); lost != 0 {
		t.Errorf("outbox.lease_lost = %v", lost)
	}
	if a := e.count(t, `SELECT count(*) FROM outbox WHERE attempts <> 1`); a != 0 {
		t.Errorf("%d events claimed more than once", a)
	}
}

// TestCrashedRelaysClaimsComeBack checks that the events of a relay that died after its claim stay off other relays while the lease runs and come back when it expires.
func TestCrashedRelaysClaimsComeBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for i := range 3 {
		e.checkout(t, ctx, e.buyers[i], line(e.fan, 1))
	}
	const lease = 500 * time.Millisecond
	crashed := e.relay(t, "crashed", func(c *relay.Config) { c.Lease, c.SendTimeout = lease, 100*time.Millisecond })
	if n, err := crashed.ClaimAndAbandon(ctx); err != nil || n != 3 {
		t.Fatalf("claim: %d %v", n, err)
	}
	survivor := e.relay(t, "survivor")
	if st, err := survivor.Drain(ctx); err != nil || st.Claimed != 0 {
		t.Fatalf("events under a live lease were claimed: %+v %v", st, err)
	}
	time.Sleep(lease + 100*time.Millisecond)
	st, err := survivor.Drain(ctx)
	if err != nil || st.Sent != 3 {
		t.Fatalf("after the lease: %+v %v", st, err)
	}
	if got := byOrder(t, e.smtp.Messages()); len(got) != 3 {
		t.Errorf("%d mails", len(got))
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE status = 'sent' AND attempts = 2 AND claimed_by = 'survivor'`); n != 3 {
		t.Errorf("%d events sent by the survivor at attempt 2", n)
	}
}

// TestRelayDeadAfterMaxAttempts checks that an event whose sends keep failing transiently is parked as dead after MaxAttempts (counted, logged, in the gauges), and that requeue-dead sends it once the cause is fixed.
func TestRelayDeadAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	o := e.checkout(t, ctx, e.buyers[0], line(e.fan, 1))
	e.smtp.RejectRcpt(smtptest.Reply(451, "mailbox busy"))
	r := e.relay(t, "r", func(c *relay.Config) {
		c.MaxAttempts, c.BackoffBase, c.BackoffMax = 3, time.Millisecond, 5*time.Millisecond
	})
	var total relay.BatchStats
	waitUntil(t, 10*time.Second, "the event never went dead", func() bool {
		st, err := r.Drain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total.Retried += st.Retried
		total.Dead += st.Dead
		return e.count(t, `SELECT count(*) FROM outbox WHERE status = 'dead'`) == 1
	})
	if total.Retried != 2 || total.Dead != 1 {
		t.Errorf("retried %d, dead %d; want 2 and 1", total.Retried, total.Dead)
	}
	var attempts int
	var lastErr string
	if err := e.db.Pool.QueryRow(ctx, `SELECT attempts, last_error FROM outbox WHERE order_id = $1`, o.ID).Scan(&attempts, &lastErr); err != nil {
		t.Fatal(err)
	}
	if attempts != 3 || !strings.Contains(lastErr, "451") {
		t.Errorf("attempts %d, last_error %q", attempts, lastErr)
	}
	e.stats.WaitForSum(t, telemetrytest.Equals(1), telemetry.MetricOutboxDead, "reason:"+relay.ReasonMaxAttempts)
	e.stats.WaitForSum(t, telemetrytest.Equals(2), telemetry.MetricOutboxRetried)
	parked := e.logs.FilterMessageSnippet("parked as dead").AllUntimed()
	if len(parked) != 1 || parked[0].ContextMap()["order_id"] != o.ID || parked[0].ContextMap()["reason"] != relay.ReasonMaxAttempts {
		t.Errorf("dead log lines: %+v", parked)
	}
	s, err := r.ReportStats(ctx)
	if err != nil || s.Dead != 1 || s.Pending != 0 {
		t.Errorf("status %+v %v", s, err)
	}
	e.stats.WaitForMatch(t, telemetry.MetricOutboxParked, func(m telemetrytest.Metric) bool { return m.Value == 1 })

	t.Run("RequeueDead", func(t *testing.T) {
		e.smtp.RejectRcpt(nil)
		if n, err := e.db.RequeueDead(ctx, []string{o.ID}); err != nil || n != 1 {
			t.Fatalf("requeue: %d %v", n, err)
		}
		if st, err := r.Drain(ctx); err != nil || st.Sent != 1 {
			t.Fatalf("drain after requeue: %+v %v", st, err)
		}
		if got := byOrder(t, e.smtp.Messages()); len(got) != 1 {
			t.Errorf("%d mails", len(got))
		}
		if _, err := e.db.RequeueDead(ctx, []string{"nope"}); shop.ErrorCode(err) != shop.EINVALID {
			t.Errorf("bad id: %v", err)
		}
	})
}

// TestRelayDeadWhenRejected checks that a permanent rejection parks an event as dead at once, without ending the batch.
func TestRelayDeadWhenRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.checkout(t, ctx, e.buyers[0], line(e.fan, 1))
	e.checkout(t, ctx, e.buyers[1], line(e.fan, 1))
	e.smtp.RejectRcpt(smtptest.Reply(550, "no such mailbox"))
	st, err := e.relay(t, "r").Drain(ctx)
	// A permanent rejection is that message's problem: the batch goes on.
	if err != nil || st.Dead != 2 || st.Retried != 0 {
		t.Fatalf("drain: %+v %v", st, err)
	}
	if n := e.count(t, `SELECT count(*) FROM outbox WHERE status = 'dead' AND attempts = 1`); n != 2 {
		t.Errorf("%d dead after one attempt", n)
	}
	e.stats.WaitForSum(t, telemetrytest.Equals(2), telemetry.MetricOutboxDead, "reason:"+relay.ReasonRejected)
	if n, err := e.db.RequeueDead(ctx, nil); err != nil || n != 2 {
		t.Errorf("requeue all: %d %v", n, err)
	}
}

// TestRelayReportsGaugesAndProbesOnceWhileSMTPDown checks the outbox gauges, the SMTP duration by outcome and the sent count, and that a batch with the server down makes one probe and hands the rest back.
func TestRelayReportsGaugesAndProbesOnceWhileSMTPDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.smtp.Stop()
	for i := range 3 {
		e.checkout(t, ctx, e.buyers[i], line(e.fan, 1))
	}
	r := e.relay(t, "r")
	time.Sleep(20 * time.Millisecond)
	s, err := r.ReportStats(ctx)
	if err != nil || s.Pending != 3 || s.Due != 3 || s.OldestPending < 20*time.Millisecond || s.OldestPendingOrder == "" {
		t.Fatalf("status with 3 owed: %+v %v", s, err)
	}
	e.stats.WaitForMatch(t, telemetry.MetricOutboxPending, func(m telemetrytest.Metric) bool { return m.Value == 3 })
	e.stats.WaitForMatch(t, telemetry.MetricOutboxOldestPendingAge, func(m telemetrytest.Metric) bool { return m.Value >= 0.02 })

	st, err := r.Drain(ctx) // the server is down: one probe, the rest handed back
	if err != nil || st.Claimed != 3 || st.Retried != 1 || st.Released != 2 || !st.Stopped {
		t.Fatalf("drain with the server down: %+v %v", st, err)
	}
	e.stats.WaitFor(t, telemetry.MetricMailSMTPDuration, "outcome:"+relay.ReasonUnavailable)

	e.smtp.Start()
	waitUntil(t, 10*time.Second, "not all sent", func() bool {
		if _, err := r.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		return e.count(t, `SELECT count(*) FROM outbox WHERE status = 'sent'`) == 3
	})
	e.stats.WaitForSum(t, telemetrytest.Equals(3), telemetry.MetricOutboxSent)
	waitUntil(t, telemetrytest.WaitTimeout, "SMTP duration samples with outcome ok", func() bool {
		e.stats.Flush()
		return len(e.stats.Find(telemetry.MetricMailSMTPDuration, "outcome:ok")) == 3
	})
	if _, err := r.ReportStats(ctx); err != nil {
		t.Fatal(err)
	}
	e.stats.WaitForMatch(t, telemetry.MetricOutboxPending, func(m telemetrytest.Metric) bool { return m.Value == 0 })
	e.stats.WaitForMatch(t, telemetry.MetricOutboxOldestPendingAge, func(m telemetrytest.Metric) bool { return m.Value == 0 })
}

// TestRelaySendSpanJoinsCheckoutTrace checks that the outbox.send span is a child of a span of the checkout's trace.
func TestRelaySendSpanJoinsCheckoutTrace(t *testing.T) {
	t.Parallel()
	mt := telemetrytest.MockTracer(t)
	e := newEnv(t)
	req := tracer.StartSpan("http.request", tracer.ResourceName("POST /orders/checkout"))
	o := e.checkout(t, tracer.ContextWithSpan(t.Context(), req), e.buyers[0], line(e.fan, 1))
	req.Finish()
	if st, err := e.relay(t, "r").Drain(t.Context()); err != nil || st.Sent != 1 {
		t.Fatalf("drain: %+v %v", st, err)
	}
	var found bool
	for _, s := range mt.FinishedSpans() {
		if s.OperationName() != relay.SpanSend || s.Tag("order.id") != o.ID {
			continue
		}
		found = true
		// The send is a child of a span of the checkout's trace (the
		// request span or one of the checkout's step spans under it).
		parentInCheckout := false
		for _, p := range mt.FinishedSpans() {
			if p.TraceID() == req.Context().TraceIDLower() && p.SpanID() == s.ParentID() {
				parentInCheckout = true
			}
		}
		if s.TraceID() != req.Context().TraceIDLower() || !parentInCheckout {
			t.Errorf("send span in trace %d under %d; the checkout was trace %d span %d",
				s.TraceID(), s.ParentID(), req.Context().TraceIDLower(), req.Context().SpanID())
		}
		if s.Tag("outbox.outcome") != "sent" {
			t.Errorf("outcome tag %v", s.Tag("outbox.outcome"))
		}
	}
	if !found {
		t.Error("no outbox.send span for the order")
	}
}
