package shop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of product fields.
const (
	MaxNameLen        = 200
	MaxDescriptionLen = 5000
	MaxInventory      = 1_000_000_000
	MaxSKULen         = 64
)

// ProductInput is a product as a client sends it (POST /products, import
// rows). Pointers tell a missing field from a zero one.
type ProductInput struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Price       *Amount `json:"price"`
	Inventory   *int64  `json:"inventory"`
	SKU         *string `json:"sku"`
}

// NewProduct is a validated product, ready to store.
type NewProduct struct {
	Name        string
	Description *string
	Price       Money
	Inventory   int
	SKU         *string // nil when the product has none
}

// ProductRules are the validation rules of one API version. Every version
// checks each field with the same field rules (productFields); a version
// only adds rules, it never copies them.
type ProductRules struct {
	// RequireDescription makes a non-blank description mandatory (v2,
	// PATCH, and v1 after its sunset).
	RequireDescription bool
}

// Validate checks in against the rules and returns the product to store,
// or every field problem found (as an EINVALID *Error).
func (r ProductRules) Validate(in ProductInput) (NewProduct, error) {
	var out NewProduct
	var f productFields
	if in.Name == nil {
		f.add("name", "required", "is required")
	} else {
		out.Name, _ = f.name(*in.Name)
	}
	if in.Description != nil {
		out.Description, _ = f.description(*in.Description, r.RequireDescription)
	} else if r.RequireDescription {
		f.add("description", "required", "is required")
	}
	if in.Price == nil {
		f.add("price", "required", "is required")
	} else {
		out.Price, _ = f.price(*in.Price)
	}
	if in.Inventory == nil {
		f.add("inventory", "required", "is required")
	} else {
		out.Inventory, _ = f.inventory(*in.Inventory)
	}
	if in.SKU != nil {
		out.SKU, _ = f.sku(*in.SKU)
	}
	if len(f) > 0 {
		return NewProduct{}, Invalid(f...)
	}
	return out, nil
}

// Optional is a member of a partial update (JSON Merge Patch, RFC 7396):
// Set when the member was present, Null when its value was null.
type Optional[T any] struct {
	Set   bool
	Null  bool
	Value T
}

// UnmarshalJSON records that the member was present, and whether it was
// null; a value of the wrong type is a type error naming the member.
func (o *Optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(bytes.TrimSpace(b)) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}

// ProductPatchInput is a partial update as a client sends it (PATCH
// /products/{id}): absent members stay as they are.
type ProductPatchInput struct {
	Name        Optional[string] `json:"name"`
	Description Optional[string] `json:"description"`
	Price       Optional[Amount] `json:"price"`
	Inventory   Optional[int64]  `json:"inventory"`
}

// ProductPatch is a validated partial update: nil fields stay as they are.
type ProductPatch struct {
	Name *string
	// Description, when set, is the new non-blank description.
	Description *string
	// ClearDescription removes the description (only under rules without
	// RequireDescription; shoplab's PATCH never allows it).
	ClearDescription bool
	Price            *Money
	Inventory        *int
}

// ValidatePatch checks the members present in in with the same field rules
// as Validate and returns the patch to apply, or every problem found (as an
// EINVALID *Error). A null member asks to remove the value (RFC 7396).
// Name, price and inventory cannot be removed, so null is a "required"
// problem for them. A null or blank description clears it, unless the
// rules require a description: then it is a "required" or "blank" problem.
// PATCH /products/{id} uses RequireDescription (docs/api-evolution.md). An
// empty patch is invalid.
func (r ProductRules) ValidatePatch(in ProductPatchInput) (ProductPatch, error) {
	var out ProductPatch
	var f productFields
	cannotRemove := func(field string) {
		f.add(field, "required", "cannot be removed (null); send a value or leave %s out", field)
	}
	if in.Name.Set {
		if in.Name.Null {
			cannotRemove("name")
		} else if v, ok := f.name(in.Name.Value); ok {
			out.Name = &v
		}
	}
	if in.Description.Set {
		switch {
		case in.Description.Null && r.RequireDescription:
			cannotRemove("description")
		case in.Description.Null:
			out.ClearDescription = true
		default:
			if v, ok := f.description(in.Description.Value, r.RequireDescription); ok {
				out.Description = v
				out.ClearDescription = v == nil
			}
		}
	}
	if in.Price.Set {
		if in.Price.Null {
			cannotRemove("price")
		} else if v, ok := f.price(in.Price.Value); ok {
			out.Price = &v
		}
	}
	if in.Inventory.Set {
		if in.Inventory.Null {
			cannotRemove("inventory")
		} else if v, ok := f.inventory(in.Inventory.Value); ok {
			out.Inventory = &v
		}
	}
	if !in.Name.Set && !in.Description.Set && !in.Price.Set && !in.Inventory.Set {
		f = append(f, FieldError{Field: "body", Code: "empty", Message: "the patch must set at least one of name, description, price, inventory"})
	}
	if len(f) > 0 {
		return ProductPatch{}, Invalid(f...)
	}
	return out, nil
}

// productFields collects field problems. Its methods are the rules of each
// product field, shared by Validate and ValidatePatch: each returns the
// cleaned value and true, or records a problem and returns false.
type productFields []FieldError

func (f *productFields) add(field, code, format string, args ...any) {
	*f = append(*f, FieldError{Field: field, Code: code, Message: field + " " + fmt.Sprintf(format, args...)})
}

// textProblem says what makes s unfit to be stored and shown as text, and
// at which character (counted from 1), or "" when nothing does: invalid
// UTF-8; a control character (NUL, ESC, BEL, DEL, the C1 controls...; a
// multi-line field may hold tab, line feed and carriage return); a
// bidirectional formatting character (U+202A-U+202E, U+2066-U+2069,
// U+200E, U+200F, U+061C), which makes a name display as another
// (CVE-2021-42574's trick); or U+FFFD, the replacement character that
// encoding/json puts where a JSON body held invalid UTF-8, so that invalid
// input is refused rather than stored silently replaced.
func textProblem(s string, multiline bool) string {
	pos := 0
	for i, r := range s {
		pos++
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return fmt.Sprintf("must be valid UTF-8: byte 0x%02X at character %d is not", s[i], pos)
			}
			return fmt.Sprintf("must be valid UTF-8: U+FFFD at character %d (where invalid UTF-8 was replaced)", pos)
		case multiline && (r == '\t' || r == '\n' || r == '\r'):
		case unicode.IsControl(r):
			return fmt.Sprintf("must not contain control characters: U+%04X at character %d", r, pos)
		case isBidiControl(r):
			return fmt.Sprintf("must not contain bidirectional formatting characters: U+%04X at character %d", r, pos)
		}
	}
	return ""
}

// isBidiControl reports whether r is one of Unicode's bidirectional
// formatting characters (UAX #9: embeddings, overrides, isolates and
// marks).
func isBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200E || r == 0x200F || r == 0x061C
}

// name: valid UTF-8 without NUL, not blank, at most MaxNameLen characters;
// stored trimmed.
func (f *productFields) name(s string) (string, bool) {
	switch {
	case textProblem(s, false) != "":
		f.add("name", "invalid", "%s", textProblem(s, false))
	case strings.TrimSpace(s) == "":
		f.add("name", "blank", "must not be blank")
	case utf8.RuneCountInString(s) > MaxNameLen:
		f.add("name", "too_long", "must be at most %d characters", MaxNameLen)
	default:
		return strings.TrimSpace(s), true
	}
	return "", false
}

// description: valid UTF-8 without NUL, at most MaxDescriptionLen
// characters; stored trimmed. Blank is a problem when required and
// otherwise means "no description" (nil, true): the database never holds a
// blank description (CHECK products_description_not_blank).
func (f *productFields) description(s string, required bool) (*string, bool) {
	switch {
	case textProblem(s, true) != "":
		f.add("description", "invalid", "%s", textProblem(s, true))
	case utf8.RuneCountInString(s) > MaxDescriptionLen:
		f.add("description", "too_long", "must be at most %d characters", MaxDescriptionLen)
	case strings.TrimSpace(s) == "" && required:
		f.add("description", "blank", "must not be blank")
	default:
		if t := strings.TrimSpace(s); t != "" {
			return &t, true
		}
		return nil, true
	}
	return nil, false
}

// price: an exact decimal with at most 2 places, >= 0, within NUMERIC(12,2).
func (f *productFields) price(a Amount) (Money, bool) {
	m, err := ParseMoney(string(a))
	switch {
	case err != nil:
		f.add("price", "invalid", "%v", err)
	case m < 0:
		f.add("price", "min", "must be greater than or equal to 0")
	default:
		return m, true
	}
	return 0, false
}

// inventory: an integer in [0, MaxInventory].
func (f *productFields) inventory(n int64) (int, bool) {
	switch {
	case n < 0:
		f.add("inventory", "min", "must be greater than or equal to 0")
	case n > MaxInventory:
		f.add("inventory", "max", "must be at most %d", MaxInventory)
	default:
		return int(n), true
	}
	return 0, false
}

// sku: printable text without spaces, at most MaxSKULen characters;
// stored trimmed. Blank is a problem: omit the member instead.
func (f *productFields) sku(s string) (*string, bool) {
	sku := strings.TrimSpace(s)
	switch {
	case !utf8.ValidString(sku) || strings.IndexFunc(sku, notSKURune) >= 0:
		f.add("sku", "invalid", "must be printable text without spaces")
	case sku == "":
		f.add("sku", "blank", "must not be blank (omit it instead)")
	case utf8.RuneCountInString(sku) > MaxSKULen:
		f.add("sku", "too_long", "must be at most %d characters", MaxSKULen)
	default:
		return &sku, true
	}
	return nil, false
}

// notSKURune reports the runes a SKU may not hold: spaces and control
// characters.
func notSKURune(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }

// Checkout limits.
const (
	MaxCartLines    = 100
	MaxLineQuantity = 1000
)

// Validate checks the cart's shape and the idempotency key's (not stock:
// that is the store's business) and returns it with duplicate lines of one
// product merged and lines sorted by product id, the order in which stock
// is locked. Errors: EINVALID, with a field error per problem.
func (req CheckoutRequest) Validate() (CheckoutRequest, error) {
	var errs []FieldError
	if !ValidID(req.UserID) {
		if req.UserID == "" {
			errs = append(errs, FieldError{"userId", "required", "userId is required"})
		} else {
			errs = append(errs, FieldError{"userId", "invalid", "userId must be a UUID"})
		}
	}
	switch {
	case len(req.Items) == 0:
		errs = append(errs, FieldError{"items", "required", "items must contain at least one line"})
	case len(req.Items) > MaxCartLines:
		errs = append(errs, FieldError{"items", "max", fmt.Sprintf("items must contain at most %d lines", MaxCartLines)})
	}
	if req.IdempotencyKey != "" && !validIdempotencyKey(req.IdempotencyKey) {
		errs = append(errs, FieldError{"Idempotency-Key", "invalid",
			fmt.Sprintf("the Idempotency-Key header must be 1 to %d printable ASCII characters", MaxIdempotencyKeyLen)})
	}
	merged := map[string]int{}
	var order []string
	for i, l := range req.Items {
		f := fmt.Sprintf("items[%d]", i)
		if !ValidID(l.ProductID) {
			errs = append(errs, FieldError{f + ".productId", "invalid", f + ".productId must be a UUID"})
			continue
		}
		if l.Quantity <= 0 || l.Quantity > MaxLineQuantity {
			errs = append(errs, FieldError{f + ".quantity", "range", fmt.Sprintf("%s.quantity must be between 1 and %d", f, MaxLineQuantity)})
			continue
		}
		id := strings.ToLower(l.ProductID)
		if _, ok := merged[id]; !ok {
			order = append(order, id)
		}
		merged[id] += l.Quantity
	}
	if len(errs) > 0 {
		return CheckoutRequest{}, Invalid(errs...)
	}
	out := CheckoutRequest{UserID: strings.ToLower(req.UserID), Items: make([]CartLine, 0, len(order)), IdempotencyKey: req.IdempotencyKey}
	for _, id := range order {
		if merged[id] > MaxLineQuantity {
			return CheckoutRequest{}, Invalid(FieldError{"items", "range", fmt.Sprintf("the total quantity of product %s must be at most %d", id, MaxLineQuantity)})
		}
		out.Items = append(out.Items, CartLine{ProductID: id, Quantity: merged[id]})
	}
	slices.SortFunc(out.Items, func(a, b CartLine) int { return strings.Compare(a.ProductID, b.ProductID) })
	return out, nil
}
