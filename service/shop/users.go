package shop

import (
	"context"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxEmailLen bounds an email address (RFC 5321's path limit).
const MaxEmailLen = 254

// UserInput is a user as a client sends it (POST /users). Pointers tell a
// missing field from an empty one.
type UserInput struct {
	Email    *string `json:"email"`
	Name     *string `json:"name"`
	UserType *string `json:"userType"`
}

// NewUser is a validated user, ready to store.
type NewUser struct {
	Email    string // trimmed and lower-cased
	Name     string // trimmed
	UserType string // UserTypeCustomer or UserTypeMerchant
	// TokenHash, when set, is the hash of the buyer token issued with a
	// customer's account (NewBuyerToken): stored with it, in the same
	// transaction. Ignored for a merchant.
	TokenHash *TokenHash
}

// Validate checks in and returns the user to store, or every field problem
// found (as an EINVALID *Error). An email is trimmed and lower-cased, so
// that one address cannot be registered twice in two spellings; a missing
// or null userType means a customer. Whether the email is taken is the
// store's business.
func (in UserInput) Validate() (NewUser, error) {
	var out NewUser
	var errs []FieldError
	add := func(field, code, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Code: code, Message: field + " " + fmt.Sprintf(format, args...)})
	}

	switch {
	case in.Email == nil:
		add("email", "required", "is required")
	case textProblem(*in.Email, false) != "":
		add("email", "invalid", "%s", textProblem(*in.Email, false))
	default:
		e := strings.ToLower(strings.TrimSpace(*in.Email))
		local, domain, ok := strings.Cut(e, "@")
		switch {
		case e == "":
			add("email", "blank", "must not be blank")
		case len(e) > MaxEmailLen:
			add("email", "too_long", "must be at most %d bytes", MaxEmailLen)
		case !ok || local == "" || domain == "" || strings.Contains(domain, "@") ||
			!strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") ||
			strings.ContainsFunc(e, unicode.IsSpace):
			add("email", "invalid", "must be an email address such as ada@example.com")
		default:
			out.Email = e
		}
	}

	switch {
	case in.Name == nil:
		add("name", "required", "is required")
	case textProblem(*in.Name, false) != "":
		add("name", "invalid", "%s", textProblem(*in.Name, false))
	case strings.TrimSpace(*in.Name) == "":
		add("name", "blank", "must not be blank")
	case utf8.RuneCountInString(*in.Name) > MaxNameLen:
		add("name", "too_long", "must be at most %d characters", MaxNameLen)
	default:
		out.Name = strings.TrimSpace(*in.Name)
	}

	switch {
	case in.UserType == nil:
		out.UserType = UserTypeCustomer
	case *in.UserType == UserTypeCustomer || *in.UserType == UserTypeMerchant:
		out.UserType = *in.UserType
	default:
		add("userType", "invalid", "must be %q or %q", UserTypeCustomer, UserTypeMerchant)
	}

	if len(errs) > 0 {
		return NewUser{}, Invalid(errs...)
	}
	return out, nil
}

// UserStore creates accounts.
type UserStore interface {
	// CreateUser stores a validated customer or merchant and returns it,
	// and for a customer u.TokenHash when set. An email belongs to one
	// account only, customers and merchants alike.
	// Errors: EINVALID, ECONFLICT (the email is taken), EUNAVAILABLE,
	// EINTERNAL.
	CreateUser(ctx context.Context, u NewUser) (User, error)
}
