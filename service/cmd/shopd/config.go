package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap/zapcore"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/mail"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/relay"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// vars is every environment variable shopd reads, and the only list of
// them: each field's env tag names its variable and its desc tag says what
// it does (`shopd help config` and the README's table are generated from
// these tags and from defaultVars). A min tag bounds an integer; durations
// are never negative. An unset tag says what an empty default means.
// Defaults are not written here: defaultVars takes them from the packages
// that own them.
type vars struct {
	ServerVars     `desc:"Server"`
	DatabaseVars   `desc:"Database"`
	CheckoutVars   `desc:"Checkout and search"`
	APIVars        `desc:"API limits"`
	RateLimitVars  `desc:"Rate limit (per client)"`
	ReportsVars    `desc:"Reports"`
	ImportsVars    `desc:"Imports"`
	MailVars       `desc:"Order-confirmation mail"`
	RelayVars      `desc:"Outbox relay"`
	UsersSplitVars `desc:"Users split (backfill)"`
	SwitchesVars   `desc:"Chaos switches (docs/switches.md)"`
	TelemetryVars  `desc:"Telemetry (Datadog)"`
}

// ServerVars configure the HTTP server and its admin routes.
type ServerVars struct {
	Host            string        `env:"HOST" unset:"all interfaces" desc:"address to listen on"`
	Port            listenPort    `env:"PORT" desc:"port to listen on (0 picks a free one; the log says which)"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" desc:"how long in-flight requests may finish after SIGTERM"`
	AdminToken      string        `env:"ADMIN_TOKEN" unset:"unset" desc:"bearer token that every /admin/* route requires (and that acts for any buyer); unset leaves /admin open (with a warning at start); in production at least 32 characters"`
	BuyerAuth       onOff         `env:"BUYER_AUTH" desc:"on: GET /orders/{userId}, GET /reports/orders/{userId} and POST /orders/checkout require the buyer's own token or ADMIN_TOKEN (docs/security.md); off: open to anyone as in the original, for its clients (with a warning at start; refused in production)"`
	AppEnv          string        `env:"APP_ENV" desc:"production (any case; prod too) makes shopd serve refuse to start without an ADMIN_TOKEN of at least 32 characters, with BUYER_AUTH=off, or with any chaos switch on"`
}

// DatabaseVars configure the main pool.
type DatabaseVars struct {
	DatabaseURL      string        `env:"DATABASE_URL" desc:"PostgreSQL URL; the default is the database make run prepares, so every shopd command agrees with it (PG* variables fill only what the URL leaves out, such as PGPASSWORD)"`
	DBMaxConns       int32         `env:"DB_MAX_CONNS" min:"1" desc:"size of the connection pool (at most 1000)"`
	AppName          string        `env:"PGAPPNAME" desc:"application_name of the service's sessions (what pg_stat_activity shows; the lock-wait sampler watches it)"`
	DBAcquireTimeout time.Duration `env:"DB_ACQUIRE_TIMEOUT" desc:"longest wait of a request (products, orders, users, imports) for a pool connection; past it, 503 + Retry-After instead of a hang (checkouts have CHECKOUT_ACQUIRE_TIMEOUT; positive)"`
	DBStatsInterval  time.Duration `env:"DB_STATS_INTERVAL" desc:"how often the pools' gauges and counts are reported (positive; chaos's compressed runs shorten it with the monitors' windows)"`
}

// CheckoutVars bound checkouts, their idempotency keys and searches.
type CheckoutVars struct {
	CheckoutAcquireTimeout   time.Duration `env:"CHECKOUT_ACQUIRE_TIMEOUT" desc:"longest wait of a checkout for a pool connection; past it, 503 + Retry-After"`
	CheckoutLockTimeout      time.Duration `env:"CHECKOUT_LOCK_TIMEOUT" desc:"Postgres lock_timeout of a checkout (waits for a product's or an idempotency key's row lock); past it, 503 + Retry-After"`
	CheckoutStatementTimeout time.Duration `env:"CHECKOUT_STATEMENT_TIMEOUT" desc:"Postgres statement_timeout of a checkout; past it, 503 + Retry-After"`
	IdempotencyKeyTTL        time.Duration `env:"IDEMPOTENCY_KEY_TTL" desc:"how long a checkout's Idempotency-Key is honoured (positive)"`
	IdempotencyCleanup       time.Duration `env:"IDEMPOTENCY_CLEANUP_INTERVAL" desc:"how often shopd deletes expired idempotency keys (positive)"`
	SearchStatementTimeout   time.Duration `env:"SEARCH_STATEMENT_TIMEOUT" desc:"Postgres statement_timeout of a product search; past it, 503 + Retry-After"`
}

// APIVars are the HTTP edge's limits and the v1 products deprecation.
type APIVars struct {
	MaxBodyBytes           int64 `env:"MAX_BODY_BYTES" min:"1" desc:"largest JSON body (413 beyond)"`
	MaxImportBytes         int64 `env:"MAX_IMPORT_BYTES" min:"1" desc:"largest import body (413 beyond)"`
	MaxImportRows          int64 `env:"MAX_IMPORT_ROWS" min:"1" desc:"most rows in one import (413 beyond)"`
	ImportProgressRows     int64 `env:"IMPORT_PROGRESS_ROWS" min:"1" desc:"an import logs import progress every so many rows"`
	ProductsV1DeprecatedAt date  `env:"PRODUCTS_V1_DEPRECATED_AT" desc:"date (or RFC 3339 time) of v1's deprecation: its Deprecation header"`
	ProductsV1Sunset       date  `env:"PRODUCTS_V1_SUNSET" desc:"date (or RFC 3339 time) of v1's Sunset header, not before PRODUCTS_V1_DEPRECATED_AT; from then on v1 requires a description like v2 (move it to postpone, no release needed)"`
}

// RateLimitVars configure the per-client rate limit (docs/security.md).
type RateLimitVars struct {
	RateLimit         rateLimitMode `env:"RATE_LIMIT" desc:"per-client rate limit of every route but /health and /ready: on, off, or auto (on when APP_ENV is production). Beyond it, 429 + Retry-After; every limited answer carries the RateLimit and RateLimit-Policy fields (draft-ietf-httpapi-ratelimit-headers-10)"`
	RateLimitRequests int64         `env:"RATE_LIMIT_REQUESTS" min:"1" desc:"requests one client may make per RATE_LIMIT_WINDOW; a client is the customer of a valid buyer token, or the admin token, else an address (an IPv6 /64): a bearer value that proves nothing is charged to its address"`
	RateLimitWindow   time.Duration `env:"RATE_LIMIT_WINDOW" desc:"the window of RATE_LIMIT_REQUESTS (positive); a client's budget is refilled whole at the end of each"`
	TrustedProxies    prefixList    `env:"TRUSTED_PROXIES" unset:"none: X-Forwarded-For is ignored" desc:"comma-separated addresses or CIDR prefixes of the reverse proxies in front of shopd; only from them is X-Forwarded-For believed (its right-most address that is not a proxy is the client)"`
}

// ReportsVars configure the reports' own pool and their admission.
type ReportsVars struct {
	ReportsDatabaseURL      string        `env:"REPORTS_DATABASE_URL" unset:"DATABASE_URL" desc:"database of the reports' own pool (e.g. a read replica)"`
	ReportsMaxConns         int32         `env:"REPORTS_MAX_CONNS" min:"1" desc:"size of the reports pool (at most 1000)"`
	ReportsMaxConcurrent    int           `env:"REPORTS_MAX_CONCURRENT" min:"1" unset:"half the CPUs, 1 to REPORTS_MAX_CONNS" desc:"reports running at once; 429 + Retry-After beyond (see docs/reports.md)"`
	ReportsStatementTimeout time.Duration `env:"REPORTS_STATEMENT_TIMEOUT" desc:"Postgres statement_timeout of each report statement"`
	ReportsMaxDuration      time.Duration `env:"REPORTS_MAX_DURATION" desc:"longest a report may take, download included (slow clients are cut off; positive)"`
	ReportsMaxLinesPerSec   int64         `env:"REPORTS_MAX_LINES_PER_SEC" min:"0" desc:"pace of all downloads together in order lines per second (one budget they share), so that reports cannot take all the CPU however many run (0: unpaced)"`
	ReportsMaxReplicaLag    time.Duration `env:"REPORTS_MAX_REPLICA_LAG" desc:"when REPORTS_DATABASE_URL is a standby: reports are refused with 503 + Retry-After while it is further behind its primary than this, or down (0: never refused for lag; see docs/reports.md)"`
}

// ImportsVars configure the imports' own pool, their admission and the
// limits of their uploads.
type ImportsVars struct {
	ImportsMaxConns      int32         `env:"IMPORTS_MAX_CONNS" min:"1" desc:"size of the imports' own pool (at most 1000): an import holds its connection for as long as its upload lasts, so imports never take the main pool's"`
	ImportsMaxConcurrent int           `env:"IMPORTS_MAX_CONCURRENT" min:"1" desc:"imports running at once (at most IMPORTS_MAX_CONNS); 429 + Retry-After beyond, without reading the body"`
	UploadIdleTimeout    time.Duration `env:"UPLOAD_IDLE_TIMEOUT" desc:"longest an import's upload may send nothing; past it, 408 + Connection: close and nothing imported (positive)"`
	UploadMinBytesPerSec int64         `env:"UPLOAD_MIN_BYTES_PER_SEC" min:"0" desc:"lowest average rate of an import's upload once it has run UPLOAD_IDLE_TIMEOUT; below it, 408 + Connection: close and nothing imported (0: no minimum)"`
}

// MailVars configure the SMTP sender of order confirmations.
type MailVars struct {
	SMTPAddr     string        `env:"SMTP_ADDR" unset:"unset" desc:"SMTP server host:port for order confirmations. Unset: serve sends no mail (the outbox keeps them, and warns), relay refuses to start; make run starts Mailpit and sets it"`
	SMTPUsername string        `env:"SMTP_USERNAME" unset:"unset" desc:"AUTH PLAIN user, sent only over TLS or to a loopback server"`
	SMTPPassword string        `env:"SMTP_PASSWORD" unset:"unset" desc:"AUTH PLAIN password"`
	SMTPTLS      string        `env:"SMTP_TLS" desc:"auto (STARTTLS when offered), starttls (required), tls (implicit TLS, port 465), none"`
	SMTPTimeout  time.Duration `env:"SMTP_TIMEOUT" desc:"longest one send may take (connect to accepted message)"`
	MailFrom     string        `env:"MAIL_FROM" desc:"sender of the confirmations; its domain ends the Message-IDs"`
}

// RelayVars configure the outbox relay.
type RelayVars struct {
	RelayEnabled       bool          `env:"RELAY_ENABLED" desc:"serve runs an outbox relay (set false where shopd relay runs apart)"`
	RelayBatchSize     int           `env:"RELAY_BATCH_SIZE" min:"1" desc:"rows one claim takes (at most 1000)"`
	RelayInterval      time.Duration `env:"RELAY_INTERVAL" desc:"pause between polls once nothing is due"`
	RelayMaxAttempts   int           `env:"RELAY_MAX_ATTEMPTS" min:"1" desc:"attempts before a confirmation is parked as dead"`
	RelayLease         time.Duration `env:"RELAY_LEASE" desc:"how long a claim keeps other relays off its rows; must exceed SMTP_TIMEOUT"`
	RelayBackoffBase   time.Duration `env:"RELAY_BACKOFF_BASE" desc:"retry n waits 50-100% of min(base * 2^(n-1), RELAY_BACKOFF_MAX)"`
	RelayBackoffMax    time.Duration `env:"RELAY_BACKOFF_MAX" desc:"longest wait between retries"`
	RelayRetention     time.Duration `env:"RELAY_RETENTION" desc:"sent rows older than this are deleted (0 keeps them)"`
	RelayStatsInterval time.Duration `env:"RELAY_STATS_INTERVAL" desc:"how often the outbox gauges (pending, oldest pending age, parked) are reported (positive; chaos's compressed runs shorten it with the monitors' windows)"`
}

// UsersSplitVars tune `shopd backfill users-split`.
type UsersSplitVars struct {
	UsersSplitBatch int64         `env:"USERS_SPLIT_BATCH" min:"1" desc:"rows per batch (and transaction) of shopd backfill users-split; -batch overrides it"`
	UsersSplitPause time.Duration `env:"USERS_SPLIT_PAUSE" desc:"throttle of the backfill: a pause after each batch, e.g. 50ms; -pause overrides it"`
}

// SwitchesVars turn on the original system's defects, for chaos runs and
// their tests only.
type SwitchesVars struct {
	SwitchesFile string     `env:"SWITCHES_FILE" unset:"every switch off" desc:"flagd-style flags file of the chaos switches (e.g. chaos/flags.json), read at start into OpenFeature's in-memory provider; PUT /admin/switches/{name} flips them at runtime. serve refuses to start with any switch on when APP_ENV=production"`
	Switches     switchList `env:"SWITCHES" unset:"none" desc:"comma-separated chaos switches to turn on over SWITCHES_FILE: n-plus-one, unlocked-stock, raw-errors, row-by-row-import, report-in-process"`
}

// TelemetryVars are the standard Datadog variables shopd reads, and its
// logging. (dd-trace-go reads its own too, e.g. DD_TRACE_SAMPLING_RULES.)
type TelemetryVars struct {
	Service             string           `env:"DD_SERVICE" desc:"service tag on spans, metrics and logs"`
	Env                 string           `env:"DD_ENV" desc:"env tag on spans, metrics and logs"`
	Version             string           `env:"DD_VERSION" desc:"version tag on spans, metrics and logs"`
	TraceEnabled        bool             `env:"DD_TRACE_ENABLED" desc:"start the tracer (false: no spans, metrics still sent)"`
	RuntimeMetrics      bool             `env:"DD_RUNTIME_METRICS_ENABLED" desc:"Go runtime metrics from the tracer"`
	AgentHost           string           `env:"DD_AGENT_HOST" desc:"Datadog agent host: where traces and (without DD_DOGSTATSD_URL) metrics go"`
	TraceAgentPort      port             `env:"DD_TRACE_AGENT_PORT" desc:"trace agent port"`
	DogStatsdPort       port             `env:"DD_DOGSTATSD_PORT" desc:"DogStatsD port on DD_AGENT_HOST"`
	DogStatsdURL        dogstatsdURL     `env:"DD_DOGSTATSD_URL" unset:"DD_AGENT_HOST:DD_DOGSTATSD_PORT" desc:"where metrics go: udp://host:port or unix:///path"`
	LogLevel            logLevel         `env:"LOG_LEVEL" desc:"debug, info, warn, error"`
	LogSampleFirst      int              `env:"LOG_SAMPLE_FIRST" min:"0" desc:"per second and message, log the first N lines (0: no sampling)"`
	LogSampleThereafter int              `env:"LOG_SAMPLE_THEREAFTER" min:"0" desc:"then every Mth (load tests cannot flood the disk)"`
	SlowQuery           millisOrDuration `env:"SLOW_QUERY_THRESHOLD" desc:"statements slower than this (a duration, or milliseconds) log a slow query line (0 turns it off)"`
}

// config is shopd's configuration: the variables, plus what loadConfig
// derives from them for the packages.
type config struct {
	vars
	Addr      string           // HOST:PORT to listen on
	Mail      mail.Config      // the SMTP sender
	Relay     relay.Config     // the outbox relay; SendTimeout is SMTP_TIMEOUT
	Telemetry telemetry.Config // the logger, tracer and metrics
}

// production reports whether APP_ENV says the service runs in production.
func (c config) production() bool { return isProduction(c.AppEnv) }

// isProduction reports whether an APP_ENV value names production, however
// it is spelt: production or prod, in any case, with surrounding spaces.
// Every production rule of shopd asks this one function.
func isProduction(appEnv string) bool {
	switch strings.ToLower(strings.TrimSpace(appEnv)) {
	case "production", "prod":
		return true
	}
	return false
}

// minProductionAdminToken is the shortest ADMIN_TOKEN serve accepts in
// production (32 characters: 192 bits and more of a random token).
const minProductionAdminToken = 32

// productionRefusals is why serve refuses to start with cfg in
// production (nil outside production, or when nothing is wrong); the chaos
// switches are checked apart (openSwitches), as they are read from a file.
func productionRefusals(cfg config) error {
	if !cfg.production() {
		return nil
	}
	var errs []error
	switch {
	case cfg.AdminToken == "":
		errs = append(errs, errors.New("ADMIN_TOKEN is not set: refusing to serve the admin endpoints unauthenticated with APP_ENV=production"))
	case len(cfg.AdminToken) < minProductionAdminToken:
		errs = append(errs, fmt.Errorf("ADMIN_TOKEN is %d characters: refusing a production admin token shorter than %d (generate one: openssl rand -hex 32)",
			len(cfg.AdminToken), minProductionAdminToken))
	}
	if !cfg.BuyerAuth {
		errs = append(errs, errors.New("BUYER_AUTH=off: refusing to serve buyers' orders, reports and checkouts unauthenticated with APP_ENV=production"))
	}
	return errors.Join(errs...)
}

// rateLimited reports whether the per-client rate limit is on: RATE_LIMIT
// on, or auto in production.
func (c config) rateLimited() bool {
	return c.RateLimit == rateLimitOn || (c.RateLimit == rateLimitAuto && c.production())
}

// defaultDatabaseURL is the database `make run` prepares when no
// DATABASE_URL is set (scripts/run.sh asks `shopd config DATABASE_URL`), so
// that `make run` and a bare `shopd outbox status` read the same database.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/shoplab?sslmode=disable"

// defaultVars is every variable's default. Each value comes from the
// package that uses it, where it is written once; only what is shopd's own
// (the listening port, pool sizes, shutdown, cleanup and report pacing) is
// written here.
func defaultVars() vars {
	api := httpapi.DefaultConfig()
	ml := mail.DefaultConfig()
	rl := relay.DefaultConfig()
	tel := telemetry.DefaultConfig()
	return vars{
		ServerVars: ServerVars{
			Port:            "3000",
			ShutdownTimeout: 15 * time.Second,
			BuyerAuth:       true,
			AppEnv:          "development",
		},
		DatabaseVars: DatabaseVars{
			DatabaseURL:      defaultDatabaseURL,
			DBMaxConns:       20,
			AppName:          tel.AppName,
			DBStatsInterval:  10 * time.Second,
			DBAcquireTimeout: postgres.DefaultAcquireTimeout,
		},
		CheckoutVars: CheckoutVars{
			CheckoutAcquireTimeout:   postgres.DefaultCheckoutAcquireTimeout,
			CheckoutLockTimeout:      postgres.DefaultCheckoutLockTimeout,
			CheckoutStatementTimeout: postgres.DefaultCheckoutStatementTimeout,
			IdempotencyKeyTTL:        postgres.DefaultIdempotencyTTL,
			IdempotencyCleanup:       10 * time.Minute,
			SearchStatementTimeout:   postgres.DefaultSearchStatementTimeout,
		},
		APIVars: APIVars{
			MaxBodyBytes:           api.MaxBodyBytes,
			MaxImportBytes:         api.MaxImportBytes,
			MaxImportRows:          int64(api.MaxImportRows),
			ImportProgressRows:     int64(api.ImportProgressRows),
			ProductsV1DeprecatedAt: date{api.ProductsV1DeprecatedAt},
			ProductsV1Sunset:       date{api.ProductsV1Sunset},
		},
		RateLimitVars: RateLimitVars{
			RateLimit:         rateLimitAuto,
			RateLimitRequests: 600,
			RateLimitWindow:   time.Minute,
		},
		ReportsVars: ReportsVars{
			ReportsMaxConns:         3,
			ReportsStatementTimeout: 30 * time.Second,
			ReportsMaxDuration:      api.ReportMaxDuration,
			ReportsMaxLinesPerSec:   50_000,
			ReportsMaxReplicaLag:    30 * time.Second,
		},
		ImportsVars: ImportsVars{
			ImportsMaxConns:      2,
			ImportsMaxConcurrent: api.ImportsMaxConcurrent,
			UploadIdleTimeout:    api.UploadIdleTimeout,
			UploadMinBytesPerSec: api.UploadMinBytesPerSec,
		},
		MailVars: MailVars{
			SMTPTLS:     ml.TLS,
			SMTPTimeout: ml.Timeout,
			MailFrom:    ml.From,
		},
		RelayVars: RelayVars{
			RelayEnabled:       true,
			RelayBatchSize:     rl.BatchSize,
			RelayInterval:      rl.Interval,
			RelayMaxAttempts:   rl.MaxAttempts,
			RelayLease:         rl.Lease,
			RelayBackoffBase:   rl.BackoffBase,
			RelayBackoffMax:    rl.BackoffMax,
			RelayRetention:     rl.Retention,
			RelayStatsInterval: rl.StatsInterval,
		},
		UsersSplitVars: UsersSplitVars{
			UsersSplitBatch: postgres.DefaultBackfillBatch,
		},
		TelemetryVars: TelemetryVars{
			Service:             tel.Service,
			Env:                 tel.Env,
			Version:             tel.Version,
			TraceEnabled:        tel.TraceEnabled,
			RuntimeMetrics:      tel.RuntimeMetrics,
			AgentHost:           tel.AgentHost,
			TraceAgentPort:      port(tel.TraceAgentPort),
			DogStatsdPort:       telemetry.DefaultDogStatsdPort,
			LogLevel:            logLevel(tel.LogLevel),
			LogSampleFirst:      tel.LogSampleFirst,
			LogSampleThereafter: tel.LogSampleThereafter,
			SlowQuery:           millisOrDuration(tel.SlowQuery),
		},
	}
}

// maxConns caps the pool sizes and report admission.
const maxConns = 1000

// loadConfig reads the configuration from getenv (os.Getenv in
// production): an unset or empty variable keeps its default. It returns
// one error naming every variable that is malformed, out of range or at
// odds with another.
func loadConfig(getenv func(string) string) (config, error) {
	v, errs := decodeVars(getenv)

	// Checks across variables, and ranges the types do not say.
	if v.IdempotencyKeyTTL <= 0 {
		errs = append(errs, errors.New("IDEMPOTENCY_KEY_TTL must be positive"))
	}
	if v.DBStatsInterval <= 0 {
		errs = append(errs, errors.New("DB_STATS_INTERVAL must be positive"))
	}
	if v.IdempotencyCleanup <= 0 {
		errs = append(errs, errors.New("IDEMPOTENCY_CLEANUP_INTERVAL must be positive"))
	}
	if v.ProductsV1Sunset.Before(v.ProductsV1DeprecatedAt.Time) {
		errs = append(errs, errors.New("PRODUCTS_V1_SUNSET must not be before PRODUCTS_V1_DEPRECATED_AT"))
	}
	if v.RateLimitWindow <= 0 {
		errs = append(errs, errors.New("RATE_LIMIT_WINDOW must be positive"))
	}
	if v.ReportsMaxDuration <= 0 {
		errs = append(errs, errors.New("REPORTS_MAX_DURATION must be positive"))
	}
	if v.DBAcquireTimeout <= 0 {
		errs = append(errs, errors.New("DB_ACQUIRE_TIMEOUT must be positive"))
	}
	if v.UploadIdleTimeout <= 0 {
		errs = append(errs, errors.New("UPLOAD_IDLE_TIMEOUT must be positive"))
	}
	v.DBMaxConns = min(v.DBMaxConns, maxConns)
	v.ImportsMaxConns = min(v.ImportsMaxConns, maxConns)
	v.ImportsMaxConcurrent = min(v.ImportsMaxConcurrent, int(v.ImportsMaxConns))
	v.ReportsMaxConns = min(v.ReportsMaxConns, maxConns)
	if v.ReportsDatabaseURL == "" {
		v.ReportsDatabaseURL = v.DatabaseURL
	}
	if v.ReportsMaxConcurrent == 0 {
		v.ReportsMaxConcurrent = defaultReportsConcurrent(runtime.GOMAXPROCS(0), v.ReportsMaxConns)
	}
	v.ReportsMaxConcurrent = min(v.ReportsMaxConcurrent, maxConns)

	c := config{vars: v, Addr: net.JoinHostPort(v.Host, string(v.Port))}
	c.Mail = mail.Config{
		Addr: v.SMTPAddr, Username: v.SMTPUsername, Password: v.SMTPPassword,
		From: v.MailFrom, TLS: v.SMTPTLS, Timeout: v.SMTPTimeout,
	}
	c.Relay = relay.DefaultConfig() // its Name
	c.Relay.StatsInterval = v.RelayStatsInterval
	c.Relay.BatchSize, c.Relay.Interval, c.Relay.MaxAttempts = v.RelayBatchSize, v.RelayInterval, v.RelayMaxAttempts
	c.Relay.Lease, c.Relay.SendTimeout = v.RelayLease, v.SMTPTimeout
	c.Relay.BackoffBase, c.Relay.BackoffMax, c.Relay.Retention = v.RelayBackoffBase, v.RelayBackoffMax, v.RelayRetention
	if err := c.Relay.Validate(); err != nil {
		errs = append(errs, errors.New(shop.AsError(err).Message))
	}
	c.Telemetry = telemetry.Config{
		Service: v.Service, Env: v.Env, Version: v.Version,
		TraceEnabled: v.TraceEnabled, RuntimeMetrics: v.RuntimeMetrics,
		AgentHost: v.AgentHost, TraceAgentPort: string(v.TraceAgentPort),
		DogStatsdAddr: string(v.DogStatsdURL),
		LogLevel:      string(v.LogLevel), LogSampleFirst: v.LogSampleFirst, LogSampleThereafter: v.LogSampleThereafter,
		SlowQuery: time.Duration(v.SlowQuery), AppName: v.AppName,
	}
	if c.Telemetry.DogStatsdAddr == "" {
		c.Telemetry.DogStatsdAddr = net.JoinHostPort(v.AgentHost, string(v.DogStatsdPort))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
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

// decodeVars is envconfig over defaultVars: a variable that is set
// overwrites its default (DefaultOverwrite; an empty one counts as unset).
// envconfig stops at the first value that does not decode, so decodeVars
// notes it, leaves that variable at its default and decodes again, until
// the rest decode: the errors name every bad variable. It then checks the
// ranges of the min tags, and that no duration is negative.
func decodeVars(getenv func(string) string) (vars, []error) {
	var errs []error
	bad := map[string]bool{}
	for {
		v := defaultVars()
		var last string // the variable being decoded when envconfig fails
		lookup := envconfig.LookuperFunc(func(key string) (string, bool) {
			last = key
			if bad[key] {
				return "", false
			}
			val := strings.TrimSpace(getenv(key))
			return val, val != ""
		})
		err := envconfig.ProcessWith(context.Background(), &envconfig.Config{
			Target: &v, Lookuper: lookup, DefaultOverwrite: true,
		})
		if err == nil {
			for _, vr := range variables() {
				val := strings.TrimSpace(getenv(vr.Name))
				if val == "" || bad[vr.Name] { // defaults are in range
					continue
				}
				if msg := vr.check(vr.value(&v)); msg != "" {
					errs = append(errs, fmt.Errorf("%s=%q %s", vr.Name, val, msg))
				}
			}
			return v, errs
		}
		vr, ok := variableNamed(last)
		if !ok || bad[last] { // a mistake in the tags, not in the environment
			return v, append(errs, err)
		}
		bad[last] = true
		errs = append(errs, fmt.Errorf("%s=%q %s", last, strings.TrimSpace(getenv(last)), vr.reason(err)))
	}
}

// variable is one environment variable: a leaf field of vars.
type variable struct {
	Name    string // the env tag
	Desc    string
	Unset   string // what an empty default means
	Section string
	min     *int64
	index   []int
	typ     reflect.Type
}

// variables lists the fields of vars in order.
func variables() []variable {
	var out []variable
	t := reflect.TypeFor[vars]()
	for i := range t.NumField() {
		s := t.Field(i)
		for j := range s.Type.NumField() {
			f := s.Type.Field(j)
			vr := variable{
				Name: f.Tag.Get("env"), Desc: f.Tag.Get("desc"), Unset: f.Tag.Get("unset"),
				Section: s.Tag.Get("desc"), index: []int{i, j}, typ: f.Type,
			}
			if m, ok := f.Tag.Lookup("min"); ok {
				n, err := strconv.ParseInt(m, 10, 64)
				if err != nil {
					panic(fmt.Sprintf("min tag of %s: %v", vr.Name, err))
				}
				vr.min = &n
			}
			out = append(out, vr)
		}
	}
	return out
}

func variableNamed(name string) (variable, bool) {
	for _, vr := range variables() {
		if vr.Name == name {
			return vr, true
		}
	}
	return variable{}, false
}

// value is the variable's field in v.
func (vr variable) value(v *vars) reflect.Value {
	return reflect.ValueOf(v).Elem().FieldByIndex(vr.index)
}

var durationType = reflect.TypeFor[time.Duration]()

// reason says why a value of the variable did not decode.
func (vr variable) reason(err error) string {
	if reflect.PointerTo(vr.typ).Implements(reflect.TypeFor[envconfig.Decoder]()) {
		for errors.Unwrap(err) != nil { // envconfig prefixes the field names
			err = errors.Unwrap(err)
		}
		return err.Error()
	}
	switch {
	case vr.typ == durationType:
		return "must be a duration such as 2s or 500ms"
	case vr.typ.Kind() == reflect.Bool:
		return "must be true or false"
	case vr.min != nil:
		return vr.intRange()
	}
	return err.Error()
}

// intRange says which integers the variable takes.
func (vr variable) intRange() string {
	if *vr.min == 0 {
		return "must be a non-negative integer"
	}
	return "must be a positive integer"
}

// check says what is wrong with a decoded value, or "".
func (vr variable) check(f reflect.Value) string {
	switch {
	case vr.typ == durationType && f.Int() < 0:
		return "must be a duration such as 2s or 500ms"
	case vr.min != nil && f.Int() < *vr.min:
		return vr.intRange()
	}
	return ""
}

// onOff is a switch: on or off (also true/false, 1/0, yes/no).
type onOff bool

// EnvDecode implements envconfig.Decoder.
func (o *onOff) EnvDecode(v string) error {
	switch strings.ToLower(v) {
	case "on", "true", "1", "yes":
		*o = true
	case "off", "false", "0", "no":
		*o = false
	default:
		return errors.New("must be on or off")
	}
	return nil
}

func (o onOff) String() string {
	if o {
		return "on"
	}
	return "off"
}

// listenPort is a port to listen on, 0 to 65535 (0: any free one).
type listenPort string

// EnvDecode implements envconfig.Decoder.
func (p *listenPort) EnvDecode(v string) error {
	if n, err := strconv.Atoi(v); v != "" && (err != nil || n < 0 || n > 65535) {
		return errors.New("is not a port number")
	}
	*p = listenPort(v)
	return nil
}

// port is a port to connect to, 1 to 65535.
type port string

// EnvDecode implements envconfig.Decoder.
func (p *port) EnvDecode(v string) error {
	if n, err := strconv.Atoi(v); v != "" && (err != nil || n < 1 || n > 65535) {
		return errors.New("is not a port number")
	}
	*p = port(v)
	return nil
}

// date is a time given as a date (2027-06-01, midnight UTC) or an RFC 3339
// time.
type date struct{ time.Time }

// EnvDecode implements envconfig.Decoder.
func (d *date) EnvDecode(v string) error {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		t, err = time.Parse(time.DateOnly, v)
	}
	if err != nil {
		return errors.New("must be a date (2027-06-01) or an RFC 3339 time (2027-06-01T00:00:00Z)")
	}
	d.Time = t
	return nil
}

func (d date) String() string {
	if d.Equal(d.Truncate(24 * time.Hour)) {
		return d.UTC().Format(time.DateOnly)
	}
	return d.Format(time.RFC3339)
}

// millisOrDuration is a duration given as a Go duration (200ms) or a
// number of milliseconds (200); never negative.
type millisOrDuration time.Duration

// EnvDecode implements envconfig.Decoder.
func (d *millisOrDuration) EnvDecode(v string) error {
	if v == "" {
		return nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return errors.New("must not be negative")
		}
		*d = millisOrDuration(time.Duration(n) * time.Millisecond)
		return nil
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 0 {
		return errors.New("must be a duration such as 200ms or a number of milliseconds")
	}
	*d = millisOrDuration(dur)
	return nil
}

func (d millisOrDuration) String() string { return formatDuration(time.Duration(d)) }

// dogstatsdURL is DD_DOGSTATSD_URL (unix:///path or udp://host:port) in the
// form datadog-go takes: unix:///path or host:port.
type dogstatsdURL string

// EnvDecode implements envconfig.Decoder.
func (u *dogstatsdURL) EnvDecode(v string) error {
	switch {
	case v == "":
		return nil
	case strings.HasPrefix(v, "unix://"):
		if v == "unix://" {
			return errors.New("has an empty socket path")
		}
		*u = dogstatsdURL(v)
	case strings.HasPrefix(v, "udp://"):
		hp := strings.TrimSuffix(strings.TrimPrefix(v, "udp://"), "/")
		var p port
		if _, ps, err := net.SplitHostPort(hp); err != nil || p.EnvDecode(ps) != nil || ps == "" {
			return errors.New("must be udp://host:port")
		}
		*u = dogstatsdURL(hp)
	default:
		return errors.New("must be unix:///path or udp://host:port")
	}
	return nil
}

// logLevel is a zap level name, lower case.
type logLevel string

// EnvDecode implements envconfig.Decoder.
func (l *logLevel) EnvDecode(v string) error {
	if v == "" {
		return nil
	}
	v = strings.ToLower(v)
	if _, err := zapcore.ParseLevel(v); err != nil {
		return errors.New("is not a log level (debug, info, warn, error)")
	}
	*l = logLevel(v)
	return nil
}

// switchList is a comma-separated list of chaos switch names.
type switchList string

// EnvDecode implements envconfig.Decoder.
func (l *switchList) EnvDecode(v string) error {
	for _, name := range l.namesOf(v) {
		if !shop.KnownSwitch(name) {
			return fmt.Errorf("names no switch %q (known: %s)", name, strings.Join(shop.SwitchNames(), ", "))
		}
	}
	*l = switchList(v)
	return nil
}

// names returns the switches of the list.
func (l switchList) names() []string { return l.namesOf(string(l)) }

func (switchList) namesOf(v string) []string {
	var out []string
	for name := range strings.SplitSeq(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// rateLimitMode is RATE_LIMIT: on, off or auto.
type rateLimitMode string

const (
	rateLimitOn   rateLimitMode = "on"
	rateLimitOff  rateLimitMode = "off"
	rateLimitAuto rateLimitMode = "auto"
)

// EnvDecode implements envconfig.Decoder.
func (m *rateLimitMode) EnvDecode(v string) error {
	switch v = strings.ToLower(v); v {
	case "":
		return nil
	case string(rateLimitOn), string(rateLimitOff), string(rateLimitAuto):
		*m = rateLimitMode(v)
		return nil
	}
	return errors.New("must be on, off or auto")
}

// prefixList is a comma-separated list of addresses or CIDR prefixes.
type prefixList string

// EnvDecode implements envconfig.Decoder.
func (l *prefixList) EnvDecode(v string) error {
	if _, err := parsePrefixes(v); err != nil {
		return err
	}
	*l = prefixList(v)
	return nil
}

// prefixes returns the list's prefixes (an address is its own /32 or /128).
func (l prefixList) prefixes() []netip.Prefix {
	p, _ := parsePrefixes(string(l))
	return p
}

func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("has %q, which is neither an address nor a CIDR prefix", item)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
