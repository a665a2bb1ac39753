package policies

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Documents of the job kinds.
type (
	JobDoc struct {
		Query   string `json:"query"`
		Mode    string `json:"mode"`
		Purpose string `json:"purpose"`
		// List, when the query joins the enterprise's own ids (list.go).
		List *ListDoc `json:"list,omitempty"`
	}
	// JobExtra is what the relaying node adds to a job.submit.
	JobExtra struct {
		Dataset string `json:"dataset"`
		Plan    Plan   `json:"plan"`
	}
	JobDecisionDoc struct {
		Job    string `json:"job"`
		Reason string `json:"reason,omitempty"`
	}
	JobResultDoc struct {
		Job        string  `json:"job"`
		Node       string  `json:"node,omitempty"` // job.start: the node's name
		ResultHash string  `json:"result_sha256,omitempty"`
		Epsilon    float64 `json:"epsilon_spent,omitempty"`
		Suppressed int     `json:"suppressed,omitempty"`
		Engine     string  `json:"engine,omitempty"`
		Reason     string  `json:"reason,omitempty"`
	}
)

func (s *state) submit(e Entry, index uint64, now time.Time) error {
	var d JobDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	var x JobExtra
	if e.Extra == nil {
		return fmt.Errorf("%w: job.submit needs the relaying node's plan", ErrInvalid)
	}
	if err := strictUnmarshal(e.Extra, &x); err != nil {
		return fmt.Errorf("%w: job plan: %v", ErrInvalid, err)
	}
	if d.Mode != ModeMasked && d.Mode != ModeHE {
		return fmt.Errorf("%w: mode must be masked or he", ErrInvalid)
	}
	j := &Job{ID: "job-" + strconv.FormatUint(index, 10), Requester: e.Actor, Dataset: x.Dataset, Mode: d.Mode,
		Purpose: d.Purpose, Query: d.Query, Plan: x.Plan, Submitted: now, Updated: now}
	if d.List != nil {
		l, err := NewJobList(d.List, x.Plan)
		if err != nil {
			return err
		}
		j.List = l
	}
	put(s, s.Jobs, j.ID, j)
	if j.Mode == ModeHE {
		// Refused up front rather than failing once authorised (and paid for).
		if s.HE == nil {
			j.Status, j.Reason = JobRejected, "he mode needs the consortium's HE key ceremony, and there is none on the ledger yet"
			return nil
		}
		if _, ok := s.HEKeys[j.Requester.String()]; !ok {
			j.Status, j.Reason = JobRejected, "he results are encrypted to the requester's CKKS key: register one first (account.hekey; sandboxctl does it)"
			return nil
		}
	}
	if j.IsJoin() {
		if x.Dataset != j.Plan.Join[0].Dataset {
			return fmt.Errorf("%w: a join job's dataset is its plan's first, %q", ErrInvalid, clip(j.Plan.Join[0].Dataset))
		}
		return s.submitJoin(j, now)
	}
	p, reason := s.evaluate(j, now)
	if p == nil {
		j.Status, j.Reason = JobRejected, reason
		return nil
	}
	j.Policy, j.Epsilon = p.ID, p.DP.EpsilonPerQuery
	if p.Approval.Mode == "manual" {
		j.Status, j.Needed = JobPending, p.Approval.Approvers
		return nil
	}
	s.authorise(j, p)
	return nil
}

// authorise debits the budget (budget.go) or rejects the job when it is
// exhausted or the policy's epsilon is beyond the consortium's limit.
func (s *state) authorise(j *Job, p *Policy) {
	if reason := s.debit(j, p); reason != "" {
		j.Status, j.Reason = JobRejected, reason
		return
	}
	j.Status, j.Reason = JobAuthorised, ""
}

func fnum(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

// evaluate finds the first active policy on the job's dataset that allows
// it; otherwise it returns why each one refuses.
func (s *state) evaluate(j *Job, now time.Time) (*Policy, string) {
	ds, ok := s.Datasets[j.Dataset]
	if !ok {
		return nil, fmt.Sprintf("unknown dataset %q", clip(j.Dataset))
	}
	if r := planRule(ds, j.Plan); r != "" {
		return nil, r
	}
	var ids []string
	for id, p := range s.Policies {
		if p.Dataset == j.Dataset && !p.Revoked {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Sprintf("no policy allows any use of dataset %q", j.Dataset)
	}
	sort.Slice(ids, func(a, b int) bool { return policySeq(ids[a]) < policySeq(ids[b]) })
	var reasons []string
	for _, id := range ids {
		p := s.Policies[id]
		if r := s.check(p, ds, j, now); r != "" {
			reasons = append(reasons, r)
			continue
		}
		return p, ""
	}
	return nil, strings.Join(reasons, "; ")
}

// check returns the first rule of p that the job breaks, or "".
func (s *state) check(p *Policy, ds *Dataset, j *Job, now time.Time) string {
	if !p.Expires.After(now) {
		return fmt.Sprintf("policy %s expired at %s", p.ID, p.Expires.UTC().Format(time.RFC3339))
	}
	if !s.isGrantee(p, j.Requester) {
		return fmt.Sprintf("policy %s: requester %s is not a grantee", p.ID, j.Requester)
	}
	if !strings.EqualFold(strings.TrimSpace(j.Purpose), strings.TrimSpace(p.Purpose)) {
		return fmt.Sprintf("policy %s: purpose %q does not match %q", p.ID, clip(j.Purpose), p.Purpose)
	}
	if !contains(p.Modes, j.Mode) {
		return fmt.Sprintf("policy %s: mode %s is not allowed (allowed: %s)", p.ID, j.Mode, strings.Join(p.Modes, ", "))
	}
	if len(j.Plan.Aggregates) == 0 {
		return fmt.Sprintf("policy %s: the query computes no aggregate", p.ID)
	}
	for _, a := range j.Plan.Aggregates {
		fn := lower(a.Func)
		if fn == "count" && (len(a.Columns) == 0 || a.Columns[0] == "*") {
			continue // COUNT(*) is protected by the threshold and DP
		}
		for _, col := range a.Columns {
			if _, ok := ds.Schema.Column(col); !ok {
				return fmt.Sprintf("policy %s: unknown column %q", p.ID, clip(col))
			}
			if !contains(lowerAll(p.Aggregates[col]), fn) {
				return fmt.Sprintf("policy %s: aggregate %s(%s) is not allowed", p.ID, fn, col)
			}
		}
	}
	for _, col := range j.Plan.GroupBy {
		if !contains(p.GroupBy, col) {
			return fmt.Sprintf("policy %s: column %q may not be grouped by", p.ID, clip(col))
		}
	}
	for _, col := range j.Plan.Filter {
		if !contains(p.Filter, col) {
			return fmt.Sprintf("policy %s: column %q may not be filtered on", p.ID, clip(col))
		}
	}
	for _, col := range j.Plan.Case {
		if !contains(p.Filter, col) && !contains(p.GroupBy, col) {
			return fmt.Sprintf("policy %s: column %q may not be filtered on or grouped by (a CASE condition reads it)", p.ID, clip(col))
		}
	}
	if math.IsNaN(p.DP.EpsilonPerQuery) {
		return fmt.Sprintf("policy %s: invalid epsilon", p.ID)
	}
	return ""
}

func lowerAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = lower(s)
	}
	return out
}

func (s *state) isGrantee(p *Policy, a Address) bool {
	acc := s.Accounts[a.String()]
	for _, g := range p.Grantees {
		kind, v, err := parseGrantee(g)
		if err != nil {
			continue
		}
		switch kind {
		case "account":
			if v == a.String() {
				return true
			}
		case "role":
			if acc != nil && contains(acc.Roles, v) {
				return true
			}
		case "org":
			if acc != nil && acc.Org == v {
				return true
			}
		}
	}
	return false
}

// editJob opens the job named id for editing, or says it does not exist.
func (s *state) editJob(id string) (*Job, error) {
	cur, ok := s.Jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: job %q", ErrNotFound, clip(id))
	}
	return edit(s, s.Jobs, cur.ID, newJob), nil
}

func (s *state) decide(e Entry, now time.Time) error {
	var d JobDecisionDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	j, err := s.editJob(d.Job)
	if err != nil {
		return err
	}
	if j.IsJoin() {
		return s.decideJoin(e, j, d, now)
	}
	if !sameOwner(s.Datasets[j.Dataset], s.Accounts[e.Actor.String()]) {
		return fmt.Errorf("%w: job %s uses dataset %q of another agency", ErrForbidden, j.ID, j.Dataset)
	}
	if j.Status != JobPending {
		return fmt.Errorf("%w: job %s is %s, not pending", ErrConflict, j.ID, j.Status)
	}
	if e.Kind == KindJobReject {
		if strings.TrimSpace(d.Reason) == "" {
			return fmt.Errorf("%w: a rejection needs a reason", ErrInvalid)
		}
		j.Updated = now
		j.Status, j.Reason = JobRejected, "rejected by "+e.Actor.String()+": "+clipN(d.Reason, 500)
		return nil
	}
	for _, a := range j.Approvals {
		if a == e.Actor {
			return fmt.Errorf("%w: %s already approved job %s", ErrConflict, e.Actor, j.ID)
		}
	}
	j.Updated = now
	j.Approvals = append(j.Approvals, e.Actor)
	if len(j.Approvals) < j.Needed {
		return nil
	}
	p := s.Policies[j.Policy]
	if r := s.check(p, s.Datasets[j.Dataset], j, now); r != "" || p.Revoked {
		if p.Revoked {
			r = "policy " + p.ID + " was revoked"
		}
		j.Status, j.Reason = JobRejected, r
		return nil
	}
	s.authorise(j, p)
	return nil
}

func (s *state) progress(e Entry, now time.Time) error {
	var d JobResultDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	j, err := s.editJob(d.Job)
	if err != nil {
		return err
	}
	if j.IsJoin() {
		return s.progressJoin(e, j, d, now)
	}
	from := map[string][]string{
		KindJobStart:    {JobAuthorised},
		KindJobComplete: {JobRunning, JobAuthorised},
		KindJobFail:     {JobRunning, JobAuthorised},
	}[e.Kind]
	if !contains(from, j.Status) {
		return fmt.Errorf("%w: job %s is %s", ErrConflict, j.ID, j.Status)
	}
	// Only the node entitled to the job moves it: the node holding its
	// dataset starts it (or fails it before it starts), and only the node
	// that started it completes or fails it.
	switch {
	case j.Status == JobRunning && j.Runner != e.Author:
		return fmt.Errorf("%w: job %s is run by %s, not %s", ErrForbidden, j.ID, j.Runner, e.Author)
	case j.Status == JobAuthorised:
		if ds := s.Datasets[j.Dataset]; ds == nil || ds.Node != e.Author {
			return fmt.Errorf("%w: job %s is started only by the node that holds dataset %q, not %s", ErrForbidden, j.ID, j.Dataset, e.Author)
		}
	}
	if e.Kind == KindJobComplete && !IsSHA256Hex(d.ResultHash) {
		return fmt.Errorf("%w: job.complete needs result_sha256", ErrInvalid)
	}
	if e.Kind == KindJobComplete && j.Mode == ModeHE {
		if err := s.heReleased(j); err != nil {
			return err
		}
	}
	j.Updated = now
	switch e.Kind {
	case KindJobStart:
		j.Status, j.Node, j.Runner = JobRunning, clip(d.Node), e.Author
	case KindJobComplete:
		j.Status, j.ResultHash, j.Suppressed, j.Engine = JobCompleted, d.ResultHash, d.Suppressed, d.Engine
	case KindJobFail:
		j.Status, j.Reason = JobFailed, clipN(d.Reason, 500)
		// A failed job released nothing (results are delivered only once
		// completed) unless nodes issued decryption shares for it: then its
		// epsilon stays spent, to be safe.
		if len(j.Shares) == 0 && s.refund(j) {
			j.Refunded = true
		}
	}
	return nil
}
