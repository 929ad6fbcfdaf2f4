package moncheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// moduleRoot walks up from the package directory to go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// buildShopd builds the real shopd into a temporary directory.
func buildShopd(t *testing.T, root string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "shopd")
	cmd := exec.Command(goBin, "build", "-o", bin, "./service/cmd/shopd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build shopd: %v\n%s", err, out)
	}
	return bin
}

// TestHealthyLoad is `make monitors-check` at a small scale, through the
// same functions: a low-rate mixed load for a few seconds against a real
// shopd and database, every monitor of monitors/ evaluated over the capture
// must stay OK, and the capture must hold the core metrics. Then it proves
// the check can fail: a monitor the healthy run does cross alerts, and a
// notify_no_data monitor on a metric that never came is NO DATA.
func TestHealthyLoad(t *testing.T) {
	root := moduleRoot(t)
	bin := buildShopd(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var log strings.Builder
	c, err := Run(ctx, Config{Shopd: bin, Server: benchkit.DefaultServer(), Duration: 8 * time.Second, Rate: 5, Settle: 5 * time.Second, Log: &log})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	for _, s := range c.Samples {
		seen[s.Name] = true
	}
	for _, name := range []string{
		"shoplab.http.requests", "shoplab.http.request.duration",
		"shoplab.checkout.outcomes", "shoplab.checkout.duration", "shoplab.checkout.lock_wait",
		"shoplab.db.query.duration", "shoplab.db.pool.acquired", "shoplab.db.pool.max",
		"shoplab.products.search.duration", "shoplab.import.duration", "shoplab.reports.duration",
		"shoplab.outbox.oldest_pending_age", "shoplab.outbox.sent",
	} {
		if !seen[name] {
			t.Errorf("the capture has no %s", name)
		}
	}
	for _, s := range c.Samples {
		if !slices.Contains(s.Tags, "env:"+Env) {
			t.Errorf("sample %s without env:%s: %v", s.Name, Env, s.Tags)
			break
		}
	}

	mons, err := LoadMonitors(filepath.Join(root, "monitors"))
	if err != nil {
		t.Fatal(err)
	}
	results, err := Evaluate(mons, c.Samples, c.From, c.To)
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	PrintTable(&table, results)
	t.Log("\n" + table.String())
	if len(results) != len(mons) {
		t.Errorf("%d results for %d monitors", len(results), len(mons))
	}
	if bad := Offenders(results); len(bad) > 0 {
		t.Errorf("monitors not OK on a healthy run:\n%s", strings.Join(bad, "\n"))
	}
	for _, r := range results {
		if r.File == "no-traffic.json" && (r.Final != "OK" || r.Worst == nil || *r.Worst < 10) {
			t.Errorf("no-traffic under load: final %s, worst %v; want OK with a count", r.Final, r.Worst)
		}
	}

	// The capture survives the file round trip the preview relies on.
	path := filepath.Join(t.TempDir(), "capture.jsonl")
	if err := WriteCapture(path, c.Samples); err != nil {
		t.Fatal(err)
	}
	back, err := ReadCapture(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(c.Samples) || !back[0].Time.Equal(c.Samples[0].Time) || back[0].Name != c.Samples[0].Name {
		t.Errorf("capture round trip: %d samples back of %d", len(back), len(c.Samples))
	}

	t.Run("FailsOnACrossedThreshold", func(t *testing.T) {
		q, err := ddquery.ParseMonitor("sum(last_5m):sum:shoplab.http.requests{service:shoplab} by {env}.as_count() > 0")
		if err != nil {
			t.Fatal(err)
		}
		m := Monitor{File: "requests-at-all.json", Query: q, Thresholds: ddquery.Thresholds{Critical: 0}, Options: ddquery.Options{Step: Step}}
		res, err := Evaluate([]Monitor{m}, c.Samples, c.From, c.To)
		if err != nil {
			t.Fatal(err)
		}
		if r := res[0]; r.OK || r.Final != "ALERT" || len(Offenders(res)) != 1 {
			t.Errorf("a monitor the healthy run crosses: ok %v, final %s, offenders %v; want ALERT and an offender", r.OK, r.Final, Offenders(res))
		}
	})
	t.Run("FailsOnNoDataWhenNotifyNoData", func(t *testing.T) {
		q, err := ddquery.ParseMonitor("max(last_5m):max:shoplab.no.such.metric{service:shoplab} by {env} > 1")
		if err != nil {
			t.Fatal(err)
		}
		for _, notify := range []bool{false, true} {
			m := Monitor{File: "silent.json", Query: q, Thresholds: ddquery.Thresholds{Critical: 1}, Options: ddquery.Options{Step: Step, NotifyNoData: notify, NoDataTimeframe: 10 * time.Minute}}
			res, err := Evaluate([]Monitor{m}, c.Samples, c.From, c.To)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res[0].OK, !notify; got != want {
				t.Errorf("notify_no_data %v on a metric never sent: ok %v (final %s), want %v", notify, got, res[0].Final, want)
			}
		}
	})
}
