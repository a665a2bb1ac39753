package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

func notFound(detail string) error {
	return &problemError{status: http.StatusNotFound, code: "not-found", detail: detail}
}

// AccountResponse is an account's public record.
type AccountResponse struct {
	Address   string   `json:"address"`
	PublicKey string   `json:"public_key,omitempty"`
	Name      string   `json:"name,omitempty"`
	Org       string   `json:"org,omitempty"`
	Roles     []string `json:"roles"`
	HEKey     string   `json:"he_key_sha256,omitempty"`
}

func (s *Server) getAccount(c echo.Context) error {
	a, err := policies.ParseAddress(c.Param("id"))
	if err != nil {
		return badRequest("bad-parameter", err.Error())
	}
	acc, ok := s.state.Account(a)
	if !ok {
		return notFound(fmt.Sprintf("no account %s", a))
	}
	r := AccountResponse{Address: a.String(), Name: acc.Name, Org: acc.Org, Roles: acc.Roles, HEKey: acc.HEKey}
	if acc.PublicKey != nil {
		r.PublicKey = base64.StdEncoding.EncodeToString(acc.PublicKey)
	}
	return c.JSON(http.StatusOK, r)
}

// DatasetResponse is a registration: schema, owner, digest; never values.
type DatasetResponse struct {
	Name   string          `json:"name"`
	Owner  string          `json:"owner"`
	Org    string          `json:"org,omitempty"`
	Schema policies.Schema `json:"schema"`
	SHA256 string          `json:"sha256"`
	Rows   int64           `json:"rows"`
	// Population is the data subjects' budget key: datasets that share it
	// share one privacy budget per organisation.
	Population string `json:"population,omitempty"`
}

func datasetResponse(d policies.Dataset) DatasetResponse {
	return DatasetResponse{Name: d.Name, Owner: d.Owner.String(), Org: d.Org, Schema: d.Schema, SHA256: d.SHA256, Rows: d.Rows, Population: d.Population}
}

func (s *Server) listDatasets(c echo.Context) error {
	out := []DatasetResponse{}
	for _, d := range s.state.Datasets() {
		out = append(out, datasetResponse(d))
	}
	return c.JSON(http.StatusOK, map[string]any{"datasets": out})
}

func (s *Server) getDataset(c echo.Context) error {
	d, ok := s.state.Dataset(c.Param("id"))
	if !ok {
		return notFound(fmt.Sprintf("no dataset %q", clip(c.Param("id"))))
	}
	return c.JSON(http.StatusOK, datasetResponse(d))
}

func (s *Server) listPolicies(c echo.Context) error {
	ps := s.state.Policies()
	if ps == nil {
		ps = []policies.Policy{}
	}
	return c.JSON(http.StatusOK, map[string]any{"policies": ps})
}

// mayRead reports whether the caller may see a job: its requester, an
// account that reads everything, or an approver of the dataset's agency.
func (s *Server) mayRead(who *caller, j policies.Job) bool {
	if j.Requester == who.addr || s.state.Can(who.addr, policies.PermReadAll) {
		return true
	}
	return s.state.Can(who.addr, policies.PermApproveJob) && s.state.OwnsOneOf(who.addr, j)
}

func (s *Server) listJobs(c echo.Context) error {
	who := callerOf(c)
	out := []JobResponse{}
	for _, j := range s.state.Jobs(func(j policies.Job) bool { return s.mayRead(who, j) }) {
		out = append(out, jobResponse(j))
	}
	return c.JSON(http.StatusOK, map[string]any{"jobs": out})
}

func (s *Server) visibleJob(c echo.Context) (policies.Job, error) {
	j, ok := s.state.Job(c.Param("id"))
	if !ok {
		return j, notFound(fmt.Sprintf("no job %q", clip(c.Param("id"))))
	}
	if !s.mayRead(callerOf(c), j) {
		return j, forbidden(fmt.Sprintf("job %s belongs to another account", j.ID))
	}
	return j, nil
}

// maxJobWait bounds GET /v1/jobs/{id}?wait=D (below the write timeout).
const maxJobWait = 50 * time.Second

// getJob serves a job's status; with ?wait=D (a duration such as 30s, at
// most 50s) it answers once the job is completed, failed or rejected, or D
// has passed: clients wait without polling.
func (s *Server) getJob(c echo.Context) error {
	j, err := s.visibleJob(c)
	if err != nil {
		return err
	}
	if w := c.QueryParam("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 || d > maxJobWait {
			return badRequest("bad-wait", fmt.Sprintf("wait=%q: a duration up to %s, such as 30s", clip(w), maxJobWait))
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), d)
		defer cancel()
		for !terminal(j.Status) {
			moved := s.state.Changed() // taken before the look below
			if j, _ = s.state.Job(j.ID); terminal(j.Status) {
				break
			}
			select {
			case <-ctx.Done():
				return c.JSON(http.StatusOK, jobResponse(j))
			case <-moved:
			}
		}
	}
	return c.JSON(http.StatusOK, jobResponse(j))
}

// terminal reports whether a job's status can no longer change.
func terminal(status string) bool {
	return status == policies.JobCompleted || status == policies.JobFailed || status == policies.JobRejected
}

func (s *Server) jobResult(c echo.Context) error {
	j, err := s.visibleJob(c)
	if err != nil {
		return err
	}
	if j.Status != policies.JobCompleted {
		detail := fmt.Sprintf("job %s is %s and has no result", j.ID, j.Status)
		if j.Reason != "" {
			detail += ": " + j.Reason
		}
		return &problemError{status: http.StatusConflict, code: "no-result", detail: detail}
	}
	var b []byte
	if s.data != nil {
		b, _ = s.data.Result(j.ID)
	}
	if b == nil {
		// The node that ran the job keeps the result; ask it.
		ctx, cancel := context.WithTimeout(c.Request().Context(), 30*time.Second)
		defer cancel()
		var err error
		if b, err = s.node.Fetch(ctx, j.Node, "result/"+j.ID); err != nil {
			s.log.Warn("fetching a result", "job", j.ID, "from", j.Node, "err", err)
			return &problemError{status: http.StatusServiceUnavailable, code: "result-unavailable", detail: fmt.Sprintf("the node that ran job %s (%s) cannot be reached", j.ID, j.Node)}
		}
	}
	// Deliver only the result whose hash the ledger holds.
	if _, err := sandbox.CheckResult(b, j.ResultHash); err != nil {
		s.log.Error("result does not match the committed hash", "job", j.ID)
		return fmt.Errorf("api: result of %s does not match its committed hash", j.ID)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

// access lists every job on a dataset: requester, time, purpose, status,
// result hash — the auditor's view of who used it.
func (s *Server) access(c echo.Context) error {
	ds := c.QueryParam("dataset")
	if ds == "" {
		return badRequest("missing-parameter", `query parameter "dataset" is required`)
	}
	out := []JobResponse{}
	for _, j := range s.state.Jobs(func(j policies.Job) bool { return slices.Contains(j.Plan.Datasets(j.Dataset), ds) }) {
		out = append(out, jobResponse(j))
	}
	if _, ok := s.state.Dataset(ds); !ok && len(out) == 0 {
		// Attempts on a dataset that was never registered are still shown;
		// a name nobody ever used is most likely a typo.
		return notFound(fmt.Sprintf("no such dataset %q (and no job ever named it)", clip(ds)))
	}
	return c.JSON(http.StatusOK, map[string]any{"dataset": ds, "access": out})
}

// BudgetResponse is one organisation's spending on one population of data
// subjects, with the largest budget a policy on it allows.
type BudgetResponse struct {
	policies.BudgetLine
	Budget float64 `json:"budget"`
}

// listBudgets shows the budgets the caller's organisation has spent on,
// and every organisation's budget on a population that holds a dataset of
// the caller's organisation (an agency sees how much of each requester's
// budget on its data subjects is left); every budget, to accounts that
// read everything.
func (s *Server) listBudgets(c echo.Context) error {
	who := callerOf(c)
	all := s.state.Can(who.addr, policies.PermReadAll)
	holder := s.state.HolderOf(who.addr)
	limit := s.state.Limits().MaxEpsilonBudget
	pols := s.state.Policies()
	out := []BudgetResponse{}
	for _, l := range s.state.Budgets() {
		if !all && l.Holder != holder && !s.holdsDataOf(who.addr, l) {
			continue
		}
		r := BudgetResponse{BudgetLine: l}
		for _, p := range pols {
			if !p.Revoked && slices.Contains(l.Datasets, p.Dataset) {
				r.Budget = max(r.Budget, min(p.DP.EpsilonBudget, limit))
			}
		}
		out = append(out, r)
	}
	return c.JSON(http.StatusOK, map[string]any{"holder": holder, "budgets": out})
}

// holdsDataOf reports whether one of a budget line's datasets is the
// account's or its organisation's.
func (s *Server) holdsDataOf(a policies.Address, l policies.BudgetLine) bool {
	orgOf := func(a policies.Address) string {
		acc, _ := s.state.Account(a)
		return acc.Org
	}
	org := orgOf(a)
	for _, name := range l.Datasets {
		if d, ok := s.state.Dataset(name); ok && (d.Owner == a || org != "" && orgOf(d.Owner) == org) {
			return true
		}
	}
	return false
}
