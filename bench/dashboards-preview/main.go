// Command dashboards-preview is `make dashboards-preview`: what would the
// dashboards show? It reads the DogStatsD capture `make monitors-check`
// wrote (-capture, JSON lines) or, when that file does not exist, runs
// the same healthy load for -duration itself, and renders every widget of
// every dashboard of -dashboards over it into one static HTML page (-out):
// inline SVG charts, no script, no network. With -png and a chromium on
// $PATH it also screenshots the page.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/moncheck"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

func main() { benchkit.Main("dashboards-preview", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("dashboards-preview", flag.ContinueOnError)
	fset.SetOutput(stderr)
	capture := fset.String("capture", "bench/results/capture.jsonl", "capture written by monitors-check; when absent, a run of -duration is made and saved there")
	dashboards := fset.String("dashboards", "dashboards", "directory of the dashboards' JSON")
	metrics := fset.String("metrics", "docs/metrics.md", "the metric catalogue (for units)")
	out := fset.String("out", "bench/results/dashboards-preview.html", "the HTML page to write")
	png := fset.String("png", "", "also screenshot the page to this PNG with headless chromium (if installed)")
	cfg := moncheck.Config{Log: stdout}
	fset.StringVar(&cfg.Shopd, "shopd", "bin/shopd", "shopd binary, for a run when there is no capture")
	fset.StringVar(&cfg.Server, "server", benchkit.DefaultServer(), "PostgreSQL server, for a run when there is no capture")
	fset.DurationVar(&cfg.Duration, "duration", 30*time.Second, "load duration, for a run when there is no capture")
	fset.IntVar(&cfg.Rate, "rate", 20, "requests per second, for a run when there is no capture")
	fset.DurationVar(&cfg.Settle, "settle", 12*time.Second, "wait after the load, for a run when there is no capture")
	if err := fset.Parse(args); err != nil {
		return err
	}
	samples, err := moncheck.ReadCapture(*capture)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stdout, "%s does not exist: running the healthy load for %s to capture one\n", *capture, cfg.Duration)
		var c *moncheck.Capture
		if c, err = moncheck.Run(ctx, cfg); err != nil {
			return err
		}
		samples = c.Samples
		if err := moncheck.WriteCapture(*capture, samples); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	from, to := bounds(samples)
	units, err := moncheck.Units(*metrics)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := moncheck.RenderPreview(&b, *dashboards, units, samples, from, to); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d KB) from %d samples over %s\n", *out, b.Len()/1024, len(samples), to.Sub(from).Round(time.Second))
	if *png != "" {
		return screenshot(ctx, *out, *png, stdout)
	}
	return nil
}

// bounds is the capture's time range: from its first sample to just after
// its last.
func bounds(samples []ddquery.Sample) (time.Time, time.Time) {
	from, to := samples[0].Time, samples[0].Time
	for _, s := range samples {
		if s.Time.Before(from) {
			from = s.Time
		}
		if s.Time.After(to) {
			to = s.Time
		}
	}
	return from.Truncate(time.Second), to.Add(time.Second)
}

// screenshot renders page to png with headless chromium, when one is
// installed; without one it says so and succeeds.
func screenshot(ctx context.Context, page, png string, stdout io.Writer) error {
	var bin string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		fmt.Fprintln(stdout, "no chromium on $PATH: no PNG")
		return nil
	}
	abs, err := filepath.Abs(page)
	if err != nil {
		return err
	}
	pngAbs, err := filepath.Abs(png)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--hide-scrollbars", "--window-size=1240,9000", "--screenshot="+pngAbs, "file://"+abs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chromium: %v\n%s", err, out)
	}
	fmt.Fprintf(stdout, "wrote %s\n", png)
	return nil
}
