// Package ddquery parses and evaluates the subset of Datadog's metric query
// language that shoplab's monitors and dashboards use, over DogStatsD
// samples captured from a running shopd (see Recorder). It knows Datadog,
// not shop. docs/ddquery.md is the long form of this comment, with the
// Datadog documentation each rule comes from.
//
// # Grammar (EBNF)
//
//	monitor      = time_aggr "(" window ")" ":" expr comparator threshold .
//	time_aggr    = "avg" | "sum" | "min" | "max" | "last" | "percentile" .
//	window       = "last_" digits ( "m" | "h" | "d" | "w" ) .
//	comparator   = ">" | ">=" | "<" | "<=" .
//	threshold    = [ "-" | "+" ] number .
//
//	query        = expr .
//	expr         = term { ( "+" | "-" ) term } .
//	term         = unary { ( "*" | "/" ) unary } .
//	unary        = [ "-" ] primary .
//	primary      = number | "(" expr ")" | "default_zero" "(" expr ")" | metric_query .
//	metric_query = space_aggr ":" metric "{" filters "}" [ "by" "{" tag_key { "," tag_key } "}" ]
//	               { modifier } .
//	space_aggr   = "avg" | "sum" | "min" | "max" | "count" | "p" digits [ "." digits ] .
//	metric       = letter { letter | digit | "_" | "." } .
//	filters      = "*" | filter { "," filter } .
//	filter       = [ "!" ] tag_pattern | "$" var_name .
//	tag_pattern  = normalised tag, "*" matching any run of characters ("route:/orders*") .
//	modifier     = ".as_count()" | ".as_rate()"
//	             | ".rollup(" ( "avg" | "sum" | "min" | "max" | "count" ) [ "," seconds ] ")" .
//
//	formula      = expr .   (ParseFormula: primary is number | "(" expr ")"
//	                         | "default_zero" "(" expr ")" | query_name)
//
// Spaces are allowed between tokens. Anything else — other functions
// (.fill(), .weighted(), abs(), ...), "IN (...)", "AND"/"OR" filters,
// "==" and "!=", a tag that is not in normalised form, a metric query
// without space aggregator — is a *SyntaxError with its position, never
// a silent zero. The percentile time aggregation needs a single
// distribution query with a pNN space aggregator:
// "percentile(last_5m):p99:metric{*} > 250".
//
// # Semantics
//
// Tags are normalised as Datadog stores them (NormalizeTag): lowercased,
// characters other than letters, digits, '_', '-', ':', '.', '/' become
// '_'. Filters must be written normalised; captured tags are normalised
// before matching. Comma-separated filters are ANDed; "!" negates;
// "$env" is a template variable matching env:<vars["env"]>, or anything
// when the variable has no value or "*".
//
// Evaluation buckets the samples in intervals of the step (or of a longer
// .rollup() interval) starting at from. Within an interval and a source
// (one tag set), then across the sources of a group (space aggregation):
//
//   - count (|c): each value v sent at rate r counts v/r. Per interval the
//     counts are summed; with .as_count() that sum is the value, otherwise
//     (.as_rate(), or no modifier: DogStatsD counts are stored as rates) it
//     is divided by the interval in seconds. An interval with no sample is
//     0 in a series that has samples in the range (Datadog aligns counts
//     as 0). .rollup(avg|min|max|count) applies to the per-flush values
//     instead of the sum.
//   - gauge (|g): the last value of the interval (.rollup(m) applies m to
//     the values); .as_count()/.as_rate() change nothing.
//   - distribution (|d): the values of all sources in the interval,
//     each weighing 1/rate: pNN is the weighted nearest-rank percentile
//     (exact, where Datadog's DDSketch is within ~1%), avg the weighted
//     mean, min/max, count: the number of values and sum: their sum per
//     interval (per second with .as_rate(); 0 when none). The rollup
//     method is ignored, as Datadog ignores it for distributions.
//   - histograms, timers and sets, a metric received with two types,
//     and count:/pNN: of a count or gauge are evaluation errors.
//
// Arithmetic applies point by point: series pair by group, a series
// without "by" pairs with every group; a point exists only where both
// sides have one, and x/0 gives no point. default_zero() fills the
// intervals of existing series with 0.
//
// A monitor is evaluated at from, from+every, ... to; each evaluation
// takes the window [T-window, T), evaluates the expression at
// Options.Step, and reduces each group's points with the time
// aggregation. When the expression has arithmetic and an .as_count()
// query, each query is time-aggregated first and the arithmetic applied
// to the results (Datadog's as_count evaluation path), so
// "sum(last_5m): a.as_count() / b.as_count()" is sum(a)/sum(b).
// The value is compared with the thresholds: ALERT when beyond
// critical, or when already ALERT and still beyond critical_recovery;
// else WARN likewise with warning and warning_recovery; else OK. A window
// without points gives NO DATA if Options.NotifyNoData (after
// NoDataTimeframe), else keeps the last state.
package ddquery
