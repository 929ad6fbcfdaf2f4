package ddquery

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SyntaxError is a query outside the supported subset, or malformed. Pos is
// the byte offset in Query where the problem starts (0-based).
type SyntaxError struct {
	Query string
	Pos   int
	Msg   string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("ddquery: %s at column %d of %q", e.Msg, e.Pos+1, e.Query)
}

// MetricRef is one metric query inside a query or monitor, for validation
// (e.g. that every metric a monitor names is in the catalogue).
type MetricRef struct {
	// Name is the metric name ("shoplab.http.requests").
	Name string
	// Filters are the filters as written ("status_class:5xx",
	// "!route:unmatched", "$env"); none for "{*}".
	Filters []string
	// GroupBy are the "by {...}" tag keys, normalised.
	GroupBy []string
	// SpaceAgg is the space aggregator: avg, sum, min, max, count or a
	// percentile such as p99 or p99.9.
	SpaceAgg string
}

// Query is a parsed metric expression (dashboard style: no time
// aggregation, no threshold).
type Query struct {
	text string
	root node
}

// String returns the query as it was parsed.
func (q *Query) String() string { return q.text }

// Metrics returns the metric queries of q, in the order written.
func (q *Query) Metrics() []MetricRef {
	var out []MetricRef
	walk(q.root, func(m *metricNode) { out = append(out, m.ref()) })
	return out
}

// Monitor is a parsed metric monitor query:
// "<time_aggr>(<window>):<expr> <comparator> <threshold>".
type Monitor struct {
	text string
	// TimeAgg is the time aggregation over the window: avg, sum, min, max,
	// last or percentile.
	TimeAgg string
	// Window is the evaluation window ("last_5m" is 5 minutes).
	Window time.Duration
	// Comparator is ">", ">=", "<" or "<=".
	Comparator string
	// Threshold is the number after the comparator: the critical threshold.
	Threshold float64
	// Expr is the expression evaluated over the window.
	Expr *Query
}

// String returns the monitor query as it was parsed.
func (m *Monitor) String() string { return m.text }

// Metrics returns the metric queries of m's expression, in the order written.
func (m *Monitor) Metrics() []MetricRef { return m.Expr.Metrics() }

// node is an expression node: *numberNode, *binaryNode, *negNode,
// *funcNode or *metricNode.
type node interface{ position() int }

type numberNode struct {
	pos int
	v   float64
}

type binaryNode struct {
	pos  int
	op   byte
	l, r node
}

type negNode struct {
	pos int
	x   node
}

type funcNode struct {
	pos  int
	name string
	arg  node
}

type filter struct {
	raw     string
	neg     bool
	pattern string // normalised tag pattern, may contain '*'
	tmplVar string // template variable name, without '$'
}

type metricNode struct {
	pos        int
	spaceAgg   string
	percentile float64 // for pNN space aggregators
	name       string
	filters    []filter
	groupBy    []string
	asCount    bool
	asRate     bool
	rollup     string // rollup method, "" when none
	rollupSecs int    // rollup interval, 0 when none
}

func (n *numberNode) position() int { return n.pos }
func (n *binaryNode) position() int { return n.pos }
func (n *negNode) position() int    { return n.pos }
func (n *funcNode) position() int   { return n.pos }
func (n *metricNode) position() int { return n.pos }

func (m *metricNode) ref() MetricRef {
	r := MetricRef{Name: m.name, GroupBy: append([]string(nil), m.groupBy...), SpaceAgg: m.spaceAgg}
	for _, f := range m.filters {
		r.Filters = append(r.Filters, f.raw)
	}
	return r
}

func walk(n node, fn func(*metricNode)) {
	switch n := n.(type) {
	case *binaryNode:
		walk(n.l, fn)
		walk(n.r, fn)
	case *negNode:
		walk(n.x, fn)
	case *funcNode:
		walk(n.arg, fn)
	case *metricNode:
		fn(n)
	}
}

// ParseQuery parses a metric query or an arithmetic expression of metric
// queries and numbers, as a dashboard widget holds it. It returns a
// *SyntaxError for anything outside the subset documented in the package
// comment.
func ParseQuery(q string) (*Query, error) {
	p := &parser{s: q}
	root, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(p.s) {
		return nil, p.errf(p.pos, "unexpected %q", p.rest(12))
	}
	return &Query{text: q, root: root}, nil
}

// ParseFormula parses a dashboard formula of the Dashboards API's
// "queries" + "formulas" request shape: an arithmetic expression of
// numbers and the names of the request's queries ("100 * query1 / query2"),
// each name standing for its query, already parsed with ParseQuery. The
// result evaluates like the same arithmetic written between the queries
// (https://docs.datadoghq.com/dashboards/functions/ ,
// https://docs.datadoghq.com/dashboards/widgets/timeseries/ , "formulas").
// It returns a *SyntaxError (positions in formula) for a name that is not
// one of queries, and for anything ParseQuery would refuse.
func ParseFormula(formula string, queries map[string]*Query) (*Query, error) {
	names := make(map[string]*Query, len(queries))
	for name, q := range queries {
		if q != nil {
			names[name] = q
		}
	}
	p := &parser{s: formula, names: names}
	root, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos < len(p.s) {
		return nil, p.errf(p.pos, "unexpected %q", p.rest(12))
	}
	return &Query{text: formula, root: root}, nil
}

// ParseMonitor parses a metric monitor query such as
// "sum(last_5m):sum:shoplab.http.requests{status_class:5xx}.as_count() > 10".
// It returns a *SyntaxError for anything outside the subset documented in
// the package comment.
func ParseMonitor(q string) (*Monitor, error) {
	p := &parser{s: q}
	p.skipSpace()
	start := p.pos
	agg := p.word()
	switch agg {
	case "avg", "sum", "min", "max", "last", "percentile":
	case "":
		return nil, p.errf(start, "expected a time aggregation (avg, sum, min, max, last, percentile)")
	default:
		return nil, p.errf(start, "unsupported time aggregation %q (want avg, sum, min, max, last or percentile)", agg)
	}
	if err := p.expect("("); err != nil {
		return nil, err
	}
	p.skipSpace()
	wpos := p.pos
	w := p.word()
	window, err := parseWindow(w)
	if err != nil {
		return nil, p.errf(wpos, "%v", err)
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if err := p.expect(":"); err != nil {
		return nil, err
	}
	p.skipSpace()
	epos := p.pos
	expr, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	exprText := strings.TrimSpace(q[epos:p.pos])
	p.skipSpace()
	cpos := p.pos
	var cmp string
	for _, c := range []string{">=", "<=", ">", "<"} {
		if strings.HasPrefix(p.s[p.pos:], c) {
			cmp = c
			break
		}
	}
	if cmp == "" {
		if strings.HasPrefix(p.s[p.pos:], "==") || strings.HasPrefix(p.s[p.pos:], "!=") {
			return nil, p.errf(cpos, "unsupported comparator %q (want >, >=, < or <=)", p.s[p.pos:p.pos+2])
		}
		if p.pos == len(p.s) {
			return nil, p.errf(cpos, "expected a comparator and a threshold")
		}
		return nil, p.errf(cpos, "unexpected %q: expected an operator or a comparator", p.rest(12))
	}
	p.pos += len(cmp)
	p.skipSpace()
	tpos := p.pos
	num := p.number(true)
	th, err := strconv.ParseFloat(num, 64)
	if num == "" || err != nil {
		return nil, p.errf(tpos, "expected a number as threshold")
	}
	p.skipSpace()
	if p.pos < len(p.s) {
		return nil, p.errf(p.pos, "unexpected %q after the threshold", p.rest(12))
	}
	if agg == "percentile" {
		m, ok := expr.(*metricNode)
		if !ok || m.percentile == 0 {
			return nil, p.errf(epos, "percentile() needs a single distribution query with a percentile aggregator, such as p99:metric{*}")
		}
	}
	return &Monitor{
		text: q, TimeAgg: agg, Window: window, Comparator: cmp, Threshold: th,
		Expr: &Query{text: exprText, root: expr},
	}, nil
}

func parseWindow(w string) (time.Duration, error) {
	n, ok := strings.CutPrefix(w, "last_")
	if !ok || len(n) < 2 {
		return 0, fmt.Errorf("expected a window such as last_5m, got %q", w)
	}
	unit := map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[n[len(n)-1]]
	k, err := strconv.Atoi(n[:len(n)-1])
	if unit == 0 || err != nil || k <= 0 {
		return 0, fmt.Errorf("expected a window such as last_5m, last_1h, last_1d, got %q", w)
	}
	return time.Duration(k) * unit, nil
}

type parser struct {
	s   string
	pos int
	// names are the named queries a formula may refer to (ParseFormula);
	// nil outside formulas.
	names map[string]*Query
}

func (p *parser) errf(pos int, format string, args ...any) error {
	return &SyntaxError{Query: p.s, Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) rest(n int) string {
	r := p.s[p.pos:]
	if len(r) > n {
		r = r[:n] + "…"
	}
	return r
}

func (p *parser) skipSpace() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\n' || p.s[p.pos] == '\r') {
		p.pos++
	}
}

func (p *parser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

func (p *parser) expect(tok string) error {
	p.skipSpace()
	if !strings.HasPrefix(p.s[p.pos:], tok) {
		if p.pos == len(p.s) {
			return p.errf(p.pos, "expected %q, got the end of the query", tok)
		}
		return p.errf(p.pos, "expected %q, got %q", tok, p.rest(12))
	}
	p.pos += len(tok)
	return nil
}

func isWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.'
}

// word reads a run of letters, digits, '_' and '.'.
func (p *parser) word() string {
	start := p.pos
	for p.pos < len(p.s) && isWordChar(p.s[p.pos]) {
		p.pos++
	}
	return p.s[start:p.pos]
}

// number reads a decimal number (with an optional sign when signed).
func (p *parser) number(signed bool) string {
	start := p.pos
	if signed && (p.peek() == '-' || p.peek() == '+') {
		p.pos++
	}
	digits := func() {
		for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
			p.pos++
		}
	}
	digits()
	if p.peek() == '.' {
		p.pos++
		digits()
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		save := p.pos
		p.pos++
		if c := p.peek(); c == '-' || c == '+' {
			p.pos++
		}
		if c := p.peek(); c < '0' || c > '9' {
			p.pos = save
		} else {
			digits()
		}
	}
	return p.s[start:p.pos]
}

// parseExpr parses sums: terms joined by + and -.
func (p *parser) parseExpr() (node, error) { return p.parseLeftAssoc("+-", p.parseTerm) }

// parseTerm parses products: unary operands joined by * and /.
func (p *parser) parseTerm() (node, error) { return p.parseLeftAssoc("*/", p.parseUnary) }

// parseLeftAssoc parses operands (from next) joined by any of ops, left
// associative: a - b - c is (a - b) - c.
func (p *parser) parseLeftAssoc(ops string, next func() (node, error)) (node, error) {
	l, err := next()
	if err != nil {
		return nil, err
	}
	for {
		p.skipSpace()
		c := p.peek()
		if c == 0 || !strings.ContainsRune(ops, rune(c)) {
			return l, nil
		}
		pos := p.pos
		p.pos++
		r, err := next()
		if err != nil {
			return nil, err
		}
		l = &binaryNode{pos: pos, op: c, l: l, r: r}
	}
}

func (p *parser) parseUnary() (node, error) {
	p.skipSpace()
	if p.peek() == '-' {
		pos := p.pos
		p.pos++
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &negNode{pos: pos, x: x}, nil
	}
	return p.parsePrimary()
}

func (p *parser) parsePrimary() (node, error) {
	p.skipSpace()
	start := p.pos
	c := p.peek()
	switch {
	case c == 0:
		return nil, p.errf(start, "expected a metric query, a number or '(', got the end of the query")
	case c == '(':
		p.pos++
		x, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return x, nil
	case c >= '0' && c <= '9' || c == '.':
		num := p.number(false)
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return nil, p.errf(start, "bad number %q", num)
		}
		return &numberNode{pos: start, v: v}, nil
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		w := p.word()
		switch p.peek() {
		case '(':
			if w != "default_zero" {
				return nil, p.errf(start, "unsupported function %s() (only default_zero() is supported)", w)
			}
			p.pos++
			x, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			return &funcNode{pos: start, name: w, arg: x}, nil
		case ':':
			if p.names != nil {
				return nil, p.errf(start, "a formula names its queries (query1, ...); it holds no metric query")
			}
			p.pos++
			return p.parseMetric(start, w)
		case '{':
			return nil, p.errf(start, "metric query %q has no space aggregator (write avg:, sum:, min:, max:, count: or pNN:)", w)
		}
		if p.names != nil {
			if q, ok := p.names[w]; ok {
				return q.root, nil
			}
			return nil, p.errf(start, "formula names %q, which is not one of its queries", w)
		}
		return nil, p.errf(start, "expected a space aggregator and ':' or a function and '(' after %q", w)
	}
	return nil, p.errf(start, "unexpected %q", p.rest(12))
}

// spaceAgg validates a space aggregator and returns its percentile (0
// for the others).
func (p *parser) spaceAgg(pos int, agg string) (float64, error) {
	switch agg {
	case "avg", "sum", "min", "max", "count":
		return 0, nil
	}
	if num, ok := strings.CutPrefix(agg, "p"); ok && num != "" {
		v, err := strconv.ParseFloat(num, 64)
		if err == nil && v > 0 && v < 100 && !strings.HasPrefix(num, ".") && !strings.HasSuffix(num, ".") {
			return v, nil
		}
	}
	return 0, p.errf(pos, "unsupported space aggregator %q (want avg, sum, min, max, count or a percentile such as p99)", agg)
}

func (p *parser) parseMetric(start int, agg string) (node, error) {
	pct, err := p.spaceAgg(start, agg)
	if err != nil {
		return nil, err
	}
	m := &metricNode{pos: start, spaceAgg: agg, percentile: pct}
	npos := p.pos
	m.name = p.word()
	if m.name == "" || !(m.name[0] >= 'a' && m.name[0] <= 'z' || m.name[0] >= 'A' && m.name[0] <= 'Z') {
		return nil, p.errf(npos, "expected a metric name")
	}
	if p.peek() != '{' {
		return nil, p.errf(p.pos, "expected '{' after the metric name (write {*} for no filter)")
	}
	p.pos++
	if err := p.parseFilters(m); err != nil {
		return nil, err
	}
	// by {tag,...}
	save := p.pos
	p.skipSpace()
	if strings.HasPrefix(p.s[p.pos:], "by") && !isWordChar(byteAt(p.s, p.pos+2)) {
		p.pos += 2
		if err := p.expect("{"); err != nil {
			return nil, err
		}
		for {
			p.skipSpace()
			kpos := p.pos
			for p.pos < len(p.s) && (isWordChar(p.s[p.pos]) || p.s[p.pos] == '-' || p.s[p.pos] == '/') {
				p.pos++
			}
			k := p.s[kpos:p.pos]
			if k == "" {
				return nil, p.errf(kpos, "expected a tag key in by {...}")
			}
			m.groupBy = append(m.groupBy, NormalizeTag(k))
			p.skipSpace()
			if p.peek() == ',' {
				p.pos++
				continue
			}
			if err := p.expect("}"); err != nil {
				return nil, err
			}
			break
		}
	} else {
		p.pos = save
	}
	// modifiers
	for p.peek() == '.' {
		mpos := p.pos
		p.pos++
		fn := p.word()
		if p.peek() != '(' {
			return nil, p.errf(mpos, "expected a function call after '.'")
		}
		p.pos++
		switch fn {
		case "as_count", "as_rate":
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			if m.asCount || m.asRate {
				return nil, p.errf(mpos, ".%s(): the query already has .as_count() or .as_rate()", fn)
			}
			m.asCount, m.asRate = fn == "as_count", fn == "as_rate"
		case "rollup":
			if m.rollup != "" {
				return nil, p.errf(mpos, "a second .rollup()")
			}
			p.skipSpace()
			rpos := p.pos
			method := p.word()
			switch method {
			case "avg", "sum", "min", "max", "count":
			default:
				return nil, p.errf(rpos, "unsupported rollup method %q (want avg, sum, min, max or count)", method)
			}
			m.rollup = method
			p.skipSpace()
			if p.peek() == ',' {
				p.pos++
				p.skipSpace()
				spos := p.pos
				num := p.number(false)
				secs, err := strconv.Atoi(num)
				if err != nil || secs <= 0 {
					return nil, p.errf(spos, "expected a rollup interval in whole seconds")
				}
				m.rollupSecs = secs
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
		default:
			return nil, p.errf(mpos, "unsupported function .%s() (want .as_count(), .as_rate() or .rollup())", fn)
		}
	}
	return m, nil
}

func byteAt(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// parseFilters reads the filters after '{' up to and including '}'.
func (p *parser) parseFilters(m *metricNode) error {
	star := -1
	for {
		p.skipSpace()
		fpos := p.pos
		for p.pos < len(p.s) && p.s[p.pos] != ',' && p.s[p.pos] != '}' {
			p.pos++
		}
		if p.pos == len(p.s) {
			return p.errf(len(p.s), "unterminated filter: expected '}'")
		}
		raw := strings.TrimRight(p.s[fpos:p.pos], " \t")
		f, err := p.filter(fpos, raw)
		if err != nil {
			return err
		}
		if f.pattern == "*" {
			star = fpos
		} else {
			m.filters = append(m.filters, f)
		}
		c := p.s[p.pos]
		p.pos++
		if c == '}' {
			if star >= 0 && len(m.filters) > 0 {
				return p.errf(star, "'*' must be the only filter")
			}
			return nil
		}
	}
}

func (p *parser) filter(pos int, raw string) (filter, error) {
	f := filter{raw: raw}
	if raw == "" {
		return f, p.errf(pos, "empty filter")
	}
	if i := strings.IndexAny(raw, " \t(){\"'|"); i >= 0 {
		if strings.Contains(raw, " IN ") || strings.Contains(raw, " in ") {
			return f, p.errf(pos+i, "unsupported filter %q: IN (...) is not supported, write one query per value", raw)
		}
		if strings.Contains(raw, " AND ") || strings.Contains(raw, " OR ") || strings.Contains(raw, " NOT ") {
			return f, p.errf(pos+i, "unsupported filter %q: boolean filter syntax is not supported, use ',' for AND", raw)
		}
		return f, p.errf(pos+i, "unsupported character %q in filter %q (write tags normalised: lowercase, other characters as '_')", raw[i], raw)
	}
	body := raw
	if strings.HasPrefix(body, "!") {
		f.neg = true
		body = body[1:]
	}
	if strings.HasPrefix(body, "-") {
		return f, p.errf(pos, "unsupported filter %q: negate with '!'", raw)
	}
	if v, ok := strings.CutPrefix(body, "$"); ok {
		if f.neg {
			return f, p.errf(pos, "unsupported filter %q: a template variable cannot be negated", raw)
		}
		if v == "" || strings.IndexFunc(v, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
		}) >= 0 {
			return f, p.errf(pos, "unsupported template variable %q (write $name)", raw)
		}
		f.tmplVar = v
		return f, nil
	}
	if strings.Contains(body, "$") {
		return f, p.errf(pos+strings.Index(raw, "$"), "unsupported filter %q: a template variable must be a whole filter ($name)", raw)
	}
	if body == "" {
		return f, p.errf(pos, "empty filter")
	}
	if body == "*" && f.neg {
		return f, p.errf(pos, "unsupported filter %q", raw)
	}
	f.pattern = normalizePattern(body)
	if body != "*" && f.pattern != body {
		return f, p.errf(pos, "filter %q is not a normalised tag: Datadog stores it as %q", raw, f.pattern)
	}
	return f, nil
}
