package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shoplab/shoplab/internal/benchkit"
)

// hotStock is the hot product's stock in the CPU runs: more than any run
// here can sell, so that every hot checkout succeeds and costs a whole
// checkout (a 409 for a sold-out product costs much less).
const hotStock = 100_000_000

// checkoutJSON is the part of bench-checkout's JSON report read here
// (bench/checkout: report, scenarioResult, pgbenchResult, cpuUsage).
type checkoutJSON struct {
	Scenarios []struct {
		Name         string         `json:"name"`
		Round        int            `json:"round"`
		Requests     int            `json:"requests"`
		Seconds      float64        `json:"seconds"`
		OrdersPerSec float64        `json:"ordersPerSec"`
		Statuses     map[string]int `json:"statuses"`
		CPU          cpuJSON        `json:"cpu"`
		OK           bool           `json:"ok"`
		Failures     []string       `json:"failures"`
		Pgbench      *struct {
			Transactions int     `json:"transactions"`
			TPS          float64 `json:"tps"`
			UnitsSold    int     `json:"unitsSold"`
			CPU          cpuJSON `json:"cpu"`
			Script       string  `json:"script"`
		} `json:"pgbench"`
	} `json:"scenarios"`
	OK bool `json:"ok"`
}

type cpuJSON struct {
	ServiceSec     float64 `json:"serviceSec"`
	PostgresSec    float64 `json:"postgresSec"`
	ClientSec      float64 `json:"clientSec"`
	MachineBusySec float64 `json:"machineBusySec"`
	MachineSec     float64 `json:"machineSec"`
}

// checkoutPart is the CPU-per-checkout measurement.
type checkoutPart struct {
	// Command is the bench-checkout command line that produced it.
	Command   string                  `json:"command"`
	Scenarios map[string]*cpuScenario `json:"scenarios"`
	// HotToUniform is, per round, the service's hot orders/s over its
	// uniform orders/s (the same round, the same workers).
	HotToUniform        spread `json:"hotToUniform"`
	PgbenchHotToUniform spread `json:"pgbenchHotToUniform"`
	// Background is, on a dedicated cluster, the CPU seconds of its
	// processes other than client backends over the whole bench-checkout
	// run, by kind; BackgroundMsPerCheckout divides their sum by every
	// checkout of the run (the service's and pgbench's).
	Background              map[string]float64 `json:"backgroundCpuSec,omitempty"`
	BackgroundMsPerCheckout float64            `json:"backgroundCpuMsPerCheckout,omitempty"`
	// WAL is the WAL written per uniform checkout (dedicated cluster only).
	WAL *walPart `json:"wal,omitempty"`

	uniformScript string // bench-checkout's pgbench twin of a uniform checkout
}

// cpuScenario is one scenario's figures over the rounds.
type cpuScenario struct {
	// The service (shopd + its PostgreSQL backends), as vegeta drove it.
	OrdersPerSec      spread `json:"ordersPerSec"`
	ShopdPerCore      spread `json:"shopdCheckoutsPerCoreSec"`
	PostgresPerCore   spread `json:"postgresCheckoutsPerCoreSec"`
	StackPerCore      spread `json:"stackCheckoutsPerCoreSec"`
	ShopdCPUms        spread `json:"shopdCpuMsPerCheckout"`
	PostgresCPUms     spread `json:"postgresCpuMsPerCheckout"`
	MachineBusy       spread `json:"machineBusyShare"`
	PgbenchTPS        spread `json:"pgbenchTps"`
	PgbenchPgPerCore  spread `json:"pgbenchPostgresCheckoutsPerCoreSec"`
	PgbenchPgCPUms    spread `json:"pgbenchPostgresCpuMsPerCheckout"`
	LockHoldMs        spread `json:"lockHoldMs,omitempty"`
	PgbenchLockHoldMs spread `json:"pgbenchLockHoldMs,omitempty"`
	Checkouts         []int  `json:"checkouts"`
}

// measureCheckout runs bench-checkout and derives the per-core figures.
func measureCheckout(ctx context.Context, o options, pmPID int, stdout io.Writer) (*checkoutPart, error) {
	bin, err := exec.LookPath(o.checkout)
	if err != nil {
		return nil, fmt.Errorf("%s not found (go build -o bin/bench-checkout ./bench/checkout, or make bench-scaling): %w", o.checkout, err)
	}
	dir, err := os.MkdirTemp("", "bench-scaling-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "checkout.json")
	args := []string{"-server", o.server, "-shopd", o.shopd, "-pgbench", o.pgbench,
		"-scenarios", "uniform,hot", "-hot-stock", strconv.Itoa(hotStock),
		"-rounds", strconv.Itoa(o.rounds), "-duration", o.duration.String(),
		"-workers", strconv.Itoa(o.workers), "-out", out, "-plot", ""}
	part := &checkoutPart{Command: "bench-checkout " + strings.Join(redactArgs(args), " "), Scenarios: map[string]*cpuScenario{}}
	fmt.Fprintf(stdout, "== CPU per checkout: %s\n", part.Command)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = stdout, stdout
	var bg *backgroundProbe
	if pmPID > 0 {
		bg = newBackgroundProbe(pmPID)
	}
	err = cmd.Run()
	if bg != nil {
		part.Background = bg.stop()
	}
	if err != nil {
		return nil, fmt.Errorf("bench-checkout: %w", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	var cj checkoutJSON
	if err := json.Unmarshal(b, &cj); err != nil {
		return nil, fmt.Errorf("bench-checkout's JSON: %w", err)
	}
	if !cj.OK {
		return nil, fmt.Errorf("bench-checkout reported failed invariants")
	}

	type series struct {
		orders, shopd, pg, stack, shopdMs, pgMs, busy, pgbTPS, pgbPg, pgbPgMs, hold, pgbHold []float64
		checkouts                                                                            []int
	}
	all := map[string]*series{}
	total := 0 // every checkout of the run, the service's and pgbench's
	byRound := map[string]map[int]float64{"uniform": {}, "hot": {}}
	pgbByRound := map[string]map[int]float64{"uniform": {}, "hot": {}}
	for _, s := range cj.Scenarios {
		ok := s.Statuses["201"]
		if ok == 0 || s.CPU.ServiceSec <= 0 || s.CPU.PostgresSec <= 0 {
			return nil, fmt.Errorf("scenario %s round %d: %d checkouts, shopd %.2f CPU s, postgres %.2f CPU s: nothing to divide",
				s.Name, s.Round, ok, s.CPU.ServiceSec, s.CPU.PostgresSec)
		}
		if ok != s.Requests {
			return nil, fmt.Errorf("scenario %s round %d: %d of %d requests answered 201; the CPU figures need every checkout to succeed",
				s.Name, s.Round, ok, s.Requests)
		}
		se := all[s.Name]
		if se == nil {
			se = &series{}
			all[s.Name] = se
		}
		n := float64(ok)
		total += ok
		if s.Pgbench != nil {
			total += s.Pgbench.Transactions
		}
		se.checkouts = append(se.checkouts, ok)
		se.orders = append(se.orders, s.OrdersPerSec)
		se.shopd = append(se.shopd, n/s.CPU.ServiceSec)
		se.pg = append(se.pg, n/s.CPU.PostgresSec)
		se.stack = append(se.stack, n/(s.CPU.ServiceSec+s.CPU.PostgresSec))
		se.shopdMs = append(se.shopdMs, 1000*s.CPU.ServiceSec/n)
		se.pgMs = append(se.pgMs, 1000*s.CPU.PostgresSec/n)
		if s.CPU.MachineSec > 0 {
			se.busy = append(se.busy, s.CPU.MachineBusySec/s.CPU.MachineSec)
		}
		if byRound[s.Name] != nil {
			byRound[s.Name][s.Round] = s.OrdersPerSec
		}
		if s.Name == "uniform" && s.Pgbench != nil {
			part.uniformScript = s.Pgbench.Script
		}
		if p := s.Pgbench; p != nil && p.Transactions > 0 && p.CPU.PostgresSec > 0 {
			se.pgbTPS = append(se.pgbTPS, p.TPS)
			se.pgbPg = append(se.pgbPg, float64(p.Transactions)/p.CPU.PostgresSec)
			se.pgbPgMs = append(se.pgbPgMs, 1000*p.CPU.PostgresSec/float64(p.Transactions))
			if pgbByRound[s.Name] != nil {
				pgbByRound[s.Name][s.Round] = p.TPS
			}
			if s.Name == "hot" {
				se.pgbHold = append(se.pgbHold, 1000/p.TPS)
			}
		}
		if s.Name == "hot" {
			// Every hot checkout locks the one row: with -workers
			// buyers queued for it, the row is never free, and each
			// order holds it for 1/(orders per second).
			se.hold = append(se.hold, 1000/s.OrdersPerSec)
		}
	}
	for name, se := range all {
		part.Scenarios[name] = &cpuScenario{
			OrdersPerSec: newSpread(se.orders, 1), ShopdPerCore: newSpread(se.shopd, 0), PostgresPerCore: newSpread(se.pg, 0),
			StackPerCore: newSpread(se.stack, 0), ShopdCPUms: newSpread(se.shopdMs, 3), PostgresCPUms: newSpread(se.pgMs, 3),
			MachineBusy: newSpread(se.busy, 2), PgbenchTPS: newSpread(se.pgbTPS, 1), PgbenchPgPerCore: newSpread(se.pgbPg, 0),
			PgbenchPgCPUms: newSpread(se.pgbPgMs, 3), LockHoldMs: newSpread(se.hold, 2), PgbenchLockHoldMs: newSpread(se.pgbHold, 2),
			Checkouts: se.checkouts,
		}
	}
	if total > 0 && len(part.Background) > 0 {
		var sum float64
		for k, v := range part.Background {
			part.Background[k] = benchkit.Round(v, 2)
			sum += v
		}
		part.BackgroundMsPerCheckout = benchkit.Round(1000*sum/float64(total), 3)
	}
	part.HotToUniform = ratioSpread(byRound["hot"], byRound["uniform"])
	part.PgbenchHotToUniform = ratioSpread(pgbByRound["hot"], pgbByRound["uniform"])
	return part, nil
}

// ratioSpread is num/den round by round, over the rounds both have.
func ratioSpread(num, den map[int]float64) spread {
	var rs []float64
	for r, n := range num {
		if d := den[r]; d > 0 {
			rs = append(rs, n/d)
		}
	}
	return newSpread(rs, 2)
}

// redactArgs hides passwords in the URLs among args.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.Contains(a, "://") {
			out[i] = benchkit.Redact(a)
			continue
		}
		out[i] = a
	}
	return out
}

func printCheckout(w io.Writer, p *checkoutPart) {
	fmt.Fprintf(w, "\n### CPU per checkout (median (min-max) of the rounds)\n\n")
	fmt.Fprintln(w, "| scenario | checkouts/s (this machine, shared) | shopd CPU ms/checkout | shopd checkouts/s per core | PostgreSQL CPU ms/checkout | PostgreSQL checkouts/s per core | shopd+PostgreSQL checkouts/s per core | pgbench: PostgreSQL checkouts/s per core | machine busy |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, name := range []string{"uniform", "hot"} {
		s := p.Scenarios[name]
		if s == nil {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, s.OrdersPerSec, s.ShopdCPUms, s.ShopdPerCore,
			s.PostgresCPUms, s.PostgresPerCore, s.StackPerCore, s.PgbenchPgPerCore, s.MachineBusy)
	}
	if h := p.Scenarios["hot"]; h != nil {
		fmt.Fprintf(w, "\nhot row: service %s orders/s = lock held %s ms per order; pgbench %s tps = %s ms\n",
			h.OrdersPerSec, h.LockHoldMs, h.PgbenchTPS, h.PgbenchLockHoldMs)
		fmt.Fprintf(w, "hot / uniform orders/s in the same round: service %s, pgbench %s\n", p.HotToUniform, p.PgbenchHotToUniform)
	}
	if len(p.Background) > 0 {
		fmt.Fprintf(w, "PostgreSQL background processes (dedicated cluster): %.3f CPU ms per checkout over the run; CPU s by process: %v\n",
			p.BackgroundMsPerCheckout, p.Background)
	}
}
