package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/shoplab/shoplab/service/shop"
)

// decodeValid decodes the JSON body into T, then validates it into V with
// validate. Every failure is a *shop.Error naming what was wrong and where.
func decodeValid[T, V any](w http.ResponseWriter, r *http.Request, limit int64, validate func(T) (V, error)) (V, error) {
	in, err := decode[T](w, r, limit)
	if err != nil {
		var zero V
		return zero, err
	}
	return validate(in)
}

// decode reads one JSON object of at most limit bytes into T. It rejects a
// Content-Type other than JSON (415), an oversize body (413), malformed
// JSON (400, with line and column), wrong types and unknown fields (400,
// naming the field), and trailing data.
func decode[T any](w http.ResponseWriter, r *http.Request, limit int64) (T, error) {
	var v T
	if err := requireJSON(r); err != nil {
		return v, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return v, shop.Errorf(shop.ETOOLARGE, "The request body exceeds the limit of %d bytes.", tooBig.Limit)
		}
		return v, shop.Errorf(shop.EINVALID, "The request body could not be read.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, jsonError(err, body)
	}
	if _, err := dec.Token(); err != io.EOF {
		return v, shop.Errorf(shop.EINVALID, "The request body must hold a single JSON value; found more after it.")
	}
	return v, nil
}

// requireJSON accepts application/json and any +json media type.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	if ct == "" {
		ct = "none"
	}
	return shop.Errorf(shop.EUNSUPPORTED, "Content-Type must be application/json (got %s).", ct)
}

// jsonError turns an encoding/json error into a client-safe *shop.Error.
func jsonError(err error, body []byte) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return shop.Errorf(shop.EINVALID, "The request body is empty; send a JSON object.")
	case errors.Is(err, io.ErrUnexpectedEOF):
		line, col := position(body, int64(len(body)))
		return shop.Errorf(shop.EINVALID, "Malformed JSON: the body ends unexpectedly at line %d, column %d.", line, col)
	case errors.As(err, &syntax):
		line, col := position(body, syntax.Offset-1) // Offset is just past the bad byte
		return shop.Errorf(shop.EINVALID, "Malformed JSON at line %d, column %d: %s.", line, col, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return shop.Errorf(shop.EINVALID, "The request body must be a JSON %s, not %s.", jsonType(typ.Type), article(typ.Value))
		}
		return shop.Invalid(shop.FieldError{Field: typ.Field, Code: "type",
			Message: fmt.Sprintf("%s must be %s, not %s", typ.Field, article(jsonType(typ.Type)), article(typ.Value))})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return shop.Invalid(shop.FieldError{Field: name, Code: "unknown",
			Message: fmt.Sprintf("unknown field %q (check its spelling)", name)})
	}
	return shop.Errorf(shop.EINVALID, "The request body is not valid JSON.")
}

// position returns the 1-based line and column of byte offset off.
func position(body []byte, off int64) (line, col int) {
	off = max(0, min(off, int64(len(body))))
	before := body[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - bytes.LastIndexByte(before, '\n')
	if col < 1 {
		col = 1
	}
	return line, col
}

// jsonType names a Go type in JSON's words.
func jsonType(t reflect.Type) string {
	if t == reflect.TypeOf(shop.Amount("")) {
		return "number"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "object"
}

func article(s string) string {
	switch {
	case s == "":
		return "a value"
	case strings.HasPrefix(s, "number "):
		return "the number " + strings.TrimPrefix(s, "number ")
	case strings.ContainsAny(s[:1], "aeiou"):
		return "an " + s
	}
	return "a " + s
}

// queryInt reads an integer query parameter: def when absent, and a field
// error when it is not an integer in [min, max].
func queryInt(r *http.Request, name string, def, min, max int) (int, *shop.FieldError) {
	return intParam(r.URL.Query(), name, def, min, max)
}

// intParam is queryInt over parsed query values.
func intParam(q url.Values, name string, def, min, max int) (int, *shop.FieldError) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, &shop.FieldError{Field: name, Code: "range",
			Message: fmt.Sprintf("%s must be an integer between %d and %d", name, min, max)}
	}
	return n, nil
}
