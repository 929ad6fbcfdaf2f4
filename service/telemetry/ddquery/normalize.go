package ddquery

import (
	"strings"
	"unicode"
)

// maxTagLen is the length Datadog truncates tags to.
const maxTagLen = 200

// NormalizeTag returns tag as Datadog stores it: lowercased, every
// character other than a letter, a digit, '_', '-', ':', '.' or '/'
// replaced by '_', and cut to 200 characters. "route:/orders/{userId}"
// becomes "route:/orders/_userid_". Queries name tags in this form, and
// the evaluator normalises captured tags the same way before matching.
func NormalizeTag(tag string) string {
	var b strings.Builder
	n := 0
	for _, r := range tag {
		if n == maxTagLen {
			break
		}
		n++
		switch {
		case unicode.IsLetter(r):
			b.WriteRune(unicode.ToLower(r))
		case unicode.IsDigit(r), r == '_', r == '-', r == ':', r == '.', r == '/':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// normalizePattern normalises a filter value that may contain '*'
// wildcards: the parts between stars are normalised, the stars kept.
func normalizePattern(p string) string {
	parts := strings.Split(p, "*")
	for i, s := range parts {
		parts[i] = NormalizeTag(s)
	}
	return strings.Join(parts, "*")
}

// globMatch reports whether s matches pattern, where '*' matches any run
// of characters (including none) and everything else matches itself.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}
