package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sethvargo/go-limiter/memorystore"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// limitedAdminToken is the admin token of newLimitedEnv's service.
const limitedAdminToken = "limited-admin-token-of-32-characters"

// newLimitedEnv is newEnv's service (unseeded) behind a per-client limit
// of tokens requests per window, with trusted as its proxies.
func newLimitedEnv(t *testing.T, tokens uint64, window time.Duration, trusted ...netip.Prefix) *testEnv {
	t.Helper()
	store, err := memorystore.New(&memorystore.Config{Tokens: tokens, Interval: window})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	tel, stats, logs := telemetrytest.New(t)
	db := postgres.New(pgtest.New(t))
	cfg := testConfig()
	cfg.AdminToken = limitedAdminToken
	h := httpapi.NewServer(httpapi.Deps{Config: cfg, Telemetry: tel, Products: db, Orders: db,
		Reports: postgres.NewReports(db.Pool, 0), Users: db, Tokens: db, DB: db,
		RateLimit: httpapi.RateLimit{Limiter: store, Window: window, TrustedProxies: trusted}})
	srv := newServer(t, h)
	return &testEnv{db: db, srv: srv, tel: tel, stats: stats, logs: logs}
}

var (
	rateLimitField  = regexp.MustCompile(`^"client";r=(\d+);t=(\d+)$`)
	rateLimitPolicy = regexp.MustCompile(`^"client";q=(\d+);w=(\d+)$`)
)

func TestRateLimit(t *testing.T) {
	const missing = "/products/00000000-0000-0000-0000-000000000000"
	t.Run("RefusedBeyondTheBudget", func(t *testing.T) {
		e := newLimitedEnv(t, 2, time.Minute)
		for i, want := range []int{1, 0} {
			res := e.get(t, missing)
			if res.status != http.StatusNotFound {
				t.Fatalf("request %d: %d %s", i, res.status, res.body)
			}
			m := rateLimitField.FindStringSubmatch(res.header.Get("RateLimit"))
			if m == nil || m[1] != strconv.Itoa(want) {
				t.Errorf("request %d: RateLimit %q, want remaining %d", i, res.header.Get("RateLimit"), want)
			}
			if p := rateLimitPolicy.FindStringSubmatch(res.header.Get("RateLimit-Policy")); p == nil || p[1] != "2" || p[2] != "60" {
				t.Errorf("request %d: RateLimit-Policy %q", i, res.header.Get("RateLimit-Policy"))
			}
		}
		res := e.get(t, missing)
		if res.status != http.StatusTooManyRequests {
			t.Fatalf("third request: %d %s", res.status, res.body)
		}
		ra, err := strconv.Atoi(res.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 60 {
			t.Errorf("Retry-After %q", res.header.Get("Retry-After"))
		}
		if m := rateLimitField.FindStringSubmatch(res.header.Get("RateLimit")); m == nil || m[1] != "0" {
			t.Errorf("429's RateLimit %q", res.header.Get("RateLimit"))
		}
		var p struct{ Type, Detail string }
		res.json(t, &p)
		if res.header.Get("Content-Type") != "application/problem+json" || p.Detail == "" {
			t.Errorf("429 body: %s %s", res.header.Get("Content-Type"), res.body)
		}
		e.stats.WaitForSum(t, func(v float64) bool { return v == 1 }, telemetry.MetricHTTPRateLimited,
			"route:/products/{id}", "client_kind:addr")
	})
	t.Run("ProbesExempt", func(t *testing.T) {
		e := newLimitedEnv(t, 1, time.Minute)
		e.get(t, missing)
		if res := e.get(t, missing); res.status != http.StatusTooManyRequests {
			t.Fatalf("not limited: %d", res.status)
		}
		for range 5 {
			for _, path := range []string{"/health", "/ready"} {
				if res := e.get(t, path); res.status != http.StatusOK || res.header.Get("RateLimit") != "" {
					t.Errorf("%s: %d RateLimit=%q", path, res.status, res.header.Get("RateLimit"))
				}
			}
		}
	})
	t.Run("KeyedByVerifiedCredential", func(t *testing.T) {
		// A budget of one request per minute. Each customer's valid tokens
		// share the customer's budget, the admin token has its own, and a
		// bearer value that proves nothing (invented, revoked) is charged
		// to the address: inventing values buys no new budget.
		e := newLimitedEnv(t, 1, time.Minute)
		issue := func(email string) string {
			t.Helper()
			if _, err := e.db.CreateUser(t.Context(), shop.NewUser{Email: email, Name: "Limited", UserType: shop.UserTypeCustomer}); err != nil {
				t.Fatal(err)
			}
			tok, err := e.db.IssueToken(t.Context(), email)
			if err != nil {
				t.Fatal(err)
			}
			return tok.Token
		}
		ada1, bob := issue("ada@example.com"), issue("bob@example.com")
		ada2Tok, err := e.db.IssueToken(t.Context(), "ada@example.com")
		if err != nil {
			t.Fatal(err)
		}
		ada2 := ada2Tok.Token
		revoked := issue("eve@example.com")
		if _, err := e.db.RevokeToken(t.Context(), revoked); err != nil {
			t.Fatal(err)
		}
		get := func(token string) int {
			if token == "" {
				return e.get(t, missing).status
			}
			return e.do(t, "GET", missing, "", "", "Authorization", "Bearer "+token).status
		}
		steps := []struct {
			name, token string
			want        int
		}{
			{"ada's first token", ada1, http.StatusNotFound},
			{"ada's first token again", ada1, http.StatusTooManyRequests},
			{"ada's second token (one budget per customer)", ada2, http.StatusTooManyRequests},
			{"bob's token (a budget of his own)", bob, http.StatusNotFound},
			{"the admin token (a budget of its own)", limitedAdminToken, http.StatusNotFound},
			{"an invented value (charged to the address)", "buyer-a", http.StatusNotFound},
			{"another invented value (same address: spent)", "buyer-b", http.StatusTooManyRequests},
			{"a revoked token (same address: spent)", revoked, http.StatusTooManyRequests},
			{"no credential (same address: spent)", "", http.StatusTooManyRequests},
			{"bob again", bob, http.StatusTooManyRequests},
		}
		for _, st := range steps {
			if s := get(st.token); s != st.want {
				t.Errorf("%s: %d, want %d", st.name, s, st.want)
			}
		}
		for kind, n := range map[string]float64{"buyer": 3, "addr": 3} {
			e.stats.WaitForSum(t, func(v float64) bool { return v == n }, telemetry.MetricHTTPRateLimited, "client_kind:"+kind)
		}
	})
	t.Run("ForwardedForIgnoredUnlessTrusted", func(t *testing.T) {
		e := newLimitedEnv(t, 1, time.Minute)
		if s := e.do(t, "GET", missing, "", "", "X-Forwarded-For", "203.0.113.1").status; s != http.StatusNotFound {
			t.Fatalf("first: %d", s)
		}
		if s := e.do(t, "GET", missing, "", "", "X-Forwarded-For", "203.0.113.2").status; s != http.StatusTooManyRequests {
			t.Errorf("a forged X-Forwarded-For bought a new budget: %d", s)
		}
	})
	t.Run("ForwardedForFromTrustedProxy", func(t *testing.T) {
		e := newLimitedEnv(t, 1, time.Minute, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
		xff := func(v string) int { return e.do(t, "GET", missing, "", "", "X-Forwarded-For", v).status }
		if s := xff("203.0.113.1"); s != http.StatusNotFound {
			t.Fatalf("client 1: %d", s)
		}
		if s := xff("203.0.113.2"); s != http.StatusNotFound {
			t.Errorf("client 2 behind the proxy: %d, want its own budget", s)
		}
		// The client writes the left part: only the right-most untrusted
		// hop counts.
		if s := xff("198.51.100.7, 203.0.113.1"); s != http.StatusTooManyRequests {
			t.Errorf("client 1 with a forged left hop: %d, want 429", s)
		}
		if s := xff("203.0.113.2, 127.0.0.1"); s != http.StatusTooManyRequests {
			t.Errorf("client 2 through a second trusted hop: %d, want 429", s)
		}
	})
	t.Run("Off", func(t *testing.T) {
		e := newEnv(t)
		for range 20 {
			if res := e.get(t, missing); res.status != http.StatusNotFound || res.header.Get("RateLimit") != "" {
				t.Fatalf("%d RateLimit=%q", res.status, res.header.Get("RateLimit"))
			}
		}
	})
}

// TestRateLimitStormSparesHealth sends a storm of requests that a limit of
// one per minute refuses, from clients that ignore Retry-After and retry at
// once, and measures GET /health's p99 during the storm against idle: the
// 429 path costs a hash and a map look-up, and the probes are never
// limited, so /health stays fast.
func TestRateLimitStormSparesHealth(t *testing.T) {
	e := newLimitedEnv(t, 1, time.Minute)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(path string) (int, time.Duration) {
		start := time.Now()
		res, err := client.Get(e.srv.URL + path)
		if err != nil {
			t.Error(err)
			return 0, 0
		}
		_, _ = io.Copy(io.Discard, res.Body) // drained, so that the connection is reused
		_ = res.Body.Close()
		return res.StatusCode, time.Since(start)
	}
	p99 := func() time.Duration {
		const n = 400
		d := make([]time.Duration, 0, n)
		for range n {
			status, took := get("/health")
			if status != http.StatusOK {
				t.Fatalf("/health: %d", status)
			}
			d = append(d, took)
			time.Sleep(time.Millisecond)
		}
		slices.Sort(d)
		return d[n*99/100]
	}
	for range 50 { // warm up connections
		get("/health")
	}
	idle := p99()

	const stormClients = 16
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var refused, other atomic.Int64
	for range stormClients {
		wg.Go(func() {
			for ctx.Err() == nil {
				status, _ := get("/products/00000000-0000-0000-0000-000000000000")
				if status == http.StatusTooManyRequests {
					refused.Add(1)
				} else if ctx.Err() == nil {
					other.Add(1)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	start, before := time.Now(), refused.Load()
	storm := p99()
	rate := float64(refused.Load()-before) / time.Since(start).Seconds()
	stop()
	wg.Wait()

	t.Logf("/health p99 idle %v, during a 429 storm of %d clients (%.0f refusals/s, %d answered) %v: ratio %.1f",
		idle, stormClients, rate, other.Load(), storm, float64(storm)/float64(idle))
	if refused.Load() < 1000 || other.Load() > 1 {
		t.Fatalf("not a storm of 429s: %d refused, %d answered", refused.Load(), other.Load())
	}
	// Generous: the storm's clients and the server share the test's CPUs
	// (two here, with other work on them), so /health waits for a core
	// whatever the 429 path costs; what fails this is /health limited or
	// queued behind the refused requests' work.
	if bound := max(100*idle, 250*time.Millisecond); storm > bound {
		t.Errorf("/health p99 %v during the storm, beyond %v (idle %v)", storm, bound, idle)
	}
}
