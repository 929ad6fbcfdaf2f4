package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/DataDog/dd-trace-go/v2/ddtrace/tracer"
	"go.uber.org/zap"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// SpanImport is the operation name of the span around one bulk import.
const SpanImport = "import.products"

// errRowsInvalid stops an all-or-nothing import at its first bad row; the
// answer is built from the rows' problems, not from it.
var errRowsInvalid = errors.New("import stopped at an invalid row")

// handleImport is POST /admin/products/import. The body (JSON, NDJSON or
// CSV by Content-Type) is decoded one row at a time while the store copies
// the rows into the database, so neither the payload nor its rows are ever
// held whole. Rows are validated with the rules POST /products (v1) has at
// the time, so from v1's sunset on they need a description too. By default
// one bad row aborts the COPY and rolls everything back; the 400 lists the
// first shop.MaxReportedRows bad rows (index, field, message) and counts
// them all, reading the rest of the body to do so. ?onError=skip imports
// the valid rows and reports the skipped ones. More than maxRows rows or
// maxBytes bytes is a 413, with nothing written. Progress is logged every
// progressEvery rows; every import is counted, timed and traced (see
// observeImport).
func handleImport(tel *telemetry.Telemetry, products shop.ProductStore, v1 apiVersion, adm *importAdmission, maxBytes int64, maxRows, progressEvery int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		release, ok := adm.admit(w, r)
		if !ok {
			return
		}
		defer release()
		guard, unguard := adm.guard(w, r)
		defer unguard()
		r.Body = struct {
			io.Reader
			io.Closer
		}{guard, r.Body}
		job, err := decodeImport(w, r, v1.rulesAt(start), maxBytes, maxRows)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		span, ctx := tracer.StartSpanFromContext(r.Context(), SpanImport, tracer.ResourceName("import "+job.format),
			tracer.Tag("import.format", job.format), tracer.Tag("import.mode", job.mode()))
		job.logProgress(telemetry.Logger(ctx, tel.Log), progressEvery, start)
		res, err := job.run(ctx, products)
		d := time.Since(start)
		observeImport(ctx, tel, span, job, res, err, d)
		if err != nil {
			adm.cut(w, guard)
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusCreated, job.answer(res, d))
	})
}

// importJob is one import request: its format, its mode, its body (with
// the bytes read so far) and the source the store pulls its rows from.
type importJob struct {
	format string
	body   *countingReader
	src    *importSource
}

// decodeImport reads an import's options (?onError=, Content-Type) and
// sets up the row source over its body, bounded by maxBytes and maxRows;
// rows are checked with rules. It reads none of the body.
func decodeImport(w http.ResponseWriter, r *http.Request, rules shop.ProductRules, maxBytes int64, maxRows int) (*importJob, error) {
	skip, err := importOnError(r)
	if err != nil {
		return nil, err
	}
	format, err := importFormat(r)
	if err != nil {
		return nil, err
	}
	body := &countingReader{r: http.MaxBytesReader(w, r.Body, maxBytes)}
	return &importJob{format: format, body: body, src: &importSource{
		rows:    newRowReader(format, body),
		check:   shop.NewRowChecker(rules),
		skip:    skip,
		maxRows: maxRows,
	}}, nil
}

// mode is the import's mode tag: abort (all or nothing) or skip.
func (j *importJob) mode() string {
	if j.src.skip {
		return "skip"
	}
	return "abort"
}

// logProgress has the import log its progress every so many rows (never
// when every is 0).
func (j *importJob) logProgress(log *zap.Logger, every int, start time.Time) {
	j.src.every = every
	j.src.progress = func(read, rejected int) {
		elapsed := time.Since(start)
		log.Info("import progress", zap.String("format", j.format), zap.Int("rows", read), zap.Int("rejected", rejected),
			zap.Int64("bytes", j.body.n), zap.Int64("elapsed_ms", elapsed.Milliseconds()),
			zap.Int64("rows_per_sec", int64(float64(read)/max(elapsed.Seconds(), 1e-3))))
	}
}

// run has the store import the rows. An all-or-nothing import stopped by a
// bad row reads on to the end of the body to list and count the bad rows,
// and fails with them (EINVALID).
func (j *importJob) run(ctx context.Context, products shop.ProductStore) (shop.ImportResult, error) {
	res, err := products.ImportProducts(ctx, j.src)
	if errors.Is(err, errRowsInvalid) {
		j.src.drain()
		err = j.src.invalidError(ctx)
	}
	return res, err
}

// answer is the body of a successful import's 201: the count and
// duration, created and updated when some rows updated products, and with
// ?onError=skip the skipped rows.
func (j *importJob) answer(res shop.ImportResult, d time.Duration) map[string]any {
	answer := map[string]any{
		"message":  fmt.Sprintf("Successfully imported %d products", res.Count()),
		"duration": fmt.Sprintf("%dms", d.Milliseconds()),
		"count":    res.Count(),
	}
	if res.Updated > 0 {
		answer["created"], answer["updated"] = res.Created, res.Updated
	}
	if j.src.skip {
		skipped := j.src.check.Problems()
		if skipped == nil {
			skipped = []shop.RowError{}
		}
		answer["skipped"], answer["skippedRows"] = j.src.check.Rejected(), skipped
	}
	return answer
}

// observeImport records an import's outcome: MetricImportDuration and
// MetricImportBytes tagged format and outcome, MetricImportRows imported
// and rejected; the rows, bytes, outcome and whether the import refreshed
// the planner statistics (import.analyzed) as tags of the import's span,
// which it finishes (with the error when the outcome is error); and an
// "import finished" log line (a warning too when that refresh failed).
func observeImport(ctx context.Context, tel *telemetry.Telemetry, span *tracer.Span, job *importJob, res shop.ImportResult, err error, dur time.Duration) {
	src, format, bytes := job.src, job.format, job.body.n
	outcome := importOutcome(ctx, err)
	tags := []string{"format:" + format, "outcome:" + outcome}
	m := tel.Metrics
	_ = m.Distribution(telemetry.MetricImportDuration, float64(dur.Microseconds())/1000, tags, 1)
	_ = m.Distribution(telemetry.MetricImportBytes, float64(bytes), tags, 1)
	if err == nil && res.Count() > 0 {
		_ = m.Count(telemetry.MetricImportRows, int64(res.Count()), []string{"format:" + format, "result:imported"}, 1)
	}
	if n := src.check.Rejected(); n > 0 {
		_ = m.Count(telemetry.MetricImportRows, int64(n), []string{"format:" + format, "result:rejected"}, 1)
	}
	span.SetTag("import.rows", src.read)
	span.SetTag("import.rows.created", res.Created)
	span.SetTag("import.rows.updated", res.Updated)
	span.SetTag("import.rows.rejected", src.check.Rejected())
	span.SetTag("import.bytes", bytes)
	span.SetTag("import.outcome", outcome)
	span.SetTag("import.analyzed", res.Analyzed)
	if outcome == "error" {
		span.Finish(tracer.WithError(err))
	} else {
		span.Finish()
	}
	log := telemetry.Logger(ctx, tel.Log)
	log.Info("import finished", zap.String("format", format), zap.String("mode", job.mode()), zap.String("outcome", outcome),
		zap.Int("rows", src.read), zap.Int("created", res.Created), zap.Int("updated", res.Updated),
		zap.Int("rejected", src.check.Rejected()), zap.Int64("bytes", bytes), zap.Int64("duration_ms", dur.Milliseconds()),
		zap.Bool("analyzed", res.Analyzed))
	if res.AnalyzeErr != nil {
		log.Warn("import stored, but refreshing the catalogue's planner statistics (VACUUM (ANALYZE) products) failed: plans may be poor until autovacuum or shopd's stale-statistics check analyzes it",
			zap.Error(res.AnalyzeErr))
	}
}

// importOnError reads ?onError=abort|skip; it reports whether to skip.
func importOnError(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("onError"); v {
	case "", "abort":
		return false, nil
	case "skip":
		return true, nil
	}
	return false, shop.Invalid(shop.FieldError{Field: "onError", Code: "invalid", Message: `onError must be "abort" or "skip"`})
}

// importOutcome is the outcome tag of an import: ok, invalid (bad rows or
// body), too_large, timeout (an upload idle or too slow), shutdown (cut
// by the server's shutdown), canceled (the client left) or error.
func importOutcome(ctx context.Context, err error) string {
	switch {
	case shop.ErrorCode(err) == shop.ETIMEOUT:
		return "timeout" // the read deadline also cancels ctx
	case err != nil && stoppingFrom(ctx).Err() != nil && shop.ErrorCode(err) == shop.EUNAVAILABLE:
		return "shutdown"
	case err != nil && ctx.Err() != nil:
		return "canceled"
	}
	switch shop.ErrorCode(err) {
	case "":
		return "ok"
	case shop.EINVALID:
		return "invalid"
	case shop.ETOOLARGE:
		return "too_large"
	}
	return "error"
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// importSource is the shop.ProductSource of one import: it decodes a row,
// checks it, and hands it over, only when the store asks for the next one.
// The store pulls it from its COPY goroutine; the handler reads its counts
// after the store returned.
type importSource struct {
	rows     rowReader
	check    *shop.RowChecker
	skip     bool
	maxRows  int
	every    int                      // progress every so many rows; 0 never
	progress func(read, rejected int) // called every `every` rows

	read  int // rows read, good and bad
	cur   shop.NewProduct
	err   error // what stopped Next: errRowsInvalid or fatal
	fatal error // why the body cannot be read further
}

type rowStatus int

const (
	rowGood rowStatus = iota
	rowBad
	rowEnd
	rowFatal
)

// next reads and checks one row.
func (s *importSource) next() (shop.NewProduct, rowStatus) {
	var in shop.ProductInput
	err := s.rows.next(&in)
	if errors.Is(err, io.EOF) {
		return shop.NewProduct{}, rowEnd
	}
	var bad *rowError
	if err != nil && !errors.As(err, &bad) {
		s.fatal = bodyError(err)
		return shop.NewProduct{}, rowFatal
	}
	if s.read >= s.maxRows {
		s.fatal = shop.Errorf(shop.ETOOLARGE, "The import holds more than %d rows, the limit of one request; split it.", s.maxRows)
		return shop.NewProduct{}, rowFatal
	}
	i := s.read
	s.read++
	defer func() {
		if s.every > 0 && s.read%s.every == 0 && s.progress != nil {
			s.progress(s.read, s.check.Rejected())
		}
	}()
	if bad != nil {
		s.check.Reject(i, s.rows.where(), bad.fields...)
		return shop.NewProduct{}, rowBad
	}
	p, ok := s.check.Check(i, s.rows.where(), in)
	if !ok {
		return shop.NewProduct{}, rowBad
	}
	return p, rowGood
}

// Next implements shop.ProductSource.
func (s *importSource) Next() bool {
	if s.err != nil {
		return false
	}
	for {
		p, st := s.next()
		switch st {
		case rowGood:
			s.cur = p
			return true
		case rowBad:
			if s.skip {
				continue
			}
			s.err = errRowsInvalid
		case rowFatal:
			s.err = s.fatal
		}
		return false
	}
}

// Product implements shop.ProductSource.
func (s *importSource) Product() shop.NewProduct { return s.cur }

// Err implements shop.ProductSource.
func (s *importSource) Err() error { return s.err }

// drain reads and checks the rest of the body after an all-or-nothing
// import stopped at a bad row, to list and count the other bad rows. It
// stops at the end of the body or where it cannot be read further.
func (s *importSource) drain() {
	for {
		if _, st := s.next(); st == rowEnd || st == rowFatal {
			return
		}
	}
}

// invalidError is the answer to an all-or-nothing import with bad rows.
func (s *importSource) invalidError(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	problems := s.check.Problems()
	msg := fmt.Sprintf("%d of %d rows are invalid; nothing was imported. First: %s", s.check.Rejected(), s.read, problems[0].Message)
	if s.fatal != nil {
		msg += fmt.Sprintf(" Reading stopped after row %d: %s", s.read-1, shop.AsError(s.fatal).Message)
	}
	// The rows' problems are the problem document's "errors", each with
	// the index of its row.
	return &shop.Error{Code: shop.EINVALID, Message: msg, Extensions: map[string]any{
		"errors": problems, "invalidRows": s.check.Rejected(), "rows": s.read,
	}}
}

// bodyError maps a failure to read the import body to a client error;
// shop errors pass through.
func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	var se *shop.Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &tooBig):
		return shop.Errorf(shop.ETOOLARGE, "The import body exceeds the limit of %d bytes; split it.", tooBig.Limit)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return &shop.Error{Code: shop.EINVALID, Message: "The request body could not be read to its end.", Err: err}
}
