package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/internal/pgcluster"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// TestServeReportsReplica runs shopd on a primary of its own with
// REPORTS_DATABASE_URL on a hot standby of it made by scripts/replica.sh
// (pgcluster): reports read the standby only, never the primary; the lag
// is a gauge; while replay is paused and the primary writes, reports are
// refused with 503 + Retry-After once the lag passes
// REPORTS_MAX_REPLICA_LAG, and served again when it catches up; while the
// standby is down, reports are refused the same way and the rest of the
// service answers; when it is back, reports are served again.
func TestServeReportsReplica(t *testing.T) {
	t.Parallel()
	primary := pgcluster.Primary(t)
	dsn := primary.URL("shoplab")
	capture := telemetrytest.NewStatsdCapture(t)
	app := fmt.Sprintf("shoplab_replica_%d", time.Now().UnixNano())
	const maxLag = 2 * time.Second
	env := map[string]string{
		"DATABASE_URL": dsn, "PORT": "0", "HOST": "127.0.0.1", "PGAPPNAME": app,
		"DD_TRACE_ENABLED": "false", "DD_DOGSTATSD_URL": "udp://" + capture.Addr(),
		"BUYER_AUTH": "off", "REPORTS_MAX_REPLICA_LAG": maxLag.String(),
	}
	getenv := func(k string) string { return env[k] }
	ctx := t.Context()
	if err := run(ctx, []string{"shopd", "setup"}, getenv, io.Discard, io.Discard); err != nil {
		t.Fatalf("setup: %v", err)
	}
	standby := pgcluster.Standby(t, primary)
	env["REPORTS_DATABASE_URL"] = standby.URL("shoplab")
	base, _, _ := startServe(t, getenv)

	pc := primary.Connect(t, "shoplab")
	var heavy, product string
	if err := pc.QueryRow(ctx, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`).Scan(&heavy); err != nil {
		t.Fatal(err)
	}
	if err := pc.QueryRow(ctx, `SELECT id::text FROM products WHERE inventory > 1000 OR inventory >= 5 ORDER BY inventory DESC LIMIT 1`).Scan(&product); err != nil {
		t.Fatal(err)
	}
	report := func(format string) *http.Response {
		t.Helper()
		url := base + "/reports/orders/" + heavy
		if format != "" {
			url += "?format=" + format
		}
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	orderCount := func() int {
		t.Helper()
		res := report("")
		var body struct{ OrderCount int }
		if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(&body) != nil {
			t.Fatalf("report: %d", res.StatusCode)
		}
		return body.OrderCount
	}
	checkout := func() {
		t.Helper()
		res, err := http.Post(base+"/orders/checkout", "application/json",
			strings.NewReader(fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, heavy, product)))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 201 {
			t.Fatalf("checkout: %d", res.StatusCode)
		}
	}
	// refused waits until a report is refused with 503 + Retry-After
	// (retryAfter) in problem+json, and returns how long that took.
	refused := func(what, retryAfter string) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			res := report("")
			if res.StatusCode == http.StatusServiceUnavailable {
				if ra := res.Header.Get("Retry-After"); ra != retryAfter || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
					t.Errorf("%s: Retry-After %q, Content-Type %q; want %s and problem+json", what, ra, retryAfter, res.Header.Get("Content-Type"))
				}
				if dl := report("csv"); dl.StatusCode != http.StatusServiceUnavailable || dl.Header.Get("Retry-After") == "" {
					t.Errorf("%s: download %d, Retry-After %q; want 503 with Retry-After", what, dl.StatusCode, dl.Header.Get("Retry-After"))
				}
				return time.Since(start)
			}
			if res.StatusCode != 200 {
				t.Fatalf("%s: report %d, want 200 then 503", what, res.StatusCode)
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s: reports still served after 30s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	served := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		for report("").StatusCode != 200 {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s: reports still refused after 30s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start)
	}
	lagGauge := func(ok func(float64) bool) {
		t.Helper()
		capture.WaitForMatch(t, telemetry.MetricDBReplicaLagSeconds, func(m telemetrytest.Metric) bool { return ok(m.Value) }, "pool:reports")
	}

	t.Run("ReadsTheStandbyOnly", func(t *testing.T) {
		before := orderCount()
		checkout()
		standby.WaitReplayed(t)
		if got := orderCount(); got != before+1 {
			t.Errorf("orderCount %d after a checkout, want %d", got, before+1)
		}
		if res := report("ndjson"); res.StatusCode != 200 {
			t.Errorf("download: %d", res.StatusCode)
		}
		count := func(c *pgcluster.Cluster) (n int) {
			t.Helper()
			if err := c.Connect(t, "postgres").QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 || '.reports'`, app).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if onPrimary, onStandby := count(primary), count(standby); onPrimary != 0 || onStandby == 0 {
			t.Errorf("report sessions: %d on the primary (want 0), %d on the standby (want some)", onPrimary, onStandby)
		}
		lagGauge(func(v float64) bool { return v == 0 })
	})

	t.Run("Lagging", func(t *testing.T) {
		standby.Exec(t, "postgres", `SELECT pg_wal_replay_pause()`)
		paused := time.Now()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // the primary keeps writing
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := pc.Exec(ctx, `UPDATE products SET inventory = inventory WHERE id = $1`, product); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		took := refused("replay paused", "10")
		t.Logf("replay paused: reports refused %v after the pause (REPORTS_MAX_REPLICA_LAG %v)", took.Round(time.Millisecond), maxLag)
		if took < maxLag {
			t.Errorf("refused after %v, before the lag could pass %v", took, maxLag)
		}
		lagGauge(func(v float64) bool { return v > maxLag.Seconds() })
		if r := report(""); r.StatusCode != 503 {
			t.Errorf("still paused: %d", r.StatusCode)
		}
		// /health, /ready, the catalogue and checkout never notice.
		for _, path := range []string{"/health", "/ready", "/products?limit=1"} {
			if res, err := http.Get(base + path); err != nil || res.StatusCode != 200 {
				t.Errorf("%s: %v %v", path, err, res)
			} else {
				res.Body.Close()
			}
		}
		checkout()
		standby.Exec(t, "postgres", `SELECT pg_wal_replay_resume()`)
		close(stop)
		<-done
		t.Logf("replay resumed: reports served again %v later (paused %v in all)", served("replay resumed").Round(time.Millisecond), time.Since(paused).Round(time.Second))
	})

	t.Run("Down", func(t *testing.T) {
		standby.Stop(t)
		t.Logf("standby stopped: reports refused %v later", refused("standby down", "5").Round(time.Millisecond))
		checkout()
		for _, path := range []string{"/health", "/ready"} {
			if res, err := http.Get(base + path); err != nil || res.StatusCode != 200 {
				t.Errorf("%s: %v %v", path, err, res)
			} else {
				res.Body.Close()
			}
		}
		standby.Start(t)
		t.Logf("standby started: reports served again %v later", served("standby back").Round(time.Millisecond))
	})
}
