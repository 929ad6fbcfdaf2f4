package httpapi

import (
	"net/http"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// handleCreateUser answers POST /users {email, name, userType?}: 201 with
// the user (a customer unless userType says merchant) and, for a customer
// when issueTokens (buyer authentication on), the buyer token issued with
// the account (shown this once: only its hash is stored), 400 on a bad
// field, 409 when the email is taken. Without buyer authentication no
// token is issued (nor needed): the schema may then be older than
// buyer_tokens, as during the users split's steps, and `shopd token issue`
// gives existing accounts theirs when it is turned on.
func handleCreateUser(tel *telemetry.Telemetry, users shop.UserStore, limit int64, issueTokens bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nu, err := decodeValid(w, r, limit, shop.UserInput.Validate)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		var token string
		if issueTokens && nu.UserType == shop.UserTypeCustomer {
			var h shop.TokenHash
			token, h = shop.NewBuyerToken()
			nu.TokenHash = &h
		}
		u, err := users.CreateUser(r.Context(), nu)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusCreated, createdUser{u, token})
	})
}

// createdUser is POST /users's answer: the user and, for a customer, the
// buyer token issued with the account.
type createdUser struct {
	shop.User
	Token string `json:"token,omitempty"`
}
