package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// Lists is what the API needs of the node's joiner (sandbox.Joiner) for
// list joins: it takes an enterprise's list shipment for a job and gets it
// to the job's runner.
type Lists interface {
	ReceiveList(ctx context.Context, job string, shipment []byte) error
}

// SetLists gives the server the node's joiner.
func (s *Server) SetLists(l Lists) { s.lists = l }

// ListShipment is the body of PUT /v1/jobs/{id}/list: the list's tags and
// columns in the shipment encoding (sandbox.ShipList), whose blake3 the
// requester committed with POST /v1/jobs/{id}/list.
type ListShipment struct {
	Shipment []byte `json:"shipment"`
}

func (s *Server) listRoutes() []Route {
	return []Route{
		{Method: "POST", Path: "/v1/jobs/{id}/list", Summary: "commit the shipment of a list join's tags to the job's runner: {\"to\", \"rows\", \"blake3\"} (or \"sha256\" instead of \"blake3\", as clients before BLAKE3 sent) (the job's requester)", Perm: policies.PermSubmitJob, handler: s.relayed(policies.KindJobList)},
		{Method: "PUT", Path: "/v1/jobs/{id}/list", Summary: "ship a list join's tags (never ids) to the job's runner, as committed (the job's requester)", Perm: policies.PermSubmitJob, handler: s.putList},
	}
}

// listEnv adds a submission's list to the join's environment: its schema
// (sandbox.ListSchema), and that it may be joined with a dataset that some
// active policy lets join lists. Bad lists are refused before the ledger.
func (s *Server) listEnv(d *policies.ListDoc, mode string, q *sandbox.Query, env *sandbox.JoinEnv) error {
	if mode != policies.ModeMasked {
		return &problemError{status: http.StatusUnprocessableEntity, code: "refused", detail: fmt.Sprintf("list %s: a list join runs in mode masked only (not %s)", clip(d.Name), clip(mode))}
	}
	if len(q.Joins) == 0 {
		return badRequest("bad-list", fmt.Sprintf("--list %s: the query joins nothing; join the list as a table (FROM dataset t JOIN %s a ON t.id_column = a.id_column)", clip(d.Name), clip(d.Name)))
	}
	l, err := policies.NewJobList(d, q.Plan())
	if err != nil {
		return badRequest("bad-list", err.Error())
	}
	if _, ok := env.Schemas[l.Name]; ok {
		return badRequest("bad-list", fmt.Sprintf("list %s bears the name of a registered dataset: name the list otherwise", l.Name))
	}
	env.Schemas[l.Name] = sandbox.ListSchema(*l)
	pols := s.state.Policies()
	lists := func(ds string) bool {
		for _, p := range pols {
			if p.Dataset == ds && !p.Revoked && p.Join != nil && p.Join.Lists {
				return true
			}
		}
		return false
	}
	for _, sd := range q.Plan().Join {
		if sd.Dataset != l.Name && env.Schemas[sd.Dataset] != nil && !lists(sd.Dataset) {
			return &problemError{status: http.StatusUnprocessableEntity, code: "refused", detail: fmt.Sprintf("no policy of dataset %s allows joining an enterprise's id list (join.lists)", sd.Dataset)}
		}
	}
	allows := env.Allows
	env.Allows = func(ds, other string) bool {
		switch {
		case ds == l.Name:
			return true
		case other == l.Name:
			return lists(ds)
		}
		return allows(ds, other)
	}
	return nil
}

func (s *Server) putList(c echo.Context) error {
	who := callerOf(c)
	j, ok := s.state.Job(c.Param("id"))
	if !ok {
		return notFound(fmt.Sprintf("no job %q", clip(c.Param("id"))))
	}
	if j.Requester != who.addr {
		return forbidden(fmt.Sprintf("job %s's list is shipped by its requester only", j.ID))
	}
	if j.List == nil {
		return &problemError{status: http.StatusConflict, code: "conflict", detail: fmt.Sprintf("job %s joins no list", j.ID)}
	}
	if s.lists == nil {
		return &problemError{status: http.StatusServiceUnavailable, code: "no-joins", detail: "this node runs no joins"}
	}
	var b ListShipment
	if err := decodeStrict(who.body, &b, "list must be {\"shipment\": \"<base64>\"}"); err != nil {
		return err
	}
	if err := s.lists.ReceiveList(c.Request().Context(), j.ID, b.Shipment); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
