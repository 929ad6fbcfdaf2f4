package chaos

import (
	"strings"
	"time"

	"github.com/shoplab/shoplab/internal/moncheck"
)

// ScaleMonitor returns m for a run compressed by factor (1: m itself):
//
//   - the window (last_5m) is divided by factor: at 60, last_5m is 5 s;
//   - options.no_data_timeframe likewise;
//   - the step of the points (moncheck.Step, the Agent's 10 s flush) is
//     divided too, not below 250ms;
//   - a count threshold (time aggregation sum over a single .as_count()
//     query: "more than 300 rejected in 10 minutes") is divided by factor,
//     thresholds and recovery thresholds alike: the load keeps its
//     full-scale request rate, so a window factor times shorter holds
//     factor times fewer events;
//   - an age threshold (a gauge of wall-clock age in seconds, a metric
//     named *_age: "the oldest unsent confirmation is over 30 minutes
//     old") is divided by factor too: compressed time ages factor times
//     faster. Ratios, percentiles (a request takes as long compressed),
//     averages and other gauges keep their thresholds.
//
// The query text (String) stays the file's; the JSON files are not touched.
func ScaleMonitor(m moncheck.Monitor, factor float64) moncheck.Monitor {
	if factor <= 1 {
		return m
	}
	q := *m.Query
	q.Window = time.Duration(float64(q.Window) / factor)
	m.Options.NoDataTimeframe = time.Duration(float64(m.Options.NoDataTimeframe) / factor)
	m.Options.Step = scaleDur(m.Options.Step, factor, 250*time.Millisecond)
	if IsCountThreshold(m) || IsAgeThreshold(m) {
		div := func(p *float64) *float64 {
			if p == nil {
				return nil
			}
			v := *p / factor
			return &v
		}
		q.Threshold /= factor
		m.Thresholds.Critical = q.Threshold
		m.Thresholds.Warning = div(m.Thresholds.Warning)
		m.Thresholds.CriticalRecovery = div(m.Thresholds.CriticalRecovery)
		m.Thresholds.WarningRecovery = div(m.Thresholds.WarningRecovery)
	}
	m.Query = &q
	return m
}

// IsCountThreshold reports whether m compares a number of events in its
// window with its threshold: sum(...) of a single .as_count() query.
func IsCountThreshold(m moncheck.Monitor) bool {
	return m.Query.TimeAgg == "sum" && len(m.Query.Metrics()) == 1 && strings.Contains(m.Query.String(), ".as_count()")
}

// IsAgeThreshold reports whether m compares a wall-clock age in seconds
// (a metric whose name ends in _age, e.g. shoplab.outbox.oldest_pending_age)
// with its threshold.
func IsAgeThreshold(m moncheck.Monitor) bool {
	ms := m.Query.Metrics()
	return len(ms) == 1 && strings.HasSuffix(ms[0].Name, "_age")
}
