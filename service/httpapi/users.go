package httpapi

import (
	"net/http"

	"github.com/shoplab/shoplab/service/shop"
	"github.com/shoplab/shoplab/service/telemetry"
)

// handleCreateUser answers POST /users {email, name, userType?}: 201 with
// the user (a customer unless userType says merchant), 400 on a bad field,
// 409 when the email is taken.
func handleCreateUser(tel *telemetry.Telemetry, users shop.UserStore, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nu, err := decodeValid(w, r, limit, shop.UserInput.Validate)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		u, err := users.CreateUser(r.Context(), nu)
		if err != nil {
			writeError(w, r, tel, err)
			return
		}
		writeJSON(w, http.StatusCreated, u)
	})
}
