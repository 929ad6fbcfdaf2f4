package chaos

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/shoplab/shoplab/internal/benchkit"
)

var chaosParallel = flag.Int("chaos.parallel", 2,
	"how many scenarios TestScenarios and TestFaultOffFails run at once (a scenario marked Alone runs by itself)")

// suite is what this test binary's runs share, made by the first test that
// needs it: shopd built once, the migrated and seeded template database the
// runs clone, and the slots that bound how many run at once.
type suite struct {
	bin   string
	tmpl  *Template
	slots *semaphore.Weighted
	n     int64
}

var shared struct {
	once sync.Once
	s    *suite
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if shared.s != nil && shared.s.tmpl != nil {
		shared.s.tmpl.Drop()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// setup returns the suite, building shopd and the template on first use.
func setup(t *testing.T) *suite {
	t.Helper()
	shared.once.Do(func() {
		n := int64(max(*chaosParallel, 1))
		s := &suite{slots: semaphore.NewWeighted(n), n: n}
		if shared.dir, shared.err = os.MkdirTemp("", "chaos-test-"); shared.err != nil {
			return
		}
		if s.bin, shared.err = buildShopd(RepoRoot(), shared.dir); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if s.tmpl, shared.err = NewTemplate(ctx, benchkit.DefaultServer()); shared.err != nil {
			return
		}
		shared.s = s
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.s
}

// buildShopd builds the real shopd into dir.
func buildShopd(root, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "shopd")
	cmd := exec.Command(goBin, "build", "-o", bin, "./service/cmd/shopd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build shopd: %v\n%s", err, out)
	}
	return bin, nil
}

// run runs sc in compressed time once a slot is free (all of them when sc
// is Alone), on a clone of the template; the 2-minute bound starts then.
func (s *suite) run(t *testing.T, sc *Scenario, noFault bool, log io.Writer) (*Report, error) {
	t.Helper()
	weight := int64(1)
	if sc.Alone {
		weight = s.n
	}
	if err := s.slots.Acquire(t.Context(), weight); err != nil {
		return nil, err
	}
	defer s.slots.Release(weight)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	return Run(ctx, sc, Options{Shopd: s.bin, Server: benchkit.DefaultServer(), Factor: Factor, Root: RepoRoot(),
		NoFault: noFault, Log: log, Template: s.tmpl})
}

// TestScenarios runs every declared scenario in compressed time (Factor)
// and asserts its expectations; the timeline goes to the test log and the
// results to a temporary directory. Scenarios run -chaos.parallel at once
// (2: the machine's two cores are the scale), longest first (a scenario
// on a pg_auto_failover formation counts as longest), those marked Alone
// first and by themselves.
func TestScenarios(t *testing.T) {
	t.Parallel()
	s := setup(t)
	out := t.TempDir()
	order := Scenarios()
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.Alone != b.Alone {
			return a.Alone
		}
		// A formation takes 15-50 s to stand up before its phases.
		if a.Formation != b.Formation {
			return a.Formation
		}
		return a.Compressed.Total() > b.Compressed.Total()
	})
	work := make(chan *Scenario)
	var wg sync.WaitGroup
	for range s.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sc := range work {
				t.Run(sc.Name, func(t *testing.T) {
					for attempt := 1; ; attempt++ {
						var log strings.Builder
						rep, err := s.run(t, sc, false, &log)
						if err != nil {
							t.Fatalf("%v\n%s", err, log.String())
						}
						var tl strings.Builder
						rep.PrintTimeline(&tl)
						t.Log(log.String() + tl.String())
						if _, _, err := rep.Write(out); err != nil {
							t.Fatal(err)
						}
						if attempt == 1 && len(rep.Failures) > 0 && onlyTimingMisses(rep.Failures) {
							t.Logf("attempt 1 missed only timing expectations (monitors, signatures, bounds) on a shared machine; running %s again, which must pass:\n  %s",
								sc.Name, strings.Join(rep.Failures, "\n  "))
							continue
						}
						for _, f := range rep.Failures {
							t.Errorf("missed: %s", f)
						}
						return
					}
				})
			}
		}()
	}
	for _, sc := range order {
		work <- sc
	}
	close(work)
	wg.Wait()
}

// TestFaultOffFails proves the checks can fail: lock-holder with its fault
// switched off must miss its expectations, naming the monitor that did not
// fire and the diagnosis that found nothing.
func TestFaultOffFails(t *testing.T) {
	t.Parallel()
	s := setup(t)
	rep, err := s.run(t, Find("lock-holder"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tl strings.Builder
	rep.PrintTimeline(&tl)
	t.Log(tl.String())
	if rep.OK {
		t.Fatal("lock-holder without its fault met its expectations: the checks cannot fail")
	}
	got := strings.Join(rep.Failures, "\n")
	for _, want := range []string{"monitor checkout-lock-wait did not fire", "diagnosis of checkout-lock-wait"} {
		if !strings.Contains(got, want) {
			t.Errorf("failures %q, want one with %q", got, want)
		}
	}
}

// TestScaleMonitor checks the compression of monitor windows and count
// thresholds on the parsed monitors.
func TestScaleMonitor(t *testing.T) {
	mons, err := loadMonitors(RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mons {
		s := ScaleMonitor(m, 60)
		if s.Query.Window*60 != m.Query.Window {
			t.Errorf("%s: window %s scaled to %s", m.File, m.Query.Window, s.Query.Window)
		}
		if s.Query.String() != m.Query.String() {
			t.Errorf("%s: query text changed", m.File)
		}
		count := IsCountThreshold(m) || IsAgeThreshold(m)
		if want := m.Query.Threshold; count {
			want /= 60
			if s.Thresholds.Critical != want || s.Query.Threshold != want {
				t.Errorf("%s: count threshold %v scaled to %v, want %v", m.File, m.Query.Threshold, s.Thresholds.Critical, want)
			}
		} else if s.Thresholds.Critical != m.Thresholds.Critical {
			t.Errorf("%s: threshold %v changed to %v", m.File, m.Thresholds.Critical, s.Thresholds.Critical)
		}
		if m.Query.Window == 0 || ScaleMonitor(m, 1).Query != m.Query {
			t.Errorf("%s: factor 1 must leave it alone", m.File)
		}
	}
	for _, id := range []string{"reports-rejected", "import-failures", "outbox-dead", "statement-timeouts"} {
		found := false
		for _, m := range mons {
			if MonitorID(m) == id {
				found = IsCountThreshold(m)
			}
		}
		if !found {
			t.Errorf("%s is not taken for a count threshold", id)
		}
	}
	for _, m := range mons {
		if MonitorID(m) == "outbox-oldest-pending" && !IsAgeThreshold(m) {
			t.Error("outbox-oldest-pending is not taken for an age threshold")
		}
	}
}

// onlyTimingMisses reports whether every missed expectation is one that a
// starved CPU can cause: a monitor firing, or recovering, a moment off; a
// signature ratio at a phase's edge; answers slower than a bound; a
// recovery or an outage longer than its bound. TestScenarios runs such a
// scenario once more. Anything else (a broken invariant: an oversell, an
// order without its 201 or its mail; a 5xx that is not 503 + Retry-After;
// an unexpected status class; a fault that could not be injected) is
// never retried: it fails at once.
func onlyTimingMisses(failures []string) bool {
	timing := regexp.MustCompile(`^(monitor |signature |bounds of .*answers slower than |recovery: first 2xx |outage: .* down .* want at most )`)
	for _, f := range failures {
		if !timing.MatchString(f) {
			return false
		}
	}
	return true
}

// TestOnlyTimingMisses: which misses TestScenarios retries.
func TestOnlyTimingMisses(t *testing.T) {
	retried := []string{
		"monitor search-timeouts fired but did not recover by the end of the recovery phase",
		"monitor checkout-p99 must stay quiet but fired at +2.3s (healthy phase): env:chaos ALERT at +2s (value 1616)",
		`signature "statements per order-history request" in the fault phase: 2.007, want <= 2`,
		"bounds of probes/ready: 3 answers slower than 500 ms (worst 812ms)",
		"recovery: first 2xx of buyers/checkout 2.500 s after the heal, want within 2 s",
		"outage: buyers/checkout down 9.100 s, want at most 8 s",
	}
	failed := []string{
		"invariant one-mail-per-order: 1305 mails for 1588 orders",
		"bounds of probes/ready: 2 answers 5xx but not 503 + Retry-After",
		"outage: 1 5xx other than 503 + Retry-After and 0 transport errors",
		"load history answered [5xx], want only 2xx",
		"fault: inject: connection refused",
	}
	if !onlyTimingMisses(retried) {
		t.Error("timing misses not retried")
	}
	for _, f := range failed {
		if onlyTimingMisses(append(retried[:1:1], f)) {
			t.Errorf("retried: %s", f)
		}
	}
}
