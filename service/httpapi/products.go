package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// apiVersion is a version of POST /products: its rules and its headers.
// Versions differ only in rules (shop.ProductRules), never in code.
type apiVersion struct {
	name  string
	rules shop.ProductRules
	// sunset, when set, is the moment from which the version applies its
	// successor's rules (v1 then requires a description, as v2 does).
	sunset time.Time
	// headers are set on every answer of this version.
	headers map[string]string
}

// rulesAt returns the rules in force at now.
func (v apiVersion) rulesAt(now time.Time) shop.ProductRules {
	r := v.rules
	if !v.sunset.IsZero() && !now.Before(v.sunset) {
		r.RequireDescription = true
	}
	return r
}

// deprecationDocs is where the deprecation is explained
// (docs/api-evolution.md), linked with rel="deprecation" (RFC 9745).
const deprecationDocs = "https://shoplab.dev/docs/api-evolution"

// productsV1 is POST /products: description optional until sunset. Its
// answers carry Deprecation (RFC 9745, "@" + Unix seconds), Sunset (RFC
// 8594, an HTTP-date), Link to the successor and to the deprecation notice,
// X-API-Version and the X-API-Deprecation header that the original's
// clients and tests look for.
func productsV1(deprecatedAt, sunset time.Time) apiVersion {
	return apiVersion{name: "v1", sunset: sunset, headers: map[string]string{
		"X-API-Version": "v1",
		"X-API-Deprecation": fmt.Sprintf("POST /products is deprecated as of %s: use POST /products/v2. From %s (Sunset) it requires a description, as v2 does.",
			deprecatedAt.UTC().Format(time.DateOnly), sunset.UTC().Format(time.DateOnly)),
		"Deprecation": "@" + strconv.FormatInt(deprecatedAt.Unix(), 10),
		"Sunset":      sunset.UTC().Format(http.TimeFormat),
		"Link":        `</products/v2>; rel="successor-version", <` + deprecationDocs + `>; rel="deprecation"; type="text/html"`,
	}}
}

// productsV2 is POST /products/v2: v1's rules plus a required description.
func productsV2() apiVersion {
	return apiVersion{name: "v2", rules: shop.ProductRules{RequireDescription: true}, headers: map[string]string{
		"X-API-Version": "v2",
	}}
}

func handleCreateProduct(tel *telemetry.Telemetry, products shop.ProductStore, limit int64, v apiVersion) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, val := range v.headers {
			w.Header().Set(k, val)
		}
		np, err := decodeValid(w, r, limit, v.rulesAt(time.Now()).Validate)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		p, err := products.CreateProduct(r.Context(), np)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		described := "present"
		if p.Description == nil {
			described = "missing"
		}
		_ = tel.Metrics.Incr(telemetry.MetricProductsCreated,
			[]string{"api_version:" + v.name, "client:" + telemetry.ClientFamily(r.UserAgent()), "description:" + described}, 1)
		writeJSON(w, http.StatusCreated, p)
	})
}

// patchRules are the rules of PATCH /products/{id}: a new endpoint, so it
// starts with v2's rules. A description can be set or changed, never
// removed (docs/api-evolution.md).
var patchRules = shop.ProductRules{RequireDescription: true}

// handlePatchProduct applies a partial update (JSON Merge Patch members
// name, description, price, inventory) with the creation field rules.
func handlePatchProduct(tel *telemetry.Telemetry, products shop.ProductStore, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := mux.Vars(r)["id"]
		if !shop.ValidID(id) {
			writeError(w, r, tel, shop.Errorf(shop.ENOTFOUND, "Product not found"))
			return
		}
		patch, err := decodeValid(w, r, limit, patchRules.ValidatePatch)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		p, err := products.UpdateProduct(r.Context(), id, patch)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
}

// Bounds of the listing parameters.
const (
	defaultProductLimit = 20
	maxProductLimit     = 100
	maxProductPage      = 1_000_000
)

// Rejection reasons of GET /products besides the search-query codes of
// package shop (the reason tag of MetricProductQueryRejected).
const (
	rejectMalformedQuery = "malformed_query"
	rejectBadPaging      = "bad_paging"
)

// listQuery is a parsed, bounded GET /products query string.
type listQuery struct {
	q     string // a validated search term; "" lists the catalogue
	page  int
	limit int
	after *shop.Cursor
}

// parseListQuery reads q, page, limit and cursor strictly: a query string
// that is not valid percent-encoding, a page or limit that is not an
// integer in range, a cursor this API did not issue, page together with
// cursor, a search with a cursor, and a search term that cannot be one are
// EINVALID. reason says why, for the rejection metric.
func parseListQuery(raw string, search bool) (lq listQuery, reason string, err error) {
	vals, perr := url.ParseQuery(raw)
	if perr != nil {
		return lq, rejectMalformedQuery, shop.Invalid(shop.FieldError{Field: "query", Code: "malformed",
			Message: "the query string is malformed: use percent-encoding (%XX) for special characters"})
	}
	if search && vals.Has("q") {
		q, err := shop.ParseSearchQuery(vals.Get("q"))
		if err != nil {
			return lq, shop.AsError(err).Fields[0].Code, err
		}
		lq.q = q
	}
	var problems []shop.FieldError
	var fe *shop.FieldError
	if lq.page, fe = intParam(vals, "page", 1, 1, maxProductPage); fe != nil {
		problems = append(problems, *fe)
	}
	if lq.limit, fe = intParam(vals, "limit", defaultProductLimit, 1, maxProductLimit); fe != nil {
		problems = append(problems, *fe)
	}
	if c := vals.Get("cursor"); c != "" {
		switch {
		case lq.q != "":
			problems = append(problems, shop.FieldError{Field: "cursor", Code: "conflict",
				Message: "cursor pages the catalogue listing; search results page with page"})
		case vals.Get("page") != "":
			problems = append(problems, shop.FieldError{Field: "cursor", Code: "conflict",
				Message: "cursor and page cannot be combined: follow the Link header, or use page numbers"})
		default:
			if lq.after, fe = decodeCursor(c); fe != nil {
				problems = append(problems, *fe)
			}
		}
	}
	if len(problems) > 0 {
		return lq, rejectBadPaging, shop.Invalid(problems...)
	}
	return lq, "", nil
}

// pagination is the page metadata of a listing: page, total and pages for
// numbered pages; nextCursor when a keyset page follows.
type pagination struct {
	Page       int    `json:"page,omitempty"`
	Limit      int    `json:"limit"`
	Total      *int   `json:"total,omitempty"`
	Pages      *int   `json:"pages,omitempty"`
	NextCursor string `json:"nextCursor,omitempty"`
}

// writeProductPage answers a listing: products and pagination, and when
// more products follow, Link rel="next" to the next keyset page.
func writeProductPage(w http.ResponseWriter, r *http.Request, lq listQuery, page shop.ProductPage) {
	pg := pagination{Limit: lq.limit}
	if page.Total >= 0 {
		pages := (page.Total + lq.limit - 1) / lq.limit
		pg.Page, pg.Total, pg.Pages = lq.page, &page.Total, &pages
	}
	if page.Next != nil {
		pg.NextCursor = encodeCursor(*page.Next)
		setNextLink(w, r, url.Values{"limit": {strconv.Itoa(lq.limit)}, "cursor": {pg.NextCursor}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"products": page.Products, "pagination": pg})
}

// handleListProducts answers GET /products: the catalogue newest first, by
// page number (?page=&limit=, with totals) or by keyset (?cursor=, from
// Link rel="next"); with ?q=, a search (handleSearch).
func handleListProducts(tel *telemetry.Telemetry, products shop.ProductStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lq, reason, err := parseListQuery(r.URL.RawQuery, true)
		if err != nil {
			_ = tel.Metrics.Incr(telemetry.MetricProductQueryRejected, []string{"reason:" + reason}, 1)
			writeError(w, r, tel, err)
			return
		}
		if lq.q != "" {
			search(w, r, tel, products, lq)
			return
		}
		page, err := products.ListProducts(r.Context(), shop.ProductFilter{Page: lq.page, Limit: lq.limit, After: lq.after})
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeProductPage(w, r, lq, page)
	})
}

// search answers GET /products?q=: the matches best first, by page number,
// with Link rel="next" to the next page. A search past its statement
// timeout is a 503 with Retry-After (from the store's EUNAVAILABLE).
func search(w http.ResponseWriter, r *http.Request, tel *telemetry.Telemetry, products shop.ProductStore, lq listQuery) {
	start := time.Now()
	page, err := products.SearchProducts(r.Context(), shop.ProductSearch{Query: lq.q, Page: lq.page, Limit: lq.limit})
	_ = tel.Metrics.Distribution(telemetry.MetricProductSearchDuration, float64(time.Since(start).Microseconds())/1000,
		[]string{"outcome:" + searchOutcome(r.Context(), err)}, 1)
	if err != nil {
		writeError(w, r, tel, err)
		return
	}
	_ = tel.Metrics.Distribution(telemetry.MetricProductSearchResults, float64(page.Total),
		[]string{"has_results:" + strconv.FormatBool(page.Total > 0)}, 1)
	if lq.page*lq.limit < page.Total {
		setNextLink(w, r, url.Values{"q": {lq.q}, "page": {strconv.Itoa(lq.page + 1)}, "limit": {strconv.Itoa(lq.limit)}})
	}
	pages := (page.Total + lq.limit - 1) / lq.limit
	writeJSON(w, http.StatusOK, map[string]any{
		"products":   page.Products,
		"pagination": pagination{Page: lq.page, Limit: lq.limit, Total: &page.Total, Pages: &pages},
	})
}

// searchOutcome is the outcome tag of a search: ok, canceled (the client
// left), unavailable (timeout or database down: a 503) or error.
func searchOutcome(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return "canceled"
	case shop.ErrorCode(err) == shop.EUNAVAILABLE:
		return "unavailable"
	}
	return "error"
}

// handleMissingDescription answers GET /admin/products/missing-description:
// the products without a description, newest first, paged like GET
// /products (page numbers with the total, the readiness figure; or keyset
// pages, which skip nothing while the list shrinks under a backfill).
func handleMissingDescription(tel *telemetry.Telemetry, products shop.ProductStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lq, _, err := parseListQuery(r.URL.RawQuery, false)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		page, err := products.ListProducts(r.Context(), shop.ProductFilter{Page: lq.page, Limit: lq.limit, After: lq.after, MissingDescription: true})
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeProductPage(w, r, lq, page)
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
