package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// reportPreviewLen is how much of the text report the JSON answer shows.
const reportPreviewLen = 500

// handleOrderReport answers the original's report summary: figures from SQL
// aggregates, and the first characters of the text report, which is
// streamed through a counter rather than built in memory.
func handleOrderReport(tel *telemetry.Telemetry, reports shop.ReportStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID := mux.Vars(r)["userId"]
		if !shop.ValidID(userID) {
			writeError(w, r, tel, shop.Errorf(shop.ENOTFOUND, "User not found"))
			return
		}
		sum, err := reports.ReportSummary(r.Context(), userID)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		pw := &previewWriter{max: reportPreviewLen}
		if err := writeTextReport(pw, sum, time.Now().UTC(), func(fn func(shop.ReportLine) error) error {
			return reports.StreamReport(r.Context(), userID, fn)
		}); err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"message":    "Report generated successfully",
			"user":       sum.User.Email,
			"orderCount": sum.OrderCount,
			"reportSize": pw.n,
			"report":     string(pw.buf) + "...",
		})
	})
}

// previewWriter keeps the first max bytes written to it and counts all.
type previewWriter struct {
	buf []byte
	max int
	n   int
}

func (p *previewWriter) Write(b []byte) (int, error) {
	if room := p.max - len(p.buf); room > 0 {
		p.buf = append(p.buf, b[:min(room, len(b))]...)
	}
	p.n += len(b)
	return len(b), nil
}

// writeTextReport writes the plain-text report: a header, one block per
// order with its lines, and the summary. stream yields the lines, newest
// order first.
func writeTextReport(w io.Writer, s shop.ReportSummary, now time.Time, stream func(func(shop.ReportLine) error) error) error {
	if _, err := fmt.Fprintf(w, "ORDER REPORT\nUser: %s <%s>\nGenerated: %s\nOrders: %d\n", s.User.Name, s.User.Email, now.Format(time.RFC3339), s.OrderCount); err != nil {
		return err
	}
	var current string
	var total shop.Money
	endOrder := func() error {
		if current == "" {
			return nil
		}
		_, err := fmt.Fprintf(w, "  Order total: %s\n", total)
		return err
	}
	err := stream(func(l shop.ReportLine) error {
		if l.OrderID != current {
			if err := endOrder(); err != nil {
				return err
			}
			current, total = l.OrderID, l.OrderTotal
			if _, err := fmt.Fprintf(w, "\nOrder %s (%s) %s\n", l.OrderID, l.Status, l.CreatedAt.UTC().Format(time.RFC3339)); err != nil {
				return err
			}
		}
		_, err := fmt.Fprintf(w, "  - %s x %d @ %s = %s\n", l.ProductName, l.Quantity, l.UnitPrice, l.UnitPrice*shop.Money(l.Quantity))
		return err
	})
	if err != nil {
		return err
	}
	if err := endOrder(); err != nil {
		return err
	}
	avg := shop.Money(0)
	if s.OrderCount > 0 {
		avg = (s.TotalSpent + shop.Money(s.OrderCount/2)) / shop.Money(s.OrderCount)
	}
	_, err = fmt.Fprintf(w, "\nSUMMARY\nTotal spent: %s\nAverage order value: %s\nItems purchased: %d\n", s.TotalSpent, avg, s.ItemsPurchased)
	return err
}
