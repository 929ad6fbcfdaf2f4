package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/moncheck"
	"github.com/shoplab/shoplab/service/postgres"
)

// The scenarios. Each is a declaration: load, fault, phases; its
// expectations are in expectations/<name>.json. Add one here (or in a file
// of its own) and list it in Scenarios.

// healthy is the monitors-check mix at rate: the shop's ordinary traffic.
func healthy(rate int) Load {
	return Load{Name: "shop", Rate: rate, Kinds: func(e *Env) []moncheck.Kind {
		return moncheck.HealthyMix(e.URL(), AdminToken, e.Fixture)
	}}
}

// buyers check out one unit of product(e) (every buyer the same product:
// a flash sale) or, with product nil, of the in-stock products in turn.
func buyers(name string, rate int, product func(e *Env) string) Load {
	return Load{Name: name, Rate: rate, Kinds: func(e *Env) []moncheck.Kind {
		fx := e.Fixture
		return []moncheck.Kind{{Name: "checkout", Weight: 1, Target: func(n int64, t *vegeta.Target) {
			p := fx.Products[(n+3)%int64(len(fx.Products))]
			if product != nil {
				p = product(e)
			}
			t.Method, t.URL, t.Header = "POST", e.URL()+"/orders/checkout", moncheck.JSONHeader()
			t.Header.Set("Idempotency-Key", fmt.Sprintf("chaos-%s-%d-%d", name, time.Now().UnixNano(), n))
			t.Body = moncheck.CheckoutBody(fx.Users[n%int64(len(fx.Users))], p, 1, "")
		}}}
	}}
}

// holder is another PostgreSQL session that holds locks until released.
type holder struct {
	mu   sync.Mutex
	stop chan struct{}
	done chan struct{}
}

// hold runs, until release, rounds of: open a transaction in a session of
// its own, run stmt (which takes the lock), keep it for each (or until
// release), roll back. The first round's lock is held when hold returns.
func (h *holder) hold(ctx context.Context, e *Env, each time.Duration, stmt string, args ...any) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stop, h.done = make(chan struct{}), make(chan struct{})
	round := func() (pgx.Tx, *pgx.Conn, error) {
		c, err := e.Session(ctx)
		if err != nil {
			return nil, nil, err
		}
		tx, err := c.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, stmt, args...)
		}
		if err != nil {
			_ = c.Close(context.WithoutCancel(ctx))
			return nil, nil, err
		}
		return tx, c, nil
	}
	tx, c, err := round()
	if err != nil {
		close(h.done)
		return err
	}
	e.Note("fault session holds: %s (rounds of %s)", stmt, each)
	go func() {
		defer close(h.done)
		for {
			select {
			case <-h.stop:
			case <-ctx.Done():
			case <-time.After(each):
			}
			_ = tx.Rollback(context.WithoutCancel(ctx))
			_ = c.Close(context.WithoutCancel(ctx))
			select {
			case <-h.stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond): // the waiters get through, briefly
			}
			if tx, c, err = round(); err != nil {
				e.Note("fault session: %v", err)
				return
			}
		}
	}()
	return nil
}

// release ends the holding and waits for the last rollback.
func (h *holder) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop == nil {
		return errors.New("nothing held")
	}
	close(h.stop)
	<-h.done
	h.stop = nil
	return nil
}

// lockHolder: another session holds the flash-sale product's row (SELECT …
// FOR UPDATE) for 20 s at a time during the sale, longer than checkout's
// lock_timeout (2 s): the checkouts of that product wait and time out.
func lockHolder() *Scenario {
	h := &holder{}
	hot := func(e *Env) string { return e.Fixture.Products[0] }
	return &Scenario{
		Name:     "lock-holder",
		Incident: "4, checkout sporadically takes 15+ s (symptom checkout-latency)",
		Summary:  "another session holds the flash-sale product's row (SELECT ... FOR UPDATE) 20 s at a time",
		// Full scale: checkout-lock-wait (avg over 5 min, recovery below
		// 500 ms) was OK again exactly 5 min after the heal; 6 min of
		// recovery leave a margin.
		Full:       Phases{Healthy: 30 * time.Second, Fault: 3 * time.Minute, Recovery: 6 * time.Minute},
		Compressed: Phases{Healthy: 5 * time.Second, Fault: 7 * time.Second, Recovery: 9 * time.Second},
		Load:       []Load{healthy(15), buyers("flash sale", 6, hot)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error {
				return h.hold(ctx, e, min(20*time.Second, e.Phases.Fault),
					"SELECT id FROM products WHERE id = $1 FOR UPDATE", hot(e))
			},
			Heal: func(context.Context, *Env) error { return h.release() },
		},
	}
}

// poolExhaustion: another session takes ACCESS EXCLUSIVE on products (a
// hand-run ALTER, a VACUUM FULL): every statement that reads products waits
// for it and holds its pool connection meanwhile, until the small main pool
// (DB_MAX_CONNS=8) has none left.
func poolExhaustion() *Scenario {
	h := &holder{}
	return &Scenario{
		Name:       "pool-exhaustion",
		Incident:   "8, the database spikes at 9 am (symptom database-spike)",
		Summary:    "statements waiting on a table lock hold every main-pool connection (DB_MAX_CONNS=8)",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 3 * time.Minute, Recovery: 5 * time.Minute},
		Compressed: Phases{Healthy: 5 * time.Second, Fault: 7 * time.Second, Recovery: 7 * time.Second},
		Shopd:      []string{"DB_MAX_CONNS=8"},
		Load:       []Load{healthy(20)},
		Fault: Fault{
			Inject: func(ctx context.Context, e *Env) error {
				return h.hold(ctx, e, e.Phases.Fault, "LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
			},
			Heal: func(context.Context, *Env) error { return h.release() },
		},
	}
}

// badClients: a flood of malformed and hostile requests (the fuzz corpus
// of service/httpapi/testdata/fuzz and hand-written hostile inputs) beside
// ordinary traffic: shopd answers them all 4xx and no monitor fires.
func badClients() *Scenario {
	return &Scenario{
		Name:       "bad-clients",
		Incident:   "2, product creation errors (the one error format under abuse)",
		Summary:    "a flood of malformed and hostile requests: 4xx only, and no alert",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 3 * time.Minute, Recovery: 2 * time.Minute},
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 8 * time.Second, Recovery: 5 * time.Second},
		Load:       []Load{healthy(15)},
		FaultLoad:  []Load{{Name: "hostile", Rate: 60, Kinds: hostileKinds}},
	}
}

// fuzzInputs reads the FuzzCreateProduct corpus: (body, content type, v2).
func fuzzInputs() [][3]string {
	files, _ := filepath.Glob(filepath.Join(repoRoot(), "service/httpapi/testdata/fuzz/FuzzCreateProduct/*"))
	var out [][3]string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var vals []string
		for _, line := range strings.Split(string(data), "\n")[1:] {
			line = strings.TrimSpace(line)
			open := strings.IndexByte(line, '(')
			if open < 0 || !strings.HasSuffix(line, ")") {
				continue
			}
			v := line[open+1 : len(line)-1]
			if s, err := strconv.Unquote(v); err == nil {
				v = s
			}
			vals = append(vals, v)
		}
		if len(vals) == 3 {
			out = append(out, [3]string{vals[0], vals[1], vals[2]})
		}
	}
	return out
}

// noControl drops the bytes Go's client refuses in a header value.
func noControl(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func hostileKinds(e *Env) []moncheck.Kind {
	base := e.URL()
	fx := e.Fixture
	corpus := fuzzInputs()
	// Just over MAX_BODY_BYTES (1 MiB): shopd answers 413 after reading
	// the limit; far bigger bodies get the connection closed mid-write.
	big := []byte(`{"name":"` + strings.Repeat("x", 1<<20) + `","price":1,"inventory":1}`)
	post := func(name, path, ctype string, body []byte) moncheck.Kind {
		return moncheck.Kind{Name: name, Weight: 2, Target: func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Body = "POST", base+path, body
			if ctype != "" {
				t.Header = map[string][]string{"Content-Type": {ctype}}
			}
		}}
	}
	get := func(name, path string) moncheck.Kind {
		return moncheck.Kind{Name: name, Weight: 2, Target: func(n int64, t *vegeta.Target) { t.Method, t.URL = "GET", base+path }}
	}
	kinds := []moncheck.Kind{
		{Name: "fuzz corpus", Weight: 3, Target: func(n int64, t *vegeta.Target) {
			if len(corpus) == 0 {
				t.Method, t.URL, t.Body = "POST", base+"/products", []byte("0")
				return
			}
			c := corpus[n%int64(len(corpus))]
			path := "/products"
			if c[2] == "true" {
				path = "/products/v2"
			}
			t.Method, t.URL, t.Body = "POST", base+path, []byte(c[0])
			if ct := noControl(c[1]); ct != "" {
				t.Header = map[string][]string{"Content-Type": {ct}}
			}
		}},
		post("truncated json", "/products", "application/json", []byte(`{"name":"x","price":`)),
		post("wrong types", "/products", "application/json", []byte(`{"name":["a"],"price":{},"inventory":"1"}`)),
		post("unknown field", "/products", "application/json", []byte(`{"name":"x","price":1,"inventory":1,"admin":true}`)),
		post("negative price", "/products/v2", "application/json", []byte(`{"name":"x","description":"d","price":-1,"inventory":-5}`)),
		post("not json", "/products", "text/plain", []byte(`DROP TABLE products;`)),
		post("invalid utf-8", "/products", "application/json", []byte("\xff\xfe")),
		{Name: "oversize body", Weight: 1, Target: func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Body, t.Header = "POST", base+"/products", big, moncheck.JSONHeader()
		}},
		post("checkout empty cart", "/orders/checkout", "application/json", []byte(`{"userId":"`+fx.Users[0]+`","items":[]}`)),
		post("checkout absurd quantity", "/orders/checkout", "application/json", []byte(`{"userId":"`+fx.Users[0]+`","items":[{"productId":"`+fx.Products[0]+`","quantity":-3}]}`)),
		post("checkout unknown product", "/orders/checkout", "application/json", []byte(`{"userId":"`+fx.Users[0]+`","items":[{"productId":"00000000-0000-0000-0000-000000000000","quantity":1}]}`)),
		post("import without token", "/admin/products/import", "application/json", []byte(`{"products":[]}`)),
		{Name: "import wrong token", Weight: 2, Target: func(n int64, t *vegeta.Target) {
			t.Method, t.URL, t.Body = "POST", base+"/admin/products/import", []byte(`{"products":[1,"x",null]}`)
			t.Header = map[string][]string{"Content-Type": {"application/json"}, "Authorization": {"Bearer guess-" + strconv.FormatInt(n, 10)}}
		}},
		post("import bad rows", "/admin/products/import?token="+AdminToken, "text/csv", []byte("name,price,inventory,inventory\n")),
		get("product not a uuid", "/products/1%27%20OR%201=1--"),
		get("orders not a uuid", "/orders/%3Cscript%3E"),
		get("unknown user's orders", "/orders/00000000-0000-0000-0000-000000000000"),
		get("report not a uuid", "/reports/orders/not-a-uuid%27%3B--"),
		get("bad page", "/products?page=-1&limit=999999999999"),
		get("bad cursor", "/orders/"+fx.Heavy+"?cursor=%00%ff"),
		get("no such route", "/wp-admin/install.php"),
		{Name: "wrong method", Weight: 2, Target: func(n int64, t *vegeta.Target) { t.Method, t.URL = "DELETE", base+"/products" }},
	}
	return kinds
}

// reportStorm: the 9 am spike: many clients download a large report (a
// customer with many orders, seeded in Setup) while buyers check out. The
// report limit answers 429 + Retry-After beyond REPORTS_MAX_CONCURRENT and
// checkout, on its own pool, stays fast.
func reportStorm() *Scenario {
	var mu sync.Mutex
	var storm string
	return &Scenario{
		Name:       "report-storm",
		Incident:   "6, reports freeze the server (and 8's database spike at 9 am)",
		Summary:    "many clients download a large report while buyers check out",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 5 * time.Minute, Recovery: 10 * time.Minute},
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 7 * time.Second, Recovery: 14 * time.Second},
		Shopd:      []string{"REPORTS_MAX_CONCURRENT=2"},
		Setup: func(ctx context.Context, e *Env) error {
			n := 100_000
			if e.Factor > 1 {
				n = 5_000
			}
			pool, err := pgxpool.New(ctx, e.DB.URL)
			if err != nil {
				return err
			}
			defer pool.Close()
			id, err := postgres.New(pool).SeedBulkUser(ctx, "storm.user@example.com", "Storm User", n)
			if err != nil {
				return err
			}
			mu.Lock()
			storm = id
			mu.Unlock()
			e.Note("setup: storm.user@example.com with %d orders", n)
			return nil
		},
		Load: []Load{healthy(10), buyers("buyers", 10, nil)},
		FaultLoad: []Load{{Name: "storm", Rate: 20, Kinds: func(e *Env) []moncheck.Kind {
			mu.Lock()
			user := storm
			mu.Unlock()
			return []moncheck.Kind{{Name: "report download", Weight: 1, Target: func(n int64, t *vegeta.Target) {
				t.Method, t.URL = "GET", e.URL()+"/reports/orders/"+user+"?format=csv"
			}}}
		}}},
	}
}

// repoRoot walks up from the working directory to go.mod ("." if none).
func repoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "."
		}
		dir = parent
	}
}

// RepoRoot is the repository root as found from the working directory.
func RepoRoot() string { return repoRoot() }
