package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// reportPreviewLen is how much of the text report the JSON answer shows.
const reportPreviewLen = 500

// reportPreviewLines is how many lines the JSON answer reads for its
// preview: every line renders at least 24 bytes ("  - X x 1 @ 0.00 =
// 0.00\n"), so 21 lines already fill the 500 characters after the header.
const reportPreviewLines = 32

// Streaming: a download is buffered in reportBufferSize bytes and flushed
// to the client after its first part, then every reportFlushRows lines or
// reportFlushInterval, whichever comes first, and at the end.
const (
	reportBufferSize    = 32 << 10
	reportFlushRows     = 250
	reportFlushInterval = 250 * time.Millisecond
)

// reportFormat is one download format of GET /reports/orders/{userId}.
type reportFormat struct {
	ext         string // the file name extension, also the ?format= value
	contentType string
	newEncoder  func(io.Writer) reportEncoder
	// figures: the encoder prints the summary's figures (else it needs
	// only the user, and the download skips the aggregate query).
	figures bool
}

// reportFormats are the values of ?format=; without it the answer is the
// original's JSON summary.
var reportFormats = map[string]reportFormat{
	"txt":    {"txt", "text/plain; charset=utf-8", newTextReport, true},
	"csv":    {"csv", "text/csv; charset=utf-8", newCSVReport, false},
	"ndjson": {"ndjson", "application/x-ndjson", newNDJSONReport, false},
}

// reportEncoder renders a report: begin, one call of line per order line
// (newest order first, an order's lines together), end. flush pushes out
// what the encoder itself buffers.
type reportEncoder interface {
	begin(s shop.ReportSummary, now time.Time) error
	line(l shop.ReportLine) error
	end() error
	flush() error
}

// writeReport renders the report of s with enc: stream yields the lines.
func writeReport(enc reportEncoder, s shop.ReportSummary, now time.Time, stream func(func(shop.ReportLine) error) error) error {
	if err := enc.begin(s, now); err != nil {
		return err
	}
	if err := stream(enc.line); err != nil {
		return err
	}
	if err := enc.end(); err != nil {
		return err
	}
	return enc.flush()
}

// textReport is the original's plain-text report: a header, one block per
// order with its lines, and the summary.
type textReport struct {
	w       io.Writer
	s       shop.ReportSummary
	current string
	total   shop.Money
}

func newTextReport(w io.Writer) reportEncoder { return &textReport{w: w} }

func (t *textReport) begin(s shop.ReportSummary, now time.Time) error {
	t.s = s
	_, err := fmt.Fprintf(t.w, "ORDER REPORT\nUser: %s <%s>\nGenerated: %s\nOrders: %d\n", s.User.Name, s.User.Email, now.UTC().Format(time.RFC3339), s.OrderCount)
	return err
}

func (t *textReport) line(l shop.ReportLine) error {
	if l.OrderID != t.current {
		if err := t.endOrder(); err != nil {
			return err
		}
		t.current, t.total = l.OrderID, l.OrderTotal
		if _, err := fmt.Fprintf(t.w, "\nOrder %s (%s) %s\n", l.OrderID, l.Status, l.CreatedAt.UTC().Format(time.RFC3339)); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(t.w, "  - %s x %d @ %s = %s\n", l.ProductName, l.Quantity, l.UnitPrice, l.UnitPrice*shop.Money(l.Quantity))
	return err
}

func (t *textReport) endOrder() error {
	if t.current == "" {
		return nil
	}
	_, err := fmt.Fprintf(t.w, "  Order total: %s\n", t.total)
	return err
}

func (t *textReport) end() error {
	if err := t.endOrder(); err != nil {
		return err
	}
	s := t.s
	avg := shop.Money(0)
	if s.OrderCount > 0 {
		avg = (s.TotalSpent + shop.Money(s.OrderCount/2)) / shop.Money(s.OrderCount)
	}
	_, err := fmt.Fprintf(t.w, "\nSUMMARY\nTotal spent: %s\nAverage order value: %s\nItems purchased: %d\n", s.TotalSpent, avg, s.ItemsPurchased)
	return err
}

func (t *textReport) flush() error { return nil }

// csvHeader names the columns of the CSV report, one row per order line.
var csvHeader = []string{"order_id", "status", "created_at", "order_total", "product_id", "product_name", "quantity", "unit_price", "line_total"}

// csvReport is the report as CSV (RFC 4180): a header row, then one row
// per order line.
type csvReport struct {
	w   *csv.Writer
	row []string
}

func newCSVReport(w io.Writer) reportEncoder {
	return &csvReport{w: csv.NewWriter(w), row: make([]string, len(csvHeader))}
}

func (c *csvReport) begin(shop.ReportSummary, time.Time) error { return c.w.Write(csvHeader) }

func (c *csvReport) line(l shop.ReportLine) error {
	r := c.row
	r[0], r[1], r[2], r[3] = l.OrderID, l.Status, l.CreatedAt.UTC().Format(time.RFC3339), l.OrderTotal.String()
	r[4], r[5], r[6], r[7] = l.ProductID, l.ProductName, strconv.Itoa(l.Quantity), l.UnitPrice.String()
	r[8] = (l.UnitPrice * shop.Money(l.Quantity)).String()
	return c.w.Write(r)
}

func (c *csvReport) end() error { return nil }

func (c *csvReport) flush() error {
	c.w.Flush()
	return c.w.Error()
}

// ndjsonLine is one order line of the NDJSON report; money is a decimal
// string as everywhere in the API.
type ndjsonLine struct {
	OrderID     string     `json:"orderId"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"createdAt"`
	OrderTotal  shop.Money `json:"orderTotal"`
	ProductID   string     `json:"productId"`
	ProductName string     `json:"productName"`
	Quantity    int        `json:"quantity"`
	UnitPrice   shop.Money `json:"unitPrice"`
	LineTotal   shop.Money `json:"lineTotal"`
}

// ndjsonReport is the report as newline-delimited JSON, one object per
// order line.
type ndjsonReport struct{ enc *json.Encoder }

func newNDJSONReport(w io.Writer) reportEncoder { return &ndjsonReport{enc: json.NewEncoder(w)} }

func (n *ndjsonReport) begin(shop.ReportSummary, time.Time) error { return nil }

func (n *ndjsonReport) line(l shop.ReportLine) error {
	return n.enc.Encode(ndjsonLine{
		OrderID: l.OrderID, Status: l.Status, CreatedAt: l.CreatedAt.UTC(), OrderTotal: l.OrderTotal,
		ProductID: l.ProductID, ProductName: l.ProductName, Quantity: l.Quantity,
		UnitPrice: l.UnitPrice, LineTotal: l.UnitPrice * shop.Money(l.Quantity),
	})
}

func (n *ndjsonReport) end() error   { return nil }
func (n *ndjsonReport) flush() error { return nil }

// previewWriter keeps the first max bytes written to it and counts all.
type previewWriter struct {
	buf []byte
	max int
	n   int64
}

func (p *previewWriter) Write(b []byte) (int, error) {
	if room := p.max - len(p.buf); room > 0 {
		p.buf = append(p.buf, b[:min(room, len(b))]...)
	}
	p.n += int64(len(b))
	return len(b), nil
}

// probeOrderID stands for any order id: ids are canonical UUIDs, 36 bytes.
const probeOrderID = "00000000-0000-4000-8000-000000000000"

// textReportSize returns the size in bytes of the text report of s
// rendered at now, without reading a line: s.Text holds the line and order
// counts and the summed byte lengths of the variable-width fields, which
// the database computed with the figures. The fixed bytes of an order and
// of a line are learnt by rendering a probe order (an id and a timestamp
// of the fixed widths every id and RFC 3339 UTC timestamp have, empty or
// zero variable fields) through textReport itself, so the format is
// written once. TestReportSize checks it against full downloads.
func textReportSize(s shop.ReportSummary, now time.Time) int64 {
	probe := shop.ReportLine{OrderID: probeOrderID, CreatedAt: now, ProductID: probeOrderID}
	render := func(lines int) int64 {
		pw := &previewWriter{}
		_ = writeReport(newTextReport(pw), s, now, func(fn func(shop.ReportLine) error) error {
			for range lines {
				if err := fn(probe); err != nil {
					return err
				}
			}
			return nil
		})
		return pw.n
	}
	base, one, two := render(0), render(1), render(2)
	orderVar := int64(len(probe.Status) + len(probe.OrderTotal.String()))
	lineVar := int64(len(probe.ProductName) + len(strconv.Itoa(probe.Quantity)) +
		len(probe.UnitPrice.String()) + len((probe.UnitPrice * shop.Money(probe.Quantity)).String()))
	lineFixed := two - one - lineVar
	orderFixed := one - base - orderVar - lineFixed - lineVar
	t := s.Text
	return base + t.Orders*orderFixed + t.Lines*lineFixed +
		t.Statuses + t.OrderTotals + t.ProductNames + t.Quantities + t.UnitPrices + t.LineTotals
}

// reportLimiter admits at most cap(slots) reports at a time. The others
// are refused at once with 429 rather than queued: a queue would only hold
// their requests, and the clients' connections, longer.
// Imports use one too (admission.go); gauge is the metric of its count.
type reportLimiter struct {
	slots    chan struct{}
	inFlight atomic.Int64
	tel      *telemetry.Telemetry
	gauge    string
}

func newReportLimiter(tel *telemetry.Telemetry, n int) *reportLimiter {
	return &reportLimiter{slots: make(chan struct{}, n), tel: tel, gauge: telemetry.MetricReportsInFlight}
}

// tryAcquire takes a slot if one is free and returns its release.
func (l *reportLimiter) tryAcquire() (release func(), ok bool) {
	select {
	case l.slots <- struct{}{}:
	default:
		return nil, false
	}
	_ = l.tel.Metrics.Gauge(l.gauge, float64(l.inFlight.Add(1)), nil, 1)
	return func() {
		_ = l.tel.Metrics.Gauge(l.gauge, float64(l.inFlight.Add(-1)), nil, 1)
		<-l.slots
	}, true
}

// Report outcomes, the values of the outcome tag of MetricReportDuration.
const (
	reportOK          = "ok"
	reportNotFound    = "not_found"
	reportCanceled    = "canceled"
	reportUnavailable = "unavailable"
	reportError       = "error"
)

// reportOutcome classifies how a report ended; ctx is the request's,
// canceled only when the client went away.
func reportOutcome(ctx context.Context, err error) string {
	var gone clientGoneError
	switch {
	case err == nil:
		return reportOK
	case errors.As(err, &gone), errors.Is(ctx.Err(), context.Canceled):
		return reportCanceled
	}
	switch shop.ErrorCode(err) {
	case shop.ENOTFOUND:
		return reportNotFound
	case shop.EUNAVAILABLE:
		return reportUnavailable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return reportUnavailable
	}
	return reportError
}

// clientGoneError is a failed write to the client: it went away or stopped
// reading past the deadline.
type clientGoneError struct{ err error }

func (e clientGoneError) Error() string { return "write to client: " + e.err.Error() }
func (e clientGoneError) Unwrap() error { return e.err }

// clientWriter marks write errors as clientGoneError.
type clientWriter struct{ w io.Writer }

func (c clientWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	if err != nil {
		err = clientGoneError{err}
	}
	return n, err
}

// reportTooLong is the error of a report that ran past ReportMaxDuration.
var reportTooLong = &shop.Error{Code: shop.EUNAVAILABLE, Message: "The report took too long; retry later.", RetryAfter: 5 * time.Second}

// handleOrderReport serves GET /reports/orders/{userId}. Without ?format=
// it answers the original's JSON summary (message, user, orderCount,
// reportSize, report: the first 500 characters of the text report and
// "..."), all from SQL aggregates and the first lines; with
// ?format=txt|csv|ndjson it streams the full report as a download, at the
// pace that all downloads share. lim admits the reports that run at once;
// beyond, 429 with Retry-After: retryAfter. A report that runs past
// maxDuration is cut off, and one whose client goes away stops, in the
// database too.
//
// With the report-in-process switch on (sw), a download is instead built
// whole in memory before its first byte (downloadReportInProcess).
func handleOrderReport(tel *telemetry.Telemetry, reports shop.ReportStore, sw shop.Switches, lim *reportLimiter, pace *rate.Limiter, retryAfter, maxDuration time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID := mux.Vars(r)["userId"]
		if !shop.ValidID(userID) || !mayActFor(r, userID) { // another buyer's: as unknown
			writeError(w, r, tel, errNotYours())
			return
		}
		name := r.URL.Query().Get("format")
		format, download := reportFormats[name]
		if name == "" {
			name = formatJSON // the JSON summary, in metrics
		} else if !download {
			writeError(w, r, tel, shop.Invalid(shop.FieldError{Field: "format", Code: "oneof",
				Message: "format must be one of txt, csv, ndjson (or absent for the JSON summary)"}))
			return
		}
		tags := []string{"format:" + name}
		release, ok := lim.tryAcquire()
		if !ok {
			_ = tel.Metrics.Incr(telemetry.MetricReportRejections, tags, 1)
			writeError(w, r, tel, &shop.Error{Code: shop.ERATELIMIT, RetryAfter: retryAfter,
				Message: fmt.Sprintf("Too many reports are being generated (at most %d at a time); retry shortly.", cap(lim.slots))})
			return
		}
		defer release()

		start := time.Now()
		var rows int64
		ctx, cancel := context.WithTimeoutCause(r.Context(), maxDuration, reportTooLong)
		defer cancel()
		if download {
			// A download is long: the shutdown ends it. The summary is a
			// short request (a preview, bounded by maxDuration), which the
			// shutdown lets finish like any other.
			defer endOnShutdown(r.Context(), w, cancel)()
		}
		var err error
		switch {
		case download && shop.SwitchOn(ctx, sw, shop.SwitchReportInProcess):
			err = downloadReportInProcess(ctx, w, r, tel, reports, userID, format, &rows)
		case download:
			err = streamReport(ctx, w, r, tel, reports, userID, format, maxDuration, pace, &rows)
		default:
			err = summarizeReport(ctx, w, r, tel, reports, userID, &rows)
		}
		outcome := reportOutcome(r.Context(), err)
		if outcome == reportCanceled {
			_ = tel.Metrics.Incr(telemetry.MetricReportCancellations, tags, 1)
		}
		_ = tel.Metrics.Count(telemetry.MetricReportRows, rows, tags, 1)
		_ = tel.Metrics.Distribution(telemetry.MetricReportDuration, float64(time.Since(start).Microseconds())/1000,
			append(tags, "outcome:"+outcome), 1)
		var cut cutOffError
		if errors.As(err, &cut) {
			// The status is sent: abort the response, so that the client
			// sees an incomplete body, never a short file that looks whole.
			panic(http.ErrAbortHandler)
		}
	})
}

// summarizeReport answers the JSON summary. It returns the error it
// answered with, if any.
func summarizeReport(ctx context.Context, w http.ResponseWriter, r *http.Request, tel *telemetry.Telemetry, reports shop.ReportStore, userID string, rows *int64) error {
	sum, err := reports.ReportSummary(ctx, userID)
	if err != nil {
		err = timeoutCause(ctx, err)
		writeError(w, r, tel, err)
		return err
	}
	now := time.Now().UTC()
	pw := &previewWriter{max: reportPreviewLen}
	err = writeReport(newTextReport(pw), sum, now, func(fn func(shop.ReportLine) error) error {
		return reports.StreamReport(ctx, userID, reportPreviewLines, func(l shop.ReportLine) error {
			*rows++
			return fn(l)
		})
	})
	if err != nil {
		err = timeoutCause(ctx, err)
		writeError(w, r, tel, err)
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"message":    "Report generated successfully",
		"user":       sum.User.Email,
		"orderCount": sum.OrderCount,
		"reportSize": textReportSize(sum, now),
		"report":     string(pw.buf) + "...",
	})
	return nil
}

// timeoutCause turns the error of a report cut off by its own deadline
// into reportTooLong.
func timeoutCause(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(context.Cause(ctx), reportTooLong) {
		return reportTooLong
	}
	if errors.Is(ctx.Err(), context.Canceled) && stoppingFrom(ctx).Err() != nil {
		// Ended by the shutdown (endOnShutdown), not by the client: a
		// download that has sent nothing yet answers the shutdown's 503.
		return errShuttingDown(reportShutdownRetryAfter)
	}
	return err
}

// reportShutdownRetryAfter is the Retry-After of a report ended by the
// shutdown: another instance (or this one, restarted) answers at once.
const reportShutdownRetryAfter = time.Second

// newReportPace is the one pace of all downloads together: perSec order
// lines a second, whatever the number of downloads (0: unpaced). Each
// download reserves its lines a flush at a time (at most reportFlushRows),
// so a burst of one flush keeps the waits few and the pace smooth.
func newReportPace(perSec int) *rate.Limiter {
	if perSec <= 0 {
		return rate.NewLimiter(rate.Inf, reportFlushRows)
	}
	return rate.NewLimiter(rate.Limit(perSec), reportFlushRows)
}

// waitPace waits until pace admits n more lines (at most reportFlushRows),
// or until ctx ends. A wait that would outlast ctx's deadline ends the
// report at once, as the deadline would.
func waitPace(ctx context.Context, pace *rate.Limiter, n int) error {
	if n <= 0 {
		return nil
	}
	if err := pace.WaitN(ctx, n); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if _, ok := ctx.Deadline(); ok {
			return reportTooLong
		}
		return err
	}
	return nil
}

// cutOffError is the error of a download that failed after its status was
// sent, while the client was still there: the handler aborts the response.
type cutOffError struct{ err error }

func (e cutOffError) Error() string { return "report cut off: " + e.err.Error() }
func (e cutOffError) Unwrap() error { return e.err }

// streamReport writes the full report in format f, row by row as the
// store yields them: the first bytes leave before the first line is read,
// then a flush every reportFlushRows lines or reportFlushInterval,
// whichever comes first; at each flush it waits until pace admits the
// lines sent since the last (the database cursor is read no faster either).
// The client must read it within maxDuration. Errors before the first byte
// are answered in the
// problem format. It returns the error the report ended with: a
// clientGoneError when the client went away, a cutOffError for a failure
// after the status was sent.
func streamReport(ctx context.Context, w http.ResponseWriter, r *http.Request, tel *telemetry.Telemetry, reports shop.ReportStore, userID string, f reportFormat, maxDuration time.Duration, pace *rate.Limiter, rows *int64) error {
	var sum shop.ReportSummary
	var err error
	if f.figures {
		sum, err = reports.ReportSummary(ctx, userID)
	} else {
		sum.User, err = reports.ReportUser(ctx, userID)
	}
	if err != nil {
		err = timeoutCause(ctx, err)
		writeError(w, r, tel, err)
		return err
	}
	rc := http.NewResponseController(w)
	if maxDuration > 0 {
		// A client that stops reading cannot hold a report slot forever.
		_ = rc.SetWriteDeadline(time.Now().Add(maxDuration))
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="orders-%s.%s"`, userID, f.ext))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	bw := bufio.NewWriterSize(clientWriter{w}, reportBufferSize)
	enc := f.newEncoder(bw)
	flush := func() error {
		if err := enc.flush(); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return clientGoneError{err}
		}
		return nil
	}
	last := time.Now()
	var paced int64 // lines the pace admitted so far
	err = writeReport(enc, sum, time.Now().UTC(), func(line func(shop.ReportLine) error) error {
		if err := flush(); err != nil { // the header leaves before the first line is read
			return err
		}
		return reports.StreamReport(ctx, userID, 0, func(l shop.ReportLine) error {
			if err := line(l); err != nil {
				return err
			}
			*rows++
			if *rows%reportFlushRows == 0 || time.Since(last) >= reportFlushInterval {
				if err := flush(); err != nil {
					return err
				}
				if err := waitPace(ctx, pace, int(*rows-paced)); err != nil {
					return err
				}
				paced = *rows
				last = time.Now()
			}
			return nil
		})
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		return nil
	}
	err = timeoutCause(ctx, err)
	if reportOutcome(r.Context(), err) == reportCanceled {
		telemetry.Logger(r.Context(), tel.Log).Info("report abandoned by the client", zap.Int64("rows", *rows))
		return err
	}
	telemetry.Logger(r.Context(), tel.Log).Warn("report cut off", zap.Error(err), zap.Int64("rows", *rows))
	return cutOffError{err}
}

// downloadReportInProcess is the original's defect behind the
// report-in-process switch: it loads every line of the user's orders into
// memory, renders the whole report into a buffer, and only then sends its
// first byte. Memory grows with the report, the client waits for all of
// it, and no pace applies. MetricReportInProcessBytes records the buffer.
// Errors are answered in the problem format (nothing was sent yet) and
// returned.
func downloadReportInProcess(ctx context.Context, w http.ResponseWriter, r *http.Request, tel *telemetry.Telemetry, reports shop.ReportStore, userID string, f reportFormat, rows *int64) error {
	var sum shop.ReportSummary
	var err error
	if f.figures {
		sum, err = reports.ReportSummary(ctx, userID)
	} else {
		sum.User, err = reports.ReportUser(ctx, userID)
	}
	var lines []shop.ReportLine
	if err == nil {
		err = reports.StreamReport(ctx, userID, 0, func(l shop.ReportLine) error {
			lines = append(lines, l)
			*rows++
			return nil
		})
	}
	var buf bytes.Buffer
	if err == nil {
		err = writeReport(f.newEncoder(&buf), sum, time.Now().UTC(), func(line func(shop.ReportLine) error) error {
			for _, l := range lines {
				if err := line(l); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		err = timeoutCause(ctx, err)
		writeError(w, r, tel, err)
		return err
	}
	_ = tel.Metrics.Distribution(telemetry.MetricReportInProcessBytes, float64(buf.Len()), []string{"format:" + f.ext}, 1)
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="orders-%s.%s"`, userID, f.ext))
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if _, err := buf.WriteTo(w); err != nil {
		return clientGoneError{err}
	}
	return nil
}
