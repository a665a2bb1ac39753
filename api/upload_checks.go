package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// checkUpload refuses, before a byte of the data is read, an upload that
// could not be registered under the name it is meant for (query parameter
// dataset): a name the ledger would refuse, or one already taken. The caller's
// permission and the schema are checked before it. Without a name (older
// clients) the name is checked at registration only.
//
// A client that sends "Expect: 100-continue" (sandboxctl does) then sends
// no data at all when refused.
func (s *Server) checkUpload(c echo.Context) error {
	name := c.QueryParam("dataset")
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

// discardRefused removes a staged upload whose registration the ledger
// refused for good (a bad name or schema, a name taken, no permission):
// it will never be registered, and is not left behind. A refusal that may
// pass on a retry (no quorum, a timeout) keeps it; the store sweeps what
// is left when the node starts.
func discardRefused(data interface{ Discard(sha string) }, sha string, err error) {
	for _, final := range []error{chain.ErrRejected, policies.ErrInvalid, policies.ErrConflict, policies.ErrForbidden, policies.ErrUnknownAccount} {
		if errors.Is(err, final) {
			data.Discard(sha)
			return
		}
	}
}
