package shop

import "fmt"

// MaxReportedRows bounds the bad rows that an import answer lists; the
// answer counts all of them.
const MaxReportedRows = 100

// ProductSource yields the rows of a bulk import one at a time, already
// validated, as they are read from the request: an import never holds
// them all. The caller loops `for src.Next() { p := src.Product() }` and
// then checks Err.
type ProductSource interface {
	// Next advances to the next row. It returns false at the end of the
	// rows or when the source failed (Err tells which).
	Next() bool
	// Product returns the row that Next advanced to.
	Product() NewProduct
	// Err returns the error that stopped the source early (a bad row in
	// an all-or-nothing import, a malformed or oversize body), or nil
	// after a clean end. A store that sees it aborts and rolls back.
	Err() error
}

// ImportResult tells what an import wrote.
type ImportResult struct {
	// Created counts the new products.
	Created int
	// Updated counts the rows whose SKU matched an existing product, which
	// they updated (or left as it was when nothing changed).
	Updated int
	// Analyzed tells that the import was large enough to refresh the
	// catalogue's planner statistics (ANALYZE) after its commit.
	Analyzed bool
	// AnalyzeErr is why that refresh failed, after a successful import:
	// the rows are stored; only the statistics may be stale.
	AnalyzeErr error
}

// Count is the number of rows imported: created plus updated.
func (r ImportResult) Count() int { return r.Created + r.Updated }

// RowError is one problem with one row of a bulk import: Index is the
// row's 0-based position (in the products array, or among the data lines
// of NDJSON and CSV); Field, Code and Message are as in FieldError. It
// marshals to {"index","field","code","message"}.
type RowError struct {
	Index int `json:"index"`
	FieldError
}

// RowChecker validates the rows of one import, in order, with the rules
// of POST /products (ProductRules, reused, not copied) plus the import's
// own rule that a SKU appears at most once in it. It lists the problems of
// the first MaxReportedRows bad rows and counts all of them. It remembers
// the SKUs it has seen (a few MB for 100,000 rows with SKUs; nothing for
// rows without). Not safe for concurrent use.
type RowChecker struct {
	rules    ProductRules
	skus     map[string]int // SKU -> index of the first row that has it
	problems []RowError
	bad      int
}

// NewRowChecker returns a checker applying rules.
func NewRowChecker(rules ProductRules) *RowChecker {
	return &RowChecker{rules: rules, skus: map[string]int{}}
}

// Check validates the row at index (0-based); where, when not empty,
// locates it in the body for humans ("line 12"). It returns the product to
// store and true, or records the row's problems (see Reject) and returns
// false.
func (c *RowChecker) Check(index int, where string, in ProductInput) (NewProduct, bool) {
	p, err := c.rules.Validate(in)
	if err != nil {
		c.Reject(index, where, AsError(err).Fields...)
		return NewProduct{}, false
	}
	if p.SKU != nil {
		if first, dup := c.skus[*p.SKU]; dup {
			c.Reject(index, where, FieldError{Field: "sku", Code: "duplicate",
				Message: fmt.Sprintf("sku repeats the sku of row %d of this import", first)})
			return NewProduct{}, false
		}
		c.skus[*p.SKU] = index
	}
	return p, true
}

// Reject records a bad row that could not even be decoded (a wrong type,
// malformed JSON on its line, a CSV record of the wrong length). Its
// problems are kept, with their messages prefixed by "row N", when it is
// among the first MaxReportedRows bad rows; it is counted in any case.
func (c *RowChecker) Reject(index int, where string, fields ...FieldError) {
	c.bad++
	if c.bad > MaxReportedRows {
		return
	}
	if len(fields) == 0 {
		fields = []FieldError{{Field: "row", Code: "invalid", Message: "the row is invalid"}}
	}
	prefix := fmt.Sprintf("row %d", index)
	if where != "" {
		prefix += " (" + where + ")"
	}
	for _, f := range fields {
		f.Message = prefix + ": " + f.Message
		c.problems = append(c.problems, RowError{Index: index, FieldError: f})
	}
}

// Rejected returns the number of bad rows seen so far.
func (c *RowChecker) Rejected() int { return c.bad }

// Problems returns the problems of the first MaxReportedRows bad rows, in
// row order.
func (c *RowChecker) Problems() []RowError { return c.problems }
