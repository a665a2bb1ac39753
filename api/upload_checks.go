package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/datasandbox/datasandbox/policies"
)

// checkUpload refuses, before a byte of the data is read, an upload that
// could not be registered under the name it is meant for (query parameter
// name): a name the ledger would refuse, or one already taken. The caller's
// permission and the schema are checked before it. Without a name (older
// clients) the name is checked at registration only.
//
// A client that sends "Expect: 100-continue" (sandboxctl does) then sends
// no data at all when refused.
func (s *Server) checkUpload(c echo.Context) error {
	name := c.QueryParam("name")
	if name == "" {
		return nil
	}
	if err := policies.CheckDatasetName(name); err != nil {
		return badRequest("bad-name", err.Error())
	}
	if _, taken := s.state.Dataset(name); taken {
		return &problemError{status: http.StatusConflict, code: "conflict", detail: fmt.Sprintf("dataset %q is already registered", name)}
	}
	return nil
}
