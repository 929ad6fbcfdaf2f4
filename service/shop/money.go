package shop

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
)

// Money is an exact amount in cents. Postgres stores it as NUMERIC(12,2);
// JSON carries it as a decimal string ("99.99"), as the original API did.
type Money int64

// MaxMoney is the largest amount NUMERIC(12,2) holds.
const MaxMoney Money = 999_999_999_999

// String formats m as a decimal with two places, e.g. "99.99".
func (m Money) String() string {
	sign := ""
	v := int64(m)
	if v < 0 {
		sign, v = "-", -v
	}
	return sign + strconv.FormatInt(v/100, 10) + "." + leftPad2(v%100)
}

func leftPad2(v int64) string {
	if v < 10 {
		return "0" + strconv.FormatInt(v, 10)
	}
	return strconv.FormatInt(v, 10)
}

// MarshalJSON writes m as a JSON string, e.g. "99.99".
func (m Money) MarshalJSON() ([]byte, error) {
	return []byte(`"` + m.String() + `"`), nil
}

// UnmarshalJSON reads a decimal string or number exactly.
func (m *Money) UnmarshalJSON(b []byte) error {
	var a Amount
	if err := a.UnmarshalJSON(b); err != nil {
		return err
	}
	v, err := ParseMoney(string(a))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// errMoney explains why a decimal text is not an amount of money.
var (
	errMoneySyntax    = errors.New("must be a decimal number such as 19.99")
	errMoneyPrecision = errors.New("must have at most 2 decimal places")
	errMoneyRange     = errors.New("is too large")
)

// ParseMoney parses a decimal text ("19.99", "-1", "5.5", "1e2") exactly.
// It fails on more than two significant decimal places and on amounts
// outside NUMERIC(12,2).
func ParseMoney(s string) (Money, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 40 {
		return 0, errMoneySyntax
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 20 || e < -20 {
			return 0, errMoneySyntax
		}
		exp, s = e, s[:i]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" && frac == "" {
		return 0, errMoneySyntax
	}
	digits := intPart + frac
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, errMoneySyntax
		}
	}
	// value = digits * 10^(exp - len(frac)); we want cents = value * 100.
	shift := exp - len(frac) + 2
	digits = strings.TrimLeft(digits, "0")
	if shift < 0 {
		cut := len(digits) + shift
		if cut < 0 {
			cut = 0
		}
		if strings.Trim(digits[cut:], "0") != "" {
			return 0, errMoneyPrecision
		}
		digits = digits[:cut]
	} else {
		if len(digits)+shift > 18 && digits != "" {
			return 0, errMoneyRange
		}
		if digits != "" {
			digits += strings.Repeat("0", shift)
		}
	}
	if digits == "" {
		return 0, nil
	}
	if len(digits) > 18 {
		return 0, errMoneyRange
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || Money(v) > MaxMoney {
		return 0, errMoneyRange
	}
	if neg {
		v = -v
	}
	return Money(v), nil
}

// Amount is a decimal as a client sent it: a JSON number or a numeric
// string, kept as text so that no float ever touches it. Validation turns
// it into Money.
type Amount string

// UnmarshalJSON accepts a JSON number or string; anything else is a type
// error that names the field.
func (a *Amount) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*a = Amount(b)
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = Amount(s)
		return nil
	}
	return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeOf(Amount(""))}
}

func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "value"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "value"
}
