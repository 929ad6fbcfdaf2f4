package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// fixtures are the ids the workloads address, looked up (or created) in
// each fresh seeded database.
type fixtures struct {
	heavyUser string // heavy.user@example.com: 120 seeded orders
	buyer     string // user4@example.com, who buys in the checkout workload
	product   string // "Compare Endless": inventory enough for any run
}

// workload is one HTTP request shape, sent over and over by one client.
type workload struct {
	name string
	// request builds the i-th request against the service at url.
	request func(ctx context.Context, url string, fx fixtures, i int) (*http.Request, error)
	want    int // the status every response must have
}

// workloads cover the hot paths: product list, one product, search, order
// history, checkout, and a small import. The import runs last: each adds
// 100 products, which the list and search workloads would otherwise see
// growing within a round.
var workloads = []workload{
	{"products_list", getReq("/products?limit=20"), http.StatusOK},
	{"product_get", func(ctx context.Context, url string, fx fixtures, _ int) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, url+"/products/"+fx.product, nil)
	}, http.StatusOK},
	{"search", getReq("/products?q=wireless&limit=20"), http.StatusOK},
	{"order_history", func(ctx context.Context, url string, fx fixtures, _ int) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, url+"/orders/"+fx.heavyUser, nil)
	}, http.StatusOK},
	{"checkout", func(ctx context.Context, url string, fx fixtures, _ int) (*http.Request, error) {
		body, err := json.Marshal(map[string]any{"userId": fx.buyer, "items": []map[string]any{{"productId": fx.product, "quantity": 1}}})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/orders/checkout", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		// A fresh key per request: every checkout writes its key, as a
		// client's retry-safe checkout does (a build that ignores the
		// header just buys).
		var k [16]byte
		_, _ = rand.Read(k[:])
		req.Header.Set("Idempotency-Key", hex.EncodeToString(k[:]))
		return req, nil
	}, http.StatusCreated},
	{"import_100", func(ctx context.Context, url string, _ fixtures, i int) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/admin/products/import", bytes.NewReader(importBody(i, 100)))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		return req, nil
	}, http.StatusCreated},
}

func getReq(path string) func(context.Context, string, fixtures, int) (*http.Request, error) {
	return func(ctx context.Context, url string, _ fixtures, _ int) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
	}
}

// importBody is the i-th import: n products in a JSON object's "products"
// array, named apart from every other request's.
func importBody(i, n int) []byte {
	type row struct {
		Name        string      `json:"name"`
		Description string      `json:"description"`
		Price       json.Number `json:"price"`
		Inventory   int         `json:"inventory"`
	}
	rows := make([]row, n)
	for j := range rows {
		rows[j] = row{
			Name:        fmt.Sprintf("Compare Import %d-%d", i, j),
			Description: fmt.Sprintf("Row %d of compare import %d", j, i),
			Price:       json.Number(fmt.Sprintf("%d.%02d", 10+j%500, j%100)),
			Inventory:   10 + j%100,
		}
	}
	b, _ := json.Marshal(map[string][]row{"products": rows}) // plain strings and numbers: cannot fail
	return b
}

// loadFixtures finds the seeded users and creates the endless product, in
// SQL that works on the schema of any revision since the first.
func loadFixtures(ctx context.Context, dsn string) (fixtures, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fixtures{}, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var fx fixtures
	// The users table is "customers" since the users split; "users" before.
	var table string
	if err := c.QueryRow(ctx, `SELECT coalesce(to_regclass('customers'), to_regclass('users'))::text`).Scan(&table); err != nil {
		return fx, fmt.Errorf("no customers or users table: %w", err)
	}
	q := `SELECT id::text FROM ` + pgx.Identifier{table}.Sanitize() + ` WHERE email = $1`
	if err := c.QueryRow(ctx, q, "heavy.user@example.com").Scan(&fx.heavyUser); err != nil {
		return fx, fmt.Errorf("heavy user: %w", err)
	}
	if err := c.QueryRow(ctx, q, "user4@example.com").Scan(&fx.buyer); err != nil {
		return fx, fmt.Errorf("buyer: %w", err)
	}
	if err := c.QueryRow(ctx, `INSERT INTO products (name, description, price, inventory)
VALUES ('Compare Endless', 'bought by bench-compare', 1, 1000000000) RETURNING id::text`).Scan(&fx.product); err != nil {
		return fx, fmt.Errorf("endless product: %w", err)
	}
	return fx, nil
}

// errUnsupported marks a workload that a build does not serve (its
// warm-up request did not get the expected status): it is skipped on
// both sides from then on, and said so.
var errUnsupported = errors.New("unsupported")

// warmups is how many requests of each workload run before it is measured.
const warmups = 20

// minRequests is the fewest requests a measurement takes, however short
// the -benchtime.
const minRequests = 10

// measure warms w up, then sends it back to back for d (at least
// minRequests times) and returns every request's latency, the loop's wall
// time and shopd's CPU time over it (-1 when /proc cannot tell). A
// warm-up answered with another status than w.want returns errUnsupported;
// a measured one, a plain error.
func measure(ctx context.Context, client *http.Client, url string, pid int, fx fixtures, w workload, d time.Duration, seq *int) (lat []time.Duration, elapsed, cpu time.Duration, err error) {
	do := func() (time.Duration, error) {
		*seq++
		req, err := w.request(ctx, url, fx, *seq)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		took := time.Since(start)
		if res.StatusCode != w.want {
			return 0, fmt.Errorf("%s %s: %d, want %d: %.120s", req.Method, req.URL.Path, res.StatusCode, w.want, bytes.TrimSpace(body))
		}
		return took, nil
	}
	for range warmups {
		if _, err := do(); err != nil {
			return nil, 0, 0, fmt.Errorf("%w: %v", errUnsupported, err)
		}
	}
	cpu0, cpuErr := processCPU(pid)
	start := time.Now()
	for len(lat) < minRequests || time.Since(start) < d {
		took, err := do()
		if err != nil {
			return nil, 0, 0, err
		}
		lat = append(lat, took)
	}
	elapsed = time.Since(start)
	cpu = -1
	if cpu1, err := processCPU(pid); err == nil && cpuErr == nil {
		cpu = cpu1 - cpu0
	}
	return lat, elapsed, cpu, ctx.Err()
}

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// processCPU is the user plus system CPU time that process pid and all its
// threads have used (fields 14 and 15 of /proc/<pid>/stat).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * clockTick, nil
}
