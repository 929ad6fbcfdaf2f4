package chaos

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/internal/benchkit"
)

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

// TestScenarios runs every declared scenario in compressed time (Factor)
// and asserts its expectations; the timeline goes to the test log and the
// results to a temporary directory. Scenarios run one after the other: the
// machine's two cores are the scale.
func TestScenarios(t *testing.T) {
	root := RepoRoot()
	bin := buildShopd(t, root)
	out := t.TempDir()
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var log strings.Builder
			rep, err := Run(ctx, sc, Options{Shopd: bin, Server: benchkit.DefaultServer(), Factor: Factor, Root: root, Log: &log})
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			var tl strings.Builder
			rep.PrintTimeline(&tl)
			t.Log(log.String() + tl.String())
			if _, _, err := rep.Write(out); err != nil {
				t.Fatal(err)
			}
			for _, f := range rep.Failures {
				t.Errorf("missed: %s", f)
			}
		})
	}
}

// TestFaultOffFails proves the checks can fail: lock-holder with its fault
// switched off must miss its expectations, naming the monitor that did not
// fire and the diagnosis that found nothing.
func TestFaultOffFails(t *testing.T) {
	root := RepoRoot()
	bin := buildShopd(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Find("lock-holder"), Options{Shopd: bin, Server: benchkit.DefaultServer(), Factor: Factor, Root: root, NoFault: true})
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
