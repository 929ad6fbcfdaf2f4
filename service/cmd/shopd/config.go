package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shoplab/shoplab/service/mail"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
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

	// Mail is the SMTP sender: SMTP_ADDR (empty: no mail is sent), SMTP_USERNAME,
	// SMTP_PASSWORD, SMTP_TLS (auto), SMTP_TIMEOUT (30s), MAIL_FROM.
	Mail mail.Config
	// RelayEnabled makes `serve` run an outbox relay (RELAY_ENABLED, default true).
	RelayEnabled bool
	// Relay is the outbox relay's tuning: RELAY_BATCH_SIZE, RELAY_INTERVAL,
	// RELAY_MAX_ATTEMPTS, RELAY_LEASE, RELAY_BACKOFF_BASE, RELAY_BACKOFF_MAX,
	// RELAY_RETENTION; SendTimeout is SMTP_TIMEOUT.
	Relay postgres.RelayConfig
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
		Mail:                     mail.Config{From: "shoplab <orders@shoplab.local>", TLS: mail.TLSAuto, Timeout: 30 * time.Second},
		RelayEnabled:             true,
		Relay:                    postgres.DefaultRelayConfig(),
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
	if len(errs) > 0 {
		return c, fmt.Errorf("configuration: %v", errs)
	}
	return c, nil
}
