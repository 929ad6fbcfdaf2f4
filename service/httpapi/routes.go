package httpapi

import (
	"github.com/gorilla/mux"
)

// addRoutes maps every route of the API: this file is the whole surface.
func addRoutes(r *mux.Router, d Deps) {
	tel, cfg := d.Telemetry, d.Config

	r.Handle("/health", handleHealth()).Methods("GET", "HEAD")
	r.Handle("/ready", handleReady(tel, d.DB, cfg.ReadyTimeout)).Methods("GET", "HEAD")

	r.Handle("/products", handleListProducts(tel, d.Products)).Methods("GET")
	r.Handle("/products", handleCreateProduct(tel, d.Products, cfg.MaxBodyBytes, apiV1)).Methods("POST")
	r.Handle("/products/v2", handleCreateProduct(tel, d.Products, cfg.MaxBodyBytes, apiV2)).Methods("POST")
	r.Handle("/products/{id}", handleGetProduct(tel, d.Products)).Methods("GET")

	r.Handle("/orders/checkout", handleCheckout(tel, d.Orders, cfg.MaxBodyBytes)).Methods("POST")
	r.Handle("/orders/{userId}", handleOrdersByUser(tel, d.Orders, cfg.DefaultOrderLimit, cfg.MaxOrderLimit)).Methods("GET")

	r.Handle("/admin/products/import", handleImport(tel, d.Products, cfg.MaxImportBytes)).Methods("POST")
	r.Handle("/admin/inventory/low", handleLowInventory(tel, d.Products)).Methods("GET")

	r.Handle("/reports/orders/{userId}", handleOrderReport(tel, d.Reports, newReportLimiter(tel, cfg.ReportsMaxConcurrent), cfg)).Methods("GET")
}
