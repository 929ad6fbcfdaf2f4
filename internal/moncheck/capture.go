// Package moncheck is the engine of `make monitors-check` and `make
// dashboards-preview`: it runs a healthy mixed load against a fresh shopd
// while a ddquery.Recorder captures its DogStatsD stream (Run), evaluates
// every monitor of monitors/*.json over the capture with the monitor's own
// thresholds and options (Evaluate), and renders every dashboard widget from
// the capture into one static HTML page (RenderPreview). The programs under
// bench/ and the test of this package call the same functions, at different
// scales.
//
// It sits at the module root's internal/ beside benchkit, which it starts
// shopd and its database through, so that bench/ and chaos/ both use it.
package moncheck

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// Config says how to run the healthy load.
type Config struct {
	// Shopd is the shopd binary (see benchkit.ShopdPath).
	Shopd string
	// Server is the PostgreSQL server to create the database on
	// (benchkit.DefaultServer()).
	Server string
	// Duration is how long the load runs.
	Duration time.Duration
	// Rate is requests per second, over all kinds of request.
	Rate int
	// Settle is how long, after the load, the run waits for the outbox to
	// send the confirmations and the periodic gauges to report once more,
	// before shopd is stopped (which flushes its DogStatsD client).
	Settle time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Env is the env tag of the shopd the check starts (DD_ENV).
const Env = "monitors-check"

// Capture is what a run recorded.
type Capture struct {
	// From is when the load started, To when the capture ended (after
	// shopd stopped and its last packets arrived).
	From, To time.Time
	// LoadEnd is when the load stopped.
	LoadEnd time.Time
	// Samples are the DogStatsD samples shopd sent, from its start.
	Samples []ddquery.Sample
	// Requests counts the load's responses by kind of request and status
	// code ("checkout" -> "201" -> n; code "0" is a transport error).
	Requests map[string]map[string]int
	// Mails is how many messages the SMTP sink accepted.
	Mails int64
}

// Run creates and seeds a fresh database, starts an SMTP sink, a
// DogStatsD recorder and shopd pointed at both, runs the mixed load for
// cfg.Duration at cfg.Rate, lets the outbox drain for cfg.Settle, stops
// shopd and returns the capture. Everything it started is stopped and the
// database dropped before it returns. It fails on any setup error, and when
// the load's requests fail at the transport level or with 5xx: a healthy
// run is what the monitors are checked against.
func Run(ctx context.Context, cfg Config) (*Capture, error) {
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	if cfg.Duration <= 0 || cfg.Rate <= 0 {
		return nil, errors.New("moncheck: duration and rate must be positive")
	}
	bin, err := benchkit.ShopdPath(cfg.Shopd)
	if err != nil {
		return nil, err
	}
	db, err := benchkit.CreateDatabase(ctx, cfg.Server, "moncheck")
	if err != nil {
		return nil, err
	}
	defer db.Drop()
	fx, err := Seed(ctx, db.URL)
	if err != nil {
		return nil, fmt.Errorf("moncheck: seed: %w", err)
	}
	logf("database %s seeded (%d customers, %d in-stock products)", db.Name, len(fx.Users), len(fx.Products))

	sink, err := StartSMTPSink()
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	rec, err := ddquery.NewRecorder()
	if err != nil {
		return nil, fmt.Errorf("moncheck: dogstatsd recorder: %w", err)
	}
	defer rec.Close()

	const adminToken = "monitors-check-admin"
	shopd, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{
		Bin:         bin,
		DatabaseURL: db.URL,
		Env:         ShopdEnv(rec.Addr(), sink.Addr(), Env, adminToken),
		LogPath:     filepath.Join(os.TempDir(), fmt.Sprintf("moncheck-shopd-%d.log", os.Getpid())),
	})
	if err != nil {
		return nil, err
	}
	defer shopd.Stop()
	logf("shopd pid %d on %s, DogStatsD to %s, SMTP sink %s", shopd.PID, shopd.URL, rec.Addr(), sink.Addr())

	c := &Capture{From: time.Now(), Requests: map[string]map[string]int{}}
	logf("load: %d req/s for %s", cfg.Rate, cfg.Duration)
	err = Attack(ctx, HealthyMix(shopd.URL, adminToken, fx), cfg.Rate, cfg.Duration, "monitors-check", func(kind string, r *vegeta.Result) {
		if c.Requests[kind] == nil {
			c.Requests[kind] = map[string]int{}
		}
		c.Requests[kind][fmt.Sprint(r.Code)]++
	})
	if err != nil {
		return nil, err
	}
	c.LoadEnd = time.Now()
	checkouts := -int(fx.Replays.Load()) // a replay creates no order and no mail
	for code, n := range c.Requests["checkout"] {
		if code == "201" {
			checkouts += n
		}
	}
	// Let the relay send the confirmations and the gauges report again.
	settle, cancel := context.WithTimeout(ctx, cfg.Settle)
	for settle.Err() == nil && sink.Count() < int64(checkouts) {
		select {
		case <-settle.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if settle.Err() == nil { // mails done: give the gauges one more report
		select {
		case <-settle.Done():
		case <-time.After(min(cfg.Settle, 11*time.Second)):
		}
	}
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	shopd.Stop() // SIGTERM: shopd closes its DogStatsD client, which flushes
	time.Sleep(300 * time.Millisecond)
	c.To = time.Now()
	c.Samples = rec.Samples()
	c.Mails = sink.Count()
	logf("captured %d DogStatsD samples; the SMTP sink accepted %d of %d confirmations", len(c.Samples), c.Mails, checkouts)

	var bad []string
	for _, k := range sortedKeys(c.Requests) {
		for code, n := range c.Requests[k] {
			if code == "0" || code >= "500" {
				bad = append(bad, fmt.Sprintf("%s: %d x %s", k, n, code))
			}
		}
	}
	if len(bad) > 0 {
		return c, fmt.Errorf("moncheck: the load was not healthy: %s (shopd log: %s)", strings.Join(bad, "; "), shopd.LogPath)
	}
	return c, nil
}

// WriteCapture writes the samples to path as JSON lines, one
// ddquery.Sample each, creating the directory if need be.
func WriteCapture(path string, samples []ddquery.Sample) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, s := range samples {
		if err := enc.Encode(s); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadCapture reads a file written by WriteCapture. It fails on a line
// that is not a sample and on an empty file.
func ReadCapture(path string) ([]ddquery.Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []ddquery.Sample
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var s ddquery.Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no samples", path)
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
