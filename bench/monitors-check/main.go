// Command monitors-check is `make monitors-check`: does any monitor fire
// on a healthy service? It creates a fresh database, seeds it, starts
// bin/shopd with its DogStatsD stream pointed at an in-process recorder
// (ddquery.Recorder) and its mail at an in-process SMTP sink, runs a
// healthy mixed vegeta load (reads, search, order history, checkouts with
// Idempotency-Keys, imports, reports, sign-ups) on loopback for -duration
// at -rate, then evaluates every monitor of -monitors over the capture with
// its own thresholds and options and prints a table. Every monitor must
// stay OK: it exits non-zero naming the offenders otherwise. It writes the
// verdicts to -out and the capture to -capture (JSON lines), which `make
// dashboards-preview` reads.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/internal/moncheck"
)

func main() { benchkit.Main("monitors-check", run) }

// report is the results file.
type report struct {
	From        time.Time                 `json:"from"`
	To          time.Time                 `json:"to"`
	Duration    string                    `json:"duration"`
	Rate        int                       `json:"rate"`
	Requests    map[string]map[string]int `json:"requests"`
	Mails       int64                     `json:"mails"`
	Samples     int                       `json:"samples"`
	Every       string                    `json:"every"`
	WindowRule  string                    `json:"window_rule"`
	Monitors    []moncheck.Result         `json:"monitors"`
	OK          bool                      `json:"ok"`
	CaptureFile string                    `json:"capture_file"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("monitors-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := moncheck.Config{Log: stdout}
	fs.StringVar(&cfg.Shopd, "shopd", "bin/shopd", "shopd binary to start")
	fs.StringVar(&cfg.Server, "server", benchkit.DefaultServer(), "PostgreSQL server to create the database on")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long the load runs")
	fs.IntVar(&cfg.Rate, "rate", 20, "requests per second, all kinds together")
	fs.DurationVar(&cfg.Settle, "settle", 12*time.Second, "wait after the load for the outbox to drain and the gauges to report")
	monitors := fs.String("monitors", "monitors", "directory of the monitors' JSON")
	out := fs.String("out", "bench/results/monitors-check.json", "where to write the verdicts")
	capture := fs.String("capture", "bench/results/capture.jsonl", "where to write the captured samples (empty: nowhere)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Duration > 30*time.Minute || cfg.Rate > 500 {
		return errors.New("-duration is at most 30m and -rate at most 500: this is a check, not a stress test")
	}
	mons, err := moncheck.LoadMonitors(*monitors)
	if err != nil {
		return err
	}
	c, err := moncheck.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *capture != "" {
		if err := moncheck.WriteCapture(*capture, c.Samples); err != nil {
			return err
		}
	}
	results, err := moncheck.Evaluate(mons, c.Samples, c.From, c.To)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%d monitors evaluated every %s over %s of capture (%s of load at %d req/s); windows longer than the run are truncated to it\n\n",
		len(results), moncheck.Every, c.To.Sub(c.From).Round(time.Second), cfg.Duration, cfg.Rate)
	moncheck.PrintTable(stdout, results)
	bad := moncheck.Offenders(results)
	rep := report{From: c.From, To: c.To, Duration: cfg.Duration.String(), Rate: cfg.Rate, Requests: c.Requests,
		Mails: c.Mails, Samples: len(c.Samples), Every: moncheck.Every.String(),
		WindowRule: "each evaluation at T takes [T-window, T); the capture starts with the run, so longer windows are truncated to it",
		Monitors:   results, OK: len(bad) == 0, CaptureFile: *capture}
	if err := benchkit.WriteJSON(*out, rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresults: %s", *out)
	if *capture != "" {
		fmt.Fprintf(stdout, ", capture: %s", *capture)
	}
	fmt.Fprintln(stdout)
	if len(bad) > 0 {
		return fmt.Errorf("%d monitor(s) not OK on a healthy run:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	fmt.Fprintln(stdout, "every monitor stayed OK")
	return nil
}
