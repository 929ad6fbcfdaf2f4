package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/benchkit"
)

// scenario is a shape of checkout traffic.
type scenario struct {
	name     string
	products int // catalogue size
	stock    int // initial stock of each product
	maxLines int // carts have 1..maxLines distinct products, 1 unit each
}

func newScenario(name string, o options) (scenario, error) {
	switch name {
	case "hot":
		return scenario{name: name, products: 1, stock: o.hotStock, maxLines: 1}, nil
	case "uniform":
		if o.products < o.maxLines || o.maxLines < 1 {
			return scenario{}, fmt.Errorf("-products (%d) must be at least -max-lines (%d) >= 1", o.products, o.maxLines)
		}
		return scenario{name: name, products: o.products, stock: o.stock, maxLines: o.maxLines}, nil
	}
	return scenario{}, fmt.Errorf("unknown scenario %q (hot, uniform)", name)
}

// latencies in milliseconds.
type latencies struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type scenarioResult struct {
	Name           string  `json:"name"`
	Requests       uint64  `json:"requests"`
	Seconds        float64 `json:"seconds"`
	RequestsPerSec float64 `json:"requestsPerSec"`
	OrdersPerSec   float64 `json:"ordersPerSec"`
	// SelloutSeconds is when the last 201 answered, from the start (only
	// when the stock ran out).
	SelloutSeconds float64 `json:"selloutSeconds,omitempty"`
	// OrderRate is orders per second between the first and the last order
	// (their transaction timestamps): with limited stock, the rate while
	// stock lasted, i.e. the hot row's serial throughput.
	OrderRate float64 `json:"orderRate"`
	// OrderRateRatio is OrderRate / the pgbench run's OrderRate.
	OrderRateRatio float64 `json:"orderRateRatioToPgbench,omitempty"`
	// InStock and SoldOut split the requests of a scenario whose stock ran
	// out at the last 201: the requests sent before it, and after.
	InStock        *phase         `json:"inStock,omitempty"`
	SoldOut        *phase         `json:"soldOut,omitempty"`
	Round          int            `json:"round"`
	Oversold       int            `json:"oversold"`
	Statuses       map[string]int `json:"statuses"`
	LatencyMs      latencies      `json:"latencyMs"`
	ClientErrors   []string       `json:"clientErrors,omitempty"`
	UnitsSold      int            `json:"unitsSold"`
	CPU            cpuUsage       `json:"cpu"`
	Pgbench        *pgbenchResult `json:"pgbench,omitempty"`
	RatioToPgbench float64        `json:"ratioToPgbench,omitempty"`
	Failures       []string       `json:"failures,omitempty"`
	OK             bool           `json:"ok"`
}

// phase is the requests of one phase of a scenario.
type phase struct {
	Requests       int            `json:"requests"`
	Seconds        float64        `json:"seconds"`
	RequestsPerSec float64        `json:"requestsPerSec"`
	Statuses       map[string]int `json:"statuses"`
	P50Ms          float64        `json:"p50Ms"`
	P99Ms          float64        `json:"p99Ms"`
}

// newPhase summarises rs, sent over secs seconds.
func newPhase(rs []vegeta.Result, secs float64) *phase {
	p := &phase{Requests: len(rs), Seconds: benchkit.Round(secs, 3), Statuses: map[string]int{}}
	var m vegeta.Metrics
	for i := range rs {
		m.Add(&rs[i])
		p.Statuses[strconv.Itoa(int(rs[i].Code))]++
	}
	m.Close()
	if secs > 0 {
		p.RequestsPerSec = float64(len(rs)) / secs
	}
	p.P50Ms, p.P99Ms = benchkit.Millis(m.Latencies.P50), benchkit.Millis(m.Latencies.P99)
	return p
}

// cart draws a random cart of 1..maxLines distinct products of ds.
func cart(sc scenario, ds dataset) []map[string]any {
	n := 1
	if sc.maxLines > 1 {
		n = 1 + rand.IntN(sc.maxLines)
	}
	picked := make([]int, 0, n)
	for len(picked) < n {
		i := rand.IntN(len(ds.products))
		if !slices.Contains(picked, i) {
			picked = append(picked, i)
		}
	}
	lines := make([]map[string]any, n)
	for k, i := range picked {
		lines[k] = map[string]any{"productId": ds.products[i], "quantity": 1}
	}
	return lines
}

// runScenario creates the scenario's data, attacks base with vegeta and
// verifies the invariants.
// Every request carries an Idempotency-Key of its own, as a client that
// retries safely sends it: the service claims and stores it in the
// checkout's transaction (and pgbench's twin does the same).
func runScenario(ctx context.Context, o options, pool *pgxpool.Pool, base string, svcPID int, sc scenario, plot *benchkit.Plot) (scenarioResult, error) {
	res := scenarioResult{Name: sc.name, Statuses: map[string]int{}}
	ds, err := createDataset(ctx, pool, sc.name, sc.products, sc.stock)
	if err != nil {
		return res, err
	}
	target := strings.TrimRight(base, "/") + "/orders/checkout"
	targeter := func(t *vegeta.Target) error {
		body, err := json.Marshal(map[string]any{"userId": ds.user, "items": cart(sc, ds)})
		if err != nil {
			return err
		}
		hdr := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"bench-" + randomHex(12)}}
		t.Method, t.URL, t.Body, t.Header = http.MethodPost, target, body, hdr
		return nil
	}
	workers := uint64(max(1, o.workers))
	atk := vegeta.NewAttacker(
		vegeta.Workers(workers), vegeta.MaxWorkers(workers),
		vegeta.Connections(o.workers), vegeta.MaxConnections(o.workers),
		vegeta.Timeout(30*time.Second), vegeta.KeepAlive(true), vegeta.MaxBody(0),
	)
	rate := vegeta.Rate{Freq: o.rate, Per: time.Second}
	probe := newCPUProbe(ctx, pool, o.appName, svcPID, selfCPU)
	var m vegeta.Metrics
	var began, lastOrder time.Time
	var all []vegeta.Result
	for r := range atk.Attack(targeter, rate, o.duration, sc.name) {
		all = append(all, *r)
		plot.Add(r)
		if began.IsZero() || r.Timestamp.Before(began) {
			began = r.Timestamp
		}
		if r.Code == http.StatusCreated && r.End().After(lastOrder) {
			lastOrder = r.End()
		}
		m.Add(r)
	}
	m.Close()
	res.CPU = probe.stop(ctx)
	if m.StatusCodes["201"] > 0 && m.StatusCodes["409"] > 0 {
		res.SelloutSeconds = lastOrder.Sub(began).Seconds()
		var in, out []vegeta.Result
		end := began
		for _, r := range all {
			if r.Timestamp.Before(lastOrder) {
				in = append(in, r)
			} else {
				out = append(out, r)
			}
			if r.End().After(end) {
				end = r.End()
			}
		}
		res.InStock, res.SoldOut = newPhase(in, res.SelloutSeconds), newPhase(out, end.Sub(lastOrder).Seconds())
	}

	res.Requests = m.Requests
	wall := m.Duration + m.Wait
	res.Seconds = wall.Seconds()
	for code, n := range m.StatusCodes {
		res.Statuses[code] = n
	}
	if wall > 0 {
		res.RequestsPerSec = float64(m.Requests) / wall.Seconds()
		res.OrdersPerSec = float64(m.StatusCodes["201"]) / wall.Seconds()
	}
	msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.LatencyMs = latencies{P50: msf(m.Latencies.P50), P95: msf(m.Latencies.P95), P99: msf(m.Latencies.P99), Max: msf(m.Latencies.Max)}
	res.ClientErrors = m.Errors
	if len(res.ClientErrors) > 10 {
		res.ClientErrors = res.ClientErrors[:10]
	}

	sold, orderRate, oversold, failures, err := verify(ctx, pool, ds, m.StatusCodes["201"])
	if err != nil {
		return res, err
	}
	res.UnitsSold, res.OrderRate, res.Oversold = sold, orderRate, oversold
	res.Failures = failures
	for code, n := range m.StatusCodes {
		c, _ := strconv.Atoi(code)
		switch {
		case c == 0:
			res.Failures = append(res.Failures, fmt.Sprintf("%s: %d requests got no answer (%s)", sc.name, n, strings.Join(res.ClientErrors, "; ")))
		case c >= 500 && c != http.StatusServiceUnavailable:
			res.Failures = append(res.Failures, fmt.Sprintf("%s: %d answers with status %d", sc.name, n, c))
		case c != 201 && c != 409 && c != 503:
			res.Failures = append(res.Failures, fmt.Sprintf("%s: %d unexpected answers with status %d", sc.name, n, c))
		}
	}
	return res, nil
}

func printScenario(w io.Writer, r scenarioResult) {
	codes := make([]string, 0, len(r.Statuses))
	for c := range r.Statuses {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%s x %d", c, r.Statuses[c]))
	}
	fmt.Fprintf(w, "== %s: %d requests in %.1fs: %s\n", r.Name, r.Requests, r.Seconds, strings.Join(parts, ", "))
	fmt.Fprintf(w, "   latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms\n", r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.LatencyMs.Max)
	fmt.Fprintf(w, "   throughput %.0f req/s (%.0f orders/s), %d units sold\n", r.RequestsPerSec, r.OrdersPerSec, r.UnitsSold)
	printCPU(w, r.CPU, float64(r.Requests), "shopd", "vegeta")
	if r.SelloutSeconds > 0 {
		fmt.Fprintf(w, "   in stock (first %.2fs): %d requests, %.0f orders/s, p99 %.1f ms\n", r.SelloutSeconds, r.InStock.Requests, r.OrderRate, r.InStock.P99Ms)
		fmt.Fprintf(w, "   sold out (the rest, %.2fs): %d requests, %.0f req/s, p99 %.1f ms (not in the ratio)\n", r.SoldOut.Seconds, r.SoldOut.Requests, r.SoldOut.RequestsPerSec, r.SoldOut.P99Ms)
	}
	if p := r.Pgbench; p != nil {
		fmt.Fprintf(w, "   pgbench, same transaction, %d clients: %.0f tps (%.0f orders/s first to last order) -> service/pgbench = %.2f (orders/s: %.2f); time per checkout %.2fx pgbench's\n",
			p.Clients, p.TPS, p.OrderRate, r.RatioToPgbench, r.OrderRateRatio, floorRatio(r))
	}
	if p := r.Pgbench; p != nil {
		printCPU(w, p.CPU, float64(p.Transactions), "", "pgbench")
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "   FAIL %s\n", f)
	}
	if len(r.Failures) == 0 {
		fmt.Fprintln(w, "   invariants OK")
	}
	fmt.Fprintln(w)
}

func printTable(w io.Writer, rs []scenarioResult) {
	fmt.Fprintln(w, "| scenario | requests | 201 | 409 | 503 | other | p50 ms | p95 ms | p99 ms | req/s | pgbench tps | service/pgbench | orders/s in stock (service / pgbench) | invariants |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		other := 0
		for c, n := range r.Statuses {
			if c != "201" && c != "409" && c != "503" {
				other += n
			}
		}
		pg, ratio, rates := "-", "-", fmt.Sprintf("%.0f", r.OrderRate)
		if r.Pgbench != nil {
			pg, ratio = fmt.Sprintf("%.0f", r.Pgbench.TPS), fmt.Sprintf("%.2f", r.RatioToPgbench)
			rates = fmt.Sprintf("%.0f / %.0f = %.2f", r.OrderRate, r.Pgbench.OrderRate, r.OrderRateRatio)
		}
		ok := "OK"
		if !r.OK {
			ok = "FAIL"
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %.1f | %.1f | %.1f | %.0f | %s | %s | %s | %s |\n",
			r.Name, r.Requests, r.Statuses["201"], r.Statuses["409"], r.Statuses["503"], other,
			r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99, r.RequestsPerSec, pg, ratio, rates, ok)
	}
}

// printCPU prints the CPU time per request (or transaction) of each party
// and how busy the machine was.
func printCPU(w io.Writer, u cpuUsage, n float64, service, client string) {
	if n == 0 || u.MachineSec == 0 {
		return
	}
	var parts []string
	if service != "" && u.ServiceSec > 0 {
		parts = append(parts, fmt.Sprintf("%s %.2f ms", service, 1000*u.ServiceSec/n))
	}
	parts = append(parts, fmt.Sprintf("postgres %.2f ms", 1000*u.PostgresSec/n), fmt.Sprintf("%s %.2f ms", client, 1000*u.ClientSec/n))
	ours := u.ServiceSec + u.PostgresSec + u.ClientSec
	fmt.Fprintf(w, "   CPU per request: %s; cores busy %.0f%% (this run %.0f%%, the rest of the machine %.0f%%)\n",
		strings.Join(parts, ", "), 100*u.MachineBusySec/u.MachineSec, 100*ours/u.MachineSec, 100*max(0, u.MachineBusySec-ours)/u.MachineSec)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
