package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/shoplab/shoplab/internal/moncheck"
	"github.com/shoplab/shoplab/service/postgres"
)

// The scale scenarios: hostile searches over a large catalogue, the heavy
// user's order history under load, bulk imports beside checkouts.

// scaled is full at full scale and compressed in compressed time.
func scaled(e *Env, full, compressed int) int {
	if e.Factor > 1 {
		return compressed
	}
	return full
}

// withPool runs f on a pool of the run's database (not through the proxy).
func withPool(ctx context.Context, e *Env, f func(*pgxpool.Pool) error) error {
	pool, err := pgxpool.New(ctx, e.DB.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return f(pool)
}

// bulkCatalogueSQL adds $1 products whose names and descriptions are hex
// digests: no ordinary search term ("cable", "desk", "lamp", "mouse")
// shares a trigram with them, so the trigram indexes keep those searches
// fast, while a 2-character or wildcard-only term, which has no trigram,
// reads the whole table.
const bulkCatalogueSQL = `INSERT INTO products (name, description, price, inventory)
SELECT md5(g::text), md5((g * 7)::text) || ' ' || md5((g * 13)::text), 1 + g % 500, 10
FROM generate_series(1, $1::int) g`

// searchAbuse: expensive and hostile searches at a high rate (problem 8's
// "search returns 500s") over a catalogue grown large. 2-character and
// wildcard-only terms defeat the trigram indexes and scan the table past
// SEARCH_STATEMENT_TIMEOUT (low here): 503 + Retry-After; over-long terms,
// control characters, NULs, invalid UTF-8 and bad percent-encoding: 400.
// Never a 500.
func searchAbuse() *Scenario {
	return &Scenario{
		Name:       "search-abuse",
		Incident:   "8, search returns 500s (symptom search-errors)",
		Summary:    "2-character, wildcard-only, huge and control-character searches at a high rate over a large catalogue",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 3 * time.Minute, Recovery: 6 * time.Minute},
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 5 * time.Second, Recovery: 7 * time.Second},
		Shopd:      []string{"SEARCH_STATEMENT_TIMEOUT=25ms"},
		Setup: func(ctx context.Context, e *Env) error {
			n := scaled(e, 400_000, 60_000)
			err := withPool(ctx, e, func(p *pgxpool.Pool) error {
				if _, err := p.Exec(ctx, bulkCatalogueSQL, n); err != nil {
					return err
				}
				_, err := p.Exec(ctx, `VACUUM (ANALYZE) products`)
				return err
			})
			if err == nil {
				e.Note("setup: %d more products (hex names), SEARCH_STATEMENT_TIMEOUT=25ms", n)
			}
			return err
		},
		Load:      []Load{healthy(15)},
		FaultLoad: []Load{{Name: "abuse", Rate: 40, Kinds: abusiveSearches}},
	}
}

func abusiveSearches(e *Env) []moncheck.Kind {
	base := e.URL() + "/products?q="
	q := func(name string, weight int, terms ...string) moncheck.Kind {
		return moncheck.Kind{Name: name, Weight: weight, Target: func(n int64, t *vegeta.Target) {
			t.Method, t.URL = "GET", base+terms[n%int64(len(terms))]
		}}
	}
	return []moncheck.Kind{
		q("2 characters", 6, "a1", "e4", "0f", "9c", "bd", "37"),
		q("wildcards only", 4, url.QueryEscape("%_%"), url.QueryEscape("__"), url.QueryEscape(`%\%`), url.QueryEscape("%%%%%%")),
		q("huge", 2, url.QueryEscape(strings.Repeat("ab%_", 2_000))),
		q("control characters", 2, "abc%01def", "%1b%5b2J", "line%0abreak", "%7fdel"),
		q("nul", 1, "abc%00"),
		q("invalid utf-8", 1, "%ff%fe%fd"),
		q("bad encoding", 1, "%zz%"),
	}
}

// orderHistoryAtScale: the heavy user of problem 1 grown to 100,000 orders
// (compressed 10,000) read under load, by pages of ?limit= and by keyset
// (the Link rel="next" cursors): the order-history-latency monitor stays
// quiet. The fault is the load.
func orderHistoryAtScale() *Scenario {
	var mu sync.Mutex
	var user string
	return &Scenario{
		Name:       "order-history-at-scale",
		Incident:   "1, slow order queries (the heavy user with 100,000 orders)",
		Summary:    "the heavy user with 100,000 orders (compressed 10,000) read by pages and keyset cursors under load",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 10 * time.Minute, Recovery: 1 * time.Minute},
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 7 * time.Second, Recovery: 4 * time.Second},
		Setup: func(ctx context.Context, e *Env) error {
			n := scaled(e, 100_000, 10_000)
			return withPool(ctx, e, func(p *pgxpool.Pool) error {
				id, err := postgres.New(p).SeedBulkUser(ctx, "scale.user@example.com", "Scale User", n)
				if err == nil {
					mu.Lock()
					user = id
					mu.Unlock()
					e.Note("setup: scale.user@example.com with %d orders", n)
				}
				return err
			})
		},
		Load: []Load{healthy(10)},
		FaultLoad: []Load{{Name: "history", Rate: 30, Kinds: func(e *Env) []moncheck.Kind {
			mu.Lock()
			u := user
			mu.Unlock()
			first := e.URL() + "/orders/" + u
			pages := keysetPages(e, first+"?limit=100", 50)
			e.Note("history: %d keyset pages of limit=100 followed from Link rel=next", len(pages))
			return []moncheck.Kind{
				{Name: "first page", Weight: 3, Target: func(n int64, t *vegeta.Target) {
					t.Method, t.URL = "GET", first+[]string{"?limit=20", "?limit=50", "?limit=100"}[n%3]
				}},
				{Name: "page of 500", Weight: 1, Target: func(n int64, t *vegeta.Target) { t.Method, t.URL = "GET", first+"?limit=500" }},
				{Name: "keyset page", Weight: 6, Target: func(n int64, t *vegeta.Target) {
					t.Method, t.URL = "GET", pages[n%int64(len(pages))]
				}},
			}
		}}},
	}
}

// keysetPages follows Link rel="next" from start for at most n pages and
// returns their URLs (start first).
func keysetPages(e *Env, start string, n int) []string {
	out := []string{start}
	next := start
	for len(out) < n {
		resp, err := http.Get(next)
		if err != nil {
			break
		}
		_ = resp.Body.Close()
		link := nextLink(resp.Header.Get("Link"))
		if link == "" {
			break
		}
		if strings.HasPrefix(link, "/") {
			link = e.URL() + link
		}
		out = append(out, link)
		next = link
	}
	return out
}

// nextLink is the URL of rel="next" in a Link header, or "".
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		u, params, ok := strings.Cut(part, ";")
		if ok && strings.Contains(params, `rel="next"`) {
			return strings.Trim(strings.TrimSpace(u), "<>")
		}
	}
	return ""
}

// importFlood: concurrent 100,000-row imports (compressed 10,000) while
// buyers check out: the import streams with COPY on the main pool's
// connections, checkout keeps its own pool and its p99.
func importFlood() *Scenario {
	return &Scenario{
		Name:       "import-flood",
		Incident:   "3, import takes minutes (concurrent bulk imports beside checkouts)",
		Summary:    "concurrent 100,000-row imports (compressed 10,000) while buyers check out",
		Full:       Phases{Healthy: 30 * time.Second, Fault: 5 * time.Minute, Recovery: 2 * time.Minute},
		Compressed: Phases{Healthy: 4 * time.Second, Fault: 7 * time.Second, Recovery: 4 * time.Second},
		Load:       []Load{healthy(10), buyers("buyers", 10, nil)},
		FaultLoad:  []Load{{Name: "imports", Rate: 3, Kinds: importKinds}},
	}
}

// importKinds is one NDJSON import of 100,000 rows (compressed 10,000),
// the same body each time (no SKU: every import adds its rows).
func importKinds(e *Env) []moncheck.Kind {
	rows := scaled(e, 100_000, 10_000)
	var b bytes.Buffer
	for i := range rows {
		fmt.Fprintf(&b, `{"name":"Flood product %d","description":"bulk import under load","price":%d.25,"inventory":%d}`+"\n", i, 1+i%400, i%50)
	}
	body := b.Bytes()
	return []moncheck.Kind{{Name: fmt.Sprintf("import %d rows", rows), Weight: 1, Target: func(n int64, t *vegeta.Target) {
		t.Method, t.URL, t.Body = "POST", e.URL()+"/admin/products/import", body
		t.Header = http.Header{"Content-Type": {"application/x-ndjson"}, "Authorization": {"Bearer " + AdminToken}}
	}}}
}
