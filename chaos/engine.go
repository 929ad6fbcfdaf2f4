package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/moncheck"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// Factor is the compression of `go test ./chaos/...`: monitor windows,
// evaluation interval and step, no-data timeframes and shopd's stats
// interval are divided by it, and count thresholds with them (see
// ScaleMonitor and chaos/README.md).
const Factor = 60

// Options say how to run a scenario.
type Options struct {
	// Shopd is the shopd binary; Server the PostgreSQL server.
	Shopd, Server string
	// Factor is the time compression: 1 runs at full scale with the
	// scenario's Full phases; above 1, its Compressed phases with every
	// monitor scaled by ScaleMonitor.
	Factor float64
	// Root is the repository root: monitors/, runbooks/ and
	// chaos/expectations/ are read from it.
	Root string
	// NoFault skips the fault (Inject, Heal and FaultLoad): the run must
	// then miss its expectations, which proves the checks can fail.
	NoFault bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Template, when set, is a migrated and seeded database on Server
	// (NewTemplate) that the run clones instead of migrating and seeding
	// a database of its own.
	Template *Template
}

// Run runs sc once: a fresh stack, the three phases with load and fault,
// the settle, then the checks. It returns the report, whose Failures name
// every missed expectation, and an error only when the run itself could
// not be made (setup, shopd, database).
func Run(ctx context.Context, sc *Scenario, opt Options) (*Report, error) {
	logf := func(format string, args ...any) {
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, "chaos: "+format+"\n", args...)
		}
	}
	if opt.Factor < 1 {
		opt.Factor = 1
	}
	phases := sc.Full
	if opt.Factor > 1 {
		phases = sc.Compressed
	}
	exp, err := LoadExpectations(opt.Root, sc.Name)
	if err != nil {
		return nil, err
	}
	mons, err := loadMonitors(opt.Root)
	if err != nil {
		return nil, err
	}
	if err := exp.check(mons); err != nil {
		return nil, err
	}
	for i := range mons {
		mons[i] = ScaleMonitor(mons[i], opt.Factor)
	}
	bin, err := benchkit.ShopdPath(opt.Shopd)
	if err != nil {
		return nil, err
	}

	var rep *Report
	var steps []Step
	mark := time.Now()
	step := func(name string) {
		steps = append(steps, Step{Name: name, Seconds: time.Since(mark).Seconds()})
		mark = time.Now()
	}
	e := &Env{Scenario: sc, Phases: phases, Factor: opt.Factor, bin: bin, logDir: newLogDir(sc.Name)}
	defer func() {
		mark = time.Now()
		e.close()
		step("shutdown")
		if rep != nil {
			rep.Steps = steps
		}
		logf("%s: wall time %s", sc.Name, stepsString(steps))
	}()
	// benchkit's labels have at most 21 characters (PostgreSQL's 63 for
	// the whole name); the random suffix keeps truncated ones apart.
	label := "chaos_" + strings.ReplaceAll(sc.Name, "-", "_")
	label = strings.TrimRight(label[:min(len(label), 21)], "_")
	switch {
	case sc.Formation:
		timing := ProductionTiming
		if opt.Factor > 1 {
			timing = TestTiming
		}
		seed := func(ctx context.Context, dsn string) (err error) {
			e.Fixture, err = moncheck.Seed(ctx, dsn)
			return err
		}
		if e.Formation, err = StartFormation(ctx, "chaos-"+sc.Name, timing, "shoplab", seed); err != nil {
			return nil, err
		}
		e.closes = append(e.closes, e.Formation.Close)
		// The formation is the run's: closing it is the drop.
		e.DB = &benchkit.Database{Name: e.Formation.DBName, URL: e.Formation.URL()}
		logf("%s: pg_auto_failover formation in %s, %s; %s", sc.Name, e.Formation.Dir, timing, stepsString(e.Formation.Steps))
		e.Note("formation: monitor, primary and synchronous standby (pg_auto_failover); %s", timing)
	case opt.Template != nil:
		e.DB, e.Fixture, err = opt.Template.clone(ctx, opt.Server, label)
	default:
		e.DB, err = benchkit.CreateDatabase(ctx, opt.Server, label)
	}
	if err != nil {
		return nil, err
	}
	if !sc.Formation {
		e.closes = append(e.closes, e.DB.Drop)
	}
	step("database")
	if e.Fixture == nil {
		if e.Fixture, err = moncheck.Seed(ctx, e.DB.URL); err != nil {
			return nil, fmt.Errorf("chaos: seed: %w", err)
		}
	}
	step("seed")
	if e.Sink, err = moncheck.StartSMTPSink(); err != nil {
		return nil, err
	}
	e.closes = append(e.closes, e.Sink.Close)
	if e.Recorder, err = ddquery.NewRecorder(); err != nil {
		return nil, err
	}
	e.closes = append(e.closes, func() { _ = e.Recorder.Close() })
	if sc.ThroughProxy {
		if e.Proxy, err = startProxy(e.DB.URL); err != nil {
			return nil, err
		}
		e.closes = append(e.closes, e.Proxy.Stop)
	}
	if sc.Balanced {
		if e.lb, err = startBalancer(); err != nil {
			return nil, err
		}
		e.closes = append(e.closes, e.lb.close)
	}
	if sc.Setup != nil {
		if err := sc.Setup(ctx, e); err != nil {
			return nil, fmt.Errorf("chaos: %s: setup: %w", sc.Name, err)
		}
	}
	step("setup")
	if _, err := e.StartShopd(ctx); err != nil {
		return nil, err
	}
	step("shopd start")
	logf("%s: database %s, shopd %s (log %s), phases %s / %s / %s, factor %g",
		sc.Name, e.DB.Name, e.URL(), e.logDir, phases.Healthy, phases.Fault, phases.Recovery, opt.Factor)
	before, err := snapshot(ctx, e)
	if err != nil {
		return nil, err
	}

	step("snapshot")
	rep = &Report{Scenario: sc.Name, Incident: sc.Incident, Summary: sc.Summary, Factor: opt.Factor, NoFault: opt.NoFault}
	rec := &recorder{}
	start := time.Now()
	rep.Start = start
	e.mu.Lock()
	e.start = start
	e.mu.Unlock()
	rep.Phases = []Phase{
		{Name: "healthy", From: start, To: start.Add(phases.Healthy)},
		{Name: "fault", From: start.Add(phases.Healthy), To: start.Add(phases.Healthy + phases.Fault)},
		{Name: "recovery", From: start.Add(phases.Healthy + phases.Fault), To: start.Add(phases.Total())},
	}
	var wg sync.WaitGroup
	attack := func(l Load, dur time.Duration) {
		defer wg.Done()
		err := moncheck.Attack(ctx, l.Kinds(e), l.Rate, dur, l.Name, func(kind string, r *vegeta.Result) {
			rec.add(l.Name, kind, r)
			if l.OnResult != nil {
				l.OnResult(kind, r)
			}
		})
		if err != nil && ctx.Err() == nil {
			e.Note("load %s: %v", l.Name, err)
		}
	}
	// The first shopd's peak memory per phase (benchkit's /proc reading).
	peak := func() {
		if s := e.Shopds(); len(s) > 0 {
			if m, err := s[0].Memory(); err == nil {
				rep.PeakRSSMiB = append(rep.PeakRSSMiB, float64(m.Peak)/(1<<20))
				_ = s[0].ResetPeak()
				return
			}
		}
		rep.PeakRSSMiB = append(rep.PeakRSSMiB, -1)
	}
	if s := e.Shopds(); len(s) > 0 {
		_ = s[0].ResetPeak()
	}
	for _, l := range sc.Load {
		wg.Add(1)
		go attack(l, phases.Total())
	}
	sleepUntil(ctx, rep.Phases[1].From)
	peak()
	injected := time.Now()
	if !opt.NoFault {
		if sc.Fault.Inject != nil {
			logf("%s: inject at +%s", sc.Name, time.Since(start).Round(time.Millisecond))
			if err := sc.Fault.Inject(ctx, e); err != nil {
				rep.Failures = append(rep.Failures, fmt.Sprintf("fault: inject: %v", err))
			}
		}
		for _, l := range sc.FaultLoad {
			wg.Add(1)
			go attack(l, time.Until(rep.Phases[1].To))
		}
	} else {
		logf("%s: fault switched off (-no-fault)", sc.Name)
	}
	sleepUntil(ctx, rep.Phases[2].From)
	peak()
	healed := time.Now()
	if !opt.NoFault && sc.Fault.Heal != nil {
		logf("%s: heal at +%s", sc.Name, time.Since(start).Round(time.Millisecond))
		if err := sc.Fault.Heal(context.WithoutCancel(ctx), e); err != nil {
			rep.Failures = append(rep.Failures, fmt.Sprintf("fault: heal: %v", err))
		}
		healed = time.Now()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	rep.LoadEnd = time.Now()
	peak()
	step("phases")

	// Settle: the relay sends what it owes, then every shopd stops (which
	// flushes its DogStatsD client) and the last packets arrive.
	orders := rec.orders()
	settle := scaleDur(60*time.Second, opt.Factor, 5*time.Second)
	deadline := time.Now().Add(settle)
	for time.Now().Before(deadline) && e.Sink.Count() < int64(len(orders)) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	for _, s := range e.Shopds() {
		s.Stop()
	}
	time.Sleep(300 * time.Millisecond)
	rep.End = time.Now()
	step("settle")
	samples := e.Recorder.Samples()
	rep.Samples = len(samples)
	rep.Mails = e.Sink.Count()
	rep.Requests = rec.summary(rep.Phases)
	logf("%s: %d requests, %d DogStatsD samples, %d mails", sc.Name, len(rec.results), len(samples), rep.Mails)

	inv, err := checkInvariants(ctx, e, before, rec, exp.Invariants, rep.Mails)
	if err != nil {
		return nil, err
	}
	rep.Invariants = inv

	every := scaleDur(moncheck.Every, opt.Factor, 250*time.Millisecond)
	results, err := moncheck.EvaluateEvery(mons, samples, start, rep.End, every)
	if err != nil {
		return nil, err
	}
	rep.Every = every.String()
	rep.judge(mons, results, exp, rec)
	rep.checkBounds(exp, rec)
	rep.measureRecovery(exp, rec, healed)
	rep.measureOutage(exp, rec, injected)
	rep.diagnose(opt.Root, mons, exp, samples, scaleDur(moncheck.Step, opt.Factor, 250*time.Millisecond))
	rep.keyMetrics(samples)
	rep.series = timelineSeries(samples, start, rep.End, scaleDur(moncheck.Step, opt.Factor, 500*time.Millisecond))
	e.mu.Lock()
	rep.Notes = append(rep.Notes, e.notes...)
	e.mu.Unlock()
	rep.signatures(samples, exp.Signatures)
	rep.CaughtBy = exp.CaughtBy
	for i, inv := range rep.Invariants {
		expected := slices.Contains(exp.ExpectedViolations, inv.Name)
		rep.Invariants[i].ExpectedToBreak = expected
		switch {
		case !inv.OK && !expected:
			rep.Failures = append(rep.Failures, "invariant "+inv.Name+": "+inv.Detail)
		case inv.OK && expected:
			rep.Failures = append(rep.Failures, "invariant "+inv.Name+" was expected to break and held: "+inv.Detail)
		}
	}
	rep.OK = len(rep.Failures) == 0
	step("checks")
	return rep, nil
}

// Step is one step of a run and its wall time: database, seed, setup,
// shopd start, snapshot, phases, settle (mails, shopd stop), checks
// (invariants, monitor evaluation, diagnosis), shutdown.
type Step struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"s"`
}

func stepsString(steps []Step) string {
	var b strings.Builder
	total := 0.0
	for _, s := range steps {
		total += s.Seconds
		fmt.Fprintf(&b, "%s %.1fs, ", s.Name, s.Seconds)
	}
	fmt.Fprintf(&b, "total %.1fs", total)
	return b.String()
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

// scaleDur divides d by factor, not below floor (d itself when factor is 1).
func scaleDur(d time.Duration, factor float64, floor time.Duration) time.Duration {
	if factor <= 1 {
		return d
	}
	return max(time.Duration(float64(d)/factor), floor)
}

// result is one response of the load.
type result struct {
	Load, Kind string
	At         time.Time
	Latency    time.Duration
	Code       uint16
	OrderID    string // the order a checkout's 201 acknowledged (first answer or replay)
	Replayed   bool
	RetryAfter bool // the answer carried a Retry-After header
}

type recorder struct {
	mu      sync.Mutex
	results []result
}

func (r *recorder) add(load, kind string, v *vegeta.Result) {
	res := result{Load: load, Kind: kind, At: v.Timestamp, Latency: v.Latency, Code: v.Code, RetryAfter: v.Headers.Get("Retry-After") != ""}
	if v.Method == http.MethodPost && strings.HasSuffix(v.URL, "/orders/checkout") && v.Code == http.StatusCreated {
		res.Replayed = v.Headers.Get("Idempotent-Replayed") == "true"
		var o struct {
			ID string `json:"id"`
		}
		// A replay acknowledges its order too: a retry's 201 for a
		// checkout whose first answer was lost (a commit in doubt).
		if json.Unmarshal(v.Body, &o) == nil {
			res.OrderID = o.ID
		}
	}
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
}

// orders returns the ids of the orders the load's 201s acknowledged.
func (r *recorder) orders() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, x := range r.results {
		if x.OrderID != "" {
			out[x.OrderID] = true
		}
	}
	return out
}

// PhaseRequests is what the load saw in one phase.
type PhaseRequests struct {
	Phase string `json:"phase"`
	// Rate is responses per second.
	Rate float64 `json:"rate"`
	// Status counts responses by status code ("0": transport error).
	Status map[string]int `json:"status"`
	// ByKind counts responses by load/kind and status code.
	ByKind map[string]map[string]int `json:"by_kind"`
	P50Ms  float64                   `json:"p50_ms"`
	P99Ms  float64                   `json:"p99_ms"`
}

func (r *recorder) summary(phases []Phase) []PhaseRequests {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []PhaseRequests
	for _, p := range phases {
		pr := PhaseRequests{Phase: p.Name, Status: map[string]int{}, ByKind: map[string]map[string]int{}}
		var lat []time.Duration
		for _, x := range r.results {
			// A response belongs to the phase its request was sent in.
			if x.At.Before(p.From) || !x.At.Before(p.To) {
				continue
			}
			code := fmt.Sprint(x.Code)
			pr.Status[code]++
			k := x.Load + "/" + x.Kind
			if pr.ByKind[k] == nil {
				pr.ByKind[k] = map[string]int{}
			}
			pr.ByKind[k][code]++
			lat = append(lat, x.Latency)
		}
		if d := p.To.Sub(p.From).Seconds(); d > 0 {
			pr.Rate = float64(len(lat)) / d
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		pr.P50Ms, pr.P99Ms = pct(lat, 0.50), pct(lat, 0.99)
		out = append(out, pr)
	}
	return out
}

func pct(xs []time.Duration, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(float64(len(xs))*p+0.5) - 1
	i = min(max(i, 0), len(xs)-1)
	return float64(xs[i].Microseconds()) / 1000
}

var errNoExpectations = errors.New("chaos: no expectations")

// Recovery is the measured time from the heal to the first successful
// answer of one kind of request (Expectations.Recovery).
type Recovery struct {
	Load string `json:"load"`
	Kind string `json:"kind"`
	// HealS and FirstOKS are seconds since the run started (FirstOKS 0:
	// none came); Seconds is their difference, the recovery time.
	HealS    float64 `json:"heal_s"`
	FirstOKS float64 `json:"first_ok_s"`
	Seconds  float64 `json:"seconds"`
	WithinS  float64 `json:"within_s"`
	OK       bool    `json:"ok"`
}

// checkBounds checks Expectations.Bounds over every answer of the run.
func (r *Report) checkBounds(x *Expectations, rec *recorder) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	keys := make([]string, 0, len(x.Bounds))
	for k := range x.Bounds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		b := x.Bounds[key]
		var slow, bare, n int
		var worst time.Duration
		for _, res := range rec.results {
			if res.Load != key && res.Load+"/"+res.Kind != key {
				continue
			}
			n++
			worst = max(worst, res.Latency)
			if b.MaxMs > 0 && float64(res.Latency)/float64(time.Millisecond) > b.MaxMs {
				slow++
			}
			if b.RetryAfter && res.Code >= 500 && (res.Code != http.StatusServiceUnavailable || !res.RetryAfter) {
				bare++
			}
		}
		if n == 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("bounds of %s: no answers", key))
		}
		if slow > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("bounds of %s: %d answers slower than %g ms (worst %s)", key, slow, b.MaxMs, worst.Round(time.Millisecond)))
		}
		if bare > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("bounds of %s: %d answers 5xx but not 503 + Retry-After", key, bare))
		}
	}
}

// measureRecovery measures Expectations.Recovery: from healed to the first
// 2xx answer of its load and kind that completed after healed.
func (r *Report) measureRecovery(x *Expectations, rec *recorder, healed time.Time) {
	if x.Recovery == nil {
		return
	}
	rv := &Recovery{Load: x.Recovery.Load, Kind: x.Recovery.Kind, HealS: r.since(healed), WithinS: x.Recovery.WithinS}
	var first time.Time
	rec.mu.Lock()
	for _, res := range rec.results {
		done := res.At.Add(res.Latency)
		if res.Load != rv.Load || res.Kind != rv.Kind || res.Code/100 != 2 || done.Before(healed) {
			continue
		}
		if first.IsZero() || done.Before(first) {
			first = done
		}
	}
	rec.mu.Unlock()
	if !first.IsZero() {
		rv.FirstOKS = math.Round(first.Sub(r.Start).Seconds()*1000) / 1000
		rv.Seconds = math.Round(first.Sub(healed).Seconds()*1000) / 1000
		rv.OK = rv.Seconds <= rv.WithinS
	}
	r.Recovery = rv
	switch {
	case first.IsZero():
		r.Failures = append(r.Failures, fmt.Sprintf("recovery: no 2xx of %s/%s after the heal", rv.Load, rv.Kind))
	case !rv.OK:
		r.Failures = append(r.Failures, fmt.Sprintf("recovery: first 2xx of %s/%s %.3f s after the heal, want within %g s", rv.Load, rv.Kind, rv.Seconds, rv.WithinS))
	}
}
