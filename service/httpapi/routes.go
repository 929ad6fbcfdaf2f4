package httpapi

import (
	"github.com/gorilla/mux"
)

// addRoutes maps every route of the API: this file is the whole surface.
func addRoutes(r *mux.Router, d Deps) {
	tel, cfg := d.Telemetry, d.Config

	r.Handle("/health", handleHealth()).Methods("GET", "HEAD")
	r.Handle("/ready", handleReady(tel, d.DB, cfg.ReadyTimeout)).Methods("GET", "HEAD")
	r.Handle("/openapi.yaml", handleOpenAPI()).Methods("GET", "HEAD") // api/openapi.yaml, this API's description

	r.Handle("/products", handleListProducts(tel, d.Products)).Methods("GET") // ?page= | ?cursor= | ?q=
	v1 := productsV1(cfg.ProductsV1DeprecatedAt, cfg.ProductsV1Sunset)
	r.Handle("/products", handleCreateProduct(tel, d.Products, cfg.MaxBodyBytes, v1)).Methods("POST")
	r.Handle("/products/v2", handleCreateProduct(tel, d.Products, cfg.MaxBodyBytes, productsV2())).Methods("POST")
	r.Handle("/products/{id}", handleGetProduct(tel, d.Products)).Methods("GET")
	r.Handle("/products/{id}", handlePatchProduct(tel, d.Products, cfg.MaxBodyBytes)).Methods("PATCH")

	r.Handle("/users", handleCreateUser(tel, d.Users, cfg.MaxBodyBytes, cfg.BuyerAuth)).Methods("POST") // issues a buyer token with BuyerAuth

	// Buyer routes: a buyer's own data. requireBuyer asks for the buyer's
	// token (or the admin token); the handlers answer another buyer's id
	// with the 404 of an unknown one (mayActFor). BuyerAuth off
	// (BUYER_AUTH=off, the original's clients) leaves them open. Like
	// /admin, the subrouter has no PathPrefix (gorilla/mux#751).
	buyer := r.NewRoute().Subrouter()
	if cfg.BuyerAuth {
		buyer.Use(requireBuyer(tel))
	} else {
		buyer.Use(openBuyers())
	}
	// Before /orders/checkout, which notPath leaves to it: mux answers 405
	// (Allow: POST) only when the last route the path matched failed on
	// its method (gorilla/mux 1.8.1's Route.Match).
	buyer.Handle("/orders/{userId}", handleOrdersByUser(tel, d.Orders, cfg.DefaultOrderLimit, cfg.MaxOrderLimit)).Methods("GET").MatcherFunc(notPath("/orders/checkout"))
	buyer.Handle("/orders/checkout", handleCheckout(tel, d.Orders, cfg.MaxBodyBytes)).Methods("POST")
	// Reports: at most ReportsMaxConcurrent at once (admitted after
	// authentication); one pace shared by every download.
	reportSlots, reportPace := newReportLimiter(tel, cfg.ReportsMaxConcurrent), newReportPace(cfg.ReportMaxLinesPerSec)
	buyer.Handle("/reports/orders/{userId}", handleOrderReport(tel, d.Reports, d.Switches, reportSlots, reportPace, cfg.ReportRetryAfter, cfg.ReportMaxDuration)).Methods("GET")

	// /admin/*: requireAdmin asks every route of this subrouter for the
	// admin token (when one is set). An unknown /admin path or a wrong
	// method falls through to the router's 404 or 405 without asking for
	// it, as on any other path. The subrouter has no PathPrefix of its own:
	// under one, mux answers a wrong method with 404 (gorilla/mux#751).
	admin := r.NewRoute().Subrouter()
	admin.Use(requireAdmin(tel, cfg.AdminToken))
	admin.Handle("/admin/products/import", handleImport(tel, d.Products, v1, newImportAdmission(tel, cfg), cfg.MaxImportBytes, cfg.MaxImportRows, cfg.ImportProgressRows)).Methods("POST")
	admin.Handle("/admin/inventory/low", handleLowInventory(tel, d.Products)).Methods("GET")
	admin.Handle("/admin/products/missing-description", handleMissingDescription(tel, d.Products)).Methods("GET")
	if d.Switches != nil { // the chaos switches (docs/switches.md); never in production
		admin.Handle("/admin/switches", handleListSwitches(d.Switches)).Methods("GET")
		admin.Handle("/admin/switches/{name}", handleFlipSwitch(tel, d.Switches, cfg.MaxBodyBytes)).Methods("PUT")
	}
}
