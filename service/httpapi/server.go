// Package httpapi is shoplab's HTTP edge: the router, one handler maker per
// endpoint, request decoding and validation, and the one error format
// (application/problem+json) that every error of every endpoint uses.
package httpapi

import (
	"context"
	"net/http"
	"time"

	muxtrace "github.com/DataDog/dd-trace-go/contrib/gorilla/mux/v2"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// Config holds the edge's limits. A zero field takes DefaultConfig's value
// (NewServer fills them), except AdminToken, BuyerAuth, ReportMaxLinesPerSec
// and UploadMinBytesPerSec, whose zero values mean "open", "open",
// "unpaced" and "no minimum rate". (shopd turns BuyerAuth on unless
// BUYER_AUTH=off.)
type Config struct {
	// MaxBodyBytes bounds ordinary JSON bodies.
	MaxBodyBytes int64
	// MaxImportBytes bounds POST /admin/products/import bodies.
	MaxImportBytes int64
	// MaxImportRows bounds the rows of one import.
	MaxImportRows int
	// ImportProgressRows is how often, in rows, an import logs its
	// progress.
	ImportProgressRows int
	// AdminToken, when set, is the bearer token that every /admin/* route
	// requires; empty leaves them open.
	AdminToken string
	// BuyerAuth makes GET /orders/{userId}, GET /reports/orders/{userId}
	// and POST /orders/checkout require the buyer's own token (Deps.Tokens)
	// or AdminToken; false leaves them open to anyone, as in the original.
	BuyerAuth bool
	// DefaultOrderLimit is the page size of GET /orders/{userId} without ?limit=.
	DefaultOrderLimit int
	// MaxOrderLimit bounds ?limit= of GET /orders/{userId}.
	MaxOrderLimit int
	// ReadyTimeout bounds the database check of GET /ready.
	ReadyTimeout time.Duration
	// ProductsV1DeprecatedAt is when POST /products (v1) was deprecated:
	// its Deprecation header.
	ProductsV1DeprecatedAt time.Time
	// ProductsV1Sunset is v1's Sunset header and the moment from which v1
	// requires a description, as v2 does.
	ProductsV1Sunset time.Time
	// ReportsMaxConcurrent is how many reports (JSON summaries and
	// downloads together) may run at once; beyond it, 429.
	// Keep it at most the report store's pool size, so that an admitted
	// report never waits for a connection.
	ReportsMaxConcurrent int
	// ReportRetryAfter is the Retry-After of a 429 report.
	ReportRetryAfter time.Duration
	// ReportMaxLinesPerSec is the total order lines per second of all
	// downloads together: one pace that every running download shares, so
	// that the CPU reports take from the service and the database is
	// bounded whatever their number (0: unpaced, as fast as the database
	// and clients go).
	ReportMaxLinesPerSec int
	// ReportMaxDuration bounds a report from admission to its last byte,
	// including a client that reads slowly.
	ReportMaxDuration time.Duration
	// ImportsMaxConcurrent is how many imports may run at once; beyond
	// it, 429. Keep it at most the import store's pool size.
	ImportsMaxConcurrent int
	// ImportRetryAfter is the Retry-After of a refused (429) or
	// shut-down (503) import.
	ImportRetryAfter time.Duration
	// UploadIdleTimeout is the longest an import's upload may send
	// nothing; past it, 408 and nothing imported.
	UploadIdleTimeout time.Duration
	// UploadMinBytesPerSec is the lowest average rate of an import's
	// upload once it has run UploadIdleTimeout; below it, 408 (0: no
	// minimum).
	UploadMinBytesPerSec int64
}

// DefaultConfig is the edge's default limits, the one place they are
// written (shopd starts its configuration from it).
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:       1 << 20,
		MaxImportBytes:     50 << 20, // the original's limit
		MaxImportRows:      100_000,
		ImportProgressRows: 10_000,
		DefaultOrderLimit:  500,
		MaxOrderLimit:      1000,
		ReadyTimeout:       2 * time.Second,
		// v1 is deprecated with this release and description-optional for
		// six months more (docs/api-evolution.md).
		ProductsV1DeprecatedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		ProductsV1Sunset:       time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC),
		ReportsMaxConcurrent:   3,
		ReportRetryAfter:       2 * time.Second,
		ReportMaxDuration:      5 * time.Minute,
		ImportsMaxConcurrent:   2,
		ImportRetryAfter:       5 * time.Second,
		UploadIdleTimeout:      10 * time.Second,
		UploadMinBytesPerSec:   1024,
		// ReportMaxLinesPerSec 0: unpaced.
	}
}

// withDefaults fills c's zero (or negative) limits from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	fillTime := func(v *time.Time, def time.Time) {
		if v.IsZero() {
			*v = def
		}
	}
	fill(&c.MaxBodyBytes, d.MaxBodyBytes)
	fill(&c.MaxImportBytes, d.MaxImportBytes)
	fill(&c.MaxImportRows, d.MaxImportRows)
	fill(&c.ImportProgressRows, d.ImportProgressRows)
	fill(&c.DefaultOrderLimit, d.DefaultOrderLimit)
	fill(&c.MaxOrderLimit, d.MaxOrderLimit)
	fill(&c.ReadyTimeout, d.ReadyTimeout)
	fillTime(&c.ProductsV1DeprecatedAt, d.ProductsV1DeprecatedAt)
	fillTime(&c.ProductsV1Sunset, d.ProductsV1Sunset)
	fill(&c.ReportsMaxConcurrent, d.ReportsMaxConcurrent)
	fill(&c.ReportRetryAfter, d.ReportRetryAfter)
	fill(&c.ReportMaxDuration, d.ReportMaxDuration)
	fill(&c.ImportsMaxConcurrent, d.ImportsMaxConcurrent)
	fill(&c.ImportRetryAfter, d.ImportRetryAfter)
	fill(&c.UploadIdleTimeout, d.UploadIdleTimeout)
	return c
}

// fill sets a zero or negative *v to def.
func fill[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Deps are what the server needs. Stores are interfaces of package shop;
// the edge never sees SQL.
type Deps struct {
	Config    Config
	Telemetry *telemetry.Telemetry
	Products  shop.ProductStore
	Orders    shop.OrderStore
	// Reports should be built on its own small pool (shopd: the reports
	// pool), so that reports never take the connections of the others.
	Reports shop.ReportStore
	Users   shop.UserStore
	// Tokens authenticates buyers; required with Config.BuyerAuth.
	Tokens shop.TokenStore
	DB     shop.Pinger
	// Switches, when set, are the chaos switches (docs/switches.md): the
	// edge's defects (raw-errors, report-in-process) follow them, and
	// /admin/switches lists and flips them. Nil (production) turns them all
	// off and leaves /admin/switches out.
	Switches shop.SwitchBoard
	// Stopping, when set, is done when the server begins to shut down:
	// imports are refused from then on (503), running uploads are cut
	// with 503 + Retry-After and report downloads ended, so that the
	// shutdown waits only for short requests.
	Stopping context.Context
	// RateLimit is the per-client rate limit of every route but /health
	// and /ready; a nil RateLimit.Limiter turns it off.
	RateLimit RateLimit
}

// NewServer builds the HTTP handler: a traced gorilla/mux router with every
// route of routes.go (which also installs the admin routes' auth), wrapped
// in request-id and recovery middleware.
func NewServer(d Deps) http.Handler {
	d.Config = d.Config.withDefaults()
	if d.Config.BuyerAuth && d.Tokens == nil {
		panic("httpapi: Config.BuyerAuth needs Deps.Tokens")
	}
	tel := d.Telemetry
	r := muxtrace.NewRouter(muxtrace.WithService(tel.Config.Service))
	r.NotFoundHandler = handleNotFound(tel)
	r.MethodNotAllowedHandler = handleMethodNotAllowed(tel, r.Router)
	// Metrics and access log outside, recovery inside: a panic is seen as
	// the 500 that recoverer answers.
	telemetry.InstrumentRouter(tel, r.Router)
	r.Use(recoverer(tel))
	// The credential is resolved lazily, once: the rate limit keys on it
	// and the buyer routes' requireBuyer admits on it.
	r.Use(withCredentials(d.Tokens, d.Config.AdminToken))
	r.Use(rateLimit(tel, d.RateLimit))
	addRoutes(r.Router, d)
	return requestID(withStopping(d.Stopping, withSwitches(d.Switches, headAsGet(r.Router, r))))
}
