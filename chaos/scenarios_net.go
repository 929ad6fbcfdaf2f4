package chaos

import (
	"context"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/moncheck"
)

// The network between shopd and PostgreSQL: db-latency, db-resets and
// db-down put the in-process toxiproxy (ThroughProxy) between them and
// act on it, never on shopd.

// probes are a load balancer's checks: /health (the process) and /ready
// (the process and its database), rate requests per second in all.
func probes(rate int) Load {
	return Load{Name: "probes", Rate: rate, Kinds: func(e *Env) []moncheck.Kind {
		base := e.URL()
		return []moncheck.Kind{
			{Name: "health", Weight: 1, Target: func(n int64, t *vegeta.Target) { t.Method, t.URL = "GET", base+"/health" }},
			{Name: "ready", Weight: 1, Target: func(n int64, t *vegeta.Target) { t.Method, t.URL = "GET", base+"/ready" }},
		}
	}}
}

// dbLatency: the network to PostgreSQL adds 200 ms to every packet from
// the server (toxiproxy's latency toxic, downstream): each round trip of
// each statement, each new connection's handshake, 200 ms longer.
func dbLatency() *Scenario {
	const toxic = `{"name":"db-latency","type":"latency","stream":"downstream","attributes":{"latency":200}}`
	return &Scenario{
		Name:         "db-latency",
		Incident:     "8, the database spikes (symptom database-spike: the database is slow to answer)",
		Summary:      "the network to PostgreSQL adds 200 ms to every round trip (toxiproxy latency, downstream)",
		Full:         Phases{Healthy: 30 * time.Second, Fault: 6 * time.Minute, Recovery: 6 * time.Minute},
		Compressed:   Phases{Healthy: 4 * time.Second, Fault: 6 * time.Second, Recovery: 6 * time.Second},
		ThroughProxy: true,
		Load:         []Load{healthy(15), buyers("buyers", 8, nil), probes(20)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error { return e.AddToxic(toxic) },
			Heal:   func(ctx context.Context, e *Env) error { return e.RemoveToxic(ctx, "db-latency") },
		},
	}
}

// dbResets: the network resets the connections to PostgreSQL: every
// second, for 300 ms, whatever shopd sends on any connection (a statement,
// a new connection's startup) is dropped and the connection reset
// (toxiproxy's reset_peer toxic, upstream: the statement never reaches
// the server, so no commit is left in doubt).
func dbResets() *Scenario {
	const toxic = `{"name":"db-resets","type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`
	var mu sync.Mutex
	var stop, done chan struct{}
	return &Scenario{
		Name:     "db-resets",
		Incident: "8, the database spikes (symptom database-spike: connections to the database reset)",
		Summary:  "the network resets the connections to PostgreSQL for 300 ms every second (toxiproxy reset_peer)",
		Full:     Phases{Healthy: 30 * time.Second, Fault: 5 * time.Minute, Recovery: 6 * time.Minute},
		// Compressed, the recovery outlasts the 5 s windows of the 5xx and
		// timeout ratios by the 2 s DogStatsD flush and a margin: a
		// request caught by the last reset is counted up to 2 s later.
		Compressed:   Phases{Healthy: 4 * time.Second, Fault: 5 * time.Second, Recovery: 8 * time.Second},
		ThroughProxy: true,
		Load:         []Load{healthy(15), buyers("buyers", 8, nil), probes(20)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error {
				mu.Lock()
				defer mu.Unlock()
				stop, done = make(chan struct{}), make(chan struct{})
				if err := e.AddToxic(toxic); err != nil {
					close(done)
					return err
				}
				e.Note("proxy resets every connection that sends, 300 ms of every second")
				go func() {
					defer close(done)
					on := true
					for {
						wait := 300 * time.Millisecond
						if !on {
							wait = 700 * time.Millisecond
						}
						select {
						case <-stop:
							if on {
								_ = e.RemoveToxic(context.WithoutCancel(ctx), "db-resets")
							}
							return
						case <-ctx.Done():
							return
						case <-time.After(wait):
						}
						if on {
							_ = e.RemoveToxic(context.WithoutCancel(ctx), "db-resets")
						} else if err := e.AddToxic(toxic); err != nil {
							e.Note("db-resets: %v", err)
						}
						on = !on
					}
				}()
				return nil
			},
			Heal: func(ctx context.Context, e *Env) error {
				mu.Lock()
				defer mu.Unlock()
				if stop == nil {
					return nil
				}
				close(stop)
				<-done
				stop = nil
				return nil
			},
		},
	}
}

// dbDown: the proxy cuts PostgreSQL off (its listener closed, its
// connections closed, new ones refused) for 15 s at full scale, the whole
// fault phase compressed, then restores it.
func dbDown() *Scenario {
	return &Scenario{
		Name:     "db-down",
		Incident: "8, the database spikes (symptom database-spike: the database is unreachable)",
		Summary:  "the proxy cuts PostgreSQL off for 15 s: /ready 503, every database route 503 + Retry-After, then recovery",
		Full:     Phases{Healthy: 30 * time.Second, Fault: 15 * time.Second, Recovery: 6 * time.Minute},
		// Recovery: 8 s compressed, 1.6 of the 5-minute windows (5 s) of
		// the monitors that must recover. With 6 s, a request that failed
		// on a connection dropped by the cut a second after the heal kept
		// search-timeouts in alert 0.3 s past the phase's end.
		Compressed:   Phases{Healthy: 4 * time.Second, Fault: 5 * time.Second, Recovery: 8 * time.Second},
		ThroughProxy: true,
		Load:         []Load{healthy(15), buyers("buyers", 8, nil), probes(20)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error { return e.CutDatabase() },
			Heal:   func(ctx context.Context, e *Env) error { return e.RestoreDatabase() },
		},
	}
}
