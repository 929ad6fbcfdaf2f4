package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/shoplab/shoplab/api"
)

// handleOpenAPI answers GET /openapi.yaml: the API's OpenAPI document
// (api/openapi.yaml, embedded in the binary), cacheable for an hour, with
// an ETag of its digest; If-None-Match with that ETag answers 304.
func handleOpenAPI() http.Handler {
	sum := sha256.Sum256(api.OpenAPI)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "public, max-age=3600")
		if noneMatch(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", api.MediaType)
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(api.OpenAPI)
	})
}

// noneMatch reports whether an If-None-Match header names etag (or "*").
func noneMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
