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
