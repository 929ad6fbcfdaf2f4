package httpapi

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/shoplab/shoplab/service/shop"
)

// The import body formats, chosen by Content-Type.
const (
	formatJSON   = "json"   // application/json: {"products":[{...}, ...]}, the original's body
	formatNDJSON = "ndjson" // application/x-ndjson: one JSON object per line
	formatCSV    = "csv"    // text/csv: a header row naming the columns, then one product per line
)

// maxNDJSONLine bounds one NDJSON line: far more than the largest valid row.
const maxNDJSONLine = 1 << 20

// importFormat picks the body format from the Content-Type (415 for any
// other type).
func importFormat(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		switch {
		case mt == "application/json" || strings.HasSuffix(mt, "+json"):
			return formatJSON, nil
		case mt == "application/x-ndjson" || mt == "application/ndjson" || mt == "application/jsonl":
			return formatNDJSON, nil
		case mt == "text/csv":
			return formatCSV, nil
		}
	}
	if ct == "" {
		ct = "none"
	}
	return "", shop.Errorf(shop.EUNSUPPORTED, "Content-Type must be application/json, application/x-ndjson or text/csv (got %s).", ct)
}

// rowReader decodes the rows of an import body one at a time, reading
// the body only as far as the row it returns.
type rowReader interface {
	// next decodes the next row into in, a zero ProductInput. It returns
	// io.EOF after the last row; a *rowError for a row that is bad but
	// that the reader could step over; any other error when the body
	// cannot be read further (malformed, too large, connection lost).
	next(in *shop.ProductInput) error
	// where locates the row just read for humans ("line 12"), or "".
	where() string
}

func newRowReader(format string, body io.Reader) rowReader {
	switch format {
	case formatNDJSON:
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 64<<10), maxNDJSONLine)
		return &ndjsonRows{sc: sc}
	case formatCSV:
		cr := csv.NewReader(body)
		cr.ReuseRecord = true
		return &csvRows{r: cr}
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	return &jsonRows{dec: dec}
}

// rowError is a bad row that the reader stepped over.
type rowError struct{ fields []shop.FieldError }

func (e *rowError) Error() string { return fmt.Sprintf("bad row: %v", e.fields) }

func badRow(field, code, format string, args ...any) *rowError {
	return &rowError{[]shop.FieldError{{Field: field, Code: code, Message: fmt.Sprintf(format, args...)}}}
}

// jsonRowError turns the error of decoding one JSON row into the row's
// problems: wrong types and unknown fields name their field.
func jsonRowError(err error, row []byte) *rowError {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) && typ.Field == "" {
		return badRow("row", "type", "must be a JSON object, not %s", article(typ.Value))
	}
	e := shop.AsError(jsonError(err, row))
	if len(e.Fields) > 0 {
		return &rowError{e.Fields}
	}
	return badRow("row", "malformed", "%s", e.Message)
}

// rowDecodeError reports whether err, from decoding one row with
// encoding/json, left the decoder past the row (a wrong type or an unknown
// field) rather than stuck in the body (malformed JSON, a read failure).
func rowDecodeError(err error) bool {
	var typ *json.UnmarshalTypeError
	return errors.As(err, &typ) || strings.HasPrefix(err.Error(), "json: unknown field ")
}

// jsonRows reads the original body, {"products":[...]}, with a streaming
// decoder: the object's tokens, then one array element at a time.
type jsonRows struct {
	dec   *json.Decoder
	state int // 0 before the array, 1 in it, 2 after it
}

func (j *jsonRows) where() string { return "" }

func (j *jsonRows) next(in *shop.ProductInput) error {
	switch j.state {
	case 0:
		if err := j.open(); err != nil {
			return err
		}
		j.state = 1
	case 2:
		return io.EOF
	}
	if !j.dec.More() {
		j.state = 2
		return j.close()
	}
	start := j.dec.InputOffset()
	if err := j.dec.Decode(in); err != nil {
		if rowDecodeError(err) {
			return jsonRowError(err, nil)
		}
		return j.syntax(err, start)
	}
	return nil
}

// open reads up to the '[' of the products array.
func (j *jsonRows) open() error {
	tok, err := j.dec.Token()
	if errors.Is(err, io.EOF) {
		return shop.Errorf(shop.EINVALID, `The request body is empty; send {"products":[...]}.`)
	}
	if err != nil {
		return j.syntax(err, 0)
	}
	if tok != json.Delim('{') {
		return shop.Errorf(shop.EINVALID, `The request body must be a JSON object: {"products":[...]}.`)
	}
	for j.dec.More() {
		tok, err := j.dec.Token()
		if err != nil {
			return j.syntax(err, 0)
		}
		if key, _ := tok.(string); key != "products" {
			return shop.Invalid(shop.FieldError{Field: key, Code: "unknown", Message: fmt.Sprintf("unknown field %q (check its spelling)", key)})
		}
		tok, err = j.dec.Token()
		if err != nil {
			return j.syntax(err, 0)
		}
		switch tok {
		case json.Delim('['):
			return nil
		case nil:
			return productsRequired()
		}
		return shop.Invalid(shop.FieldError{Field: "products", Code: "type", Message: "products must be an array"})
	}
	if _, err := j.dec.Token(); err != nil { // '}'
		return j.syntax(err, 0)
	}
	return productsRequired()
}

func productsRequired() error {
	return shop.Invalid(shop.FieldError{Field: "products", Code: "required", Message: "products is required"})
}

// close reads from the ']' of the array to the end of the body, which
// must hold nothing more, and returns io.EOF.
func (j *jsonRows) close() error {
	if _, err := j.dec.Token(); err != nil { // ']'
		return j.syntax(err, 0)
	}
	for j.dec.More() {
		tok, err := j.dec.Token()
		if err != nil {
			return j.syntax(err, 0)
		}
		key, _ := tok.(string)
		if key == "products" {
			return shop.Invalid(shop.FieldError{Field: key, Code: "duplicate", Message: "products must appear once"})
		}
		return shop.Invalid(shop.FieldError{Field: key, Code: "unknown", Message: fmt.Sprintf("unknown field %q (check its spelling)", key)})
	}
	if _, err := j.dec.Token(); err != nil { // '}'
		return j.syntax(err, 0)
	}
	if _, err := j.dec.Token(); !errors.Is(err, io.EOF) {
		return shop.Errorf(shop.EINVALID, "The request body must hold a single JSON value; found more after it.")
	}
	return io.EOF
}

// syntax turns a decoder failure into a client error when it is malformed
// JSON, and returns any other (read) failure as is. base is the offset of
// the value being decoded: Decode reports offsets within the value, Token
// within the body.
func (j *jsonRows) syntax(err error, base int64) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return shop.Errorf(shop.EINVALID, "Malformed JSON near byte %d: %s.", base+syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return shop.Errorf(shop.EINVALID, "Malformed JSON: the body ends unexpectedly after byte %d.", j.dec.InputOffset())
	}
	return err
}

// ndjsonRows reads one JSON object per line; blank lines are skipped. A
// line that is not a valid row (malformed JSON included) is a bad row:
// the next line starts afresh.
type ndjsonRows struct {
	sc   *bufio.Scanner
	line int
}

func (n *ndjsonRows) where() string { return "line " + strconv.Itoa(n.line) }

func (n *ndjsonRows) next(in *shop.ProductInput) error {
	for n.sc.Scan() {
		if n.sc.Err() != nil {
			break // a line cut short by a failed read (a body over its limit): not a row
		}
		n.line++
		b := bytes.TrimSpace(n.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(in); err != nil {
			return jsonRowError(err, b)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return badRow("row", "malformed", "the line must hold exactly one JSON object")
		}
		return nil
	}
	err := n.sc.Err()
	switch {
	case err == nil:
		return io.EOF
	case errors.Is(err, bufio.ErrTooLong):
		return shop.Errorf(shop.EINVALID, "Line %d is longer than %d bytes.", n.line+1, maxNDJSONLine)
	}
	return err
}

// CSV columns, by their header names.
const (
	colName = iota
	colDescription
	colPrice
	colInventory
	colSKU
	numCols
)

var csvColumns = [numCols]string{"name", "description", "price", "inventory", "sku"}

// csvRows reads a header row naming the columns (any order, any case;
// name, price and inventory required, description and sku optional), then
// one product per record. An empty description or sku cell means none; an
// empty price or inventory cell is a missing value.
type csvRows struct {
	r      *csv.Reader
	cols   [numCols]int // record index of each column, -1 when absent
	width  int
	header bool
	line   int
}

func (c *csvRows) where() string { return "line " + strconv.Itoa(c.line) }

func (c *csvRows) next(in *shop.ProductInput) error {
	if !c.header {
		if err := c.readHeader(); err != nil {
			return err
		}
		c.header = true
	}
	rec, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
		c.line = pe.StartLine
		return badRow("row", "columns", "has %d fields; the header has %d", len(rec), c.width)
	}
	if err != nil {
		return csvError(err)
	}
	c.line, _ = c.r.FieldPos(0)
	cell := func(col int) (string, bool) {
		if i := c.cols[col]; i >= 0 && rec[i] != "" {
			return rec[i], true
		}
		return "", false
	}
	if i := c.cols[colName]; i >= 0 {
		s := rec[i]
		in.Name = &s
	}
	if s, ok := cell(colDescription); ok {
		in.Description = &s
	}
	if s, ok := cell(colPrice); ok {
		a := shop.Amount(strings.TrimSpace(s))
		in.Price = &a
	}
	if s, ok := cell(colInventory); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return badRow("inventory", "type", "inventory must be an integer")
		}
		in.Inventory = &n
	}
	if s, ok := cell(colSKU); ok {
		in.SKU = &s
	}
	return nil
}

func (c *csvRows) readHeader() error {
	rec, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return shop.Errorf(shop.EINVALID, "The request body is empty; send a header row (name,description,price,inventory,sku) and one line per product.")
	}
	if err != nil {
		return csvError(err)
	}
	c.cols = [numCols]int{-1, -1, -1, -1, -1}
	c.width = len(rec)
	for i, h := range rec {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a byte-order mark, as spreadsheets write
		}
		h = strings.ToLower(strings.TrimSpace(h))
		col := -1
		for k, name := range csvColumns {
			if h == name {
				col = k
			}
		}
		switch {
		case col < 0:
			return shop.Invalid(shop.FieldError{Field: h, Code: "unknown",
				Message: fmt.Sprintf("unknown column %q (the columns are %s)", h, strings.Join(csvColumns[:], ", "))})
		case c.cols[col] >= 0:
			return shop.Invalid(shop.FieldError{Field: h, Code: "duplicate", Message: fmt.Sprintf("column %q appears twice", h)})
		}
		c.cols[col] = i
	}
	var missing []shop.FieldError
	for _, col := range []int{colName, colPrice, colInventory} {
		if c.cols[col] < 0 {
			missing = append(missing, shop.FieldError{Field: csvColumns[col], Code: "required",
				Message: fmt.Sprintf("the header row lacks the column %s", csvColumns[col])})
		}
	}
	if len(missing) > 0 {
		return shop.Invalid(missing...)
	}
	return nil
}

// csvError turns a CSV syntax error into a client error and returns any
// other (read) failure as is.
func csvError(err error) error {
	var pe *csv.ParseError
	var tooBig *http.MaxBytesError
	if errors.As(err, &pe) && !errors.As(err, &tooBig) {
		return shop.Errorf(shop.EINVALID, "Malformed CSV at line %d, column %d: %v.", pe.Line, pe.Column, pe.Err)
	}
	return err
}
