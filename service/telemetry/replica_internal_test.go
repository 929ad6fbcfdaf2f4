package telemetry

import (
	"errors"
	"testing"
	"time"
)

// TestReplicaLagRecord: the lag is 0 while streaming and caught up; the
// time since the last replay while WAL waits, bounded by the time since
// the standby was last caught up (an idle primary's old replay timestamp
// never reads as lag); growing from the last catch-up when not streaming;
// zero on a primary; and a failed sample is kept with its error.
func TestReplicaLagRecord(t *testing.T) {
	t.Parallel()
	var l ReplicaLag
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for _, c := range []struct {
		name               string
		now                float64
		standby, streaming bool
		bytes              int64
		sinceReplay        float64
		want               time.Duration
	}{
		{"NeverCaughtUp", 0, true, true, 100, 7, 7 * time.Second},
		{"CaughtUp", 1, true, true, 0, 3600, 0},
		{"FirstWriteAfterIdleHour", 2, true, true, 500, 3601, time.Second},
		{"ReplayPaused", 6, true, true, 5000, 4, 4 * time.Second},
		{"CaughtUpAgain", 7, true, true, 0, 0.1, 0},
		{"NotStreaming", 10, true, false, 0, 3600, 3 * time.Second},
		{"Primary", 11, false, false, 0, 0, 0},
	} {
		r := l.record(at(c.now), c.standby, c.streaming, c.bytes, c.sinceReplay)
		if r.Lag != c.want || r.Standby != c.standby || r.At != at(c.now) || l.Last() != r {
			t.Errorf("%s: reading %+v, want lag %v", c.name, r, c.want)
		}
	}
	err := errors.New("connection refused")
	l.fail(at(12), err)
	if r := l.Last(); r.Err != err || r.Standby || r.At != at(12) {
		t.Errorf("failed sample: %+v", r)
	}
}
