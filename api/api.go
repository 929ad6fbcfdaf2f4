// Package api holds shoplab's OpenAPI document, api/openapi.yaml, the one
// description of the HTTP API, embedded so that the service serves the
// document of its own version (GET /openapi.yaml) and tests validate
// against the file in the tree.
package api

import _ "embed"

// OpenAPI is api/openapi.yaml, byte for byte.
//
//go:embed openapi.yaml
var OpenAPI []byte

// MediaType is the content type GET /openapi.yaml answers with.
const MediaType = "application/yaml"
