package moncheck

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"

	"github.com/shoplab/shoplab/service/telemetry/ddquery"
)

// Units reads the unit column of the metric tables of a docs/metrics.md
// ("| `name` | type | tags | unit | meaning |"): metric name -> unit.
func Units(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) < 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		out[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[4])
	}
	return out, sc.Err()
}

// RenderPreview writes one static HTML page (inline SVG, no script, no
// external resource) showing every widget of every dashboard of dashDir as
// it would look over the capture [from, to): timeseries widgets as line
// charts (one line per formula and group, legend, axes, unit), query_value
// widgets as a number and toplists as a table, grouped by dashboard and
// group widget, each titled as the widget. A widget whose queries found no
// data says so. units maps metric names to their unit (Units). Template
// variables match everything. Formulas are evaluated over their named
// queries (ddquery.ParseFormula); a scalar widget reduces each query with
// its aggregator when the formula is a single query, and otherwise
// evaluates the formula over the whole capture as one interval.
func RenderPreview(w io.Writer, dashDir string, units map[string]string, samples []ddquery.Sample, from, to time.Time) error {
	files, err := filepath.Glob(filepath.Join(dashDir, "*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("moncheck: no dashboards in %s", dashDir)
	}
	p := &page{units: units, samples: samples, from: from, to: to}
	fmt.Fprintf(&p.b, `<!doctype html><html><head><meta charset="utf-8"><title>shoplab dashboards preview</title><style>%s</style></head><body>`, css)
	fmt.Fprintf(&p.b, `<h1>shoplab dashboards, from a captured run</h1><p class="meta">%d DogStatsD samples from %s to %s (%s), points every %s; template variables match everything. Rendered by <code>make dashboards-preview</code> with the local evaluator (service/telemetry/ddquery); Datadog would draw the same queries.</p>`,
		len(samples), from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), to.Sub(from).Round(time.Second), Step)
	p.b.WriteString(`<nav>`)
	var dashes []datadogV1.Dashboard
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var d datadogV1.Dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("moncheck: %s: %w", f, err)
		}
		dashes = append(dashes, d)
		fmt.Fprintf(&p.b, `<a href="#%s">%s</a> `, anchor(filepath.Base(f)), esc(d.Title))
	}
	p.b.WriteString(`</nav>`)
	for i, d := range dashes {
		fmt.Fprintf(&p.b, `<h2 id="%s">%s <span class="file">dashboards/%s</span></h2>`, anchor(filepath.Base(files[i])), esc(d.Title), esc(filepath.Base(files[i])))
		var loose []datadogV1.Widget
		flush := func() {
			if len(loose) > 0 {
				p.b.WriteString(`<div class="grid">`)
				for _, w := range loose {
					p.widget(w)
				}
				p.b.WriteString(`</div>`)
				loose = nil
			}
		}
		for _, w := range d.Widgets {
			if g := w.Definition.GroupWidgetDefinition; g != nil {
				flush()
				fmt.Fprintf(&p.b, `<h3>%s</h3><div class="grid">`, esc(g.GetTitle()))
				for _, c := range g.Widgets {
					p.widget(c)
				}
				p.b.WriteString(`</div>`)
				continue
			}
			loose = append(loose, w)
		}
		flush()
	}
	p.b.WriteString(`</body></html>`)
	_, err = io.WriteString(w, p.b.String())
	return err
}

const css = `body{font-family:system-ui,sans-serif;margin:16px;background:#f6f6f8;color:#222}
h1{font-size:22px}h2{margin-top:28px;border-bottom:2px solid #632ca6;font-size:20px}h3{font-size:16px;color:#632ca6}
.file{font-size:12px;color:#777;font-weight:normal}.meta{color:#555;font-size:13px}nav a{margin-right:12px}
.grid{display:flex;flex-wrap:wrap;gap:12px}.w{background:#fff;border:1px solid #ddd;border-radius:4px;padding:8px;width:580px}
.w h4{margin:0 0 4px;font-size:14px}.nodata{color:#999;font-style:italic;padding:30px 0;text-align:center}
.legend{font-size:11px;columns:2}.legend span{display:inline-block;width:10px;height:10px;margin-right:4px}
.big{font-size:40px;text-align:center;padding:20px 0}.err{color:#b00;font-size:12px}
table{font-size:12px;border-collapse:collapse;width:100%}td{border-bottom:1px solid #eee;padding:2px 4px}td.n{text-align:right}
.q{font-size:10px;color:#888;font-family:monospace;word-break:break-all}`

var palette = []string{"#632ca6", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"}

type page struct {
	b        strings.Builder
	units    map[string]string
	samples  []ddquery.Sample
	from, to time.Time
	marks    []Mark
}

// Line is one series of a chart.
type Line struct {
	Label  string
	Points []ddquery.Point
}

// Mark is a labelled vertical line on a chart (a phase boundary).
type Mark struct {
	Time  time.Time
	Label string
}

// CSS is the style sheet the charts of RenderPreview and Chart expect.
const CSS = css

// Chart writes one line chart as inline SVG (the renderer of
// RenderPreview) over [from, to), with a legend and the marks drawn as
// vertical lines. unit labels the y axis. Lines without points are left
// out; with none left it writes a "no data" note.
func Chart(w io.Writer, lines []Line, unit string, from, to time.Time, marks ...Mark) error {
	p := &page{from: from, to: to, marks: marks}
	var ls []line
	for _, l := range lines {
		if len(l.Points) > 0 {
			ls = append(ls, line{label: l.Label, points: l.Points})
		}
	}
	if len(ls) == 0 {
		p.b.WriteString(`<div class="nodata">no data</div>`)
	} else {
		p.chart(ls, unit)
	}
	_, err := io.WriteString(w, p.b.String())
	return err
}

// line is one drawn series: a formula's group.
type line struct {
	label  string
	points []ddquery.Point
}

// request is a widget request's queries and formulas, parsed.
type request struct {
	queries  map[string]*ddquery.Query
	aggs     map[string]string // query name -> scalar aggregator
	formulas []datadogV1.WidgetFormula
	texts    []string // the query texts, for the widget's footnote
}

func (p *page) parse(queries []datadogV1.FormulaAndFunctionQueryDefinition, formulas []datadogV1.WidgetFormula) (request, error) {
	r := request{queries: map[string]*ddquery.Query{}, aggs: map[string]string{}, formulas: formulas}
	for _, q := range queries {
		m := q.FormulaAndFunctionMetricQueryDefinition
		if m == nil {
			return r, fmt.Errorf("not a metrics query")
		}
		pq, err := ddquery.ParseQuery(m.Query)
		if err != nil {
			return r, err
		}
		r.queries[m.Name] = pq
		r.texts = append(r.texts, m.Name+" = "+m.Query)
		if m.Aggregator != nil {
			r.aggs[m.Name] = string(*m.Aggregator)
		}
	}
	return r, nil
}

func (p *page) widget(w datadogV1.Widget) {
	d := w.Definition
	switch {
	case d.TimeseriesWidgetDefinition != nil:
		p.timeseries(d.TimeseriesWidgetDefinition)
	case d.QueryValueWidgetDefinition != nil:
		p.queryValue(d.QueryValueWidgetDefinition)
	case d.ToplistWidgetDefinition != nil:
		p.toplist(d.ToplistWidgetDefinition)
	case d.NoteWidgetDefinition != nil:
		fmt.Fprintf(&p.b, `<div class="w"><p>%s</p></div>`, esc(d.NoteWidgetDefinition.Content))
	default:
		fmt.Fprintf(&p.b, `<div class="w"><p class="nodata">a widget of a type the preview does not draw</p></div>`)
	}
}

func (p *page) timeseries(d *datadogV1.TimeseriesWidgetDefinition) {
	title := d.GetTitle()
	var lines []line
	var texts []string
	var errs []string
	unit := ""
	for _, req := range d.Requests {
		r, err := p.parse(req.Queries, req.Formulas)
		texts = append(texts, r.texts...)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, f := range r.formulas {
			fq, err := ddquery.ParseFormula(f.Formula, r.queries)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if unit == "" {
				uq := fq // a single query's modifiers say its unit
				if q, ok := r.queries[strings.TrimSpace(f.Formula)]; ok {
					uq = q
				}
				unit = p.unit(title, uq)
			}
			series, err := fq.Eval(p.samples, p.from, p.to, Step, nil)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			name := f.Formula
			if f.Alias != nil {
				name = *f.Alias
			} else if q, ok := r.queries[strings.TrimSpace(f.Formula)]; ok {
				name = shortMetric(q)
			}
			for _, s := range series {
				label := name
				if len(s.Tags) > 0 {
					label += " " + strings.Join(s.Tags, ",")
				}
				lines = append(lines, line{label: label, points: s.Points})
			}
		}
	}
	p.b.WriteString(`<div class="w">`)
	fmt.Fprintf(&p.b, `<h4>%s</h4>`, esc(title))
	for _, e := range errs {
		fmt.Fprintf(&p.b, `<p class="err">%s</p>`, esc(e))
	}
	if len(lines) == 0 {
		p.b.WriteString(`<p class="nodata">no data in this run</p>`)
	} else {
		p.chart(lines, unit)
	}
	fmt.Fprintf(&p.b, `<p class="q">%s</p></div>`, esc(strings.Join(texts, " · ")))
}

// scalar reduces a request to one value per group.
func (p *page) scalar(r request, f datadogV1.WidgetFormula) (map[string]float64, error) {
	out := map[string]float64{}
	if q, ok := r.queries[strings.TrimSpace(f.Formula)]; ok {
		series, err := q.Eval(p.samples, p.from, p.to, Step, nil)
		if err != nil {
			return nil, err
		}
		for _, s := range series {
			if v, ok := reduce(s.Points, r.aggs[strings.TrimSpace(f.Formula)]); ok {
				out[s.Group()] = v
			}
		}
		return out, nil
	}
	fq, err := ddquery.ParseFormula(f.Formula, r.queries)
	if err != nil {
		return nil, err
	}
	span := p.to.Sub(p.from).Truncate(time.Second) + time.Second
	series, err := fq.Eval(p.samples, p.from, p.from.Add(span), span, nil)
	if err != nil {
		return nil, err
	}
	for _, s := range series {
		if len(s.Points) > 0 {
			out[s.Group()] = s.Points[0].Value
		}
	}
	return out, nil
}

func reduce(pts []ddquery.Point, agg string) (float64, bool) {
	if len(pts) == 0 {
		return 0, false
	}
	v := pts[0].Value
	sum := 0.0
	for _, p := range pts {
		sum += p.Value
		switch agg {
		case "max":
			v = math.Max(v, p.Value)
		case "min":
			v = math.Min(v, p.Value)
		case "last":
			v = p.Value
		}
	}
	switch agg {
	case "sum":
		return sum, true
	case "avg", "":
		return sum / float64(len(pts)), true
	}
	return v, true
}

func (p *page) queryValue(d *datadogV1.QueryValueWidgetDefinition) {
	fmt.Fprintf(&p.b, `<div class="w"><h4>%s</h4>`, esc(d.GetTitle()))
	prec := 2
	if d.Precision != nil {
		prec = int(*d.Precision)
	}
	var texts []string
	shown := false
	for _, req := range d.Requests {
		texts = append(texts, p.eachScalar(req.Queries, req.Formulas, func(_ string, v float64) {
			fmt.Fprintf(&p.b, `<p class="big">%s %s</p>`, strconvF(v, prec), esc(d.GetCustomUnit()))
			shown = true
		})...)
	}
	if !shown {
		p.b.WriteString(`<p class="nodata">no data in this run</p>`)
	}
	fmt.Fprintf(&p.b, `<p class="q">%s over the whole run</p></div>`, esc(strings.Join(texts, " · ")))
}

// eachScalar evaluates every formula of one widget request over the whole
// run and calls fn with each group's value, groups in order; a query or
// formula that fails is shown in place. It returns the queries' texts.
func (p *page) eachScalar(queries []datadogV1.FormulaAndFunctionQueryDefinition, formulas []datadogV1.WidgetFormula, fn func(group string, v float64)) []string {
	r, err := p.parse(queries, formulas)
	if err != nil {
		fmt.Fprintf(&p.b, `<p class="err">%s</p>`, esc(err.Error()))
		return r.texts
	}
	for _, f := range r.formulas {
		vals, err := p.scalar(r, f)
		if err != nil {
			fmt.Fprintf(&p.b, `<p class="err">%s</p>`, esc(err.Error()))
			continue
		}
		for _, g := range sortedKeys(vals) {
			fn(g, vals[g])
		}
	}
	return r.texts
}

func (p *page) toplist(d *datadogV1.ToplistWidgetDefinition) {
	fmt.Fprintf(&p.b, `<div class="w"><h4>%s</h4>`, esc(d.GetTitle()))
	var texts []string
	type row struct {
		group string
		v     float64
	}
	var rows []row
	for _, req := range d.Requests {
		texts = append(texts, p.eachScalar(req.Queries, req.Formulas, func(g string, v float64) {
			rows = append(rows, row{g, v})
		})...)
	}
	if len(rows) == 0 {
		p.b.WriteString(`<p class="nodata">no data in this run</p>`)
	} else {
		sort.Slice(rows, func(i, j int) bool {
			return rows[i].v > rows[j].v || rows[i].v == rows[j].v && rows[i].group < rows[j].group
		})
		if len(rows) > 10 {
			rows = rows[:10]
		}
		max := rows[0].v
		p.b.WriteString(`<table>`)
		for i, r := range rows {
			width := 0.0
			if max > 0 {
				width = 200 * r.v / max
			}
			fmt.Fprintf(&p.b, `<tr><td>%s</td><td class="n">%s</td><td><svg width="200" height="10"><rect width="%.1f" height="10" fill="%s"/></svg></td></tr>`,
				esc(r.group), strconvF(r.v, 2), width, palette[i%len(palette)])
		}
		p.b.WriteString(`</table>`)
	}
	fmt.Fprintf(&p.b, `<p class="q">%s over the whole run</p></div>`, esc(strings.Join(texts, " · ")))
}

func strconvF(v float64, prec int) string { return fmt.Sprintf("%.*f", prec, v) }

var titleUnit = regexp.MustCompile(`\(([^()]*)\)\s*$`)

// unit is the y axis unit: the last item of the title's trailing
// parentheses when it is one word and not an aggregation ("(p99, ms)" -> ms, "(%)" ->
// %), else the first metric's unit from docs/metrics.md with the query's
// modifier (as_count: per interval, as_rate: per second).
func (p *page) unit(title string, q *ddquery.Query) string {
	if m := titleUnit.FindStringSubmatch(title); m != nil {
		parts := strings.Split(m[1], ",")
		last := strings.TrimSpace(parts[len(parts)-1])
		if last != "" && !strings.Contains(last, " ") && !regexp.MustCompile(`^(p\d+|avg|max|min|sum)$`).MatchString(last) {
			return last
		}
	}
	refs := q.Metrics()
	if len(refs) == 0 {
		return ""
	}
	u := p.units[refs[0].Name]
	if refs[0].SpaceAgg == "count" {
		u = "values"
	}
	text := q.String()
	switch {
	case strings.Contains(text, ".as_count()"):
		return u + " per " + Step.String()
	case strings.Contains(text, ".as_rate()"):
		return u + "/s"
	}
	return u
}

// shortMetric names a single-query line by its aggregator and metric.
func shortMetric(q *ddquery.Query) string {
	refs := q.Metrics()
	if len(refs) != 1 {
		return q.String()
	}
	return refs[0].SpaceAgg + ":" + strings.TrimPrefix(refs[0].Name, "shoplab.")
}

// chart draws the lines as an inline SVG line chart with axes, ticks, the
// unit as y label and a legend.
func (p *page) chart(lines []line, unit string) {
	const W, H, left, right, top, bottom = 560.0, 200.0, 56.0, 10.0, 10.0, 34.0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, pt := range l.points {
			lo, hi = math.Min(lo, pt.Value), math.Max(hi, pt.Value)
		}
	}
	if lo > 0 {
		lo = 0
	}
	if hi <= lo {
		hi = lo + 1
	}
	ticks := niceTicks(lo, hi)
	lo, hi = math.Min(lo, ticks[0]), math.Max(hi, ticks[len(ticks)-1])
	span := p.to.Sub(p.from).Seconds()
	x := func(t time.Time) float64 { return left + (W-left-right)*t.Sub(p.from).Seconds()/span }
	y := func(v float64) float64 { return top + (H-top-bottom)*(1-(v-lo)/(hi-lo)) }
	fmt.Fprintf(&p.b, `<svg width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-size="10" font-family="sans-serif">`, W, H, W, H)
	for _, t := range ticks {
		fmt.Fprintf(&p.b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`,
			left, W-right, y(t), y(t), left-4, y(t)+3, tickLabel(t))
	}
	step := 10.0
	for span/step > 8 {
		step *= 2
	}
	for s := 0.0; s <= span; s += step {
		xx := x(p.from.Add(time.Duration(s * float64(time.Second))))
		fmt.Fprintf(&p.b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ccc"/><text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`,
			xx, xx, H-bottom, H-bottom+4, xx, H-bottom+14, s)
	}
	fmt.Fprintf(&p.b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#888"/><line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#888"/>`,
		left, W-right, H-bottom, H-bottom, left, left, top, H-bottom)
	fmt.Fprintf(&p.b, `<text x="%.1f" y="%.1f" text-anchor="middle">seconds since the capture started</text>`, (left+W-right)/2, H-4)
	fmt.Fprintf(&p.b, `<text transform="translate(12 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, (top+H-bottom)/2, esc(unit))
	for i, l := range lines {
		color := palette[i%len(palette)]
		var pts []string
		for _, pt := range l.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(pt.Time), y(pt.Value)))
		}
		if len(pts) == 1 {
			fmt.Fprintf(&p.b, `<circle cx="%s" r="2.5" fill="%s"/>`, strings.Replace(pts[0], ",", `" cy="`, 1), color)
		} else {
			fmt.Fprintf(&p.b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
		}
	}
	for _, m := range p.marks {
		xx := x(m.Time)
		fmt.Fprintf(&p.b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="4 3"/><text x="%.1f" y="%.1f" fill="#d62728">%s</text>`,
			xx, xx, top, H-bottom, xx+3, top+9, esc(m.Label))
	}
	p.b.WriteString(`</svg><div class="legend">`)
	for i, l := range lines {
		last := l.points[len(l.points)-1].Value
		peak := math.Inf(-1)
		for _, pt := range l.points {
			peak = math.Max(peak, pt.Value)
		}
		fmt.Fprintf(&p.b, `<div><span style="background:%s"></span>%s <small>(max %s, last %s)</small></div>`,
			palette[i%len(palette)], esc(l.label), tickLabel(peak), tickLabel(last))
	}
	p.b.WriteString(`</div>`)
}

// niceTicks returns 3 to 6 round tick values covering [lo, hi].
func niceTicks(lo, hi float64) []float64 {
	raw := (hi - lo) / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Floor(lo/step) * step; v <= hi+step*0.999; v += step {
		out = append(out, v)
	}
	return out
}

func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func esc(s string) string { return html.EscapeString(s) }

func anchor(file string) string { return strings.TrimSuffix(file, ".json") }
