package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Code is a stable machine-readable name for the problem.
	Code string `json:"code"`
	// Position is, for a refused query, the 1-based character position in
	// the query text of what is refused (0: the query as a whole).
	Position int `json:"position,omitempty"`
}

// problemError is an error a handler raises with its status and code.
type problemError struct {
	status     int
	code       string
	detail     string
	retryAfter int // seconds, for 429 and 503 (0: the default)
}

func (e *problemError) Error() string { return e.detail }

func badRequest(code, detail string) error {
	return &problemError{status: http.StatusBadRequest, code: code, detail: detail}
}

// statusOf maps an error to its HTTP status, problem code and whether its
// message may be shown to the client. Only errors whose messages are
// written for clients (the components' sentinel errors) are shown.
func statusOf(err error) (int, string, bool) {
	var pe *problemError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &pe):
		return pe.status, pe.code, true
	case errors.Is(err, chain.ErrMalformedEntry):
		return http.StatusBadRequest, "malformed-entry", true
	case errors.Is(err, chain.ErrBadSignature):
		return http.StatusBadRequest, "bad-entry-signature", true
	case errors.Is(err, chain.ErrUnknownAlgorithm):
		return http.StatusBadRequest, "unknown-algorithm", true
	case errors.Is(err, chain.ErrBadProofRequest):
		return http.StatusBadRequest, "bad-proof-request", true
	case errors.Is(err, chain.ErrNoLeader):
		return http.StatusServiceUnavailable, "no-leader", true
	case errors.Is(err, chain.ErrStopped):
		return http.StatusServiceUnavailable, "node-stopped", true
	case errors.Is(err, policies.ErrReplay):
		return http.StatusConflict, "replayed", true
	case errors.Is(err, policies.ErrUnknownAccount):
		return http.StatusForbidden, "unknown-account", true
	case errors.Is(err, policies.ErrInvalid):
		return http.StatusBadRequest, "invalid", true
	case errors.Is(err, policies.ErrForbidden):
		return http.StatusForbidden, "forbidden", true
	case errors.Is(err, policies.ErrNotFound):
		return http.StatusNotFound, "not-found", true
	case errors.Is(err, policies.ErrConflict):
		return http.StatusConflict, "conflict", true
	case errors.Is(err, chain.ErrRejected):
		return http.StatusUnprocessableEntity, "rejected", true
	case errors.Is(err, sandbox.ErrSyntax):
		return http.StatusUnprocessableEntity, "bad-query", true
	case errors.Is(err, sandbox.ErrBadData):
		return http.StatusBadRequest, "bad-data", true
	case errors.Is(err, sandbox.ErrRefused), errors.Is(err, sandbox.ErrLimit):
		return http.StatusUnprocessableEntity, "refused", true
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout", true
	case errors.As(err, &he):
		return he.Code, "http-" + strconv.Itoa(he.Code), true
	}
	return http.StatusInternalServerError, "internal", false
}

// errorHandler writes every error as problem+json. Unavailability carries
// Retry-After so clients back off rather than hammer a node mid-election.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, code, show := statusOf(err)
		p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Code: code}
		if show {
			var he *echo.HTTPError
			if errors.As(err, &he) {
				p.Detail = http.StatusText(he.Code)
				if m, ok := he.Message.(string); ok {
					p.Detail = m
				}
			} else {
				p.Detail = refusalDetail(err)
			}
		} else {
			p.Detail = "internal error; the node's log has the details"
			log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		}
		var se *sandbox.SyntaxError
		var re *sandbox.RefusalError
		switch {
		case errors.As(err, &se):
			p.Position = se.Col
		case errors.As(err, &re):
			p.Position = re.Col
		}
		var pe *problemError
		switch {
		case errors.As(err, &pe) && pe.retryAfter > 0:
			c.Response().Header().Set("Retry-After", strconv.Itoa(pe.retryAfter))
		case status == http.StatusServiceUnavailable, status == http.StatusTooManyRequests:
			c.Response().Header().Set("Retry-After", "1")
		}
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		c.Response().WriteHeader(status)
		_ = writeJSON(c.Response(), p)
	}
}

// refusalDetail is an error's message for the client; a domain refusal's
// without its sentinel's text, which the problem's code already says
// ("policies: forbidden: dataset ... belongs to another agency" -> "dataset
// ... belongs to another agency").
func refusalDetail(err error) string {
	msg := err.Error()
	for _, s := range []error{policies.ErrForbidden, policies.ErrNotFound, policies.ErrConflict} {
		if errors.Is(err, s) {
			if rest, ok := strings.CutPrefix(msg, s.Error()+": "); ok {
				return rest
			}
		}
	}
	return msg
}
