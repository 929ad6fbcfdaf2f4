package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// importBody is the original's import body.
type importBody struct {
	Products []shop.ProductInput `json:"products"`
}

// maxReportedRowErrors bounds the row problems listed in one answer.
const maxReportedRowErrors = 100

// validateImport checks every row with POST /products' rules; one bad row
// rejects the whole import, listing the first bad rows and their count.
func validateImport(b importBody) ([]shop.NewProduct, error) {
	if b.Products == nil {
		return nil, shop.Invalid(shop.FieldError{Field: "products", Code: "required", Message: "products is required"})
	}
	rows := make([]shop.NewProduct, 0, len(b.Products))
	var problems []shop.FieldError
	badRows := 0
	for i, in := range b.Products {
		np, err := shop.ProductRules{}.Validate(in)
		if err != nil {
			badRows++
			for _, f := range shop.AsError(err).Fields {
				if len(problems) < maxReportedRowErrors {
					f.Field = fmt.Sprintf("products[%d].%s", i, f.Field)
					f.Message = fmt.Sprintf("row %d: %s", i, f.Message)
					problems = append(problems, f)
				}
			}
			continue
		}
		rows = append(rows, np)
	}
	if badRows > 0 {
		e := shop.Invalid(problems...)
		e.Message = fmt.Sprintf("%d of %d rows are invalid; nothing was imported. First: %s", badRows, len(b.Products), problems[0].Message)
		e.Extensions = map[string]any{"invalidRows": badRows}
		return nil, e
	}
	return rows, nil
}

func handleImport(tel *telemetry.Telemetry, products shop.ProductStore, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rows, err := decodeValid(w, r, limit, validateImport)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		n, err := products.ImportProducts(r.Context(), rows)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		d := time.Since(start)
		writeJSON(w, http.StatusCreated, map[string]any{
			"message":  fmt.Sprintf("Successfully imported %d products", n),
			"duration": fmt.Sprintf("%dms", d.Milliseconds()),
			"count":    n,
		})
	})
}
