package shop

import (
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

// ProductRules are the validation rules of one API version.
type ProductRules struct {
	// RequireDescription makes a non-blank description mandatory (v2).
	RequireDescription bool
}

// Validate checks in against the rules and returns the product to store,
// or every field problem found (as an EINVALID *Error).
func (r ProductRules) Validate(in ProductInput) (NewProduct, error) {
	var out NewProduct
	var errs []FieldError
	add := func(field, code, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Code: code, Message: field + " " + fmt.Sprintf(format, args...)})
	}

	switch {
	case in.Name == nil:
		add("name", "required", "is required")
	case !utf8.ValidString(*in.Name) || strings.ContainsRune(*in.Name, 0):
		add("name", "invalid", "must be valid UTF-8 text without NUL characters")
	case strings.TrimSpace(*in.Name) == "":
		add("name", "blank", "must not be blank")
	case utf8.RuneCountInString(*in.Name) > MaxNameLen:
		add("name", "too_long", "must be at most %d characters", MaxNameLen)
	default:
		out.Name = strings.TrimSpace(*in.Name)
	}

	if in.Description != nil {
		d := *in.Description
		switch {
		case !utf8.ValidString(d) || strings.ContainsRune(d, 0):
			add("description", "invalid", "must be valid UTF-8 text without NUL characters")
		case utf8.RuneCountInString(d) > MaxDescriptionLen:
			add("description", "too_long", "must be at most %d characters", MaxDescriptionLen)
		case strings.TrimSpace(d) == "" && r.RequireDescription:
			add("description", "blank", "must not be blank")
		default:
			if t := strings.TrimSpace(d); t != "" {
				out.Description = &t
			}
		}
	} else if r.RequireDescription {
		add("description", "required", "is required")
	}

	if in.Price == nil {
		add("price", "required", "is required")
	} else if m, err := ParseMoney(string(*in.Price)); err != nil {
		add("price", "invalid", "%v", err)
	} else if m < 0 {
		add("price", "min", "must be greater than or equal to 0")
	} else {
		out.Price = m
	}

	switch {
	case in.Inventory == nil:
		add("inventory", "required", "is required")
	case *in.Inventory < 0:
		add("inventory", "min", "must be greater than or equal to 0")
	case *in.Inventory > MaxInventory:
		add("inventory", "max", "must be at most %d", MaxInventory)
	default:
		out.Inventory = int(*in.Inventory)
	}

	if in.SKU != nil {
		sku := strings.TrimSpace(*in.SKU)
		switch {
		case !utf8.ValidString(sku) || strings.IndexFunc(sku, notSKURune) >= 0:
			add("sku", "invalid", "must be printable text without spaces")
		case sku == "":
			add("sku", "blank", "must not be blank (omit it instead)")
		case utf8.RuneCountInString(sku) > MaxSKULen:
			add("sku", "too_long", "must be at most %d characters", MaxSKULen)
		default:
			out.SKU = &sku
		}
	}

	if len(errs) > 0 {
		return NewProduct{}, Invalid(errs...)
	}
	return out, nil
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
