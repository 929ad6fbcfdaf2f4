package main

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shoplab/shoplab/service/internal/pgtest"
)

func TestReportsConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cpus     int
		maxConns int32
		want     int
	}{{1, 3, 1}, {2, 3, 1}, {4, 3, 2}, {8, 3, 3}, {64, 10, 10}} {
		if got := defaultReportsConcurrent(c.cpus, c.maxConns); got != c.want {
			t.Errorf("%d CPUs, %d connections: %d reports at once, want %d", c.cpus, c.maxConns, got, c.want)
		}
	}
	c, err := loadConfig(func(k string) string { return map[string]string{"DATABASE_URL": "postgres://main/db"}[k] })
	if err != nil || c.ReportsDatabaseURL != "postgres://main/db" || c.ReportsMaxConns != 3 ||
		c.ReportsMaxConcurrent != defaultReportsConcurrent(runtime.GOMAXPROCS(0), 3) ||
		c.ReportsStatementTimeout != 30*time.Second || c.ReportsMaxDuration != 5*time.Minute {
		t.Errorf("defaults: %+v %v", c, err)
	}
	env := map[string]string{"DATABASE_URL": "postgres://main/db", "REPORTS_DATABASE_URL": "postgres://replica/db", "REPORTS_MAX_CONNS": "5"}
	c, err = loadConfig(func(k string) string { return env[k] })
	if err != nil || c.ReportsDatabaseURL != "postgres://replica/db" || c.ReportsMaxConns != 5 ||
		c.ReportsMaxConcurrent != defaultReportsConcurrent(runtime.GOMAXPROCS(0), 5) {
		t.Errorf("replica, 5 connections: %+v %v", c, err)
	}
	env["REPORTS_MAX_CONCURRENT"], env["REPORTS_STATEMENT_TIMEOUT"] = "2", "10s"
	c, err = loadConfig(func(k string) string { return env[k] })
	if err != nil || c.ReportsMaxConcurrent != 2 || c.ReportsStatementTimeout != 10*time.Second {
		t.Errorf("2 at a time, 10s: %+v %v", c, err)
	}
	for _, bad := range []map[string]string{{"REPORTS_MAX_CONNS": "0"}, {"REPORTS_MAX_CONCURRENT": "many"},
		{"REPORTS_STATEMENT_TIMEOUT": "-1s"}, {"REPORTS_MAX_DURATION": "0s"}} {
		if _, err := loadConfig(func(k string) string { return bad[k] }); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestServeReports: shopd serves reports from their own pool, whose
// sessions are "<app>.reports" in pg_stat_activity and never more than
// REPORTS_MAX_CONNS, and refuses reports beyond REPORTS_MAX_CONCURRENT.
func TestServeReports(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	app := fmt.Sprintf("shoplab_e2e_%d", time.Now().UnixNano()) // whose sessions are ours
	env := map[string]string{
		"DATABASE_URL": dsn, "PORT": "0", "HOST": "127.0.0.1", "PGAPPNAME": app,
		"DD_TRACE_ENABLED": "false", "DD_AGENT_HOST": "127.0.0.1", "DD_DOGSTATSD_PORT": "1",
		"BUYER_AUTH":        "off", // checkouts and reports by id, as the original's clients do
		"REPORTS_MAX_CONNS": "1", "REPORTS_MAX_CONCURRENT": "1", "REPORTS_STATEMENT_TIMEOUT": "10s",
		// Paced, so that the first download (about 400 lines, 250 of them
		// at once) still holds the only slot when the second asks: unpaced,
		// it can fit in the socket buffers and end before.
		"REPORTS_MAX_LINES_PER_SEC": "100",
	}
	getenv := func(k string) string { return env[k] }
	ctx := t.Context()
	if err := run(ctx, []string{"shopd", "setup"}, getenv, io.Discard, io.Discard); err != nil {
		t.Fatalf("setup: %v", err)
	}
	base, _, _ := startServe(t, getenv)

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var heavy string
	if err := conn.QueryRow(ctx, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`).Scan(&heavy); err != nil {
		t.Fatal(err)
	}

	// One report holds the only slot while its client reads nothing more.
	res, err := http.Get(base + "/reports/orders/" + heavy + "?format=csv")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("download: %v %v", err, res)
	}
	second, err := http.Get(base + "/reports/orders/" + heavy)
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != http.StatusTooManyRequests || second.Header.Get("Retry-After") == "" {
		t.Errorf("second report: %d, Retry-After %q; want 429 with Retry-After", second.StatusCode, second.Header.Get("Retry-After"))
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	var lines int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.customer_id = $1`, heavy).Scan(&lines); err != nil {
		t.Fatal(err)
	}
	if err != nil || strings.Count(string(b), "\n") != 1+lines || !strings.HasPrefix(string(b), "order_id,") {
		t.Errorf("download: %v, %d rows, want %d", err, strings.Count(string(b), "\n")-1, lines)
	}
	if p, err := http.Get(base + "/products?limit=1"); err != nil || p.StatusCode != 200 {
		t.Fatalf("products: %v %v", err, p)
	} else {
		p.Body.Close()
	}

	var reports, mainSessions int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE application_name = $1 || '.reports'), count(*) FILTER (WHERE application_name = $1)
FROM pg_stat_activity WHERE datname = current_database()`, app).Scan(&reports, &mainSessions)
	if err != nil || reports != 1 || mainSessions < 1 {
		t.Errorf("%d report sessions (want 1: REPORTS_MAX_CONNS), %d main sessions: %v", reports, mainSessions, err)
	}
}
