package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// openapi serves an OpenAPI 3 document generated from the route table, so
// it can never list an endpoint the server lacks or miss one it has.
func (s *Server) openapi(c echo.Context) error {
	paths := map[string]map[string]any{}
	for _, r := range s.Routes() {
		if paths[r.Path] == nil {
			paths[r.Path] = map[string]any{}
		}
		op := map[string]any{
			"summary": r.Summary,
			"responses": map[string]any{
				"default": map[string]any{"description": "JSON, or application/problem+json (RFC 9457) on error"},
			},
		}
		if !r.Public {
			op["security"] = []map[string][]string{{"httpMessageSignature": {}}}
			desc := "needs a signature by a registered account"
			if r.Perm != "" {
				desc += " holding permission " + r.Perm
			}
			op["description"] = desc
		}
		if strings.Contains(r.Path, "{id}") {
			op["parameters"] = []map[string]any{{"name": "id", "in": "path", "required": true, "schema": map[string]string{"type": "string"}}}
		}
		paths[r.Path][strings.ToLower(r.Method)] = op
	}
	return c.JSON(http.StatusOK, map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "datasandbox node API", "version": "1"},
		"paths":   paths,
		"components": map[string]any{"securitySchemes": map[string]any{"httpMessageSignature": map[string]any{
			"type": "apiKey", "in": "header", "name": "Signature",
			"description": "RFC 9421 HTTP Message Signature: ed25519 (or ML-DSA-65 for accounts registered with an ml-dsa-65 key; alg=\"ml-dsa-65\" optional), keyid = account address, covering \"@method\" \"@target-uri\" and, with a body, \"content-digest\" (RFC 9530 sha-256), with created within 5 minutes; Signature-Input carries the parameters",
		}}},
	})
}
