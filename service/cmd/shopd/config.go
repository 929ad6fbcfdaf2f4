package main

import (
	"fmt"
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

	SearchStatementTimeout time.Duration // SEARCH_STATEMENT_TIMEOUT (default 2s)

	MaxBodyBytes   int64 // MAX_BODY_BYTES (default 1 MiB)
	MaxImportBytes int64 // MAX_IMPORT_BYTES (default 50 MiB)

	// PRODUCTS_V1_DEPRECATED_AT and PRODUCTS_V1_SUNSET (RFC 3339 date or
	// time); zero means httpapi's defaults.
	ProductsV1DeprecatedAt time.Time
	ProductsV1Sunset       time.Time
}

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		AppName:                  "shoplab",
		DBMaxConns:               20,
		ShutdownTimeout:          15 * time.Second,
		CheckoutLockTimeout:      2 * time.Second,
		CheckoutStatementTimeout: 5 * time.Second,
		SearchStatementTimeout:   2 * time.Second,
		MaxBodyBytes:             1 << 20,
		MaxImportBytes:           50 << 20,
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
	durVar("CHECKOUT_LOCK_TIMEOUT", &c.CheckoutLockTimeout)
	durVar("CHECKOUT_STATEMENT_TIMEOUT", &c.CheckoutStatementTimeout)
	durVar("SEARCH_STATEMENT_TIMEOUT", &c.SearchStatementTimeout)
	timeVar("PRODUCTS_V1_DEPRECATED_AT", &c.ProductsV1DeprecatedAt)
	timeVar("PRODUCTS_V1_SUNSET", &c.ProductsV1Sunset)
	if !c.ProductsV1DeprecatedAt.IsZero() && !c.ProductsV1Sunset.IsZero() && c.ProductsV1Sunset.Before(c.ProductsV1DeprecatedAt) {
		errs = append(errs, fmt.Errorf("PRODUCTS_V1_SUNSET must not be before PRODUCTS_V1_DEPRECATED_AT"))
	}
	intVar("MAX_BODY_BYTES", &c.MaxBodyBytes)
	intVar("MAX_IMPORT_BYTES", &c.MaxImportBytes)
	if len(errs) > 0 {
		return c, fmt.Errorf("configuration: %v", errs)
	}
	return c, nil
}
