package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/shoplab/shoplab/service/shop"
)

func TestHealthAndReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var h map[string]string
	res := e.get(t, "/health")
	res.json(t, &h)
	if res.status != 200 || h["status"] != "ok" || h["timestamp"] == "" {
		t.Errorf("/health = %d %s", res.status, res.body)
	}
	if res := e.get(t, "/ready"); res.status != 200 {
		t.Errorf("/ready = %d %s", res.status, res.body)
	}
}

func TestProducts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	t.Run("ListNewestFirst", func(t *testing.T) {
		var body struct {
			Products   []shop.Product `json:"products"`
			Pagination struct{ Page, Limit, Total, Pages int }
		}
		e.get(t, "/products?page=2&limit=30").json(t, &body)
		if len(body.Products) != 30 || body.Pagination.Total != 100 || body.Pagination.Pages != 4 || body.Pagination.Page != 2 {
			t.Fatalf("page 2: %d products, pagination %+v", len(body.Products), body.Pagination)
		}
		for i := 1; i < len(body.Products); i++ {
			if body.Products[i].CreatedAt.After(body.Products[i-1].CreatedAt) {
				t.Fatal("not newest first")
			}
		}
	})

	t.Run("CreateV1WithoutDescription", func(t *testing.T) {
		res := e.postJSON(t, "/products", `{"name":"Desk Fan","price":24.5,"inventory":7}`)
		if res.status != 201 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		if res.header.Get("X-API-Version") != "v1" || res.header.Get("X-API-Deprecation") == "" {
			t.Errorf("v1 headers missing: %v", res.header)
		}
		var p shop.Product
		res.json(t, &p)
		if p.Price != 2450 || p.Description != nil || !strings.Contains(string(res.body), `"price":"24.50"`) {
			t.Errorf("created %s", res.body)
		}
		var got shop.Product
		e.get(t, "/products/"+p.ID).json(t, &got)
		if got.ID != p.ID || got.Name != "Desk Fan" {
			t.Errorf("GET after create: %+v", got)
		}
	})

	t.Run("V2RequiresDescription", func(t *testing.T) {
		res := e.bad("v2 without a description").postJSON(t, "/products/v2", `{"name":"Desk Fan","price":"24.50","inventory":7}`)
		p := checkProblem(t, res, 400)
		if !hasField(p, "description", "required") || res.header.Get("X-API-Version") != "v2" {
			t.Errorf("v2 without description: %s %v", res.body, res.header)
		}
		res = e.postJSON(t, "/products/v2", `{"name":"Desk Fan","description":"Quiet.","price":"24.50","inventory":7}`)
		if res.status != 201 || res.header.Get("X-API-Version") != "v2" {
			t.Errorf("v2 with description: %d %s", res.status, res.body)
		}
	})

	t.Run("LowInventoryLowestFirst", func(t *testing.T) {
		var ps []shop.Product
		e.get(t, "/admin/inventory/low?threshold=5").json(t, &ps)
		if len(ps) < 10 {
			t.Fatalf("%d low-stock products, want the 10 seeded", len(ps))
		}
		for i, p := range ps {
			if p.Inventory > 5 || (i > 0 && p.Inventory < ps[i-1].Inventory) {
				t.Fatalf("bad low-inventory list at %d: %+v", i, p)
			}
		}
	})
}

func TestOrderHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)

	t.Run("AllOrdersNewestFirst", func(t *testing.T) {
		var orders []shop.Order
		res := e.get(t, "/orders/"+heavy)
		res.json(t, &orders)
		if len(orders) != 120 || res.header.Get("Link") != "" {
			t.Fatalf("%d orders, Link %q; want 120 and no next page", len(orders), res.header.Get("Link"))
		}
		for _, o := range orders {
			if len(o.Items) < 2 || o.Items[0].Product.Name == "" {
				t.Fatalf("order without items or products: %+v", o)
			}
		}
	})

	t.Run("PagedByLink", func(t *testing.T) {
		seen := map[string]bool{}
		path := "/orders/" + heavy + "?limit=50"
		pages := 0
		for path != "" {
			var orders []shop.Order
			res := e.get(t, path)
			res.json(t, &orders)
			for _, o := range orders {
				seen[o.ID] = true
			}
			pages++
			path = ""
			if l := res.header.Get("Link"); l != "" {
				path = strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
			}
		}
		if len(seen) != 120 || pages != 3 {
			t.Errorf("%d distinct orders over %d pages, want 120 over 3", len(seen), pages)
		}
	})

	t.Run("ErrUnknownUser", func(t *testing.T) {
		checkProblem(t, e.get(t, "/orders/00000000-0000-4000-8000-000000000000"), 404)
	})
}

func TestCheckout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := e.id(t, `SELECT id::text FROM customers WHERE email = 'user1@example.com'`)
	product := e.id(t, `SELECT id::text FROM products WHERE inventory >= 10 ORDER BY id LIMIT 1`)

	t.Run("OK", func(t *testing.T) {
		before := e.scalar(t, `SELECT inventory FROM products WHERE id = $1`, product)
		res := e.postJSON(t, "/orders/checkout", fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":2},{"productId":%q,"quantity":1}]}`, user, product, product))
		if res.status != 201 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		var o shop.Order
		res.json(t, &o)
		if len(o.Items) != 1 || o.Items[0].Quantity != 3 || o.Total != o.Items[0].Price*3 || o.Items[0].Product.ID != product {
			t.Errorf("order %s", res.body)
		}
		if after := e.scalar(t, `SELECT inventory FROM products WHERE id = $1`, product); after != before-3 {
			t.Errorf("stock %d -> %d, want -3", before, after)
		}
	})

	t.Run("ErrInsufficientStock", func(t *testing.T) {
		res := e.postJSON(t, "/orders/checkout", fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1000}]}`, user, product))
		p := checkProblem(t, res, http.StatusConflict)
		if !strings.HasPrefix(p.Error, "Insufficient inventory for ") || !strings.Contains(string(res.body), `"shortages"`) {
			t.Errorf("body %s", res.body)
		}
	})

	t.Run("ErrUnknownProduct", func(t *testing.T) {
		res := e.postJSON(t, "/orders/checkout", fmt.Sprintf(`{"userId":%q,"items":[{"productId":"00000000-0000-4000-8000-000000000000","quantity":1}]}`, user))
		if p := checkProblem(t, res, 404); !strings.Contains(p.Error, "00000000-0000-4000-8000-000000000000") {
			t.Errorf("does not name the product: %s", p.Error)
		}
	})

	t.Run("ErrUnknownUser", func(t *testing.T) {
		checkProblem(t, e.postJSON(t, "/orders/checkout", fmt.Sprintf(`{"userId":"00000000-0000-4000-8000-000000000000","items":[{"productId":%q,"quantity":1}]}`, product)), 404)
	})

	for name, body := range map[string]string{
		"ErrEmptyCart":        fmt.Sprintf(`{"userId":%q,"items":[]}`, user),
		"ErrZeroQuantity":     fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":0}]}`, user, product),
		"ErrFractionQuantity": fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1.5}]}`, user, product),
		"ErrAbsurdQuantity":   fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":100000000}]}`, user, product),
		"ErrTooManyLines":     fmt.Sprintf(`{"userId":%q,"items":[%s]}`, user, strings.TrimSuffix(strings.Repeat(fmt.Sprintf(`{"productId":%q,"quantity":1},`, product), 101), ",")),
	} {
		t.Run(name, func(t *testing.T) {
			checkProblem(t, e.bad("cart out of shape").postJSON(t, "/orders/checkout", body), 400)
		})
	}
}

// TestCheckoutNeverOversells: 20 buyers race for a product with 3 units.
func TestCheckoutNeverOversells(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	product := e.id(t, `INSERT INTO products (name, price, inventory) VALUES ('Last Three', 10, 3) RETURNING id::text`)
	users := make([]string, 20)
	for i := range users {
		users[i] = e.id(t, `INSERT INTO customers (email, name) VALUES ($1, 'Buyer') RETURNING id::text`, fmt.Sprintf("buyer%d@example.com", i))
	}
	var wg sync.WaitGroup
	statuses := make([]int, len(users))
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.postJSON(t, "/orders/checkout", fmt.Sprintf(`{"userId":%q,"items":[{"productId":%q,"quantity":1}]}`, u, product)).status
		}()
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if counts[201] != 3 || counts[409] != 17 {
		t.Errorf("statuses %v, want 3 x 201 and 17 x 409", counts)
	}
	if n := e.scalar(t, `SELECT count(*) FROM order_items WHERE product_id = $1`, product); n != 3 {
		t.Errorf("%d orders of the product, want 3", n)
	}
	if n := e.scalar(t, `SELECT inventory FROM products WHERE id = $1`, product); n != 0 {
		t.Errorf("stock %d, want 0", n)
	}
}

func TestImport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var rows []string
	for i := 0; i < 1000; i++ {
		rows = append(rows, fmt.Sprintf(`{"name":"Bulk Import Product %d","description":"Bulk","price":%d.99,"inventory":%d}`, i, 10+i%500, 10+i%100))
	}
	res := e.postJSON(t, "/admin/products/import", `{"products":[`+strings.Join(rows, ",")+`]}`)
	if res.status != 201 {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	var body struct {
		Message, Duration string
		Count             int
	}
	res.json(t, &body)
	if body.Count != 1000 || !strings.HasSuffix(body.Duration, "ms") {
		t.Errorf("answer %s", res.body)
	}
	if n := e.scalar(t, `SELECT count(*) FROM products WHERE name LIKE 'Bulk Import Product %'`); n != 1000 {
		t.Errorf("%d imported rows, want 1000", n)
	}

	t.Run("ErrBadRowAbortsAll", func(t *testing.T) {
		rows[500] = `{"name":"bad","price":-1,"inventory":1}`
		p := importProblem(t, e.bad("a bad row").postJSON(t, "/admin/products/import", `{"products":[`+strings.Join(rows, ",")+`]}`))
		if !hasRow(p.Errors, 500, "price", "min") {
			t.Errorf("bad row not reported: %+v", p.Errors)
		}
		if n := e.scalar(t, `SELECT count(*) FROM products`); n != 1100 {
			t.Errorf("%d products, want 1100 (nothing of the bad import)", n)
		}
	})
}

func TestReport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	heavy := e.id(t, `SELECT id::text FROM customers WHERE email = 'heavy.user@example.com'`)
	var body struct {
		Message    string `json:"message"`
		User       string `json:"user"`
		OrderCount int    `json:"orderCount"`
		ReportSize int    `json:"reportSize"`
		Report     string `json:"report"`
	}
	res := e.get(t, "/reports/orders/"+heavy)
	res.json(t, &body)
	if res.status != 200 || body.OrderCount != 120 || body.User != "heavy.user@example.com" ||
		len(body.Report) != 503 || !strings.HasSuffix(body.Report, "...") || body.ReportSize < 120*100 {
		t.Errorf("report: %d %+v", res.status, body)
	}
	checkProblem(t, e.get(t, "/reports/orders/00000000-0000-4000-8000-000000000000"), 404)
}
