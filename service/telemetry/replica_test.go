package telemetry_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/internal/pgcluster"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// TestSampleReplicaLag runs the sampler against a real standby of a real
// primary, both of their own (pgcluster): caught up it reads 0 and
// streaming; with replay paused and writes on the primary the lag in
// bytes and seconds grows; resumed it goes back to 0; stopped, the reading
// carries the error and no gauge is sent; on a primary it sends nothing.
func TestSampleReplicaLag(t *testing.T) {
	t.Parallel()
	primary := pgcluster.Primary(t)
	standby := pgcluster.Standby(t, primary)
	primary.Exec(t, "postgres", `CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`)
	standby.WaitReplayed(t)

	tel, capture, _ := telemetrytest.New(t)
	const interval = 50 * time.Millisecond
	sample := func(c *pgcluster.Cluster, name string) *telemetry.ReplicaLag {
		t.Helper()
		pool, err := pgxpool.New(t.Context(), c.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		ctx, cancel := context.WithCancel(t.Context())
		var lag telemetry.ReplicaLag
		var wg sync.WaitGroup
		wg.Go(func() { telemetry.SampleReplicaLag(ctx, tel, name, pool, &lag, interval) })
		t.Cleanup(func() { cancel(); wg.Wait() })
		return &lag
	}
	lag := sample(standby, "reports")
	onPrimary := sample(primary, "main")
	tags := []string{"pool:reports"}
	gauge := func(name string, ok func(float64) bool) telemetrytest.Metric {
		t.Helper()
		return capture.WaitForMatch(t, name, func(m telemetrytest.Metric) bool { return ok(m.Value) }, tags...)
	}
	// forget flushes the samples sent so far and forgets them, so that a
	// wait sees only what comes after.
	forget := func() { capture.Flush(); capture.Reset() }
	zero := func(v float64) bool { return v == 0 }
	positive := func(v float64) bool { return v > 0 }

	t.Run("CaughtUp", func(t *testing.T) {
		gauge(telemetry.MetricDBReplicaLagSeconds, zero)
		gauge(telemetry.MetricDBReplicaLagBytes, zero)
		gauge(telemetry.MetricDBReplicaStreaming, func(v float64) bool { return v == 1 })
		if r := lag.Last(); !r.Standby || !r.Streaming || r.Err != nil {
			t.Errorf("reading %+v, want a streaming standby", r)
		}
		eventually(t, "a reading of the primary", func() bool { r := onPrimary.Last(); return !r.At.IsZero() && r.Err == nil })
		if r := onPrimary.Last(); r.Standby || r.Lag != 0 || r.Err != nil {
			t.Errorf("primary's reading %+v, want not a standby", r)
		}
		if got := capture.Find(telemetry.MetricDBReplicaLagSeconds, "pool:main"); len(got) != 0 {
			t.Errorf("lag gauges for a primary: %v", got)
		}
	})

	t.Run("ReplayPaused", func(t *testing.T) {
		standby.Exec(t, "postgres", `SELECT pg_wal_replay_pause()`)
		paused := time.Now()
		forget()
		for i := range 5 {
			primary.Exec(t, "postgres", `INSERT INTO ticks DEFAULT VALUES`)
			if i == 0 {
				gauge(telemetry.MetricDBReplicaLagBytes, positive)
				t.Logf("bytes behind seen %v after the first write", time.Since(paused).Round(time.Millisecond))
			}
			time.Sleep(100 * time.Millisecond)
		}
		m := gauge(telemetry.MetricDBReplicaLagSeconds, func(v float64) bool { return v >= 0.3 })
		r := lag.Last()
		if r.Bytes <= 0 || r.Lag < 300*time.Millisecond || r.Lag > time.Since(paused) {
			t.Errorf("paused: reading %+v (gauge %v), want bytes behind and a lag of at most %v", r, m.Value, time.Since(paused))
		}
		standby.Exec(t, "postgres", `SELECT pg_wal_replay_resume()`)
		resumed := time.Now()
		forget()
		gauge(telemetry.MetricDBReplicaLagSeconds, zero)
		t.Logf("lag back to 0 %v after resume", time.Since(resumed).Round(time.Millisecond))
		if r := lag.Last(); r.Bytes != 0 || r.Lag != 0 {
			t.Errorf("resumed: reading %+v, want caught up", r)
		}
	})

	t.Run("IdlePrimary", func(t *testing.T) {
		// Replay timestamps grow old while the primary writes nothing;
		// the lag stays 0, and a write after the idle spell never reads
		// as the idle spell.
		time.Sleep(time.Second)
		gauge(telemetry.MetricDBReplicaLagSeconds, zero)
		forget()
		primary.Exec(t, "postgres", `INSERT INTO ticks DEFAULT VALUES`)
		standby.WaitReplayed(t)
		time.Sleep(3 * interval)
		capture.Flush()
		for _, m := range capture.Find(telemetry.MetricDBReplicaLagSeconds, tags...) {
			if m.Value > 0.5 {
				t.Errorf("lag %v s after a write that followed an idle second", m.Value)
			}
		}
	})

	t.Run("Down", func(t *testing.T) {
		standby.Stop(t)
		stopped := time.Now()
		eventually(t, "a failed reading", func() bool { return lag.Last().Err != nil })
		t.Logf("failed reading %v after stop", time.Since(stopped).Round(time.Millisecond))
		capture.Flush()
		time.Sleep(3 * interval)
		capture.Reset()
		time.Sleep(3 * interval)
		capture.Flush()
		if got := capture.Find(telemetry.MetricDBReplicaLagSeconds, tags...); len(got) != 0 {
			t.Errorf("lag gauges while the standby is down: %v", got)
		}
		standby.Start(t)
		eventually(t, "a reading again", func() bool { r := lag.Last(); return r.Err == nil && r.Standby })
	})
}
