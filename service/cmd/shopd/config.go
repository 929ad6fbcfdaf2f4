package main

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/shoplab/shoplab/service/mail"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/relay"
	"github.com/shoplab/shoplab/service/shop"
)

// config is shopd's configuration, read from the environment.
type config struct {
	Addr            string        // HOST:PORT to listen on (PORT default 3000; HOST default all interfaces)
	DatabaseURL     string        // DATABASE_URL; empty means libpq's PG* variables and defaults
	AppName         string        // PGAPPNAME: application_name shown in pg_stat_activity (default shoplab)
	DBMaxConns      int32         // DB_MAX_CONNS (default 20)
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: how long in-flight requests may finish (default 15s)

	CheckoutAcquireTimeout   time.Duration // CHECKOUT_ACQUIRE_TIMEOUT: wait for a pool connection (default 1s)
	CheckoutLockTimeout      time.Duration // CHECKOUT_LOCK_TIMEOUT (default 2s)
	CheckoutStatementTimeout time.Duration // CHECKOUT_STATEMENT_TIMEOUT (default 5s)

	SearchStatementTimeout time.Duration // SEARCH_STATEMENT_TIMEOUT (default 2s)

	IdempotencyKeyTTL  time.Duration // IDEMPOTENCY_KEY_TTL: how long a checkout's key is honoured (default 24h)
	IdempotencyCleanup time.Duration // IDEMPOTENCY_CLEANUP_INTERVAL: how often expired keys are deleted (default 10m)

	MaxBodyBytes       int64 // MAX_BODY_BYTES (default 1 MiB)
	MaxImportBytes     int64 // MAX_IMPORT_BYTES (default 50 MiB)
	MaxImportRows      int64 // MAX_IMPORT_ROWS (default 100,000)
	ImportProgressRows int64 // IMPORT_PROGRESS_ROWS: an import logs its progress every so many rows (default 10,000)

	AdminToken string // ADMIN_TOKEN: bearer token of /admin/*; empty leaves them open (refused when AppEnv is production)
	AppEnv     string // APP_ENV (default development); "production" makes ADMIN_TOKEN mandatory

	// Mail is the SMTP sender: SMTP_ADDR (empty: no mail is sent), SMTP_USERNAME,
	// SMTP_PASSWORD, SMTP_TLS (auto), SMTP_TIMEOUT (30s), MAIL_FROM.
	Mail mail.Config
	// RelayEnabled makes `serve` run an outbox relay (RELAY_ENABLED, default true).
	RelayEnabled bool
	// Relay is the outbox relay's tuning: RELAY_BATCH_SIZE, RELAY_INTERVAL,
	// RELAY_MAX_ATTEMPTS, RELAY_LEASE, RELAY_BACKOFF_BASE, RELAY_BACKOFF_MAX,
	// RELAY_RETENTION; SendTimeout is SMTP_TIMEOUT.
	Relay relay.Config

	// PRODUCTS_V1_DEPRECATED_AT and PRODUCTS_V1_SUNSET (RFC 3339 date or
	// time); zero means httpapi's defaults.
	ProductsV1DeprecatedAt time.Time
	ProductsV1Sunset       time.Time

	ReportsDatabaseURL      string        // REPORTS_DATABASE_URL: the reports pool's database, e.g. a read replica (default DATABASE_URL)
	ReportsMaxConns         int32         // REPORTS_MAX_CONNS: size of the reports pool (default 3)
	ReportsMaxConcurrent    int           // REPORTS_MAX_CONCURRENT: reports running at once, 429 beyond (default half the CPUs, at least 1, at most REPORTS_MAX_CONNS)
	ReportsStatementTimeout time.Duration // REPORTS_STATEMENT_TIMEOUT: Postgres statement_timeout of report statements (default 30s)
	ReportsMaxDuration      time.Duration // REPORTS_MAX_DURATION: longest a report may take, download included (default 5m)
	ReportsMaxLinesPerSec   int64         // REPORTS_MAX_LINES_PER_SEC: pace of each download in order lines per second (default 50,000; 0 unpaced)

	UsersSplitBatch int64         // USERS_SPLIT_BATCH: rows per backfill batch (default 1000)
	UsersSplitPause time.Duration // USERS_SPLIT_PAUSE: throttle, a pause after each backfill batch (default 0)
}

// production reports whether APP_ENV says the service runs in production.
func (c config) production() bool { return c.AppEnv == "production" }

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		AppName:                  "shoplab",
		DBMaxConns:               20,
		ShutdownTimeout:          15 * time.Second,
		CheckoutAcquireTimeout:   postgres.DefaultCheckoutAcquireTimeout,
		CheckoutLockTimeout:      postgres.DefaultCheckoutLockTimeout,
		CheckoutStatementTimeout: postgres.DefaultCheckoutStatementTimeout,
		IdempotencyKeyTTL:        postgres.DefaultIdempotencyTTL,
		IdempotencyCleanup:       10 * time.Minute,
		SearchStatementTimeout:   2 * time.Second,
		UsersSplitBatch:          1000,
		MaxBodyBytes:             1 << 20,
		MaxImportBytes:           50 << 20,
		MaxImportRows:            100_000,
		ImportProgressRows:       10_000,
		AppEnv:                   "development",
		Mail:                     mail.Config{From: "shoplab <orders@shoplab.local>", TLS: mail.TLSAuto, Timeout: 30 * time.Second},
		RelayEnabled:             true,
		Relay:                    relay.DefaultConfig(),
		ReportsMaxConns:          3,
		ReportsStatementTimeout:  30 * time.Second,
		ReportsMaxDuration:       5 * time.Minute,
		ReportsMaxLinesPerSec:    50_000,
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
	if v := getenv("PGAPPNAME"); v != "" {
		c.AppName = v
	}
	c.AdminToken = getenv("ADMIN_TOKEN")
	if v := getenv("APP_ENV"); v != "" {
		c.AppEnv = v
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
	timeVar := func(name string, dst *time.Time) {
		if v := getenv(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				t, err = time.Parse(time.DateOnly, v)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q must be a date (2027-06-01) or an RFC 3339 time (2027-06-01T00:00:00Z)", name, v))
				return
			}
			*dst = t
		}
	}
	maxConns := int64(c.DBMaxConns)
	intVar("DB_MAX_CONNS", &maxConns)
	c.DBMaxConns = int32(min(maxConns, 1000))
	durVar("SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	durVar("CHECKOUT_ACQUIRE_TIMEOUT", &c.CheckoutAcquireTimeout)
	durVar("CHECKOUT_LOCK_TIMEOUT", &c.CheckoutLockTimeout)
	durVar("CHECKOUT_STATEMENT_TIMEOUT", &c.CheckoutStatementTimeout)
	durVar("IDEMPOTENCY_KEY_TTL", &c.IdempotencyKeyTTL)
	durVar("IDEMPOTENCY_CLEANUP_INTERVAL", &c.IdempotencyCleanup)
	if c.IdempotencyKeyTTL <= 0 {
		errs = append(errs, fmt.Errorf("IDEMPOTENCY_KEY_TTL must be positive"))
	}
	if c.IdempotencyCleanup <= 0 {
		errs = append(errs, fmt.Errorf("IDEMPOTENCY_CLEANUP_INTERVAL must be positive"))
	}
	durVar("SEARCH_STATEMENT_TIMEOUT", &c.SearchStatementTimeout)
	timeVar("PRODUCTS_V1_DEPRECATED_AT", &c.ProductsV1DeprecatedAt)
	timeVar("PRODUCTS_V1_SUNSET", &c.ProductsV1Sunset)
	if !c.ProductsV1DeprecatedAt.IsZero() && !c.ProductsV1Sunset.IsZero() && c.ProductsV1Sunset.Before(c.ProductsV1DeprecatedAt) {
		errs = append(errs, fmt.Errorf("PRODUCTS_V1_SUNSET must not be before PRODUCTS_V1_DEPRECATED_AT"))
	}
	intVar("USERS_SPLIT_BATCH", &c.UsersSplitBatch)
	durVar("USERS_SPLIT_PAUSE", &c.UsersSplitPause)
	intVar("MAX_BODY_BYTES", &c.MaxBodyBytes)
	intVar("MAX_IMPORT_BYTES", &c.MaxImportBytes)
	intVar("MAX_IMPORT_ROWS", &c.MaxImportRows)
	intVar("IMPORT_PROGRESS_ROWS", &c.ImportProgressRows)

	c.Mail.Addr = getenv("SMTP_ADDR")
	c.Mail.Username = getenv("SMTP_USERNAME")
	c.Mail.Password = getenv("SMTP_PASSWORD")
	if v := getenv("SMTP_TLS"); v != "" {
		c.Mail.TLS = v
	}
	if v := getenv("MAIL_FROM"); v != "" {
		c.Mail.From = v
	}
	durVar("SMTP_TIMEOUT", &c.Mail.Timeout)
	if v := getenv("RELAY_ENABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("RELAY_ENABLED=%q must be true or false", v))
		}
		c.RelayEnabled = b
	}
	batch, attempts := int64(c.Relay.BatchSize), int64(c.Relay.MaxAttempts)
	intVar("RELAY_BATCH_SIZE", &batch)
	intVar("RELAY_MAX_ATTEMPTS", &attempts)
	c.Relay.BatchSize, c.Relay.MaxAttempts = int(min(batch, 1_000_000)), int(min(attempts, 1_000_000))
	durVar("RELAY_INTERVAL", &c.Relay.Interval)
	durVar("RELAY_LEASE", &c.Relay.Lease)
	durVar("RELAY_BACKOFF_BASE", &c.Relay.BackoffBase)
	durVar("RELAY_BACKOFF_MAX", &c.Relay.BackoffMax)
	durVar("RELAY_RETENTION", &c.Relay.Retention)
	c.Relay.SendTimeout = c.Mail.Timeout
	if len(errs) == 0 {
		if err := c.Relay.Validate(); err != nil {
			errs = append(errs, errors.New(shop.AsError(err).Message))
		}
	}
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
	if v := getenv("REPORTS_MAX_LINES_PER_SEC"); v == "0" {
		c.ReportsMaxLinesPerSec = 0
	} else {
		intVar("REPORTS_MAX_LINES_PER_SEC", &c.ReportsMaxLinesPerSec)
	}
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
