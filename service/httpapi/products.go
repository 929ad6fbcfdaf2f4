package httpapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// apiVersion is a version of POST /products: its rules and its headers.
type apiVersion struct {
	name  string
	rules shop.ProductRules
	// headers are set on every answer of this version.
	headers map[string]string
}

var (
	apiV1 = apiVersion{name: "v1", headers: map[string]string{
		"X-API-Version":     "v1",
		"X-API-Deprecation": "POST /products is deprecated: use POST /products/v2, which requires a description.",
		"Link":              `</products/v2>; rel="successor-version"`,
	}}
	apiV2 = apiVersion{name: "v2", rules: shop.ProductRules{RequireDescription: true}, headers: map[string]string{
		"X-API-Version": "v2",
	}}
)

func handleCreateProduct(tel *telemetry.Telemetry, products shop.ProductStore, limit int64, v apiVersion) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, val := range v.headers {
			w.Header().Set(k, val)
		}
		np, err := decodeValid(w, r, limit, v.rules.Validate)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		p, err := products.CreateProduct(r.Context(), np)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusCreated, p)
	})
}

type pagination struct {
	Page  int `json:"page"`
	Limit int `json:"limit"`
	Total int `json:"total"`
	Pages int `json:"pages"`
}

func handleListProducts(tel *telemetry.Telemetry, products shop.ProductStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var problems []shop.FieldError
		page, fe := queryInt(r, "page", 1, 1, 1_000_000)
		if fe != nil {
			problems = append(problems, *fe)
		}
		limit, fe := queryInt(r, "limit", 20, 1, 100)
		if fe != nil {
			problems = append(problems, *fe)
		}
		if len(problems) > 0 {
			writeError(w, r, tel, shop.Invalid(problems...))
			return
		}
		ps, total, err := products.ListProducts(r.Context(), shop.ProductFilter{Page: page, Limit: limit})
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"products":   ps,
			"pagination": pagination{Page: page, Limit: limit, Total: total, Pages: (total + limit - 1) / limit},
		})
	})
}

func handleGetProduct(tel *telemetry.Telemetry, products shop.ProductStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := mux.Vars(r)["id"]
		if !shop.ValidID(id) {
			writeError(w, r, tel, shop.Errorf(shop.ENOTFOUND, "Product not found"))
			return
		}
		p, err := products.Product(r.Context(), id)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
}

func handleLowInventory(tel *telemetry.Telemetry, products shop.ProductStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		threshold, fe := queryInt(r, "threshold", 10, 0, shop.MaxInventory)
		if fe != nil {
			writeError(w, r, tel, shop.Invalid(*fe))
			return
		}
		ps, err := products.LowInventory(r.Context(), threshold)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusOK, ps)
	})
}
