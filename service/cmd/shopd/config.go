package main

import (
	"fmt"
	"runtime"
	"strconv"
	"time"
)

// config is shopd's configuration, read from the environment.
type config struct {
	Addr            string        // HOST:PORT to listen on (PORT default 3000; HOST default all interfaces)
	DatabaseURL     string        // DATABASE_URL; empty means libpq's PG* variables and defaults
	AppName         string        // DB_APPLICATION_NAME, shown in pg_stat_activity (default shoplab)
	DBMaxConns      int32         // DB_MAX_CONNS (default 20)
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: how long in-flight requests may finish (default 15s)

	CheckoutLockTimeout      time.Duration // CHECKOUT_LOCK_TIMEOUT (default 2s)
	CheckoutStatementTimeout time.Duration // CHECKOUT_STATEMENT_TIMEOUT (default 5s)

	MaxBodyBytes   int64 // MAX_BODY_BYTES (default 1 MiB)
	MaxImportBytes int64 // MAX_IMPORT_BYTES (default 50 MiB)

	ReportsDatabaseURL      string        // REPORTS_DATABASE_URL: the reports pool's database, e.g. a read replica (default DATABASE_URL)
	ReportsMaxConns         int32         // REPORTS_MAX_CONNS: size of the reports pool (default 3)
	ReportsMaxConcurrent    int           // REPORTS_MAX_CONCURRENT: reports running at once, 429 beyond (default half the CPUs, at least 1, at most REPORTS_MAX_CONNS)
	ReportsStatementTimeout time.Duration // REPORTS_STATEMENT_TIMEOUT: Postgres statement_timeout of report statements (default 30s)
	ReportsMaxDuration      time.Duration // REPORTS_MAX_DURATION: longest a report may take, download included (default 5m)
}

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		AppName:                  "shoplab",
		DBMaxConns:               20,
		ShutdownTimeout:          15 * time.Second,
		CheckoutLockTimeout:      2 * time.Second,
		CheckoutStatementTimeout: 5 * time.Second,
		MaxBodyBytes:             1 << 20,
		MaxImportBytes:           50 << 20,
		ReportsMaxConns:          3,
		ReportsStatementTimeout:  30 * time.Second,
		ReportsMaxDuration:       5 * time.Minute,
	}
	port := getenv("PORT")
	if port == "" {
		port = "3000"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return c, fmt.Errorf("PORT=%q is not a port number", port)
	}
	c.Addr = getenv("HOST") + ":" + port
	c.DatabaseURL = getenv("DATABASE_URL")
	if v := getenv("DB_APPLICATION_NAME"); v != "" {
		c.AppName = v
	}
	var errs []error
	intVar := func(name string, dst *int64) {
		if v := getenv(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				errs = append(errs, fmt.Errorf("%s=%q must be a positive integer", name, v))
				return
			}
			*dst = n
		}
	}
	durVar := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("%s=%q must be a duration such as 2s or 500ms", name, v))
				return
			}
			*dst = d
		}
	}
	maxConns := int64(c.DBMaxConns)
	intVar("DB_MAX_CONNS", &maxConns)
	c.DBMaxConns = int32(min(maxConns, 1000))
	durVar("SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	durVar("CHECKOUT_LOCK_TIMEOUT", &c.CheckoutLockTimeout)
	durVar("CHECKOUT_STATEMENT_TIMEOUT", &c.CheckoutStatementTimeout)
	intVar("MAX_BODY_BYTES", &c.MaxBodyBytes)
	intVar("MAX_IMPORT_BYTES", &c.MaxImportBytes)
	c.ReportsDatabaseURL = c.DatabaseURL
	if v := getenv("REPORTS_DATABASE_URL"); v != "" {
		c.ReportsDatabaseURL = v
	}
	reportConns := int64(c.ReportsMaxConns)
	intVar("REPORTS_MAX_CONNS", &reportConns)
	c.ReportsMaxConns = int32(min(reportConns, 1000))
	reportsConcurrent := int64(defaultReportsConcurrent(runtime.GOMAXPROCS(0), c.ReportsMaxConns))
	intVar("REPORTS_MAX_CONCURRENT", &reportsConcurrent)
	c.ReportsMaxConcurrent = int(min(reportsConcurrent, 1000))
	durVar("REPORTS_STATEMENT_TIMEOUT", &c.ReportsStatementTimeout)
	durVar("REPORTS_MAX_DURATION", &c.ReportsMaxDuration)
	if c.ReportsMaxDuration == 0 {
		errs = append(errs, fmt.Errorf("REPORTS_MAX_DURATION must be positive"))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("configuration: %v", errs)
	}
	return c, nil
}

// defaultReportsConcurrent is how many reports may run at once unless
// REPORTS_MAX_CONCURRENT says otherwise: half the CPUs the process may use,
// at least 1, at most the reports pool. A streaming report keeps most of a
// core busy between its Postgres backend and the service when both share
// the host; admitting more lets reports take the CPU every other request
// needs (docs/reports.md has the measurements). With Postgres or a replica
// on its own hardware, set REPORTS_MAX_CONCURRENT to REPORTS_MAX_CONNS.
func defaultReportsConcurrent(cpus int, maxConns int32) int {
	return max(1, min(cpus/2, int(maxConns)))
}
