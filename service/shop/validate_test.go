package shop_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/shoplab/shoplab/service/shop"
)

func fieldCodes(err error) map[string]string {
	out := map[string]string{}
	for _, f := range shop.AsError(err).Fields {
		out[f.Field] = f.Code
	}
	return out
}

// TestRulesVersions: v2 is v1 plus one rule; everything else is shared.
func TestRulesVersions(t *testing.T) {
	t.Parallel()
	v1, v2 := shop.ProductRules{}, shop.ProductRules{RequireDescription: true}
	in := func(body string) shop.ProductInput {
		var p shop.ProductInput
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("V1DescriptionOptional", func(t *testing.T) {
		for _, body := range []string{`{"name":"x","price":1,"inventory":1}`, `{"name":"x","description":"  ","price":1,"inventory":1}`} {
			p, err := v1.Validate(in(body))
			if err != nil || p.Description != nil {
				t.Errorf("%s: %+v %v", body, p, err)
			}
		}
	})
	t.Run("V2DescriptionRequired", func(t *testing.T) {
		for body, code := range map[string]string{
			`{"name":"x","price":1,"inventory":1}`:                                                   "required",
			`{"name":"x","description":" \t ","price":1,"inventory":1}`:                              "blank",
			`{"name":"x","description":"` + strings.Repeat("d", 5001) + `","price":1,"inventory":1}`: "too_long",
		} {
			if _, err := v2.Validate(in(body)); fieldCodes(err)["description"] != code {
				t.Errorf("%.60s: %v, want description %s", body, err, code)
			}
		}
		p, err := v2.Validate(in(`{"name":" Lamp ","description":" Bright. ","price":"1.50","inventory":2}`))
		if err != nil || p.Name != "Lamp" || *p.Description != "Bright." || p.Price != 150 {
			t.Errorf("valid v2: %+v %v", p, err)
		}
	})
	t.Run("SameFieldRules", func(t *testing.T) {
		body := `{"name":"","description":"ok","price":-1,"inventory":-1}`
		e1, e2 := fieldCodes(func() error { _, err := v1.Validate(in(body)); return err }()), fieldCodes(func() error { _, err := v2.Validate(in(body)); return err }())
		if len(e1) != 3 || e1["name"] != e2["name"] || e1["price"] != e2["price"] || e1["inventory"] != e2["inventory"] {
			t.Errorf("v1 %v, v2 %v", e1, e2)
		}
	})
}

func TestValidatePatch(t *testing.T) {
	t.Parallel()
	rules := shop.ProductRules{RequireDescription: true}
	patch := func(t *testing.T, r shop.ProductRules, body string) (shop.ProductPatch, error) {
		t.Helper()
		var in shop.ProductPatchInput
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return r.ValidatePatch(in)
	}

	t.Run("Partial", func(t *testing.T) {
		p, err := patch(t, rules, `{"price":"2.50"}`)
		if err != nil || p.Price == nil || *p.Price != 250 || p.Name != nil || p.Description != nil || p.Inventory != nil || p.ClearDescription {
			t.Errorf("%+v %v", p, err)
		}
	})
	t.Run("AllFieldsTrimmed", func(t *testing.T) {
		p, err := patch(t, rules, `{"name":" N ","description":" D ","price":0,"inventory":0}`)
		if err != nil || *p.Name != "N" || *p.Description != "D" || *p.Price != 0 || *p.Inventory != 0 {
			t.Errorf("%+v %v", p, err)
		}
	})
	for name, c := range map[string]struct{ body, field, code string }{
		"ErrEmpty":               {`{}`, "body", "empty"},
		"ErrNullName":            {`{"name":null}`, "name", "required"},
		"ErrNullPrice":           {`{"price":null}`, "price", "required"},
		"ErrNullInventory":       {`{"inventory":null}`, "inventory", "required"},
		"ErrNullDescription":     {`{"description":null}`, "description", "required"},
		"ErrBlankDescription":    {`{"description":"   "}`, "description", "blank"},
		"ErrBlankName":           {`{"name":" "}`, "name", "blank"},
		"ErrNegativePrice":       {`{"price":-1}`, "price", "min"},
		"ErrTooPrecisePrice":     {`{"price":1.001}`, "price", "invalid"},
		"ErrNegativeInventory":   {`{"inventory":-3}`, "inventory", "min"},
		"ErrHugeInventory":       {`{"inventory":1000000001}`, "inventory", "max"},
		"ErrInvalidUTF8Name":     {"{\"name\":\"a\\u0000b\"}", "name", "invalid"},
		"ErrTooLongName":         {`{"name":"` + strings.Repeat("n", 201) + `"}`, "name", "too_long"},
		"ErrOneBadAmongGoodOnes": {`{"name":"ok","inventory":-1}`, "inventory", "min"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := patch(t, rules, c.body)
			if shop.ErrorCode(err) != shop.EINVALID || fieldCodes(err)[c.field] != c.code {
				t.Errorf("%s: %v, want %s %s", c.body, err, c.field, c.code)
			}
		})
	}
	t.Run("WithoutRequireDescriptionNullClears", func(t *testing.T) {
		for _, body := range []string{`{"description":null}`, `{"description":"  "}`} {
			p, err := patch(t, shop.ProductRules{}, body)
			if err != nil || !p.ClearDescription || p.Description != nil {
				t.Errorf("%s: %+v %v", body, p, err)
			}
		}
	})
	t.Run("TypeErrorsNameTheField", func(t *testing.T) {
		var in shop.ProductPatchInput
		err := json.Unmarshal([]byte(`{"inventory":"7"}`), &in)
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Field != "inventory" {
			t.Errorf("%v", err)
		}
	})
}

func TestParseSearchQuery(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"  lamp ":                              "lamp",
		"100% cotton_tee":                      "100% cotton_tee",
		`back\slash "q"`:                       `back\slash "q"`,
		"":                                     "",
		"Ünïcödé ✓":                            "Ünïcödé ✓",
		strings.Repeat("é", shop.MaxSearchLen): strings.Repeat("é", shop.MaxSearchLen),
	} {
		if got, err := shop.ParseSearchQuery(in); err != nil || got != want {
			t.Errorf("ParseSearchQuery(%q) = %q, %v", in, got, err)
		}
	}
	for in, code := range map[string]string{
		strings.Repeat("x", shop.MaxSearchLen+1): shop.SearchTooLong,
		"\xff\xfe":                               shop.SearchInvalidUTF8,
		"a\x00b":                                 shop.SearchNUL,
		"a\tb":                                   shop.SearchControlChar,
		"line\nbreak":                            shop.SearchControlChar,
		"del\x7f":                                shop.SearchControlChar,
		"c1\u0085":                               shop.SearchControlChar,
	} {
		_, err := shop.ParseSearchQuery(in)
		if shop.ErrorCode(err) != shop.EINVALID || fieldCodes(err)["q"] != code {
			t.Errorf("ParseSearchQuery(%.20q): %v, want q %s", in, err, code)
		}
	}
}

func TestStoredTextRejected(t *testing.T) {
	str := func(s string) *string { return &s }
	rules := shop.ProductRules{}
	amt := func(s string) *shop.Amount { a := shop.Amount(s); return &a }
	for _, tc := range []struct {
		name, field, text, want string
	}{
		{"ESC", "name", "ab\x1b[31mc", "U+001B at character 3"},
		{"BEL", "description", "ding\a", "U+0007 at character 5"},
		{"RLO", "name", "invoice\u202Efdp.exe", "bidirectional formatting characters: U+202E at character 8"},
		{"Isolate", "description", "x\u2066y", "U+2066 at character 2"},
		{"InvalidUTF8", "name", "caf\xe9", "byte 0xE9 at character 4"},
		{"Replaced", "description", "caf\uFFFD", "U+FFFD at character 4"},
		{"NewlineInName", "name", "a\nb", "U+000A at character 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := shop.ProductInput{Name: str("ok"), Description: str("fine"), Price: amt("1.00"), Inventory: new(int64)}
			if tc.field == "name" {
				in.Name = str(tc.text)
			} else {
				in.Description = str(tc.text)
			}
			_, err := rules.Validate(in)
			e := shop.AsError(err)
			if e.Code != shop.EINVALID || len(e.Fields) != 1 || e.Fields[0].Field != tc.field || !strings.Contains(e.Fields[0].Message, tc.want) {
				t.Errorf("%v %+v, want %s: ...%s", err, e.Fields, tc.field, tc.want)
			}
		})
	}
	t.Run("MultilineDescriptionOK", func(t *testing.T) {
		in := shop.ProductInput{Name: str("Café ☕ 東京"), Description: str("line one\n\tline two\r\n"), Price: amt("1.00"), Inventory: new(int64)}
		if _, err := rules.Validate(in); err != nil {
			t.Error(err)
		}
	})
	t.Run("Users", func(t *testing.T) {
		_, err := shop.UserInput{Email: str("a\u202E@example.com"), Name: str("Eve\x07")}.Validate()
		e := shop.AsError(err)
		if e.Code != shop.EINVALID || len(e.Fields) != 2 ||
			!strings.Contains(e.Fields[0].Message, "email must not contain bidirectional formatting characters: U+202E at character 2") ||
			!strings.Contains(e.Fields[1].Message, "name must not contain control characters: U+0007 at character 4") {
			t.Errorf("%v %+v", err, e.Fields)
		}
	})
}
