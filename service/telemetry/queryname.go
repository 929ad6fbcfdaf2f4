package telemetry

import (
	"strings"
)

// UnnamedQuery is the name of a statement without a name comment.
const UnnamedQuery = "unnamed"

// QueryInfo is what telemetry knows of a statement from its name comment.
type QueryInfo struct {
	// Name is the statement's name: from its "-- name:" comment,
	// "tx.begin"/"tx.commit"/"tx.rollback"/"tx.savepoint"/
	// "tx.release_savepoint"/"tx.rollback_to_savepoint" for the transaction
	// control statements pgx sends, or UnnamedQuery.
	Name string
	// Lock reports the " lock" flag: the statement takes row locks and may
	// wait for them.
	Lock bool
}

// ParseQueryName reads the name comment on the first line of sql:
//
//	-- name: orders.by_user
//	-- name: checkout.reserve_stock lock
//
// Names are lowercase dotted identifiers ([a-z0-9_] segments joined by dots);
// anything else, or a statement without the comment, is UnnamedQuery, so that
// neither SQL text nor literal values ever become a tag. Leading blank lines
// are skipped; flags other than "lock" are ignored.
func ParseQueryName(sql string) QueryInfo {
	s := strings.TrimLeft(sql, " \t\r\n")
	if rest, ok := strings.CutPrefix(s, "--"); ok {
		line, _, _ := strings.Cut(rest, "\n")
		line = strings.TrimSpace(line)
		body, ok := strings.CutPrefix(line, "name:")
		if !ok {
			return QueryInfo{Name: UnnamedQuery}
		}
		fields := strings.Fields(body)
		if len(fields) == 0 || !validName(fields[0]) {
			return QueryInfo{Name: UnnamedQuery}
		}
		qi := QueryInfo{Name: fields[0]}
		for _, f := range fields[1:] {
			if f == "lock" {
				qi.Lock = true
			}
		}
		return qi
	}
	return QueryInfo{Name: txControlName(s)}
}

// txControlName names the transaction control statements pgx issues itself
// (Begin, Commit, Rollback and savepoints for nested transactions).
func txControlName(s string) string {
	if len(s) > 120 {
		return UnnamedQuery
	}
	words := strings.Fields(strings.ToLower(strings.TrimRight(s, "; \t\r\n")))
	if len(words) == 0 {
		return UnnamedQuery
	}
	switch words[0] {
	case "begin", "start":
		return "tx.begin"
	case "commit", "end":
		return "tx.commit"
	case "rollback", "abort":
		if len(words) > 1 && words[1] == "to" {
			return "tx.rollback_to_savepoint"
		}
		return "tx.rollback"
	case "savepoint":
		return "tx.savepoint"
	case "release":
		return "tx.release_savepoint"
	}
	return UnnamedQuery
}

func validName(n string) bool {
	if n == "" || n[0] == '.' || n[len(n)-1] == '.' || strings.Contains(n, "..") {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// CopyName is the statement name of a CopyFrom into table: "copy." followed by
// the identifier's parts, lowercased and joined by dots, any character outside
// [a-z0-9_] replaced by "_" (pgx.Identifier{"products"} -> "copy.products").
func CopyName(table []string) string {
	var b strings.Builder
	b.WriteString("copy")
	for _, part := range table {
		b.WriteByte('.')
		if part == "" {
			b.WriteByte('_')
		}
		for _, r := range strings.ToLower(part) {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
	}
	return b.String()
}
