package httpapi_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/httpapi"
	"github.com/shoplab/shoplab/service/internal/pgtest"
	"github.com/shoplab/shoplab/service/postgres"
	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry/telemetrytest"
)

const importPath = "/admin/products/import"

// newImportEnv is an empty (unseeded) database behind the real router
// with cfg, so that product counts are exactly what the imports wrote.
func newImportEnv(t *testing.T, cfg httpapi.Config) *testEnv {
	t.Helper()
	db := postgres.New(pgtest.New(t))
	tel, stats, logs := telemetrytest.New(t)
	return serve(t, db, cfg, tel, stats, logs)
}

// importRow is one row of a generated import body.
type importRow struct {
	Name        string
	Description *string // nil: absent (JSON), null (NDJSON), empty cell (CSV)
	Price       string  // a decimal as sent: a JSON number, a CSV cell
	Inventory   int
	SKU         string // "" for none
}

func str(s string) *string { return &s }

// bulkRows are n rows in the original generator's shape.
func bulkRows(prefix string, n int) []importRow {
	rows := make([]importRow, n)
	for i := range rows {
		rows[i] = importRow{
			Name:        fmt.Sprintf("%s %d", prefix, i),
			Description: str(fmt.Sprintf("Description of %s %d", prefix, i)),
			Price:       fmt.Sprintf("%d.%02d", 10+i%500, i%100),
			Inventory:   10 + i%100,
		}
	}
	return rows
}

// badRow is invalid by POST /products' rules: a negative price.
func badRow(i int) importRow {
	return importRow{Name: fmt.Sprintf("Bad %d", i), Price: "-1", Inventory: 1}
}

var formats = []struct{ name, contentType string }{
	{"JSON", "application/json"},
	{"NDJSON", "application/x-ndjson"},
	{"CSV", "text/csv"},
}

func (r importRow) jsonObject(nullDescription bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"name":%q`, r.Name)
	switch {
	case r.Description != nil:
		fmt.Fprintf(&b, `,"description":%q`, *r.Description)
	case nullDescription:
		b.WriteString(`,"description":null`)
	}
	fmt.Fprintf(&b, `,"price":%s,"inventory":%d`, r.Price, r.Inventory)
	if r.SKU != "" {
		fmt.Fprintf(&b, `,"sku":%q`, r.SKU)
	}
	b.WriteString("}")
	return b.String()
}

// body encodes rows in a format (by content type).
func body(contentType string, rows []importRow) string {
	var b strings.Builder
	switch contentType {
	case "application/x-ndjson":
		for _, r := range rows {
			b.WriteString(r.jsonObject(true) + "\n")
		}
	case "text/csv":
		w := csv.NewWriter(&b)
		_ = w.Write([]string{"name", "description", "price", "inventory", "sku"})
		for _, r := range rows {
			d := ""
			if r.Description != nil {
				d = *r.Description
			}
			_ = w.Write([]string{r.Name, d, r.Price, strconv.Itoa(r.Inventory), r.SKU})
		}
		w.Flush()
	default:
		b.WriteString(`{"products":[`)
		for i, r := range rows {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(r.jsonObject(false))
		}
		b.WriteString("]}")
	}
	return b.String()
}

// importAnswer is a 201 answer of the import.
type importAnswer struct {
	Message     string          `json:"message"`
	Duration    string          `json:"duration"`
	Count       int             `json:"count"`
	Created     *int            `json:"created"`
	Updated     *int            `json:"updated"`
	Skipped     *int            `json:"skipped"`
	SkippedRows []shop.RowError `json:"skippedRows"`
}

func (e *testEnv) importOK(t *testing.T, path, contentType, b string, headers ...string) (importAnswer, map[string]any) {
	t.Helper()
	res := e.do(t, "POST", path, contentType, b, headers...)
	if res.status != 201 {
		t.Fatalf("status %d, want 201: %s", res.status, res.body)
	}
	var a importAnswer
	var raw map[string]any
	res.json(t, &a)
	res.json(t, &raw)
	return a, raw
}

// rowProblem is the 400 answer of an import with bad rows.
type rowProblem struct {
	Errors      []shop.RowError `json:"errors"`
	InvalidRows int             `json:"invalidRows"`
	Rows        int             `json:"rows"`
	Detail      string          `json:"detail"`
}

func importProblem(t *testing.T, res response) rowProblem {
	t.Helper()
	checkProblem(t, res, 400)
	var p rowProblem
	res.json(t, &p)
	return p
}

func hasRow(errs []shop.RowError, index int, field, code string) bool {
	return slices.ContainsFunc(errs, func(e shop.RowError) bool {
		return e.Index == index && e.Field == field && (code == "" || e.Code == code)
	})
}

func TestImportFormats(t *testing.T) {
	t.Parallel()
	e := newImportEnv(t, httpapi.Config{})
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			rows := []importRow{
				{Name: f.name + " Lamp", Description: str("A lamp"), Price: "19.99", Inventory: 5},
				{Name: f.name + " Cable", Price: "0.5", Inventory: 0},
				{Name: f.name + " Desk", Description: str("Oak, \"solid\"\nwith a drawer"), Price: "250", Inventory: 1000},
			}
			a, raw := e.importOK(t, importPath, f.contentType+"; charset=utf-8", body(f.contentType, rows))
			if a.Count != 3 || !strings.HasSuffix(a.Duration, "ms") || a.Message != "Successfully imported 3 products" {
				t.Errorf("answer %+v", a)
			}
			if len(raw) != 3 {
				t.Errorf("answer has members %v, want the original's message, duration, count", raw)
			}
			dbRows, err := e.db.Pool.Query(t.Context(),
				`SELECT name, description, (price * 100)::bigint, inventory, sku FROM products WHERE name LIKE $1 || ' %' ORDER BY name`, f.name)
			if err != nil {
				t.Fatal(err)
			}
			defer dbRows.Close()
			type stored struct {
				name        string
				description *string
				cents       int64
				inventory   int
				sku         *string
			}
			var got []stored
			for dbRows.Next() {
				var s stored
				if err := dbRows.Scan(&s.name, &s.description, &s.cents, &s.inventory, &s.sku); err != nil {
					t.Fatal(err)
				}
				got = append(got, s)
			}
			want := map[string]stored{
				f.name + " Cable": {cents: 50, inventory: 0},
				f.name + " Desk":  {description: str("Oak, \"solid\"\nwith a drawer"), cents: 25000, inventory: 1000},
				f.name + " Lamp":  {description: str("A lamp"), cents: 1999, inventory: 5},
			}
			if len(got) != 3 {
				t.Fatalf("stored %d rows, want 3", len(got))
			}
			for _, s := range got {
				w := want[s.name]
				if s.cents != w.cents || s.inventory != w.inventory || s.sku != nil ||
					(s.description == nil) != (w.description == nil) || (s.description != nil && *s.description != *w.description) {
					t.Errorf("stored %+v, want %+v", s, w)
				}
			}
		})
	}

	t.Run("EmptyImport", func(t *testing.T) {
		if a, _ := e.importOK(t, importPath, "application/json", `{"products":[]}`); a.Count != 0 {
			t.Errorf("count %d", a.Count)
		}
	})
	t.Run("ErrUnsupportedMediaType", func(t *testing.T) {
		p := checkProblem(t, e.bad("unsupported Content-Type").do(t, "POST", importPath, "text/plain", "name,price\n"), 415)
		if !strings.Contains(p.Detail, "text/csv") {
			t.Errorf("detail %q does not list the accepted types", p.Detail)
		}
	})
	t.Run("ErrBadBodies", func(t *testing.T) {
		for _, c := range []struct {
			name, contentType, body, detail string
		}{
			{"JSONEmpty", "application/json", ``, "empty"},
			{"JSONNotAnObject", "application/json", `[1]`, "JSON object"},
			{"JSONNoProducts", "application/json", `{}`, "products is required"},
			{"JSONNullProducts", "application/json", `{"products":null}`, "products is required"},
			{"JSONUnknownMember", "application/json", `{"prodcts":[]}`, `"prodcts"`},
			{"JSONTrailingData", "application/json", `{"products":[]} {}`, "single JSON value"},
			{"JSONMalformed", "application/json", `{"products":[{"name":"x","price":1,"inventory":1},{"name": }]}`, "Malformed JSON"},
			{"JSONTruncated", "application/json", `{"products":[{"name":"x","price":1,"inventory":1},`, "Malformed JSON"},
			{"CSVEmpty", "text/csv", ``, "header row"},
			{"CSVMissingColumn", "text/csv", "name,inventory\nx,1\n", "lacks the column price"},
			{"CSVUnknownColumn", "text/csv", "name,prize,inventory\nx,1,1\n", `"prize"`},
			{"CSVMalformed", "text/csv", "name,price,inventory\n\"x,1,1\nx\"y,1,1\n", "Malformed CSV"},
		} {
			t.Run(c.name, func(t *testing.T) {
				p := checkProblem(t, e.bad("malformed body").do(t, "POST", importPath, c.contentType, c.body), 400)
				if !strings.Contains(p.Detail, c.detail) {
					t.Errorf("detail %q lacks %q", p.Detail, c.detail)
				}
			})
		}
	})
	t.Run("NothingWrittenByBadBodies", func(t *testing.T) {
		if n := e.scalar(t, `SELECT count(*) FROM products`); n != 9 {
			t.Errorf("%d products, want the 9 imported", n)
		}
	})
}

// TestImportAllOrNothing proves that one bad row anywhere (first, middle,
// last row) in any format aborts the whole import, names the row by its
// index, and leaves nothing written.
func TestImportAllOrNothing(t *testing.T) {
	t.Parallel()
	e := newImportEnv(t, httpapi.Config{})
	const n = 300
	for _, f := range formats {
		for _, pos := range []struct {
			name  string
			index int
		}{{"First", 0}, {"Middle", n / 2}, {"Last", n - 1}} {
			t.Run(f.name+"/"+pos.name, func(t *testing.T) {
				rows := bulkRows("Row", n)
				rows[pos.index] = badRow(pos.index)
				p := importProblem(t, e.bad("bad rows").do(t, "POST", importPath, f.contentType, body(f.contentType, rows)))
				if !hasRow(p.Errors, pos.index, "price", "min") || len(p.Errors) != 1 {
					t.Errorf("errors %+v, want row %d's price", p.Errors, pos.index)
				}
				if p.InvalidRows != 1 || p.Rows != n {
					t.Errorf("invalidRows %d rows %d, want 1 and %d", p.InvalidRows, p.Rows, n)
				}
				if !strings.Contains(p.Detail, fmt.Sprintf("row %d", pos.index)) || !strings.Contains(p.Detail, "nothing was imported") {
					t.Errorf("detail %q", p.Detail)
				}
				if c := e.scalar(t, `SELECT count(*) FROM products`); c != 0 {
					t.Errorf("%d products written, want none", c)
				}
			})
		}
	}

	t.Run("ListsFirst100BadRowsCountsAll", func(t *testing.T) {
		rows := bulkRows("Row", n)
		for i := 1; i < n; i += 2 {
			rows[i] = badRow(i)
		}
		p := importProblem(t, e.bad("bad rows").do(t, "POST", importPath, "application/json", body("application/json", rows)))
		if p.InvalidRows != n/2 || len(p.Errors) != shop.MaxReportedRows {
			t.Errorf("invalidRows %d, %d errors; want %d and %d", p.InvalidRows, len(p.Errors), n/2, shop.MaxReportedRows)
		}
		if p.Errors[0].Index != 1 || p.Errors[99].Index != 199 {
			t.Errorf("errors run from row %d to %d, want 1 to 199", p.Errors[0].Index, p.Errors[99].Index)
		}
	})

	t.Run("EveryProblemOfARow", func(t *testing.T) {
		b := `{"products":[{"name":"ok","price":1,"inventory":1},{"name":" ","price":1.999,"inventory":-2}]}`
		p := importProblem(t, e.bad("bad rows").do(t, "POST", importPath, "application/json", b))
		for _, field := range []string{"name", "price", "inventory"} {
			if !hasRow(p.Errors, 1, field, "") {
				t.Errorf("row 1's %s not reported: %+v", field, p.Errors)
			}
		}
	})

	t.Run("RowsThatDoNotDecode", func(t *testing.T) {
		for _, c := range []struct {
			name, contentType, body string
			index                   int
			field, code             string
		}{
			{"JSONWrongType", "application/json", `{"products":[{"name":"a","price":1,"inventory":1},{"name":"b","price":true,"inventory":1}]}`, 1, "price", "type"},
			{"JSONUnknownField", "application/json", `{"products":[{"name":"a","price":1,"inventroy":1}]}`, 0, "inventroy", "unknown"},
			{"JSONNotAnObject", "application/json", `{"products":[{"name":"a","price":1,"inventory":1},7]}`, 1, "row", "type"},
			{"NDJSONMalformedLine", "application/x-ndjson", "{\"name\":\"a\",\"price\":1,\"inventory\":1}\n{\"name\":\n", 1, "row", "malformed"},
			{"NDJSONTwoObjectsOnALine", "application/x-ndjson", `{"name":"a","price":1,"inventory":1} {}` + "\n", 0, "row", "malformed"},
			{"CSVWrongFieldCount", "text/csv", "name,price,inventory\na,1,1\nb,1\n", 1, "row", "columns"},
			{"CSVInventoryNotInteger", "text/csv", "name,price,inventory\na,1,many\n", 0, "inventory", "type"},
			{"CSVMissingPrice", "text/csv", "name,price,inventory\na,,1\n", 0, "price", "required"},
		} {
			t.Run(c.name, func(t *testing.T) {
				p := importProblem(t, e.bad("malformed body").do(t, "POST", importPath, c.contentType, c.body))
				if !hasRow(p.Errors, c.index, c.field, c.code) {
					t.Errorf("errors %+v lack row %d %s/%s", p.Errors, c.index, c.field, c.code)
				}
			})
		}
	})

	t.Run("NothingHalfWritten", func(t *testing.T) {
		if c := e.scalar(t, `SELECT count(*) FROM products`); c != 0 {
			t.Errorf("%d products written, want none", c)
		}
	})
}

// TestImportStreams proves that rows reach COPY while the body is still
// arriving (the service does not read the whole body first), and that a
// bad row arriving after COPY started still rolls everything back.
func TestImportStreams(t *testing.T) {
	t.Parallel()
	e := newImportEnv(t, httpapi.Config{})
	copyRunning := func() bool {
		return e.scalar(t, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'active' AND query ILIKE 'copy "products"%'`) > 0
	}
	stream := func(t *testing.T, tail string) response {
		t.Helper()
		pr, pw := io.Pipe()
		done := make(chan response, 1)
		go func() {
			req, _ := http.NewRequest("POST", e.srv.URL+importPath, pr)
			req.Header.Set("Content-Type", "application/x-ndjson")
			res, err := e.srv.Client().Do(req)
			if err != nil {
				done <- response{}
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			done <- response{status: res.StatusCode, header: res.Header, body: b}
		}()
		if _, err := io.WriteString(pw, body("application/x-ndjson", bulkRows("Streamed", 1000))); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !copyRunning() {
			if time.Now().After(deadline) {
				t.Fatal("COPY did not start while the body was still open")
			}
			time.Sleep(10 * time.Millisecond)
		}
		_, _ = io.WriteString(pw, tail)
		_ = pw.Close()
		return <-done
	}

	t.Run("CopyStartsBeforeBodyEnds", func(t *testing.T) {
		res := stream(t, body("application/x-ndjson", bulkRows("Tail", 10)))
		if res.status != 201 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		if c := e.scalar(t, `SELECT count(*) FROM products`); c != 1010 {
			t.Errorf("%d products, want 1010", c)
		}
	})
	t.Run("LateBadRowRollsBack", func(t *testing.T) {
		res := stream(t, body("application/x-ndjson", []importRow{badRow(0)}))
		p := importProblem(t, res)
		if !hasRow(p.Errors, 1000, "price", "min") {
			t.Errorf("errors %+v", p.Errors)
		}
		if c := e.scalar(t, `SELECT count(*) FROM products`); c != 1010 {
			t.Errorf("%d products, want the 1010 of before", c)
		}
	})
}

func TestImportSkipInvalid(t *testing.T) {
	t.Parallel()
	e := newImportEnv(t, httpapi.Config{})
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			before := e.scalar(t, `SELECT count(*) FROM products`)
			rows := bulkRows(f.name, 10)
			for _, i := range []int{0, 5, 9} {
				rows[i] = badRow(i)
			}
			a, _ := e.importOK(t, importPath+"?onError=skip", f.contentType, body(f.contentType, rows), invalidRequest, "bad rows, skipped")
			if a.Count != 7 || a.Skipped == nil || *a.Skipped != 3 || len(a.SkippedRows) != 3 {
				t.Fatalf("answer %+v, want 7 imported and 3 skipped", a)
			}
			for k, i := range []int{0, 5, 9} {
				if r := a.SkippedRows[k]; r.Index != i || r.Field != "price" || r.Code != "min" {
					t.Errorf("skipped row %d = %+v", k, r)
				}
			}
			if c := e.scalar(t, `SELECT count(*) FROM products`); c != before+7 {
				t.Errorf("%d products, want %d", c, before+7)
			}
		})
	}
	t.Run("NothingToSkip", func(t *testing.T) {
		a, _ := e.importOK(t, importPath+"?onError=skip", "application/json", body("application/json", bulkRows("Clean", 2)))
		if a.Count != 2 || a.Skipped == nil || *a.Skipped != 0 || a.SkippedRows == nil {
			t.Errorf("answer %+v", a)
		}
	})
	t.Run("MalformedLineSkipped", func(t *testing.T) {
		a, _ := e.importOK(t, importPath+"?onError=skip", "application/x-ndjson",
			"{\"name\":\"Line 1\",\"price\":1,\"inventory\":1}\n\n{oops\n{\"name\":\"Line 4\",\"price\":1,\"inventory\":1}\n")
		if a.Count != 2 || len(a.SkippedRows) != 1 || a.SkippedRows[0].Index != 1 || !strings.Contains(a.SkippedRows[0].Message, "line 3") {
			t.Errorf("answer %+v", a)
		}
	})
	t.Run("ErrBadOnError", func(t *testing.T) {
		p := checkProblem(t, e.bad("unknown onError").do(t, "POST", importPath+"?onError=ignore", "application/json", `{"products":[]}`), 400)
		if !hasField(p, "onError", "invalid") {
			t.Errorf("errors %+v", p.Errors)
		}
	})
}

func TestImportSKU(t *testing.T) {
	t.Parallel()
	e := newImportEnv(t, httpapi.Config{})
	withSKUs := func(prefix string, n int, price string) []importRow {
		rows := bulkRows(prefix, n)
		for i := range rows {
			rows[i].SKU = fmt.Sprintf("SKU-%s-%d", prefix, i)
			rows[i].Price = price
		}
		return rows
	}
	count := func(t *testing.T) int { t.Helper(); return e.scalar(t, `SELECT count(*) FROM products`) }

	for _, f := range formats {
		t.Run(f.name+"/ReimportUpdates", func(t *testing.T) {
			before := count(t)
			a, raw := e.importOK(t, importPath, f.contentType, body(f.contentType, withSKUs(f.name, 50, "10.00")))
			if a.Count != 50 || a.Updated != nil || len(raw) != 3 {
				t.Errorf("first import %s", raw)
			}
			a, _ = e.importOK(t, importPath, f.contentType, body(f.contentType, withSKUs(f.name, 50, "12.50")))
			if a.Count != 50 || a.Created == nil || *a.Created != 0 || a.Updated == nil || *a.Updated != 50 {
				t.Errorf("re-import %+v, want 50 updated", a)
			}
			if c := count(t); c != before+50 {
				t.Errorf("%d products, want %d: the re-import duplicated them", c, before+50)
			}
			if n := e.scalar(t, `SELECT count(*) FROM products WHERE sku LIKE $1 AND price = 12.50`, "SKU-"+f.name+"-%"); n != 50 {
				t.Errorf("%d products updated to the new price, want 50", n)
			}
		})
	}

	t.Run("MixedRows", func(t *testing.T) {
		// Rows without a SKU before the first SKU go straight into products;
		// the rest go through the upsert: both halves land.
		before := count(t)
		rows := []importRow{
			{Name: "Plain 1", Price: "1", Inventory: 1},
			{Name: "Renamed", Price: "3", Inventory: 3, SKU: "SKU-JSON-0"},
			{Name: "New", Price: "4", Inventory: 4, SKU: "SKU-NEW-1"},
			{Name: "Plain 2", Price: "2", Inventory: 2},
		}
		a, _ := e.importOK(t, importPath, "application/json", body("application/json", rows))
		if a.Count != 4 || *a.Created != 3 || *a.Updated != 1 {
			t.Errorf("answer %+v, want 3 created, 1 updated", a)
		}
		if c := count(t); c != before+3 {
			t.Errorf("%d products, want %d", c, before+3)
		}
		if n := e.scalar(t, `SELECT count(*) FROM products WHERE sku = 'SKU-JSON-0' AND name = 'Renamed' AND inventory = 3`); n != 1 {
			t.Error("the product with SKU-JSON-0 was not updated")
		}
	})

	t.Run("UnchangedReimportRewritesNothing", func(t *testing.T) {
		rows := withSKUs("Same", 5, "7.00")
		e.importOK(t, importPath, "application/json", body("application/json", rows))
		var xmins []string
		q := `SELECT string_agg(xmin::text, ',' ORDER BY sku) FROM products WHERE sku LIKE 'SKU-Same-%'`
		_ = e.db.Pool.QueryRow(t.Context(), q).Scan(&xmins)
		a, _ := e.importOK(t, importPath, "application/json", body("application/json", rows))
		var after []string
		_ = e.db.Pool.QueryRow(t.Context(), q).Scan(&after)
		if a.Count != 5 || *a.Updated != 5 || !slices.Equal(xmins, after) {
			t.Errorf("answer %+v; row versions %v -> %v, want unchanged", a, xmins, after)
		}
	})

	t.Run("ErrDuplicateSKUInFile", func(t *testing.T) {
		before := count(t)
		rows := withSKUs("Dup", 5, "1.00")
		rows[3].SKU = rows[1].SKU
		p := importProblem(t, e.do(t, "POST", importPath, "text/csv", body("text/csv", rows)))
		if !hasRow(p.Errors, 3, "sku", "duplicate") || !strings.Contains(p.Errors[0].Message, "row 1") {
			t.Errorf("errors %+v", p.Errors)
		}
		if c := count(t); c != before {
			t.Errorf("%d products, want %d", c, before)
		}
	})

	t.Run("ErrInvalidSKU", func(t *testing.T) {
		p := importProblem(t, e.bad("invalid SKU").do(t, "POST", importPath, "application/json",
			`{"products":[{"name":"a","price":1,"inventory":1,"sku":"has space"},{"name":"b","price":1,"inventory":1,"sku":"`+strings.Repeat("x", 65)+`"}]}`))
		if !hasRow(p.Errors, 0, "sku", "invalid") || !hasRow(p.Errors, 1, "sku", "too_long") {
			t.Errorf("errors %+v", p.Errors)
		}
	})

	t.Run("ProductJSONHasSKUOnlyWhenSet", func(t *testing.T) {
		with := e.id(t, `SELECT id::text FROM products WHERE sku = 'SKU-NEW-1'`)
		without := e.id(t, `SELECT id::text FROM products WHERE sku IS NULL LIMIT 1`)
		var p map[string]any
		e.get(t, "/products/"+with).json(t, &p)
		if p["sku"] != "SKU-NEW-1" {
			t.Errorf("product with a sku: %v", p)
		}
		p = nil
		e.get(t, "/products/"+without).json(t, &p)
		if _, ok := p["sku"]; ok || len(p) != 6 {
			t.Errorf("product without a sku changed shape: %v", p)
		}
	})

	t.Run("CreateProductWithSKU", func(t *testing.T) {
		res := e.postJSON(t, "/products", `{"name":"Fan","price":5,"inventory":1,"sku":"SKU-FAN"}`)
		if res.status != 201 || !bytes.Contains(res.body, []byte(`"sku":"SKU-FAN"`)) {
			t.Errorf("create: %d %s", res.status, res.body)
		}
		p := checkProblem(t, e.postJSON(t, "/products", `{"name":"Fan 2","price":5,"inventory":1,"sku":"SKU-FAN"}`), 409)
		if !hasField(p, "sku", "taken") {
			t.Errorf("errors %+v", p.Errors)
		}
	})
}

func TestImportLimits(t *testing.T) {
	t.Parallel()
	e := newImportEnv(t, httpapi.Config{MaxImportRows: 10, MaxImportBytes: 4096})
	count := func(t *testing.T) int { t.Helper(); return e.scalar(t, `SELECT count(*) FROM products`) }
	for _, f := range formats {
		t.Run(f.name+"/AtTheRowLimit", func(t *testing.T) {
			before := count(t)
			if a, _ := e.importOK(t, importPath, f.contentType, body(f.contentType, bulkRows(f.name, 10))); a.Count != 10 {
				t.Errorf("count %d", a.Count)
			}
			if c := count(t); c != before+10 {
				t.Errorf("%d products, want %d", c, before+10)
			}
		})
		t.Run(f.name+"/ErrTooManyRows", func(t *testing.T) {
			before := count(t)
			p := checkProblem(t, e.do(t, "POST", importPath, f.contentType, body(f.contentType, bulkRows(f.name, 11))), 413)
			if !strings.Contains(p.Detail, "10 rows") {
				t.Errorf("detail %q", p.Detail)
			}
			if c := count(t); c != before {
				t.Errorf("%d products, want %d: a refused import wrote rows", c, before)
			}
		})
		t.Run(f.name+"/ErrTooManyBytes", func(t *testing.T) {
			before := count(t)
			rows := bulkRows(f.name, 8)
			for i := range rows {
				rows[i].Description = str(strings.Repeat("d", 800))
			}
			p := checkProblem(t, e.do(t, "POST", importPath, f.contentType, body(f.contentType, rows)), 413)
			if !strings.Contains(p.Detail, "4096 bytes") {
				t.Errorf("detail %q", p.Detail)
			}
			if c := count(t); c != before {
				t.Errorf("%d products, want %d: a refused import wrote rows", c, before)
			}
		})
	}
	t.Run("SkipModeStillLimited", func(t *testing.T) {
		checkProblem(t, e.do(t, "POST", importPath+"?onError=skip", "application/json", body("application/json", bulkRows("Skip", 11))), 413)
	})
}

func TestImportTelemetry(t *testing.T) {
	t.Parallel()
	mt := telemetrytest.MockTracer(t)
	e := newImportEnv(t, httpapi.Config{ImportProgressRows: 100})

	rows := bulkRows("Traced", 1000)
	rows[10], rows[20] = badRow(10), badRow(20)
	a, _ := e.importOK(t, importPath+"?onError=skip", "application/x-ndjson", body("application/x-ndjson", rows), "X-Request-Id", "import-telemetry",
		"X-Datadog-Trace-Id", "9100000001", "X-Datadog-Parent-Id", "1")
	if a.Count != 998 {
		t.Fatalf("count %d", a.Count)
	}

	t.Run("Metrics", func(t *testing.T) {
		e.stats.WaitFor(t, "import.duration", "format:ndjson", "outcome:ok")
		if b := e.stats.WaitFor(t, "import.bytes", "format:ndjson", "outcome:ok"); int(b.Value) != len(body("application/x-ndjson", rows)) {
			t.Errorf("import.bytes %v, want the body's %d", b.Value, len(body("application/x-ndjson", rows)))
		}
		e.stats.WaitForSum(t, telemetrytest.Equals(998), "import.rows", "format:ndjson", "result:imported")
		e.stats.WaitForSum(t, telemetrytest.Equals(2), "import.rows", "format:ndjson", "result:rejected")
	})
	t.Run("Span", func(t *testing.T) {
		var found bool
		for _, s := range mt.FinishedSpans() {
			// Other tests' spans land in the mock tracer too: pick ours by trace.
			if s.OperationName() == httpapi.SpanImport && s.TraceID() == 9100000001 {
				found = true
				if fmt.Sprint(s.Tag("import.rows")) != "1000" || fmt.Sprint(s.Tag("import.rows.rejected")) != "2" || fmt.Sprint(s.Tag("import.rows.created")) != "998" {
					t.Errorf("span tags %v", s.Tags())
				}
			}
		}
		if !found {
			t.Error("no import span")
		}
	})
	t.Run("Logs", func(t *testing.T) {
		if n := e.logs.FilterMessage("import progress").Len(); n != 10 {
			t.Errorf("%d progress lines for 1000 rows every 100, want 10", n)
		}
		fin := e.logs.FilterMessage("import finished").All()
		if len(fin) != 1 || fin[0].ContextMap()["rows"] != int64(1000) || fin[0].ContextMap()["rejected"] != int64(2) {
			t.Errorf("finished lines %+v", fin)
		}
	})
	t.Run("RejectedInAbortMode", func(t *testing.T) {
		importProblem(t, e.bad("bad rows").do(t, "POST", importPath, "application/json", body("application/json", rows)))
		e.stats.WaitFor(t, "import.duration", "format:json", "outcome:invalid")
		e.stats.WaitForSum(t, telemetrytest.Equals(2), "import.rows", "format:json", "result:rejected")
		if n := e.stats.Sum("import.rows", "format:json", "result:imported"); n != 0 {
			t.Errorf("imported %v in an aborted import", n)
		}
	})
}

// TestImportAnswerShape pins the original's answer: exactly message,
// duration and count for a plain import.
func TestImportAnswerShape(t *testing.T) {
	t.Parallel()
	e := newImportEnv(t, httpapi.Config{})
	res := e.do(t, "POST", importPath, "application/json", `{"products":[{"name":"Bulk Import Product 1","description":"x","price":10.5,"inventory":10}]}`)
	var m map[string]json.RawMessage
	res.json(t, &m)
	if res.status != 201 || len(m) != 3 || string(m["count"]) != "1" || m["message"] == nil || m["duration"] == nil {
		t.Errorf("%d %s", res.status, res.body)
	}
}
