package httpapi_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

// newProductEnv is newEnv with an edge configuration and a search
// statement timeout of its own.
func newProductEnv(t testing.TB, cfg httpapi.Config, searchTimeout time.Duration) *testEnv {
	t.Helper()
	db := postgres.New(pgtest.New(t))
	db.SearchTimeouts = postgres.Timeouts{Statement: searchTimeout}
	if _, err := db.Seed(t.Context()); err != nil {
		t.Fatal(err)
	}
	tel, stats, logs := telemetrytest.New(t)
	return serve(t, db, cfg, tel, stats, logs)
}

// listBody is the answer of GET /products and of the missing-description list.
type listBody struct {
	Products   []shop.Product `json:"products"`
	Pagination struct {
		Page       int    `json:"page"`
		Limit      int    `json:"limit"`
		Total      *int   `json:"total"`
		Pages      *int   `json:"pages"`
		NextCursor string `json:"nextCursor"`
	} `json:"pagination"`
}

// nextLink returns the target of a Link rel="next" header, or "".
func nextLink(t *testing.T, res response) string {
	t.Helper()
	l := res.header.Get("Link")
	if l == "" {
		return ""
	}
	if !strings.HasPrefix(l, "<") || !strings.HasSuffix(l, `>; rel="next"`) {
		t.Fatalf("Link %q is not a rel=next link", l)
	}
	return strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
}

func TestProductVersions(t *testing.T) {
	t.Parallel()
	deprecated := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	sunset := time.Date(2099, 6, 1, 0, 0, 0, 0, time.UTC)
	e := newProductEnv(t, httpapi.Config{ProductsV1DeprecatedAt: deprecated, ProductsV1Sunset: sunset}, 2*time.Second)
	noDesc := `{"name":"Desk Fan","price":24.5,"inventory":7}`
	withDesc := `{"name":"Desk Fan","description":"  Quiet, three speeds. ","price":"24.50","inventory":7}`

	checkV1 := func(t *testing.T, res response) {
		t.Helper()
		h := res.header
		if h.Get("X-API-Version") != "v1" || h.Get("X-API-Deprecation") == "" {
			t.Errorf("X-API-Version %q, X-API-Deprecation %q", h.Get("X-API-Version"), h.Get("X-API-Deprecation"))
		}
		// RFC 9745: Deprecation: @<Unix seconds>.
		if got, want := h.Get("Deprecation"), "@"+strconv.FormatInt(deprecated.Unix(), 10); got != want {
			t.Errorf("Deprecation %q, want %q", got, want)
		}
		// RFC 8594: Sunset: <HTTP-date>.
		if at, err := http.ParseTime(h.Get("Sunset")); err != nil || !at.Equal(sunset) || !strings.HasSuffix(h.Get("Sunset"), " GMT") {
			t.Errorf("Sunset %q (%v), want %s as an HTTP-date", h.Get("Sunset"), err, sunset)
		}
		link := h.Get("Link")
		if !strings.Contains(link, `</products/v2>; rel="successor-version"`) || !strings.Contains(link, `rel="deprecation"`) {
			t.Errorf("Link %q lacks successor-version or deprecation", link)
		}
	}

	t.Run("V1HeadersAndOptionalDescription", func(t *testing.T) {
		res := e.postJSON(t, "/products", noDesc, "User-Agent", "curl/8.5.0")
		if res.status != 201 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		checkV1(t, res)
		var p shop.Product
		res.json(t, &p)
		if p.Description != nil {
			t.Errorf("description %q, want null", *p.Description)
		}
	})
	t.Run("V1BlankDescriptionStoredAsMissing", func(t *testing.T) {
		res := e.postJSON(t, "/products", `{"name":"Blank","description":"   ","price":1,"inventory":1}`, "User-Agent", "curl/8.5.0")
		var p shop.Product
		res.json(t, &p)
		if res.status != 201 || p.Description != nil {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	t.Run("V1HeadersOnErrors", func(t *testing.T) {
		res := e.bad("v1 without price and inventory").postJSON(t, "/products", `{"name":"x"}`)
		checkProblem(t, res, 400)
		checkV1(t, res)
	})
	t.Run("V2Headers", func(t *testing.T) {
		res := e.postJSON(t, "/products/v2", withDesc, "User-Agent", "python-requests/2.31.0")
		if res.status != 201 || res.header.Get("X-API-Version") != "v2" {
			t.Fatalf("%d %v %s", res.status, res.header, res.body)
		}
		for _, h := range []string{"Deprecation", "Sunset", "X-API-Deprecation", "Link"} {
			if v := res.header.Get(h); v != "" {
				t.Errorf("v2 answers %s: %q", h, v)
			}
		}
		var p shop.Product
		res.json(t, &p)
		if p.Description == nil || *p.Description != "Quiet, three speeds." {
			t.Errorf("description not trimmed: %s", res.body)
		}
	})
	for name, c := range map[string]struct{ body, code string }{
		"V2ErrMissingDescription": {noDesc, "required"},
		"V2ErrNullDescription":    {`{"name":"x","description":null,"price":1,"inventory":1}`, "required"},
		"V2ErrBlankDescription":   {`{"name":"x","description":" \t","price":1,"inventory":1}`, "blank"},
		"V2ErrLongDescription":    {`{"name":"x","description":"` + strings.Repeat("d", shop.MaxDescriptionLen+1) + `","price":1,"inventory":1}`, "too_long"},
	} {
		t.Run(name, func(t *testing.T) {
			res := e.bad("field out of shape").postJSON(t, "/products/v2", c.body)
			if p := checkProblem(t, res, 400); !hasField(p, "description", c.code) || res.header.Get("X-API-Version") != "v2" {
				t.Errorf("%s %v", res.body, res.header)
			}
		})
	}
	t.Run("V2SharesV1FieldRules", func(t *testing.T) {
		body := `{"name":"","description":"ok","price":-1,"inventory":1.5}`
		p1, p2 := checkProblem(t, e.bad("fields out of shape").postJSON(t, "/products", body), 400), checkProblem(t, e.bad("fields out of shape").postJSON(t, "/products/v2", body), 400)
		if p1.Detail != p2.Detail {
			t.Errorf("v1 %q, v2 %q", p1.Detail, p2.Detail)
		}
	})
	t.Run("CreationsCountedByVersionAndClient", func(t *testing.T) {
		e.postJSON(t, "/products/v2", withDesc, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")
		e.postJSON(t, "/products/v2", withDesc, "User-Agent", "something/1.0 (custom)")
		e.stats.WaitFor(t, telemetry.MetricProductsCreated, "api_version:v2", "client:other")
		for _, c := range []struct {
			tags []string
			want float64
		}{
			{[]string{"api_version:v1", "client:curl", "description:missing"}, 2}, // the two v1 creations above; failures do not count
			{[]string{"api_version:v2", "client:python", "description:present"}, 1},
			{[]string{"api_version:v2", "client:browser"}, 1},
			{[]string{"api_version:v2", "client:other"}, 1},
			{[]string{"api_version:v1"}, 2},
		} {
			e.stats.WaitForSum(t, telemetrytest.Equals(c.want), telemetry.MetricProductsCreated, c.tags...)
		}
	})
}

// TestProductV1AfterSunset: from the sunset on, v1 applies v2's rule and
// keeps telling clients where to go.
func TestProductV1AfterSunset(t *testing.T) {
	t.Parallel()
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	e := newProductEnv(t, httpapi.Config{ProductsV1DeprecatedAt: past.Add(-time.Hour), ProductsV1Sunset: past}, 2*time.Second)
	res := e.postJSON(t, "/products", `{"name":"Late","price":1,"inventory":1}`)
	if p := checkProblem(t, res, 400); !hasField(p, "description", "required") {
		t.Errorf("v1 after sunset without description: %s", res.body)
	}
	if at, _ := http.ParseTime(res.header.Get("Sunset")); !at.Equal(past) || res.header.Get("X-API-Version") != "v1" {
		t.Errorf("headers after sunset: %v", res.header)
	}
	if res := e.postJSON(t, "/products", `{"name":"Late","description":"Has one.","price":1,"inventory":1}`); res.status != 201 {
		t.Errorf("v1 after sunset with description: %d %s", res.status, res.body)
	}
	// The bulk import follows v1's rules, so it needs descriptions too.
	res = e.postJSON(t, "/admin/products/import", `{"products":[{"name":"Late","description":"Has one.","price":1,"inventory":1},{"name":"Later","price":1,"inventory":1}]}`)
	if p := checkProblem(t, res, 400); len(p.Errors) == 0 || !strings.Contains(string(res.body), "description is required") {
		t.Errorf("import after sunset without description: %s", res.body)
	}
}

func TestPatchProduct(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Undescribed', 10, 4) RETURNING id::text`)
	patch := func(t *testing.T, id, body string) response {
		t.Helper()
		return e.do(t, "PATCH", "/products/"+id, "application/merge-patch+json", body)
	}
	badPatch := func(t *testing.T, id, body string) response {
		t.Helper()
		return e.bad("patch out of shape").do(t, "PATCH", "/products/"+id, "application/merge-patch+json", body)
	}
	get := func(t *testing.T) shop.Product {
		t.Helper()
		var p shop.Product
		e.get(t, "/products/"+id).json(t, &p)
		return p
	}

	t.Run("OK", func(t *testing.T) {
		res := patch(t, id, `{"description":" Now described. ","price":"12.34"}`)
		if res.status != 200 {
			t.Fatalf("%d %s", res.status, res.body)
		}
		var p shop.Product
		res.json(t, &p)
		if p.Description == nil || *p.Description != "Now described." || p.Price != 1234 || p.Name != "Undescribed" || p.Inventory != 4 {
			t.Errorf("patched %s", res.body)
		}
		if got := get(t); got.Price != 1234 || got.Description == nil {
			t.Errorf("GET after PATCH: %+v", got)
		}
	})
	t.Run("PartialLeavesOtherFields", func(t *testing.T) {
		before := get(t)
		res := e.do(t, "PATCH", "/products/"+id, "application/json", `{"inventory":9}`)
		if res.status != 200 {
			t.Fatalf("%d %s", res.status, res.body)
		}
		after := get(t)
		if after.Inventory != 9 || after.Name != before.Name || after.Price != before.Price || *after.Description != *before.Description || !after.CreatedAt.Equal(before.CreatedAt) {
			t.Errorf("before %+v after %+v", before, after)
		}
	})
	for name, c := range map[string]struct {
		body        string
		field, code string
	}{
		"ErrNullDescription":  {`{"description":null}`, "description", "required"},
		"ErrBlankDescription": {`{"description":"  "}`, "description", "blank"},
		"ErrNegativePrice":    {`{"price":-1}`, "price", "min"},
		"ErrPriceType":        {`{"price":true}`, "price", "type"},
		"ErrInventoryType":    {`{"inventory":"7"}`, "inventory", "type"},
		"ErrBlankName":        {`{"name":""}`, "name", "blank"},
		"ErrNullName":         {`{"name":null}`, "name", "required"},
		"ErrUnknownField":     {`{"nmae":"x"}`, "nmae", "unknown"},
		"ErrEmptyPatch":       {`{}`, "body", "empty"},
		"ErrSeveral":          {`{"name":"","price":-1}`, "price", "min"},
	} {
		t.Run(name, func(t *testing.T) {
			before := get(t)
			p := checkProblem(t, badPatch(t, id, c.body), 400)
			if !hasField(p, c.field, c.code) {
				t.Errorf("errors lack %s %s: %+v", c.field, c.code, p.Errors)
			}
			if after := get(t); !sameProduct(after, before) {
				t.Errorf("a refused patch changed the product: %+v -> %+v", before, after)
			}
		})
	}
	t.Run("ErrMalformedJSON", func(t *testing.T) { checkProblem(t, badPatch(t, id, `{"price":`), 400) })
	t.Run("ErrNotJSON", func(t *testing.T) {
		checkProblem(t, e.bad("not JSON").do(t, "PATCH", "/products/"+id, "text/plain", `{"price":1}`), 415)
	})
	t.Run("ErrUnknownID", func(t *testing.T) {
		p := checkProblem(t, patch(t, "00000000-0000-4000-8000-000000000000", `{"price":1}`), 404)
		if p.Detail != "Product not found" {
			t.Errorf("detail %q", p.Detail)
		}
	})
	t.Run("ErrMalformedID", func(t *testing.T) {
		for _, bad := range []string{"not-a-uuid", "1';DROP TABLE products--", "v2"} {
			checkProblem(t, patch(t, url.PathEscape(bad), `{"price":1}`), 404)
		}
	})
}

func sameProduct(a, b shop.Product) bool {
	da, db := "<nil>", "<nil>"
	if a.Description != nil {
		da = *a.Description
	}
	if b.Description != nil {
		db = *b.Description
	}
	a.Description, b.Description = nil, nil
	return a.ID == b.ID && a.Name == b.Name && a.Price == b.Price && a.Inventory == b.Inventory && a.CreatedAt.Equal(b.CreatedAt) && da == db
}

func TestMissingDescription(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	t.Run("ListsTheSeededTwenty", func(t *testing.T) {
		var b listBody
		res := e.get(t, "/admin/products/missing-description?limit=100")
		res.json(t, &b)
		if res.status != 200 || len(b.Products) != 20 || *b.Pagination.Total != 20 || *b.Pagination.Pages != 1 || res.header.Get("Link") != "" {
			t.Fatalf("%d: %d products, pagination %+v", res.status, len(b.Products), b.Pagination)
		}
		for _, p := range b.Products {
			if p.Description != nil {
				t.Errorf("%s has a description", p.Name)
			}
		}
	})
	t.Run("BackfillByKeysetPagesSkipsNothing", func(t *testing.T) {
		// Fix each page as it is read. Numbered pages would skip rows as the
		// list shrinks; keyset pages do not.
		fixed := 0
		path := "/admin/products/missing-description?limit=6"
		for pages := 0; path != ""; pages++ {
			if pages > 10 {
				t.Fatal("pages do not end")
			}
			var b listBody
			res := e.get(t, path)
			res.json(t, &b)
			for _, p := range b.Products {
				if res := e.do(t, "PATCH", "/products/"+p.ID, "application/json", `{"description":"Backfilled."}`); res.status != 200 {
					t.Fatalf("PATCH %d %s", res.status, res.body)
				}
				fixed++
			}
			path = nextLink(t, res)
		}
		var b listBody
		e.get(t, "/admin/products/missing-description").json(t, &b)
		if fixed != 20 || *b.Pagination.Total != 0 || len(b.Products) != 0 {
			t.Errorf("fixed %d, %d still missing", fixed, *b.Pagination.Total)
		}
	})
	t.Run("ErrBadPaging", func(t *testing.T) {
		for _, q := range []string{"limit=0", "limit=abc", "page=-1", "cursor=zzz", "page=2&cursor=" + url.QueryEscape("MTIz")} {
			checkProblem(t, e.bad("bad paging").get(t, "/admin/products/missing-description?"+q), 400)
		}
	})
}

func TestListProductsPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	t.Run("NumberedPagesAsBefore", func(t *testing.T) {
		var b listBody
		res := e.get(t, "/products?page=2&limit=30")
		res.json(t, &b)
		if len(b.Products) != 30 || b.Pagination.Page != 2 || *b.Pagination.Total != 100 || *b.Pagination.Pages != 4 || b.Pagination.NextCursor == "" {
			t.Fatalf("page 2: %d products, %+v", len(b.Products), b.Pagination)
		}
		// The next link continues by keyset right after this page.
		var next listBody
		e.get(t, nextLink(t, res)).json(t, &next)
		var page3 listBody
		e.get(t, "/products?page=3&limit=30").json(t, &page3)
		if len(next.Products) != 30 || next.Products[0].ID != page3.Products[0].ID || next.Pagination.Total != nil {
			t.Errorf("keyset after page 2 != page 3")
		}
	})
	t.Run("KeysetPagesCoverEverythingOnce", func(t *testing.T) {
		seen := map[string]int{}
		var order []shop.Product
		path := "/products?limit=7"
		pages := 0
		for path != "" {
			var b listBody
			res := e.get(t, path)
			if res.status != 200 {
				t.Fatalf("%s: %d %s", path, res.status, res.body)
			}
			res.json(t, &b)
			for _, p := range b.Products {
				seen[p.ID]++
				order = append(order, p)
			}
			pages++
			path = nextLink(t, res)
		}
		if len(seen) != 100 || len(order) != 100 || pages != 15 {
			t.Fatalf("%d distinct of %d over %d pages; want 100 over 15", len(seen), len(order), pages)
		}
		for i := 1; i < len(order); i++ {
			if order[i].CreatedAt.After(order[i-1].CreatedAt) {
				t.Fatal("not newest first across pages")
			}
		}
	})
	t.Run("PastTheEnd", func(t *testing.T) {
		var b listBody
		res := e.get(t, "/products?page=99&limit=10")
		res.json(t, &b)
		if res.status != 200 || len(b.Products) != 0 || *b.Pagination.Total != 100 || res.header.Get("Link") != "" {
			t.Errorf("%d %s", res.status, res.body)
		}
	})
	for name, q := range map[string]string{
		"ErrLimitNotANumber":   "limit=abc",
		"ErrLimitNegative":     "limit=-1",
		"ErrLimitZero":         "limit=0",
		"ErrLimitTooLarge":     "limit=101",
		"ErrLimitFraction":     "limit=2.5",
		"ErrPageZero":          "page=0",
		"ErrPageHuge":          "page=99999999999999999999",
		"ErrBadCursor":         "cursor=not-ours",
		"ErrCursorWrongShape":  "cursor=" + url.QueryEscape("MTIzLG5vdC1hLXV1aWQ"),
		"ErrCursorAndPage":     "page=2&cursor=MTIz",
		"ErrCursorAndSearch":   "q=desk&cursor=MTIz",
		"ErrMalformedEncoding": "q=%zz",
	} {
		t.Run(name, func(t *testing.T) { checkProblem(t, e.bad("bad paging").get(t, "/products?"+q), 400) })
	}
	t.Run("RejectionsCounted", func(t *testing.T) {
		e.stats.WaitFor(t, telemetry.MetricProductQueryRejected, "reason:malformed_query")
		e.stats.WaitForSum(t, telemetrytest.Equals(11), telemetry.MetricProductQueryRejected, "reason:bad_paging")
	})
}

func TestSearch(t *testing.T) {
	t.Parallel()
	e := newProductEnv(t, testConfig(), 300*time.Millisecond)
	for _, name := range []string{"100% cotton_tee", "100 cotton tee", `back\slash`, "Zorblamp", "Mega Zorblamp", "Zorblamp Deluxe"} {
		if res := e.postJSON(t, "/products", map[string]any{"name": name, "price": 1, "inventory": 1}); res.status != 201 {
			t.Fatal(res.status, string(res.body))
		}
	}
	if res := e.postJSON(t, "/products/v2", `{"name":"Shade","description":"Fits a zorblamp.","price":1,"inventory":1}`); res.status != 201 {
		t.Fatal(res.status, string(res.body))
	}
	search := func(t *testing.T, q string, extra ...string) (listBody, response) {
		t.Helper()
		v := url.Values{"q": {q}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		res := e.get(t, "/products?"+v.Encode())
		if res.status != 200 {
			t.Fatalf("q=%q: %d %s", q, res.status, res.body)
		}
		var b listBody
		res.json(t, &b)
		return b, res
	}
	namesOf := func(b listBody) string {
		var n []string
		for _, p := range b.Products {
			n = append(n, p.Name)
		}
		return strings.Join(n, "|")
	}

	t.Run("Ranked", func(t *testing.T) {
		b, _ := search(t, "ZORBLAMP")
		if got := namesOf(b); got != "Zorblamp|Zorblamp Deluxe|Mega Zorblamp|Shade" {
			t.Errorf("ranking %s", got)
		}
	})
	t.Run("PercentLiteral", func(t *testing.T) {
		if b, _ := search(t, "100%"); namesOf(b) != "100% cotton_tee" {
			t.Errorf("100%%: %s", namesOf(b))
		}
	})
	t.Run("UnderscoreLiteral", func(t *testing.T) {
		if b, _ := search(t, "_"); namesOf(b) != "100% cotton_tee" {
			t.Errorf("_: %s", namesOf(b))
		}
	})
	t.Run("BackslashAndQuotesLiteral", func(t *testing.T) {
		if b, _ := search(t, `\`); namesOf(b) != `back\slash` {
			t.Errorf(`\: %s`, namesOf(b))
		}
		if b, _ := search(t, `'; DROP TABLE products; --`); len(b.Products) != 0 || *b.Pagination.Total != 0 {
			t.Errorf("quotes: %s", namesOf(b))
		}
	})
	t.Run("BlankQueryLists", func(t *testing.T) {
		if b, _ := search(t, "   "); *b.Pagination.Total != 107 {
			t.Errorf("blank q: total %d", *b.Pagination.Total)
		}
	})
	t.Run("PagedByLink", func(t *testing.T) {
		// "desk": 5 Standing Desks, 5 Desk Lamps (names), 4+4 of them described.
		all, _ := search(t, "desk", "limit", "100")
		seen := map[string]bool{}
		path := "/products?" + url.Values{"q": {"desk"}, "limit": {"4"}}.Encode()
		for pages := 0; path != ""; pages++ {
			if pages > 10 {
				t.Fatal("pages do not end")
			}
			res := e.get(t, path)
			var b listBody
			res.json(t, &b)
			for _, p := range b.Products {
				seen[p.ID] = true
			}
			path = nextLink(t, res)
		}
		if len(seen) != *all.Pagination.Total || len(seen) < 10 {
			t.Errorf("%d distinct over the pages, total %d", len(seen), *all.Pagination.Total)
		}
	})
	for name, c := range map[string]struct{ rawQuery, reason string }{
		"ErrTooLong":     {"q=" + strings.Repeat("x", shop.MaxSearchLen+1), shop.SearchTooLong},
		"ErrVeryLong":    {"q=" + strings.Repeat("%25", 100_000), shop.SearchTooLong},
		"ErrControlChar": {"q=a%09b", shop.SearchControlChar},
		"ErrNewline":     {"q=a%0Ab", shop.SearchControlChar},
		"ErrNUL":         {"q=a%00b", shop.SearchNUL},
		"ErrInvalidUTF8": {"q=%FF%FE", shop.SearchInvalidUTF8},
		"ErrBadEscape":   {"q=100%", "malformed_query"},
	} {
		t.Run(name, func(t *testing.T) {
			p := checkProblem(t, e.bad("search term out of shape").get(t, "/products?"+c.rawQuery), 400)
			if c.reason != "malformed_query" && !hasField(p, "q", c.reason) {
				t.Errorf("errors %+v lack q %s", p.Errors, c.reason)
			}
			e.stats.WaitFor(t, telemetry.MetricProductQueryRejected, "reason:"+c.reason)
		})
	}
	t.Run("TimeoutIs503WithRetryAfter", func(t *testing.T) {
		// A search stuck behind an ACCESS EXCLUSIVE lock (a careless
		// migration) runs past its 300ms statement_timeout.
		ctx := t.Context()
		tx, err := e.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE products IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		res := e.get(t, "/products?q=desk")
		_ = tx.Rollback(ctx)
		checkProblem(t, res, http.StatusServiceUnavailable)
		if ra, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After %q", res.header.Get("Retry-After"))
		}
		e.stats.WaitFor(t, telemetry.MetricProductSearchDuration, "outcome:unavailable")
		if _, res := search(t, "desk"); res.status != 200 {
			t.Errorf("after the lock: %d", res.status)
		}
	})
	t.Run("Telemetry", func(t *testing.T) {
		search(t, "no such product anywhere")
		e.stats.WaitFor(t, telemetry.MetricProductSearchResults, "has_results:false")
		m := e.stats.WaitForMatch(t, telemetry.MetricProductSearchResults, func(m telemetrytest.Metric) bool { return m.Value == 1 }, "has_results:true")
		if m.Type != "d" {
			t.Errorf("results metric type %q", m.Type)
		}
		d := e.stats.WaitFor(t, telemetry.MetricProductSearchDuration, "outcome:ok")
		if d.Value <= 0 || d.Value > 5000 {
			t.Errorf("search duration %v ms", d.Value)
		}
	})
}

// FuzzProductQuery: nothing in the query string of GET /products (search
// or listing) or GET /admin/products/missing-description produces a 5xx
// or leaks internals. CI runs the seed corpus; explore further with
// `go test -fuzz FuzzProductQuery ./service/httpapi`.
func FuzzProductQuery(f *testing.F) {
	for _, q := range []string{
		"desk", "100%", "%", "_", "%_%", `\`, `\\`, `\%`, `\_`, `a\`, `'`, `"`, `'; DROP TABLE products; --`,
		`" OR 1=1 --`, "%%%%", "____", "\x00", "a\x00b", "\xff", "\xc3\x28", "\xed\xa0\x80", "\t", "\n", "\x7f",
		"\u0085", "\u202e", "😀", "Ünïcödé", strings.Repeat("x", shop.MaxSearchLen), strings.Repeat("x", shop.MaxSearchLen+1),
		strings.Repeat("%_\\", 5000), strings.Repeat("é", 10000), "   ", "",
	} {
		f.Add(q, "", "", "")
	}
	for _, p := range [][3]string{
		{"abc", "", ""}, {"-1", "", ""}, {"0", "0", ""}, {"101", "1e3", ""}, {"1", "99999999999999999999", ""},
		{"", "", "zzz"}, {"", "", "MTIz"}, {"", "", "MTIsMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAw"},
		{"2", "", "%00"}, {"\x00", "\xff", "\xff"}, {" 5", "+1", "=="}, {"0x10", "1_0", strings.Repeat("A", 10000)},
	} {
		f.Add("", p[0], p[1], p[2])
		f.Add("desk", p[0], p[1], p[2])
	}
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, q, limit, page, cursor string) {
		// Encoded: every byte reaches the handler as sent.
		v := url.Values{}
		for k, s := range map[string]string{"q": q, "limit": limit, "page": page, "cursor": cursor} {
			if s != "" {
				v.Set(k, s)
			}
		}
		paths := []string{"/products?" + v.Encode(), "/admin/products/missing-description?" + v.Encode()}
		// Raw: the fuzzer's bytes as the query string itself, when a client
		// could send them at all.
		if raw := "/products?q=" + q; validRequestTarget(raw) {
			paths = append(paths, raw)
		}
		for _, path := range paths {
			res := e.bad("fuzz input: any query string").get(t, path)
			if res.status >= 500 {
				t.Fatalf("GET %q -> %d %s", path, res.status, res.body)
			}
			if res.status != 200 {
				checkProblem(t, res, res.status)
			}
		}
	})
}

var requestTargetRE = regexp.MustCompile(`^[\x21-\x7e]*$`)

// validRequestTarget reports whether s can be sent as an HTTP request
// target: visible ASCII only, and no fragment.
func validRequestTarget(s string) bool {
	if !requestTargetRE.MatchString(s) || strings.Contains(s, "#") {
		return false
	}
	_, err := url.ParseRequestURI(s)
	return err == nil
}
