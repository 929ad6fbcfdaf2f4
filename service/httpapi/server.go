// Package httpapi is shoplab's HTTP edge: the router, one handler maker per
// endpoint, request decoding and validation, and the one error format
// (application/problem+json) that every error of every endpoint uses.
package httpapi

import (
	"net/http"
	"time"

	muxtrace "github.com/DataDog/dd-trace-go/contrib/gorilla/mux/v2"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// Config holds the edge's limits.
type Config struct {
	// MaxBodyBytes bounds ordinary JSON bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxImportBytes bounds POST /admin/products/import bodies (default 50 MiB, the original's limit).
	MaxImportBytes int64
	// MaxImportRows bounds the rows of one import (default 100,000).
	MaxImportRows int
	// ImportProgressRows is how often, in rows, an import logs its
	// progress (default 10,000).
	ImportProgressRows int
	// AdminToken, when set, is the bearer token that every /admin/* route
	// requires; empty leaves them open.
	AdminToken string
	// DefaultOrderLimit is the page size of GET /orders/{userId} without ?limit= (default 500).
	DefaultOrderLimit int
	// MaxOrderLimit bounds ?limit= of GET /orders/{userId} (default 1000).
	MaxOrderLimit int
	// ReadyTimeout bounds the database check of GET /ready (default 2s).
	ReadyTimeout time.Duration
	// ProductsV1DeprecatedAt is when POST /products (v1) was deprecated:
	// its Deprecation header (default 2026-12-01T00:00:00Z).
	ProductsV1DeprecatedAt time.Time
	// ProductsV1Sunset is v1's Sunset header and the moment from which v1
	// requires a description, as v2 does (default 2027-06-01T00:00:00Z).
	ProductsV1Sunset time.Time
	// ReportsMaxConcurrent is how many reports (JSON summaries and
	// downloads together) may run at once; beyond it, 429 (default 3).
	// Keep it at most the report store's pool size, so that an admitted
	// report never waits for a connection.
	ReportsMaxConcurrent int
	// ReportRetryAfter is the Retry-After of a 429 report (default 2s).
	ReportRetryAfter time.Duration
	// ReportMaxLinesPerSec is the total order lines per second of all
	// downloads together: one pace that every running download shares, so
	// that the CPU reports take from the service and the database is
	// bounded whatever their number (0: unpaced, as fast as the database
	// and clients go).
	ReportMaxLinesPerSec int
	// ReportMaxDuration bounds a report from admission to its last byte,
	// including a client that reads slowly (default 5m).
	ReportMaxDuration time.Duration
}

// The default deprecation and sunset of POST /products (v1): deprecated
// with this release, description-optional for six months more
// (docs/api-evolution.md).
var (
	defaultProductsV1DeprecatedAt = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	defaultProductsV1Sunset       = time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
)

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxImportBytes <= 0 {
		c.MaxImportBytes = 50 << 20
	}
	if c.MaxImportRows <= 0 {
		c.MaxImportRows = 100_000
	}
	if c.ImportProgressRows <= 0 {
		c.ImportProgressRows = 10_000
	}
	if c.DefaultOrderLimit <= 0 {
		c.DefaultOrderLimit = 500
	}
	if c.MaxOrderLimit <= 0 {
		c.MaxOrderLimit = 1000
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 2 * time.Second
	}
	if c.ProductsV1DeprecatedAt.IsZero() {
		c.ProductsV1DeprecatedAt = defaultProductsV1DeprecatedAt
	}
	if c.ProductsV1Sunset.IsZero() {
		c.ProductsV1Sunset = defaultProductsV1Sunset
	}
	if c.ReportsMaxConcurrent <= 0 {
		c.ReportsMaxConcurrent = 3
	}
	if c.ReportRetryAfter <= 0 {
		c.ReportRetryAfter = 2 * time.Second
	}
	if c.ReportMaxDuration <= 0 {
		c.ReportMaxDuration = 5 * time.Minute
	}
	return c
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
	DB      shop.Pinger
}

// NewServer builds the HTTP handler: a traced gorilla/mux router with every
// route of routes.go (which also installs the admin routes' auth), wrapped
// in request-id and recovery middleware.
func NewServer(d Deps) http.Handler {
	d.Config = d.Config.withDefaults()
	tel := d.Telemetry
	r := muxtrace.NewRouter(muxtrace.WithService(tel.Config.Service))
	r.NotFoundHandler = handleNotFound(tel)
	r.MethodNotAllowedHandler = handleMethodNotAllowed(tel, r.Router)
	// Metrics and access log outside, recovery inside: a panic is seen as
	// the 500 that recoverer answers.
	telemetry.InstrumentRouter(tel, r.Router)
	r.Use(recoverer(tel))
	addRoutes(r.Router, d)
	return requestID(r)
}
