package httpapi

import (
	"net/http"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// handleCreateUser answers POST /users {email, name, userType?}: 201 with
// the user (a customer unless userType says merchant) and, for a customer,
// the buyer token issued with the account (shown this once: only its hash
// is stored), 400 on a bad field, 409 when the email is taken.
func handleCreateUser(tel *telemetry.Telemetry, users shop.UserStore, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nu, err := decodeValid(w, r, limit, shop.UserInput.Validate)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		var token string
		if nu.UserType == shop.UserTypeCustomer {
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
