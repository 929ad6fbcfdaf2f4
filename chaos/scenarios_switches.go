package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/moncheck"
	"github.com/shoplab/shoplab/service/postgres"
)

// The defect switches (docs/switches.md), one scenario each: the fault
// phase turns the switch on at runtime (PUT /admin/switches/{name} with the
// admin token), the recovery phase turns it off again, so the healthy and
// recovery phases run the fixed code under the same load. The switch is the
// original's defect itself, not a simulation of its symptoms.

// switchPhases are the phases of a switch scenario: the signature is per
// request, so short phases show it; http-5xx-rate's 5-minute window (5 s
// compressed) needs the recovery to outlast it.
var (
	switchFull       = Phases{Healthy: 30 * time.Second, Fault: 3 * time.Minute, Recovery: 6 * time.Minute}
	switchCompressed = Phases{Healthy: 3 * time.Second, Fault: 4 * time.Second, Recovery: 8 * time.Second}
)

// flipSwitch turns the defect switch name on or off in every shopd of the
// run, through the admin endpoint.
func flipSwitch(ctx context.Context, e *Env, name string, on bool) error {
	for _, s := range e.Shopds() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.URL+"/admin/switches/"+name,
			strings.NewReader(fmt.Sprintf(`{"on":%t}`, on)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("PUT /admin/switches/%s: %s: %s", name, resp.Status, body)
		}
	}
	e.Note("switch %s turned %s at runtime (PUT /admin/switches/%s)", name, map[bool]string{true: "on", false: "off"}[on], name)
	return nil
}

// switchFault is the fault of a switch scenario: on for the fault phase,
// off for the recovery; after, when set, runs once the switch is on.
func switchFault(name string, after func(ctx context.Context, e *Env)) Fault {
	return Fault{
		Inject: func(ctx context.Context, e *Env) error {
			if err := flipSwitch(ctx, e, name, true); err != nil {
				return err
			}
			if after != nil {
				after(ctx, e)
			}
			return nil
		},
		Heal: func(ctx context.Context, e *Env) error { return flipSwitch(ctx, e, name, false) },
	}
}

// switchNPlusOne: order history reads each order's items with a statement
// of its own. The heavy user's 120 orders, whole (the default limit): 121
// statements a request instead of 2.
func switchNPlusOne() *Scenario {
	return &Scenario{
		Name:       "switch-n-plus-one",
		Incident:   "1, slow order queries (the N+1 of the original)",
		Summary:    "the n-plus-one switch: a statement per order in GET /orders/{userId}",
		Full:       switchFull,
		Compressed: switchCompressed,
		Load: []Load{healthy(10), {Name: "history", Rate: 20, Kinds: func(e *Env) []moncheck.Kind {
			return []moncheck.Kind{{Name: "heavy user, all orders", Weight: 1, Target: func(n int64, t *vegeta.Target) {
				t.Method, t.URL = "GET", e.URL()+"/orders/"+e.Fixture.Heavy
			}}}
		}}},
		Fault: switchFault("n-plus-one", nil),
	}
}

// switchUnlockedStock: checkout reads stock, checks it in Go and writes
// read - quantity without a row lock. Flash-sale buyers of one product
// overwrite each other's sales (lost updates), and buyers of a scarce
// product are sold units that are not there: the stock invariant breaks.
func switchUnlockedStock() *Scenario {
	var mu sync.Mutex
	var scarce string
	return &Scenario{
		Name:       "switch-unlocked-stock",
		Incident:   "4, overselling under concurrent checkout",
		Summary:    "the unlocked-stock switch: read, check, write without a lock under a flash sale",
		Full:       switchFull,
		Compressed: switchCompressed,
		Setup: func(ctx context.Context, e *Env) error {
			return withPool(ctx, e, func(p *pgxpool.Pool) error {
				var id string
				err := p.QueryRow(ctx, `INSERT INTO products (name, description, price, inventory)
VALUES ('Chaos scarce product', 'a few units for the flash sale', 9.99, 40) RETURNING id::text`).Scan(&id)
				mu.Lock()
				scarce = id
				mu.Unlock()
				return err
			})
		},
		// Buyers in bursts, as the original's concurrency script: loads
		// of the same rate started together send their requests at the
		// same instants (10 at once, 5 times a second), throughout, so
		// the healthy and recovery phases show the lock holding under the
		// same contention. 50 a second on one product is half of its
		// ceiling (about 100 a second, docs/scaling.md): at 100 the
		// healthy phase itself queued on the row lock whenever the
		// machine was busy, and the checkout monitors fired before the
		// fault. The scarce product's 40 units go on sale with the fault,
		// 5 buyers at once.
		Load:      append([]Load{healthy(5)}, burst("flash sale", 10, 5, func(e *Env) string { return e.Fixture.Products[0] })...),
		FaultLoad: burst("scarce", 5, 8, func(*Env) string { mu.Lock(); defer mu.Unlock(); return scarce }),
		Fault:     switchFault("unlocked-stock", nil),
	}
}

// switchRawErrors: errors with an internal cause go to the client as 500s
// with the driver's text. A trickle of product creations with a SKU that
// another product has is a 409 problem document with the fix, and a 500
// with PostgreSQL's unique-violation message with the switch: problem 2.
func switchRawErrors() *Scenario {
	body := []byte(`{"name":"Chaos duplicate","description":"same sku again","price":5,"inventory":1,"sku":"CHAOS-TAKEN"}`)
	return &Scenario{
		Name:       "switch-raw-errors",
		Incident:   "2, product creation errors (driver errors sent to the client)",
		Summary:    "the raw-errors switch: a taken SKU answered 500 with the driver's text instead of 409",
		Full:       switchFull,
		Compressed: switchCompressed,
		Setup: func(ctx context.Context, e *Env) error {
			return withPool(ctx, e, func(p *pgxpool.Pool) error {
				_, err := p.Exec(ctx, `INSERT INTO products (name, description, price, inventory, sku)
VALUES ('Chaos taken', 'holds the sku', 5, 1, 'CHAOS-TAKEN')`)
				return err
			})
		},
		Load: []Load{healthy(10), {Name: "taken sku", Rate: 5, Kinds: func(e *Env) []moncheck.Kind {
			return []moncheck.Kind{{Name: "create product with a taken sku", Weight: 1, Target: func(n int64, t *vegeta.Target) {
				t.Method, t.URL, t.Body, t.Header = "POST", e.URL()+"/products/v2", body, moncheck.JSONHeader()
			}}}
		}}},
		Fault: switchFault("raw-errors", func(ctx context.Context, e *Env) {
			// What the client reads now: the internals.
			resp, err := http.Post(e.URL()+"/products/v2", "application/json", bytes.NewReader(body))
			if err != nil {
				e.Note("raw-errors probe: %v", err)
				return
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			_ = resp.Body.Close()
			e.Note("raw-errors probe: %s %s", resp.Status, strings.TrimSpace(string(b)))
		}),
	}
}

// switchRowByRowImport: the bulk import inserts one product per round trip
// instead of COPY. Imports of 1,000 rows (20,000 at full scale) all run
// long: import.duration grows with rows x round trip. Compressed, an
// import sent just before the heal still runs row by row to its end and
// must end within the recovery signature's first 4.5 s (SignatureLag and
// skip_s): 2,000 rows took up to 3.6 s, and longer beside another
// scenario; 1,000 take half that and still make thousands of statements
// in the fault.
func switchRowByRowImport() *Scenario {
	return &Scenario{
		Name:       "switch-row-by-row-import",
		Incident:   "3, import takes minutes (one INSERT per product)",
		Summary:    "the row-by-row-import switch: an INSERT per row instead of COPY",
		Full:       switchFull,
		Compressed: switchCompressed,
		Load: []Load{healthy(10), {Name: "imports", Rate: 2, Kinds: func(e *Env) []moncheck.Kind {
			rows := scaled(e, 20_000, 1_000)
			var b bytes.Buffer
			for i := range rows {
				fmt.Fprintf(&b, `{"name":"Row import %d","description":"one by one","price":%d.10,"inventory":%d}`+"\n", i, 1+i%90, i%30)
			}
			body := b.Bytes()
			return []moncheck.Kind{{Name: fmt.Sprintf("import %d rows", rows), Weight: 1, Target: func(n int64, t *vegeta.Target) {
				t.Method, t.URL, t.Body = "POST", e.URL()+"/admin/products/import", body
				t.Header = http.Header{"Content-Type": {"application/x-ndjson"}, "Authorization": {"Bearer " + AdminToken}}
			}}}
		}}},
		Fault: switchFault("row-by-row-import", nil),
	}
}

// switchReportInProcess: a download loads every line into memory and
// builds the whole text before its first byte. Downloads of a customer
// with 20,000 orders (100,000 at full scale): shopd's memory grows.
func switchReportInProcess() *Scenario {
	var mu sync.Mutex
	var user string
	return &Scenario{
		Name:       "switch-report-in-process",
		Incident:   "6, reports freeze the server (the whole report in memory)",
		Summary:    "the report-in-process switch: every download built whole in memory before its first byte",
		Full:       switchFull,
		Compressed: switchCompressed,
		Shopd:      []string{"REPORTS_MAX_CONCURRENT=3"},
		Setup: func(ctx context.Context, e *Env) error {
			n := scaled(e, 100_000, 20_000)
			return withPool(ctx, e, func(p *pgxpool.Pool) error {
				id, err := postgres.New(p).SeedBulkUser(ctx, "memory.user@example.com", "Memory User", n)
				mu.Lock()
				user = id
				mu.Unlock()
				if err == nil {
					e.Note("setup: memory.user@example.com with %d orders", n)
				}
				return err
			})
		},
		Load: []Load{healthy(10), {Name: "downloads", Rate: 2, Kinds: func(e *Env) []moncheck.Kind {
			mu.Lock()
			u := user
			mu.Unlock()
			return []moncheck.Kind{{Name: "csv download", Weight: 1, Target: func(n int64, t *vegeta.Target) {
				t.Method, t.URL = "GET", e.URL()+"/reports/orders/"+u+"?format=csv"
			}}}
		}}},
		Fault: switchFault("report-in-process", nil),
	}
}

// burst is n loads of buyers of product at rate each: started together,
// their requests leave at the same instants, n at once.
func burst(name string, n, rate int, product func(e *Env) string) []Load {
	var out []Load
	for i := range n {
		out = append(out, buyers(fmt.Sprintf("%s %d", name, i+1), rate, product))
	}
	return out
}
