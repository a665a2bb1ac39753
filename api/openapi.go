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
		paths[r.Path][strings.ToLower(r.Method)] = map[string]any{
			"summary": r.Summary,
			"responses": map[string]any{
				"default": map[string]any{"description": "JSON, or application/problem+json (RFC 9457) on error"},
			},
		}
	}
	return c.JSON(http.StatusOK, map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "datasandbox node API", "version": "1"},
		"paths":   paths,
	})
}
