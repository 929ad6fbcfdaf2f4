package main

import (
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// diff lists the paths (query, options.thresholds.critical,
// widgets[2].definition.title) where have differs from want, comparing only
// what want sets: Datadog fills in defaults and ids (options it defaults,
// widget ids) that a file does not carry, and those are not changes. A
// field want sets to null, [] or {} matches a missing one. The top-level
// tags are compared as a set, since their order carries no meaning.
func diff(want, have any) []string {
	var out []string
	diffAt("", want, have, &out)
	return out
}

func diffAt(path string, want, have any, out *[]string) {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			if isEmpty(w) && isEmpty(have) {
				return
			}
			*out = append(*out, orRoot(path))
			return
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			hv, ok := h[k]
			switch {
			case !ok && isEmpty(w[k]):
			case !ok:
				*out = append(*out, p)
			case path == "" && k == "tags":
				if !sameSet(w[k], hv) {
					*out = append(*out, p)
				}
			default:
				diffAt(p, w[k], hv, out)
			}
		}
	case []any:
		h, ok := have.([]any)
		if !ok {
			if isEmpty(w) && isEmpty(have) {
				return
			}
			*out = append(*out, orRoot(path))
			return
		}
		if len(w) != len(h) {
			*out = append(*out, orRoot(path))
			return
		}
		for i := range w {
			diffAt(fmt.Sprintf("%s[%d]", path, i), w[i], h[i], out)
		}
	case json.Number:
		h, ok := have.(json.Number)
		if !ok || !sameNumber(w, h) {
			*out = append(*out, path)
		}
	default: // string, bool, nil
		if want == nil && isEmpty(have) {
			return
		}
		if want != have {
			*out = append(*out, path)
		}
	}
}

func orRoot(path string) string {
	if path == "" {
		return "(whole object)"
	}
	return path
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// sameNumber compares two JSON numbers by value (1, 1.0 and 1e0 are equal).
func sameNumber(a, b json.Number) bool {
	x, okx := new(big.Rat).SetString(a.String())
	y, oky := new(big.Rat).SetString(b.String())
	if !okx || !oky {
		return a == b
	}
	return x.Cmp(y) == 0
}

func sameSet(a, b any) bool {
	as, bs := strs(a), strs(b)
	if as == nil || bs == nil {
		return isEmpty(a) && isEmpty(b)
	}
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(as, bs)
}

// strs returns v as strings, or nil when it is not a list of strings.
func strs(v any) []string {
	l, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}

// fieldList shortens a diff for one line of output.
func fieldList(paths []string) string {
	const max = 6
	if len(paths) <= max {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:max], ", "), len(paths)-max)
}
