// Package llmworker holds what belongs to the repository as a whole: the
// OpenAPI description of the SSE bridge's HTTP API, kept once, at the root.
package llmworker

import _ "embed"

// OpenAPI is openapi.yaml: the bridge serves it at GET /openapi.yaml and its
// tests check real responses against it.
//
//go:embed openapi.yaml
var OpenAPI []byte
