package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sethvargo/go-limiter/memorystore"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// openPool opens the main pool with the service's application_name and,
// when tel is set, its query tracer.
func openPool(ctx context.Context, cfg config, tel *telemetry.Telemetry) (*pgxpool.Pool, error) {
	var tracer pgx.QueryTracer
	if tel != nil {
		tracer = telemetry.NewQueryTracer(tel)
	}
	pc, err := postgres.PoolConfig(cfg.DatabaseURL, cfg.AppName, tracer)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = cfg.DBMaxConns
	return pgxpool.NewWithConfig(ctx, pc)
}

// openReportsPool opens the reports' own small pool (REPORTS_*), with
// application_name "<app>.reports" and its own query tracer tagged
// pool:reports: reports can exhaust it, never the main pool.
func openReportsPool(ctx context.Context, cfg config, tel *telemetry.Telemetry) (*pgxpool.Pool, error) {
	tracer := telemetry.NewQueryTracer(tel).WithPoolName("reports")
	pc, err := postgres.PoolConfig(cfg.ReportsDatabaseURL, cfg.AppName+".reports", tracer)
	if err != nil {
		return nil, fmt.Errorf("reports pool: %w", err)
	}
	pc.MaxConns = cfg.ReportsMaxConns
	return pgxpool.NewWithConfig(ctx, pc)
}

// openImportsPool opens the imports' own small pool (IMPORTS_MAX_CONNS) on
// the main database, with application_name "<app>.imports" and a query
// tracer tagged pool:imports: slow uploads can exhaust it, never the main
// pool.
func openImportsPool(ctx context.Context, cfg config, tel *telemetry.Telemetry) (*pgxpool.Pool, error) {
	tracer := telemetry.NewQueryTracer(tel).WithPoolName("imports")
	pc, err := postgres.PoolConfig(cfg.DatabaseURL, cfg.AppName+".imports", tracer)
	if err != nil {
		return nil, fmt.Errorf("imports pool: %w", err)
	}
	pc.MaxConns = cfg.ImportsMaxConns
	return pgxpool.NewWithConfig(ctx, pc)
}

// serve is `shopd serve`: open the stores, start the background work,
// serve HTTP until ctx ends; then stop serving, stop the background work
// and wait for it, and only then close the pools.
func serve(ctx context.Context, cfg config, stdout io.Writer) error {
	if err := productionRefusals(cfg); err != nil {
		return err
	}
	board, closeSwitches, err := openSwitches(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeSwitches()
	tel, err := telemetry.New(cfg.Telemetry, stdout)
	if err != nil {
		return err
	}
	defer tel.Close()
	log := tel.Log
	if cfg.AdminToken == "" {
		log.Warn("ADMIN_TOKEN is not set: /admin/* endpoints (bulk import, inventory) are open to anyone; set it outside development",
			zap.String("app_env", cfg.AppEnv))
	}
	if !cfg.BuyerAuth {
		log.Warn("BUYER_AUTH=off: anyone who knows a customer's id reads their orders and reports and checks out on their account; for the original's clients only, never outside development",
			zap.String("app_env", cfg.AppEnv))
	}
	if board != nil {
		for _, name := range activeSwitches(ctx, board) {
			log.Warn("chaos switch on: the original's defect is live (docs/switches.md)", zap.String("switch", name))
		}
	}

	st, err := openStores(ctx, cfg, tel)
	if err != nil {
		return err
	}
	defer st.close()
	st.switches = board
	st.db.Switches = board
	autovacuumOff := false
	if on, err := st.db.Autovacuum(ctx); err != nil {
		log.Warn("could not read the server's autovacuum setting", zap.Error(err))
	} else if !on {
		autovacuumOff = true
		log.Warn(autovacuumOffWarning, zap.Duration("check_interval", staleStatsInterval))
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	work, err := startBackground(bg, cfg, st, tel, autovacuumOff)
	if err != nil {
		return err
	}
	rl, closeLimiter, err := openRateLimit(cfg, log)
	if err != nil {
		return err
	}
	defer closeLimiter()
	// ctx, done at SIGTERM, is the handler's Stopping: imports and
	// downloads in flight are cut at once, while serveHTTP lets the short
	// requests finish.
	serveErr := serveHTTP(ctx, cfg, log, newHandler(ctx, cfg, tel, st, rl))

	stopBG()
	done := make(chan struct{})
	go func() {
		_ = work.Wait() // the background functions log their own failures
		close(done)
	}()
	select { // the relay finishes its send in progress
	case <-done:
	case <-time.After(cfg.ShutdownTimeout):
		log.Warn("background work did not stop in time; the outbox relay's claimed confirmations come back after their lease")
	}
	st.close()
	if serveErr == nil {
		log.Info("stopped")
	}
	return serveErr
}

// stores are the pools and stores serve opens first and closes last.
type stores struct {
	pool, reportsPool, importsPool *pgxpool.Pool
	db                             *postgres.DB
	reports                        *postgres.Reports
	// replicaLag is the last reading of the reports database's
	// replication state (telemetry.SampleReplicaLag).
	replicaLag *telemetry.ReplicaLag
	// switches are the chaos switches; nil in production.
	switches  shop.SwitchBoard
	closeOnce sync.Once
}

// openStores opens the main pool and its store (with the checkout, search
// and idempotency settings), detects the users schema, and opens the
// reports' own pool and store.
func openStores(ctx context.Context, cfg config, tel *telemetry.Telemetry) (*stores, error) {
	log := tel.Log
	pool, err := openPool(ctx, cfg, tel)
	if err != nil {
		return nil, err
	}
	db := postgres.New(pool)
	db.CheckoutTimeouts = postgres.Timeouts{Acquire: cfg.CheckoutAcquireTimeout, Lock: cfg.CheckoutLockTimeout, Statement: cfg.CheckoutStatementTimeout}
	db.IdempotencyTTL = cfg.IdempotencyKeyTTL
	db.SearchTimeouts = postgres.Timeouts{Statement: cfg.SearchStatementTimeout}
	db.AcquireTimeout = cfg.DBAcquireTimeout

	// Which side of the users split the schema is on (docs/schema-split.md);
	// the stores notice a later change by themselves.
	if mode, err := db.DetectUsersSchema(ctx); err != nil {
		log.Warn("users schema not detected; the stores will retry", zap.Error(err))
	} else {
		log.Info("users schema detected", zap.String("accounts", mode))
	}

	reportsPool, err := openReportsPool(ctx, cfg, tel)
	if err != nil {
		pool.Close()
		return nil, err
	}
	importsPool, err := openImportsPool(ctx, cfg, tel)
	if err != nil {
		reportsPool.Close()
		pool.Close()
		return nil, err
	}
	db.ImportPool = importsPool
	if cfg.ReportsMaxConcurrent > int(cfg.ReportsMaxConns) {
		log.Warn("REPORTS_MAX_CONCURRENT exceeds REPORTS_MAX_CONNS: admitted reports will queue for connections",
			zap.Int("max_concurrent", cfg.ReportsMaxConcurrent), zap.Int32("max_conns", cfg.ReportsMaxConns))
	}
	st := &stores{pool: pool, reportsPool: reportsPool, importsPool: importsPool, db: db,
		reports: postgres.NewReports(reportsPool, cfg.ReportsStatementTimeout), replicaLag: &telemetry.ReplicaLag{}}
	st.reports.Gate = replicaGate(st.replicaLag, cfg.ReportsMaxReplicaLag)
	return st, nil
}

// replicaLagInterval is how often the reports database's replication state
// is sampled: the lag a report may be refused for is at most this old.
const replicaLagInterval = time.Second

// replicaRetryAfter is the Retry-After of a report refused because the
// replica is behind; one refused because it is down gets the 5 s of any
// unavailable database.
const replicaRetryAfter = 10 * time.Second

// replicaGate refuses reports (EUNAVAILABLE, 503 + Retry-After) while the
// reports database, a standby, is more than maxLag behind its primary
// (maxLag 0: never for lag), or while its last sample failed (it is down or
// does not answer). Before the first sample, on a primary, and when the
// sampler does not run (reports on DATABASE_URL), it admits every report. Reports never fall back to the primary: see docs/reports.md.
func replicaGate(lag *telemetry.ReplicaLag, maxLag time.Duration) func() error {
	return func() error {
		r := lag.Last()
		switch {
		case r.At.IsZero():
			return nil
		case r.Err != nil:
			return &shop.Error{Code: shop.EUNAVAILABLE, RetryAfter: 5 * time.Second, Err: r.Err,
				Message: "The reports database is unavailable; retry later."}
		case r.Standby && maxLag > 0 && r.Lag > maxLag:
			return &shop.Error{Code: shop.EUNAVAILABLE, RetryAfter: replicaRetryAfter,
				Message: fmt.Sprintf("Reports are %s behind the latest orders (at most %s allowed); retry later.",
					r.Lag.Round(time.Second), maxLag)}
		}
		return nil
	}
}

// close closes the pools, once; it waits for their connections to be
// released.
func (s *stores) close() {
	s.closeOnce.Do(func() {
		s.importsPool.Close()
		s.reportsPool.Close()
		s.pool.Close()
	})
}

// startBackground starts serve's background work in one group tied to ctx:
// the pool and lock-wait samplers, the replica lag sampler (when
// REPORTS_DATABASE_URL names another database than DATABASE_URL), the idempotency key cleanup, the outbox
// relay (or, without one, the outbox gauges) and, when autovacuum is off,
// the stale-statistics check. Each runs until ctx ends; the caller waits
// for the group before closing the pools.
func startBackground(ctx context.Context, cfg config, st *stores, tel *telemetry.Telemetry, autovacuumOff bool) (*errgroup.Group, error) {
	outbox, err := outboxWork(cfg, st.db, tel)
	if err != nil {
		return nil, err
	}
	var g errgroup.Group
	g.Go(func() error { telemetry.ReportPoolStats(ctx, tel, "main", st.pool, cfg.DBStatsInterval); return nil })
	g.Go(func() error {
		telemetry.ReportPoolStats(ctx, tel, "reports", st.reportsPool, cfg.DBStatsInterval)
		return nil
	})
	g.Go(func() error {
		telemetry.ReportPoolStats(ctx, tel, "imports", st.importsPool, cfg.DBStatsInterval)
		return nil
	})
	g.Go(func() error { telemetry.SampleLockWaits(ctx, tel, st.pool, time.Second); return nil })
	if cfg.ReportsDatabaseURL != cfg.DatabaseURL { // a replica, maybe: sample it
		g.Go(func() error {
			telemetry.SampleReplicaLag(ctx, tel, "reports", st.reportsPool, st.replicaLag, replicaLagInterval)
			return nil
		})
	}
	g.Go(func() error { expireIdempotencyKeys(ctx, tel, st.db, cfg.IdempotencyCleanup); return nil })
	g.Go(func() error { return outbox(ctx) })
	if autovacuumOff {
		g.Go(func() error { analyzeStaleTables(ctx, tel, st.db, staleStatsInterval); return nil })
	}
	if st.switches != nil {
		g.Go(func() error { reportSwitches(ctx, tel, st.switches, 10*time.Second); return nil })
	}
	return &g, nil
}

// newHandler builds the HTTP API on the stores; stopping is done when the
// server begins to shut down.
func newHandler(stopping context.Context, cfg config, tel *telemetry.Telemetry, st *stores, rl httpapi.RateLimit) http.Handler {
	return httpapi.NewServer(httpapi.Deps{
		Config: httpapi.Config{
			MaxBodyBytes:           cfg.MaxBodyBytes,
			MaxImportBytes:         cfg.MaxImportBytes,
			MaxImportRows:          int(cfg.MaxImportRows),
			ImportProgressRows:     int(cfg.ImportProgressRows),
			AdminToken:             cfg.AdminToken,
			BuyerAuth:              bool(cfg.BuyerAuth),
			ProductsV1DeprecatedAt: cfg.ProductsV1DeprecatedAt.Time,
			ProductsV1Sunset:       cfg.ProductsV1Sunset.Time,
			ReportsMaxConcurrent:   cfg.ReportsMaxConcurrent,
			ReportMaxDuration:      cfg.ReportsMaxDuration,
			ReportMaxLinesPerSec:   int(cfg.ReportsMaxLinesPerSec),
			ImportsMaxConcurrent:   cfg.ImportsMaxConcurrent,
			UploadIdleTimeout:      cfg.UploadIdleTimeout,
			UploadMinBytesPerSec:   cfg.UploadMinBytesPerSec,
		},
		Stopping:  stopping,
		Telemetry: tel,
		Products:  st.db,
		Orders:    st.db,
		Reports:   st.reports,
		Users:     st.db,
		Tokens:    st.db,
		DB:        st.db,
		Switches:  st.switches,
		RateLimit: rl,
	})
}

// openRateLimit builds the per-client rate limit (RATE_LIMIT*): a
// go-limiter memory store, one budget per client, whose sweeper drops
// clients idle for two windows. close stops the sweeper. With the limit
// off it returns a RateLimit without a limiter, and warns in production.
func openRateLimit(cfg config, log *zap.Logger) (httpapi.RateLimit, func(), error) {
	if !cfg.rateLimited() {
		if cfg.production() {
			log.Warn("RATE_LIMIT=off: no per-client rate limit in production")
		}
		return httpapi.RateLimit{}, func() {}, nil
	}
	store, err := memorystore.New(&memorystore.Config{
		Tokens:        uint64(cfg.RateLimitRequests),
		Interval:      cfg.RateLimitWindow,
		SweepInterval: max(cfg.RateLimitWindow, time.Minute),
		SweepMinTTL:   2 * cfg.RateLimitWindow,
	})
	if err != nil {
		return httpapi.RateLimit{}, nil, fmt.Errorf("rate limit: %w", err)
	}
	log.Info("per-client rate limit on", zap.Int64("requests", cfg.RateLimitRequests),
		zap.Duration("window", cfg.RateLimitWindow), zap.String("trusted_proxies", string(cfg.TrustedProxies)))
	rl := httpapi.RateLimit{Limiter: store, Window: cfg.RateLimitWindow, TrustedProxies: cfg.TrustedProxies.prefixes()}
	return rl, func() { _ = store.Close(context.Background()) }, nil
}

// serveHTTP listens on cfg.Addr and serves handler until ctx ends, then
// shuts down gracefully: in-flight requests get cfg.ShutdownTimeout to
// finish, and are cut after it.
func serveHTTP(ctx context.Context, cfg config, log *zap.Logger, handler http.Handler) error {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", zap.Duration("timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests did not finish in time", zap.Error(err))
		_ = srv.Close()
	}
	<-errc // Serve has returned http.ErrServerClosed
	return nil
}

// expireIdempotencyKeys deletes expired checkout idempotency keys now and
// then every interval until ctx ends, counting them in
// MetricIdempotencyKeysExpired. Failures are logged; the next run retries.
func expireIdempotencyKeys(ctx context.Context, tel *telemetry.Telemetry, db *postgres.DB, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := db.DeleteExpiredIdempotencyKeys(ctx)
		if n > 0 {
			_ = tel.Metrics.Count(telemetry.MetricIdempotencyKeysExpired, n, nil, 1)
			tel.Log.Info("expired idempotency keys deleted", zap.Int64("count", n))
		}
		if err != nil && ctx.Err() == nil {
			tel.Log.Warn("idempotency key cleanup failed", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// autovacuumOffWarning is what serve logs, and setup prints, when the
// server's autovacuum is off.
const autovacuumOffWarning = "autovacuum is off on this PostgreSQL server: nothing refreshes the planner's statistics " +
	"after bulk loads or deletes, so they go stale and plans made for a small table run on a large one " +
	"(order history went from 3.9 ms to 570 ms after 1,000,000 order lines were loaded; docs/incidents.md, row 1). " +
	"shopd analyzes products after every large import, and shopd serve analyzes every table whose rows changed by " +
	"more than 10% since its last ANALYZE (autovacuum's own rule) once a minute; apart from products after a large import, nothing is vacuumed: turn autovacuum on"

// staleStatsInterval is how often serve looks for tables with stale
// statistics while autovacuum is off (autovacuum_naptime's default).
const staleStatsInterval = time.Minute

// analyzeStaleTables runs db.AnalyzeStale now and then every interval until
// ctx ends, and logs the tables it analyzed and how long that took (each
// ANALYZE is also a stats.analyze SQL span). Failures are logged; the next
// run retries.
func analyzeStaleTables(ctx context.Context, tel *telemetry.Telemetry, db *postgres.DB, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		tables, err := db.AnalyzeStale(ctx)
		if len(tables) > 0 {
			tel.Log.Info("stale planner statistics refreshed (ANALYZE)", zap.Strings("tables", tables),
				zap.Int64("duration_ms", time.Since(start).Milliseconds()))
		}
		if err != nil && ctx.Err() == nil {
			tel.Log.Warn("stale-statistics check failed", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func migrate(ctx context.Context, cfg config, command string, stdout io.Writer) error {
	pool, err := openPool(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	return postgres.Migrate(ctx, pool, command, stdout)
}

func seed(ctx context.Context, cfg config, stdout io.Writer) error {
	pool, err := openPool(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	start := time.Now()
	st, err := postgres.New(pool).Seed(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded %d users, %d products, %d orders, %d order items in %s\n",
		st.Users, st.Products, st.Orders, st.Items, time.Since(start).Round(time.Millisecond))
	return nil
}

// setup prepares a database from nothing: it creates it when missing,
// migrates it up and seeds it when it holds no products.
func setup(ctx context.Context, cfg config, stdout io.Writer) error {
	if err := createDatabase(ctx, cfg.DatabaseURL, stdout); err != nil {
		return err
	}
	if err := migrate(ctx, cfg, "up", stdout); err != nil {
		return err
	}
	pool, err := openPool(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		fmt.Fprintf(stdout, "database already holds %d products; not seeding\n", n)
	} else if err := seed(ctx, cfg, stdout); err != nil {
		return err
	}
	db := postgres.New(pool)
	on, err := db.Autovacuum(ctx)
	if err != nil || on {
		return err
	}
	fmt.Fprintf(stdout, "warning: %s\n", autovacuumOffWarning)
	tables, err := db.AnalyzeStale(ctx)
	if len(tables) > 0 {
		fmt.Fprintf(stdout, "analyzed tables with stale statistics: %s\n", strings.Join(tables, ", "))
	}
	return err
}

// createDatabase creates the database that dsn names when it does not
// exist, connecting to the server's "postgres" database to do so.
func createDatabase(ctx context.Context, dsn string, stdout io.Writer) error {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to database %q: %w", cc.Database, err)
	}
	name := cc.Database
	cc.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("connect to create database %q: %w", name, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	fmt.Fprintf(stdout, "created database %q\n", name)
	return nil
}
