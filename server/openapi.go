package server

import (
	_ "embed"
	"net/http"
)

// openAPIv1 describes the /v1 API (OpenAPI 3.1). The tests validate the
// server's requests and answers against it.
//
//go:embed openapi/v1.json
var openAPIv1 []byte

// OpenAPI returns the /v1 API's OpenAPI document.
func OpenAPI() []byte { return append([]byte(nil), openAPIv1...) }

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIv1)
}
