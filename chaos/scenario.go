// Package chaos reproduces shoplab's incidents on demand: a scenario is
// data (a Scenario declared in this package, plus its expectations in
// expectations/<name>.json) and one engine (Run) runs any of them against a
// fresh stack: a migrated and seeded database, shopd subprocesses, an
// in-process toxiproxy between shopd and PostgreSQL when the scenario asks
// for it, an SMTP sink that can go away, vegeta load and a DogStatsD
// capture. Every scenario has three phases, healthy, fault and recovery;
// the run evaluates every monitor of monitors/ over the capture, checks the
// scenario's expectations (monitors that must fire and recover, monitors
// that must stay quiet, invariants, the runbook's first diagnosis query),
// prints a timeline and writes bench/results/chaos/<name>.{json,html}.
//
// Faults are real: another PostgreSQL session, the proxy, the SMTP sink,
// the shopd processes. Nothing is simulated inside the service.
//
// chaos/README.md says how to add a scenario and how compressed time works.
// Errors are plain errors with their cause wrapped; no *shop.Error here.
package chaos

import (
	"context"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/moncheck"
)

// Scenario is one incident's reproduction: everything but the engine.
type Scenario struct {
	// Name is the scenario's name: `make chaos SCENARIO=<name>`, and
	// expectations/<name>.json.
	Name string
	// Incident names the row (and symptom) of docs/incidents.md.
	Incident string
	// Summary says in a sentence what the fault is.
	Summary string

	// Full and Compressed are the phase durations at full scale (monitor
	// windows as in monitors/*.json) and in compressed time (go test; the
	// windows divided by Options.Factor).
	Full, Compressed Phases

	// Shopd is more environment for every shopd the run starts
	// (KEY=VALUE, e.g. DB_MAX_CONNS=4). Switches are the defect switches
	// turned on for this scenario, passed as SWITCHES=a,b.
	Shopd    []string
	Switches []string
	// ThroughProxy puts the toxiproxy between shopd and PostgreSQL
	// (Env.Proxy); otherwise shopd connects directly.
	ThroughProxy bool
	// Balanced puts an in-process HTTP load balancer in front of the
	// shopd processes (every shopd started joins it): Env.URL is then the
	// balancer's, and Env.Drain takes an instance out of service before
	// it is stopped (a rolling restart).
	Balanced bool
	// Formation runs the database on a pg_auto_failover formation of its
	// own (StartFormation: a monitor, a primary and a synchronous standby,
	// migrated and seeded) instead of a clone on the shared server; shopd
	// connects with the multi-host URL (target_session_attrs=read-write)
	// and the fault acts on Env.Formation. Compressed runs use TestTiming,
	// full-scale runs pg_auto_failover's defaults (ProductionTiming).
	Formation bool

	// Setup, when set, runs after the seed and before shopd starts: extra
	// fixtures (Env.Fixture, Env.Admin).
	Setup func(ctx context.Context, e *Env) error
	// Load runs from the start of the healthy phase to the end of the
	// recovery phase; FaultLoad only during the fault phase (when the
	// fault is load: a flood, a storm).
	Load, FaultLoad []Load
	// Fault is injected at the start of the fault phase and healed at its
	// end. A scenario whose fault is its FaultLoad leaves it empty.
	Fault Fault

	// Alone makes go test run the scenario with no other beside it
	// (TestScenarios runs -chaos.parallel at once): its expectations
	// measure a quietness, a latency, that a neighbour's load on the
	// shared cores would disturb.
	Alone bool
}

// Phases are the durations of a scenario's three phases.
type Phases struct {
	Healthy, Fault, Recovery time.Duration
}

// Total is the sum of the phases.
func (p Phases) Total() time.Duration { return p.Healthy + p.Fault + p.Recovery }

// Load is one vegeta attack: its kinds of request (moncheck.Kind, built
// once shopd is up) at Rate requests per second.
type Load struct {
	Name string
	Rate int
	// Kinds builds the requests against e.URL().
	Kinds func(e *Env) []moncheck.Kind
	// OnResult, when set, sees every result of the load (after the run
	// recorded it), from one goroutine: a client that retries.
	OnResult func(kind string, r *vegeta.Result)
}

// Fault is a real fault: Inject starts it, Heal ends it. Both act on real
// things (another PostgreSQL session, the proxy, the SMTP sink, shopd
// processes). Heal must undo whatever Inject managed to do, even when
// Inject failed half-way. ctx ends with the run.
type Fault struct {
	Inject func(ctx context.Context, e *Env) error
	Heal   func(ctx context.Context, e *Env) error
}

// Scenarios returns every declared scenario, in the order `make chaos`
// lists them.
func Scenarios() []*Scenario {
	return []*Scenario{lockHolder(), poolExhaustion(), badClients(), reportStorm(),
		smtpOutage(),
		rollingRestart(),
		migrationLock(),
		migrationLockSafe(),
		searchAbuse(),
		orderHistoryAtScale(),
		importFlood(),
		switchNPlusOne(),
		switchUnlockedStock(),
		switchRawErrors(),
		switchRowByRowImport(),
		switchReportInProcess(),
		dbLatency(),
		dbResets(),
		dbDown(),
		failover(),
	}
}

// Find returns the scenario named name, or nil.
func Find(name string) *Scenario {
	for _, s := range Scenarios() {
		if s.Name == name {
			return s
		}
	}
	return nil
}
