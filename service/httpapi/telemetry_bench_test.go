package httpapi_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// BenchmarkTelemetryOverhead serves one mixed workload (list, get, order
// history, checkout, health) from two servers on the same database: one
// with all telemetry on (a real tracer flushing to a stand-in agent, the
// DogStatsD client sending UDP, JSON logs, the query tracer) and one with
// it off. Each iteration runs the workload once against each, alternating
// which goes first, so machine noise hits both alike. It reports the mean
// cost of each and the overhead in percent as the median of the
// iterations' on/off ratios, which a burst of noise from other processes
// cannot move much (`make bench-telemetry`).
func BenchmarkTelemetryOverhead(b *testing.B) {
	telemetrytest.LockTracer(b)
	dsn := pgtest.NewDatabase(b)

	// A stand-in Datadog agent that accepts traces and discards them.
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer agent.Close()
	_, agentPort, _ := net.SplitHostPort(agent.Listener.Addr().String())
	capture := telemetrytest.NewStatsdCapture(b)

	cfg := telemetrytest.Config(b)
	cfg.TraceEnabled, cfg.AgentHost, cfg.TraceAgentPort, cfg.DogStatsdAddr = true, "127.0.0.1", agentPort, capture.Addr()
	on, err := telemetry.New(cfg, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer on.Close()
	off := telemetry.NewForTest(zap.NewNop(), &statsd.NoOpClient{}, telemetrytest.Config(b))

	open := func(tracer bool) *postgres.DB {
		pc, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			b.Fatal(err)
		}
		if tracer {
			pc.ConnConfig.Tracer = telemetry.NewQueryTracer(on)
		}
		pool, err := pgxpool.NewWithConfig(b.Context(), pc)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		return postgres.New(pool)
	}
	dbOn, dbOff := open(true), open(false)
	if _, err := dbOn.Seed(b.Context()); err != nil {
		b.Fatal(err)
	}
	envOn, envOff := serve(b, dbOn, testConfig(), on, nil, nil), serve(b, dbOff, testConfig(), off, nil, nil)

	heavy := envOn.id(b, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	user := envOn.id(b, `SELECT id::text FROM customers WHERE email = 'user4@example.com'`)
	product := envOn.id(b, `INSERT INTO products (name, price, inventory) VALUES ('Endless', 1, 1000000000) RETURNING id::text`)
	checkout := fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, product)
	workload := func(e *testEnv) {
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/products?limit=20", ""},
			{"GET", "/products/" + product, ""},
			{"GET", "/orders/" + heavy + "?limit=20", ""},
			{"POST", "/orders/checkout", checkout},
			{"GET", "/health", ""},
			{"GET", "/admin/inventory/low?threshold=3", ""},
		} {
			ct := ""
			if r.body != "" {
				ct = "application/json"
			}
			if res := e.do(b, r.method, r.path, ct, r.body); res.status >= 300 {
				b.Fatalf("%s %s: %d %s", r.method, r.path, res.status, res.body)
			}
		}
	}
	workload(envOn) // warm both up
	workload(envOff)

	var tOn, tOff time.Duration
	var ratios []float64
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var dOn, dOff time.Duration
		if i%2 == 0 {
			dOn, dOff = timed(func() { workload(envOn) }), timed(func() { workload(envOff) })
		} else {
			dOff, dOn = timed(func() { workload(envOff) }), timed(func() { workload(envOn) })
		}
		tOn, tOff = tOn+dOn, tOff+dOff
		ratios = append(ratios, float64(dOn)/float64(dOff))
	}
	slices.Sort(ratios)
	b.ReportMetric(float64(tOff.Nanoseconds())/float64(b.N), "off-ns/workload")
	b.ReportMetric(float64(tOn.Nanoseconds())/float64(b.N), "on-ns/workload")
	b.ReportMetric(100*(ratios[len(ratios)/2]-1), "overhead-%")
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
