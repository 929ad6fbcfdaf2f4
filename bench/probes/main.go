// Command probes is `make probes`: the probes that found issue 16's
// problems, re-run against a real shopd (bin/shopd) on a fresh seeded
// database, with buyer authentication on:
//
//   - every route's answer and time, idle and while 24 slow imports
//     trickle in (imports must not starve the rest);
//   - a buyer reading, downloading and ordering on another buyer's
//     account (must get the 404 of an unknown id);
//   - SIGTERM during a slow import and a checkout load (time to exit, what
//     each client got, acknowledged orders against orders stored);
//   - a storm of clients that ignore 429's Retry-After (GET /health p99
//     idle and during it), and invented bearer values (no new budget).
//
// It prints a markdown report and writes it to -out. Timings come from a
// shared machine: read them against each other within one run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/internal/benchkit"
)

func main() { benchkit.Main("probes", run) }

const adminToken = "probe-admin-token-0123456789abcdef0123"

// env is one run's database, binary and seeded ids.
type env struct {
	bin, dbURL  string
	pool        *pgxpool.Pool
	heavy, bob  string // customer ids
	heavyTok    string // heavy.user@example.com's buyer token
	bobTok      string // user1@example.com's buyer token
	product     string // a product with stock for the checkouts
	otherRoutes []probe
}

// probe is one request of the route table.
type probe struct {
	name, method, path, ctype string
	body                      func(i int) string
	token                     string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("probes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("shopd", "bin/shopd", "shopd binary")
	server := fs.String("server", benchkit.DefaultServer(), "PostgreSQL server URL (a fresh database is created on it)")
	out := fs.String("out", "bench/results/probes.md", "where the report is written")
	uploads := fs.Int("uploads", 24, "slow imports sent at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := benchkit.CreateDatabase(ctx, *server, "probes")
	if err != nil {
		return err
	}
	defer db.Drop()
	e := &env{bin: *bin, dbURL: db.URL}
	if err := e.prepare(ctx); err != nil {
		return err
	}
	defer e.pool.Close()

	var rep bytes.Buffer
	fmt.Fprintf(&rep, "# Probes (`make probes`, %s)\n\n", time.Now().UTC().Format(time.RFC3339))
	steps := []func(context.Context, *bytes.Buffer) error{
		func(ctx context.Context, w *bytes.Buffer) error { return e.slowImports(ctx, w, *uploads) },
		e.otherBuyer,
		e.sigterm,
		e.storm,
	}
	for _, step := range steps {
		if err := step(ctx, &rep); err != nil {
			return err
		}
	}
	_, _ = stdout.Write(rep.Bytes())
	return os.WriteFile(*out, rep.Bytes(), 0o644)
}

// prepare seeds the database and issues two buyers their tokens.
func (e *env) prepare(ctx context.Context) error {
	if _, err := e.shopd(ctx, "seed"); err != nil {
		return err
	}
	var err error
	if e.heavyTok, err = e.issue(ctx, "heavy.user@example.com"); err != nil {
		return err
	}
	if e.bobTok, err = e.issue(ctx, "user1@example.com"); err != nil {
		return err
	}
	if e.pool, err = pgxpool.New(ctx, e.dbURL); err != nil {
		return err
	}
	row := e.pool.QueryRow(ctx, `SELECT
	    (SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'),
	    (SELECT id::text FROM customers WHERE email = 'user1@example.com'),
	    (SELECT id::text FROM products ORDER BY inventory DESC, id LIMIT 1)`)
	if err := row.Scan(&e.heavy, &e.bob, &e.product); err != nil {
		return err
	}
	// Plenty of stock: the probes count answers, not sell-outs.
	_, err = e.pool.Exec(ctx, `UPDATE products SET inventory = 1000000 WHERE id = $1`, e.product)
	return err
}

func (e *env) shopd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dbURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("shopd %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (e *env) issue(ctx context.Context, email string) (string, error) {
	out, err := e.shopd(ctx, "token", "issue", email)
	if err != nil {
		return "", err
	}
	return strings.SplitN(out, "\n", 2)[0], nil
}

// start starts shopd with buyer authentication on and more env.
func (e *env) start(ctx context.Context, more ...string) (*benchkit.Shopd, error) {
	return benchkit.StartShopd(ctx, benchkit.ShopdConfig{Bin: e.bin, DatabaseURL: e.dbURL,
		Env: append([]string{"BUYER_AUTH=on", "ADMIN_TOKEN=" + adminToken, "RATE_LIMIT=off"}, more...)})
}

// result is one answer: status (0: no answer, err says why) and time.
type result struct {
	status     int
	took       time.Duration
	retryAfter string
	err        error
}

func (r result) String() string {
	if r.status == 0 {
		return "no answer (" + shortErr(r.err) + ")"
	}
	s := fmt.Sprint(r.status)
	if r.retryAfter != "" {
		s += " Retry-After: " + r.retryAfter
	}
	return s
}

func shortErr(err error) string {
	if err == nil {
		return "?"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

var client = &http.Client{Timeout: 60 * time.Second}

// send sends one request and reads the whole answer.
func send(ctx context.Context, method, url, ctype, token string, body io.Reader, hdr ...string) result {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return result{err: err}
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return result{took: time.Since(start), err: err}
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return result{status: res.StatusCode, took: time.Since(start), retryAfter: res.Header.Get("Retry-After")}
}

// routes is the table of requests probed idle and under the slow imports.
func (e *env) routes() []probe {
	cart := func(i int) string {
		return fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, e.heavy, e.product)
	}
	return []probe{
		{name: "GET /health", method: "GET", path: "/health"},
		{name: "GET /ready", method: "GET", path: "/ready"},
		{name: "GET /products", method: "GET", path: "/products"},
		{name: "GET /products?q=lamp", method: "GET", path: "/products?q=lamp"},
		{name: "GET /products/{id}", method: "GET", path: "/products/" + e.product},
		{name: "GET /orders/{userId} (own token)", method: "GET", path: "/orders/" + e.heavy + "?limit=20", token: e.heavyTok},
		{name: "GET /reports/orders/{userId} (own token)", method: "GET", path: "/reports/orders/" + e.bob, token: e.bobTok},
		{name: "POST /users", method: "POST", path: "/users", ctype: "application/json",
			body: func(i int) string {
				return fmt.Sprintf(`{"email":"probe-%d-%d@example.com","name":"Probe"}`, time.Now().UnixNano(), i)
			}},
		{name: "POST /orders/checkout (own token)", method: "POST", path: "/orders/checkout", ctype: "application/json", body: cart, token: e.heavyTok},
		{name: "GET /admin/inventory/low (admin)", method: "GET", path: "/admin/inventory/low", token: adminToken},
	}
}

// probeRoutes sends each route n times, one after another, and returns
// each route's answers (statuses seen) and worst time.
func probeRoutes(ctx context.Context, base string, routes []probe, n int) map[string][]result {
	got := map[string][]result{}
	for i := range n {
		for _, p := range routes {
			var body io.Reader
			if p.body != nil {
				body = strings.NewReader(p.body(i))
			}
			got[p.name] = append(got[p.name], send(ctx, p.method, base+p.path, p.ctype, p.token, body))
		}
	}
	return got
}

// summary is "200 ×5" style statuses and the worst time of results.
func summary(rs []result) (string, time.Duration) {
	counts := map[string]int{}
	var order []string
	var worst time.Duration
	for _, r := range rs {
		k := r.String()
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
		worst = max(worst, r.took)
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = fmt.Sprintf("%s ×%d", k, counts[k])
	}
	return strings.Join(parts, ", "), worst
}

// slowUpload sends an NDJSON import that trickles a line every `every`
// for `lines` lines (about 3 KB/s: above UPLOAD_MIN_BYTES_PER_SEC, so an
// admitted one runs to its end).
func slowUpload(ctx context.Context, base string, id, lines int, every time.Duration) result {
	pr, pw := io.Pipe()
	go func() {
		pad := strings.Repeat("x", 250)
		for i := range lines {
			line := fmt.Sprintf(`{"name":"Probe %d-%d","price":"1.00","inventory":1,"description":"%s"}`+"\n", id, i, pad)
			if _, err := pw.Write([]byte(line)); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				_ = pw.CloseWithError(ctx.Err())
				return
			case <-time.After(every):
			}
		}
		_ = pw.Close()
	}()
	return send(ctx, "POST", base+"/admin/products/import", "application/x-ndjson", adminToken, pr)
}

// slowImports probes every route idle, then while n slow imports run.
func (e *env) slowImports(ctx context.Context, w *bytes.Buffer, n int) error {
	s, err := e.start(ctx)
	if err != nil {
		return err
	}
	defer s.Stop()
	routes := e.routes()
	idle := probeRoutes(ctx, s.URL, routes, 5)

	var wg sync.WaitGroup
	uploads := make([]result, n)
	for i := range n {
		wg.Go(func() { uploads[i] = slowUpload(ctx, s.URL, i, 80, 100*time.Millisecond) })
	}
	time.Sleep(time.Second) // the uploads are admitted or refused, the admitted ones trickle
	var copying int
	_ = e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
	    WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() AND query ~* '^\s*(--[^\n]*\n\s*)*COPY '`).Scan(&copying)
	busy := probeRoutes(ctx, s.URL, routes, 5)
	wg.Wait()

	fmt.Fprintf(w, "## Every route while %d slow imports run\n\n", n)
	fmt.Fprintf(w, "%d imports sent at once, each an NDJSON body trickling 80 lines over 8 s; %d sessions in COPY while the routes were probed. Each route sent 5 times one after another, idle and then during the uploads.\n\n", n, copying)
	fmt.Fprintln(w, "| route | idle: answers | idle: worst | during the uploads: answers | during: worst |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, p := range routes {
		ia, it := summary(idle[p.name])
		ba, bt := summary(busy[p.name])
		fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s |\n", p.name, ia, ms(it), ba, ms(bt))
	}
	ua, ut := summary(uploads)
	fmt.Fprintf(w, "\nThe %d imports: %s (the slowest answered after %s).\n\n", n, ua, ms(ut))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// otherBuyer has heavy's token ask for bob's data.
func (e *env) otherBuyer(ctx context.Context, w *bytes.Buffer) error {
	s, err := e.start(ctx)
	if err != nil {
		return err
	}
	defer s.Stop()
	cart := func(user string) io.Reader {
		return strings.NewReader(fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, user, e.product))
	}
	unknown := "00000000-0000-4000-8000-000000000000"
	rows := []struct {
		what, method, path, token string
		body                      io.Reader
	}{
		{"bob's orders, bob's token", "GET", "/orders/" + e.bob, e.bobTok, nil},
		{"bob's orders, heavy's token", "GET", "/orders/" + e.bob, e.heavyTok, nil},
		{"an unknown id's orders, heavy's token", "GET", "/orders/" + unknown, e.heavyTok, nil},
		{"bob's orders, no token", "GET", "/orders/" + e.bob, "", nil},
		{"bob's orders, an invented token", "GET", "/orders/" + e.bob, "sbt_invented", nil},
		{"bob's report, heavy's token", "GET", "/reports/orders/" + e.bob, e.heavyTok, nil},
		{"bob's report as CSV, heavy's token", "GET", "/reports/orders/" + e.bob + "?format=csv", e.heavyTok, nil},
		{"checkout on bob's account, heavy's token", "POST", "/orders/checkout", e.heavyTok, cart(e.bob)},
		{"bob's orders, the admin token", "GET", "/orders/" + e.bob, adminToken, nil},
	}
	before := e.count(ctx, `SELECT count(*) FROM orders WHERE customer_id = $1`, e.bob)
	fmt.Fprintln(w, "## A buyer asking for another buyer's data")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| request | answer |")
	fmt.Fprintln(w, "|---|---|")
	for _, r := range rows {
		ctype := ""
		if r.body != nil {
			ctype = "application/json"
		}
		fmt.Fprintf(w, "| %s | %s |\n", r.what, send(ctx, r.method, s.URL+r.path, ctype, r.token, r.body))
	}
	after := e.count(ctx, `SELECT count(*) FROM orders WHERE customer_id = $1`, e.bob)
	fmt.Fprintf(w, "\nOrders on bob's account before and after: %d, %d.\n\n", before, after)
	return nil
}

func (e *env) count(ctx context.Context, sql string, args ...any) int64 {
	var n int64
	if err := e.pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return -1
	}
	return n
}

// sigterm sends shopd SIGTERM during a slow import and a checkout load.
func (e *env) sigterm(ctx context.Context, w *bytes.Buffer) error {
	s, err := e.start(ctx, "SHUTDOWN_TIMEOUT=15s")
	if err != nil {
		return err
	}
	defer s.Stop()
	ordersBefore := e.count(ctx, `SELECT count(*) FROM orders`)
	productsBefore := e.count(ctx, `SELECT count(*) FROM products`)

	importDone := make(chan result, 1)
	go func() { importDone <- slowUpload(ctx, s.URL, 999, 600, 100*time.Millisecond) }() // 60 s if left alone

	const workers = 8
	var mu sync.Mutex
	answers := map[string]int{}
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, e.heavy, e.product)
				r := send(ctx, "POST", s.URL+"/orders/checkout", "application/json", e.heavyTok, strings.NewReader(body),
					"Idempotency-Key", fmt.Sprintf("probe-sigterm-%d-%d", i, n))
				if r.status == http.StatusCreated {
					acked.Add(1)
				}
				k := r.String()
				if r.status == 0 {
					k = "no answer (connection refused: the listener is closed)"
					if !strings.Contains(r.err.Error(), "refused") {
						k = "no answer (" + shortErr(r.err) + ")"
					}
				}
				mu.Lock()
				answers[k]++
				mu.Unlock()
				if r.status == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	sent := time.Now()
	exited := make(chan struct{})
	go func() { s.Stop(); close(exited) }()
	var imp result
	select {
	case imp = <-importDone:
	case <-time.After(30 * time.Second):
		imp = result{err: errors.New("still waiting 30 s after SIGTERM")}
	}
	importAnswered := time.Since(sent)
	<-exited
	exit := time.Since(sent)
	time.Sleep(300 * time.Millisecond) // the clients see the closed listener
	close(stop)
	wg.Wait()

	ordersAfter := e.count(ctx, `SELECT count(*) FROM orders`)
	productsAfter := e.count(ctx, `SELECT count(*) FROM products`)
	fmt.Fprintln(w, "## SIGTERM during a slow import and a checkout load")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "One admitted import trickling 600 lines over 60 s and %d clients checking out in a loop; SIGTERM after 2 s (SHUTDOWN_TIMEOUT=15s).\n\n", workers)
	fmt.Fprintln(w, "| what | figure |")
	fmt.Fprintln(w, "|---|---|")
	fmt.Fprintf(w, "| SIGTERM to process exit | %s |\n", ms(exit))
	fmt.Fprintf(w, "| the import's answer | %s, %s after SIGTERM |\n", imp, ms(importAnswered))
	fmt.Fprintf(w, "| products stored by the cut import | %d |\n", productsAfter-productsBefore)
	keys := make([]string, 0, len(answers))
	for k := range answers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		label := "checkouts answered " + k
		if strings.HasPrefix(k, "no answer") {
			label = "checkouts with " + k
		}
		fmt.Fprintf(w, "| %s | %d |\n", label, answers[k])
	}
	fmt.Fprintf(w, "| checkouts acknowledged (201) / orders stored | %d / %d |\n\n", acked.Load(), ordersAfter-ordersBefore)
	return nil
}

// storm measures GET /health's p99 idle and while clients that ignore
// Retry-After hammer a route limited to one request a minute, and shows
// that invented bearer values buy no budget.
func (e *env) storm(ctx context.Context, w *bytes.Buffer) error {
	s, err := e.start(ctx, "RATE_LIMIT=on", "RATE_LIMIT_REQUESTS=1", "RATE_LIMIT_WINDOW=1m")
	if err != nil {
		return err
	}
	defer s.Stop()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	get := func(path, token string) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := hc.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	p99 := func() time.Duration {
		const n = 400
		d := make([]time.Duration, 0, n)
		for range n {
			start := time.Now()
			get("/health", "")
			d = append(d, time.Since(start))
			time.Sleep(time.Millisecond)
		}
		slices.Sort(d)
		return d[n*99/100]
	}
	for range 50 {
		get("/health", "")
	}
	idle := p99()
	const clients = 16
	sctx, cancel := context.WithCancel(ctx)
	var refused, other atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for n := 0; sctx.Err() == nil; n++ {
				// Every request a new invented bearer value.
				switch get("/products/"+e.product, fmt.Sprintf("sbt_invented_%d_%d", i, n)) {
				case http.StatusTooManyRequests:
					refused.Add(1)
				case 0:
				default:
					other.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	start, before := time.Now(), refused.Load()
	during := p99()
	rate := float64(refused.Load()-before) / time.Since(start).Seconds()
	cancel()
	wg.Wait()
	fmt.Fprintln(w, "## A 429 storm from clients that ignore Retry-After")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "RATE_LIMIT_REQUESTS=1 per minute; %d clients on one address retry GET /products/{id} at once, each request with a new invented bearer value.\n\n", clients)
	fmt.Fprintln(w, "| what | figure |")
	fmt.Fprintln(w, "|---|---|")
	fmt.Fprintf(w, "| storm requests answered other than 429 (invented values bought no budget) | %d |\n", other.Load())
	fmt.Fprintf(w, "| refusals per second during the measurement | %.0f |\n", rate)
	fmt.Fprintf(w, "| GET /health p99, idle | %s |\n", ms(idle))
	fmt.Fprintf(w, "| GET /health p99, during the storm | %s (%.1f× idle) |\n\n", ms(during), float64(during)/float64(idle))
	b, _ := json.Marshal(map[string]any{"idle_p99_ms": benchkit.Millis(idle), "storm_p99_ms": benchkit.Millis(during), "refusals_per_s": rate, "other": other.Load()})
	fmt.Fprintf(w, "<!-- %s -->\n", b)
	return nil
}
