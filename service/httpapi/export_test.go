package httpapi

import "github.com/gorilla/mux"

// Routes returns a plain router with every route of routes.go for d (with
// DefaultConfig's limits), for tests that walk the API's surface (the
// budgets' coverage check).
func Routes(d Deps) *mux.Router {
	d.Config = d.Config.withDefaults()
	r := mux.NewRouter()
	addRoutes(r, d)
	return r
}
