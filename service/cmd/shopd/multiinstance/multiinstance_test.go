// Package multiinstance_test runs several real `shopd serve` processes on
// one database, each with its outbox relay, under concurrent checkouts,
// idempotent retries, imports and reports, while `shopd backfill
// users-split` runs: the way to scale shoplab out past one process
// (docs/pgbouncer.md, "Several instances"). It needs nothing but
// PostgreSQL: `make test` runs it against the server directly, `make
// test-pgbouncer` runs it again with every instance going through a real
// pgbouncer in transaction pooling mode (pgtest's PGTEST_PGBOUNCER).
package multiinstance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/internal/benchkit"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/internal/smtptest"
	"github.com/shoplab/shoplab/service/postgres"
)

// shopdBin is the shopd binary TestMain builds.
var shopdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "multiinstance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shopdBin, err = buildShopd(dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildShopd builds ./service/cmd/shopd of this module into dir.
func buildShopd(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "shopd")
	cmd := exec.Command(goBin, "build", "-o", bin, "./service/cmd/shopd")
	cmd.Dir = filepath.Join("..", "..", "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build shopd: %v\n%s", err, out)
	}
	return bin, nil
}

// The load, sized to finish in seconds on a loaded 2-core machine while
// every part overlaps the others.
const (
	instances     = 3
	hotStock      = 60   // units of the hot product
	hotAttempts   = 120  // one-unit checkouts of it, twice its stock
	hotWorkers    = 12   // concurrent buyers of it
	keyPairs      = 20   // idempotency keys, each sent to two instances at once
	importRows    = 1500 // rows per import
	imports       = 3    // one per instance, distinct SKUs
	reports       = 6    // full CSV downloads of the heavy buyer's report
	heavyOrders   = 150  // the heavy buyer's orders before the test, 2 lines each
	legacyUsers   = 600  // accounts before the split's sync triggers
	legacyOrders  = 1200 // orders of them before the triggers
	backfillBatch = 40   // small batches: the backfill runs during the load
)

// TestSeveralInstancesOneDatabase: three shopd instances on one database at
// the users split's expand step (migration 00012, data from before its
// triggers), relays on in every instance, one SMTP server. Concurrently:
// 120 one-unit checkouts of a product with 60 in stock spread over the
// instances; 20 idempotency keys each sent to two instances at the same
// moment; three imports, one per instance, then one re-imported; six
// report downloads; and `shopd backfill users-split` in small batches.
// Then: the hot product sold exactly its stock (stock + sold = initial,
// never below zero) with one order per 201; each key made one order and
// both answers carry it, one of them a replay; imports counted right;
// every report whole; one confirmation mail per order, Message-IDs
// unique, sent by the instances' relays; `shopd verify users-split`
// agrees.
func TestSeveralInstancesOneDatabase(t *testing.T) {
	ctx := t.Context()
	start := time.Now()
	dsn := pgtest.NewDatabaseAt(t, postgres.UsersSplitSync-2) // before 00011: data the triggers never saw
	direct := pgtest.DirectURL(t, dsn)
	seedLegacy(t, direct)
	// Migrations run once, from one place, on a direct connection
	// (docs/pgbouncer.md): never by each instance at start.
	shopdCmd(t, direct, "migrate", "up-to", fmt.Sprint(postgres.UsersSplitSync))

	mail := smtptest.New(t)
	logDir := t.TempDir()
	var shops []*benchkit.Shopd
	for i := range instances {
		s, err := benchkit.StartShopd(ctx, benchkit.ShopdConfig{
			Bin:         shopdBin,
			DatabaseURL: dsn,
			LogPath:     filepath.Join(logDir, fmt.Sprintf("shopd-%d.log", i)),
			Env: []string{
				"SMTP_ADDR=" + mail.Addr(), "SMTP_TLS=none",
				"RELAY_ENABLED=true", "RELAY_INTERVAL=100ms",
				"DB_MAX_CONNS=6", "IMPORTS_MAX_CONNS=2", "REPORTS_MAX_CONNS=2", "REPORTS_MAX_CONCURRENT=2",
				// Correctness under contention, not the bounds: a loaded
				// test machine must not turn waits into 503s.
				"CHECKOUT_ACQUIRE_TIMEOUT=30s", "CHECKOUT_LOCK_TIMEOUT=30s", "CHECKOUT_STATEMENT_TIMEOUT=30s",
				"DB_ACQUIRE_TIMEOUT=30s", "REPORTS_MAX_LINES_PER_SEC=0",
			},
		})
		if err != nil {
			t.Fatalf("start shopd %d: %v", i, err)
		}
		t.Cleanup(s.Stop)
		shops = append(shops, s)
	}
	t.Logf("setup: %s (%d instances on %s)", time.Since(start).Round(time.Millisecond), instances, benchkit.Redact(dsn))

	d := loadData(t, direct)
	load := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	fail := func(format string, args ...any) { errs <- fmt.Errorf(format, args...) }

	// The backfill, as the runbook runs it, while the instances serve.
	var backfillOut []byte
	var backfillErr error
	var backfillTime time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func(t0 time.Time) { backfillTime = time.Since(t0) }(time.Now())
		backfillOut, backfillErr = shopdOutput(ctx, dsn, "backfill", "users-split",
			"-batch", fmt.Sprint(backfillBatch), "-pause", "5ms")
	}()

	// Hot product: one unit per checkout, twice as many buyers as units.
	var mu sync.Mutex
	hotOrders := map[string]bool{}
	hotStatus := map[int]int{}
	next := make(chan int, hotAttempts)
	for i := range hotAttempts {
		next <- i
	}
	close(next)
	for range hotWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body := cart(d.buyers[i], d.hot, 1)
				res, err := post(ctx, shops[i%instances].URL+"/orders/checkout", "application/json", body, nil)
				if err != nil {
					fail("hot checkout %d: %v", i, err)
					continue
				}
				mu.Lock()
				hotStatus[res.status]++
				if res.status == http.StatusCreated {
					if hotOrders[res.orderID] {
						fail("hot checkout %d: order %s answered twice", i, res.orderID)
					}
					hotOrders[res.orderID] = true
				}
				mu.Unlock()
			}
		}()
	}

	// Idempotency: each key to two instances at the same moment.
	keyOrders := make([][2]response, keyPairs)
	for k := range keyPairs {
		gate := make(chan struct{})
		for side := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				inst := (k + side) % instances
				body := cart(d.buyers[hotAttempts+k], d.ample, 2)
				res, err := post(ctx, shops[inst].URL+"/orders/checkout", "application/json", body,
					map[string]string{"Idempotency-Key": fmt.Sprintf("multi-%d", k)})
				if err != nil {
					fail("key %d on instance %d: %v", k, inst, err)
					return
				}
				keyOrders[k][side] = res
			}()
		}
		close(gate)
	}

	// Imports, one per instance, each its own SKUs.
	importRes := make([]response, imports)
	for i := range imports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := post(ctx, shops[i%instances].URL+"/admin/products/import", "text/csv", importCSV(i), nil)
			if err != nil {
				fail("import %d: %v", i, err)
				return
			}
			importRes[i] = res
		}()
	}

	// Reports of the heavy buyer, whose orders the load does not touch.
	for i := range reports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("%s/reports/orders/%s?format=csv", shops[i%instances].URL, d.heavy)
			res, err := get(ctx, u)
			if err != nil {
				fail("report %d: %v", i, err)
				return
			}
			if lines := strings.Count(string(res.body), "\n"); res.status != http.StatusOK || lines != 1+2*heavyOrders {
				fail("report %d on instance %d: %d with %d lines, want 200 with %d", i, i%instances, res.status, lines, 1+2*heavyOrders)
			}
		}()
	}
	wg.Wait()
	loadTime := time.Since(load)

	// An import again on another instance: every row an update.
	again, err := post(ctx, shops[1].URL+"/admin/products/import", "text/csv", importCSV(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Backfill: finished, and old and new agree.
	if backfillErr != nil {
		t.Fatalf("backfill users-split while serving: %v\n%s", backfillErr, backfillOut)
	}
	verify := shopdCmd(t, dsn, "verify", "users-split")
	if !strings.Contains(verify, "old and new agree") {
		t.Fatalf("verify users-split after the backfill:\n%s", verify)
	}

	// Hot product: exactly its stock sold, one order per 201, only 201/409.
	if hotStatus[http.StatusCreated] != hotStock || hotStatus[http.StatusCreated]+hotStatus[http.StatusConflict] != hotAttempts {
		t.Fatalf("hot checkouts by status %v, want %d x 201 and the rest 409", hotStatus, hotStock)
	}
	conn := connect(t, direct)
	var stock, sold, hotOrderRows int64
	if err := conn.QueryRow(ctx, `SELECT p.inventory,
		(SELECT coalesce(sum(quantity), 0) FROM order_items WHERE product_id = p.id),
		(SELECT count(DISTINCT order_id) FROM order_items WHERE product_id = p.id)
		FROM products p WHERE p.id = $1`, d.hot).Scan(&stock, &sold, &hotOrderRows); err != nil {
		t.Fatal(err)
	}
	if stock < 0 || stock+sold != hotStock || sold != hotStock || hotOrderRows != int64(len(hotOrders)) {
		t.Fatalf("hot product: stock %d + sold %d (in %d orders; %d answered 201), want 0 + %d", stock, sold, hotOrderRows, len(hotOrders), hotStock)
	}

	// Idempotency: one order per key, the same answer twice, one replayed.
	keyed := map[string]bool{}
	for k, pair := range keyOrders {
		a, b := pair[0], pair[1]
		replays := 0
		for _, r := range pair {
			if r.header.Get("Idempotent-Replayed") == "true" {
				replays++
			}
		}
		if a.status != http.StatusCreated || b.status != http.StatusCreated || a.orderID == "" || a.orderID != b.orderID || replays != 1 || !bytes.Equal(a.body, b.body) {
			t.Fatalf("key %d on two instances: %d %s and %d %s, replays %d; want one order, the same 201 twice, one replayed\n%s\n%s",
				k, a.status, a.orderID, b.status, b.orderID, replays, a.body, b.body)
		}
		keyed[a.orderID] = true
	}
	var keyRows int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE idempotency_key LIKE 'multi-%' AND order_id IS NOT NULL`).Scan(&keyRows); err != nil {
		t.Fatal(err)
	}
	if len(keyed) != keyPairs || keyRows != keyPairs {
		t.Fatalf("idempotency: %d distinct orders, %d keys stored, want %d", len(keyed), keyRows, keyPairs)
	}

	// Every order the load made, and no other.
	var newOrders int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM orders WHERE created_at >= $1`, d.loadStart).Scan(&newOrders); err != nil {
		t.Fatal(err)
	}
	wantOrders := hotStock + keyPairs
	if newOrders != int64(wantOrders) {
		t.Fatalf("%d orders made during the load, want %d (201s of the hot product and one per key)", newOrders, wantOrders)
	}

	// Imports: each its rows created, the re-import only updates.
	for i, r := range importRes {
		var got struct{ Count, Created, Updated int }
		if r.status != http.StatusCreated || json.Unmarshal(r.body, &got) != nil || got.Count != importRows || got.Updated != 0 {
			t.Fatalf("import %d: %d %s, want 201 with %d new products", i, r.status, r.body, importRows)
		}
	}
	var gotAgain struct{ Count, Created, Updated int }
	if again.status != http.StatusCreated || json.Unmarshal(again.body, &gotAgain) != nil || gotAgain.Created != 0 || gotAgain.Updated != importRows {
		t.Fatalf("re-import: %d %s, want 201 updating all %d and creating nothing", again.status, again.body, importRows)
	}
	var imported int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM products WHERE sku LIKE 'MI-%'`).Scan(&imported); err != nil || imported != imports*importRows {
		t.Fatalf("imported products: %d (%v), want %d", imported, err, imports*importRows)
	}

	// Mail: once every row is sent, one message per order, from the relays.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var unsent int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE status <> 'sent'`).Scan(&unsent); err != nil {
			t.Fatal(err)
		}
		if unsent == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d confirmations still unsent after 60s", unsent)
		}
		time.Sleep(100 * time.Millisecond)
	}
	msgs := mail.Messages()
	ids := map[string]int{}
	for _, m := range msgs {
		ids[m.MessageID()]++
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("Message-ID %s sent %d times", id, n)
		}
	}
	for id := range hotOrders {
		keyed[id] = true
	}
	for id := range keyed {
		if ids["<order-confirmation."+id+"@shoplab.local>"] != 1 {
			t.Errorf("order %s: no confirmation mail", id)
		}
	}
	if len(msgs) != wantOrders {
		t.Fatalf("%d mails, want one per order: %d", len(msgs), wantOrders)
	}
	relays := map[string]int{}
	rows, err := conn.Query(ctx, `SELECT claimed_by, count(*) FROM outbox GROUP BY 1 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var by string
		var n int
		if err := rows.Scan(&by, &n); err != nil {
			t.Fatal(err)
		}
		relays[by] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	pids := map[string]bool{}
	for _, s := range shops {
		pids[fmt.Sprint(s.PID)] = true
	}
	for by := range relays {
		if i := strings.LastIndexByte(by, ':'); i < 0 || !pids[by[i+1:]] {
			t.Errorf("a mail was sent by %q, not by one of the instances' relays (pids %v)", by, pids)
		}
	}
	// No instance logged an error, and the lock-wait sampler (its own
	// connection, through pgbouncer when the test runs behind one) never
	// failed.
	for i, s := range shops {
		b, err := os.ReadFile(s.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"level":"error"`) || strings.Contains(line, "lock wait sampler failed") {
				t.Errorf("instance %d logged: %s", i, line)
			}
		}
	}
	t.Logf("load %s: hot %v, %d keys, %d imports of %d rows, %d reports, backfill %s; mails by relay %v; whole test %s",
		loadTime.Round(time.Millisecond), hotStatus, keyPairs, imports, importRows, reports, backfillTime.Round(time.Millisecond), relays, time.Since(start).Round(time.Millisecond))
}

// seedLegacy fills a database at migration 00010 as the service had it
// before the users split: accounts of every kind and their orders, the
// heavy buyer's among them.
func seedLegacy(t *testing.T, dsn string) {
	t.Helper()
	conn := connect(t, dsn)
	_, err := conn.Exec(t.Context(), fmt.Sprintf(`
INSERT INTO users (email, name, user_type)
SELECT 'mi-' || i || '@example.com', 'Buyer ' || i,
       CASE WHEN i %% 10 = 0 THEN 'merchant' WHEN i %% 10 = 1 THEN NULL ELSE 'customer' END
FROM generate_series(1, %[1]d) i;
INSERT INTO users (email, name) VALUES ('mi-heavy@example.com', 'Heavy Buyer');
INSERT INTO products (name, description, price, inventory) VALUES
    ('Hot lamp', 'the one everyone wants', 9.99, %[2]d),
    ('Plenty', 'ample stock', 5.00, 1000000);
INSERT INTO orders (user_id, total, status, created_at)
SELECT (SELECT id FROM users WHERE email = 'mi-' || (1 + i %% %[1]d) || '@example.com'), 5.00, 'completed', now() - interval '1 day'
FROM generate_series(1, %[3]d) i;
WITH o AS (
    INSERT INTO orders (user_id, total, status, created_at)
    SELECT (SELECT id FROM users WHERE email = 'mi-heavy@example.com'), 15.00, 'completed', now() - i * interval '1 minute'
    FROM generate_series(1, %[4]d) i
    RETURNING id
)
INSERT INTO order_items (order_id, product_id, quantity, price)
SELECT o.id, p.id, 1, p.price FROM o, products p WHERE p.name = 'Plenty'
UNION ALL
SELECT o.id, p.id, 2, p.price FROM o, products p WHERE p.name = 'Plenty'`,
		legacyUsers, hotStock, legacyOrders, heavyOrders))
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
}

// data is what the load needs to know of the seeded database.
type data struct {
	hot, ample, heavy string
	buyers            []string // customers who buy during the load
	loadStart         time.Time
}

func loadData(t *testing.T, dsn string) data {
	t.Helper()
	ctx := t.Context()
	conn := connect(t, dsn)
	var d data
	if err := conn.QueryRow(ctx, `SELECT (SELECT id::text FROM products WHERE name = 'Hot lamp'),
		(SELECT id::text FROM products WHERE name = 'Plenty'),
		(SELECT id::text FROM users WHERE email = 'mi-heavy@example.com'), now()`).Scan(&d.hot, &d.ample, &d.heavy, &d.loadStart); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT id::text FROM users WHERE user_type = 'customer' AND email <> 'mi-heavy@example.com' ORDER BY email LIMIT $1`, hotAttempts+keyPairs)
	if err != nil {
		t.Fatal(err)
	}
	if d.buyers, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(d.buyers) != hotAttempts+keyPairs {
		t.Fatalf("buyers: %d, %v", len(d.buyers), err)
	}
	return d
}

// importCSV is import i's body: importRows products with SKUs MI-<i>-<n>.
func importCSV(i int) string {
	var b strings.Builder
	b.WriteString("name,description,price,inventory,sku\n")
	for n := range importRows {
		fmt.Fprintf(&b, "Imported %d-%d,from instance %d,%d.%02d,%d,MI-%d-%d\n", i, n, i, 1+n%500, n%100, n%50, i, n)
	}
	return b.String()
}

func cart(user, product string, qty int) string {
	return fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":%d}]}`, user, product, qty)
}

type response struct {
	status  int
	header  http.Header
	body    []byte
	orderID string // a checkout's order, from its 201
}

var client = &http.Client{Timeout: time.Minute}

func post(ctx context.Context, url, contentType, body string, headers map[string]string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(req)
}

func get(ctx context.Context, url string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return response{}, err
	}
	return do(req)
}

func do(req *http.Request) (response, error) {
	res, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	r := response{status: res.StatusCode, header: res.Header, body: b}
	if err == nil && res.StatusCode >= 500 {
		return r, fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, res.StatusCode, b)
	}
	if req.URL.Path == "/orders/checkout" && res.StatusCode == http.StatusCreated {
		var o struct{ ID string }
		if jerr := json.Unmarshal(b, &o); jerr != nil || o.ID == "" {
			return r, fmt.Errorf("checkout 201 without an order id: %s", b)
		}
		r.orderID = o.ID
	}
	return r, err
}

// shopdCmd runs a shopd command against dsn and returns its output; it
// fails the test when the command fails.
func shopdCmd(t *testing.T, dsn string, args ...string) string {
	t.Helper()
	out, err := shopdOutput(t.Context(), dsn, args...)
	if err != nil {
		t.Fatalf("shopd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func shopdOutput(ctx context.Context, dsn string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, shopdBin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "LOG_LEVEL=warn", "DD_TRACE_ENABLED=false")
	return cmd.CombinedOutput()
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
