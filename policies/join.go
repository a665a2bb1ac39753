package policies

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Joins across agencies (DESIGN.md, "Joining across agencies"): the rules
// the state machine holds for a job whose plan joins datasets. Every
// involved dataset's policy must allow the job and the join; a manual
// policy waits for its own agency's approvals; every involved budget is
// debited (debitJoin); the job runs on an executor, a node that holds none
// of the datasets and is operated by none of their organisations.

// MinJoinNodes is the fewest nodes a consortium needs to run a join: two
// owners and an executor that is neither.
const MinJoinNodes = 3

// MaxJoinDatasets bounds the datasets of one join.
const MaxJoinDatasets = 3

// JoinLease is how long, in block time, a join job's runner holds it
// without renewing (a job.start of its own), unless the genesis sets
// join_lease_seconds (join_lease.go): past it, another eligible executor
// may claim the job, and the first runner can no longer complete or fail
// it, so nothing is released twice.
const JoinLease = 5 * time.Minute

// IsJoin reports whether the job joins datasets.
func (j *Job) IsJoin() bool { return len(j.Plan.Join) > 0 }

// nodes counts the accounts that are nodes.
func (s *state) nodes() int {
	n := 0
	for _, a := range s.Accounts {
		if a.PublicKey != nil && s.can(a.Address, PermNode) {
			n++
		}
	}
	return n
}

// submitJoin authorises, or holds for approval, or rejects a join job.
// Refusals are recorded on the job (an auditor sees attempts) with the
// rule that refused it.
func (s *state) submitJoin(j *Job, now time.Time) error {
	sides := j.Plan.Join
	if len(sides) < 2 || len(sides) > MaxJoinDatasets {
		return fmt.Errorf("%w: a join plan names 2 to %d datasets, not %d", ErrInvalid, MaxJoinDatasets, len(sides))
	}
	if n := s.nodes(); n < MinJoinNodes {
		j.Status, j.Reason = JobRejected, fmt.Sprintf("a join runs on a node that holds none of its datasets: it needs at least %d nodes in the consortium, there are %d", MinJoinNodes, n)
		return nil
	}
	if j.List != nil {
		if r := s.listSideRule(j); r != "" {
			j.Status, j.Reason = JobRejected, r
			return nil
		}
	}
	seen := map[string]bool{}
	for _, sd := range sides {
		if seen[sd.Dataset] {
			j.Status, j.Reason = JobRejected, fmt.Sprintf("dataset %q is joined with itself (self-joins are never run)", clip(sd.Dataset))
			return nil
		}
		seen[sd.Dataset] = true
	}
	var parts []JobPart
	for _, sd := range sides {
		if j.IsList(sd.Dataset) {
			continue // the enterprise's own: no policy, no budget
		}
		ds, ok := s.Datasets[sd.Dataset]
		if !ok {
			j.Status, j.Reason = JobRejected, fmt.Sprintf("unknown dataset %q", clip(sd.Dataset))
			return nil
		}
		if c, ok := ds.Schema.Column(sd.Key); !ok || c.Class != Identifier || c.Pseudonym != PseudonymConsortium {
			j.Status, j.Reason = JobRejected, fmt.Sprintf("dataset %q is joined on %q, which is not an identifier column with consortium pseudonyms", ds.Name, clip(sd.Key))
			return nil
		}
		p, reason := s.evaluateJoin(j, ds, now)
		if p == nil {
			j.Status, j.Reason = JobRejected, reason
			return nil
		}
		pt := JobPart{Dataset: ds.Name, Policy: p.ID, Epsilon: p.DP.EpsilonPerQuery, MaxRows: p.Join.MaxRowsPerPerson}
		if p.Approval.Mode == "manual" {
			pt.Needed = p.Approval.Approvers
		}
		parts = append(parts, pt)
	}
	j.Parts = parts
	j.Policy, j.Epsilon = parts[0].Policy, parts[0].Epsilon
	for _, pt := range parts {
		j.Needed += pt.Needed
	}
	if j.Needed > 0 {
		j.Status = JobPending
		return nil
	}
	s.debitJoin(j)
	return nil
}

// evaluateJoin finds the first active policy of ds that allows the join
// job over ds's part of the plan and the join with every other dataset.
func (s *state) evaluateJoin(j *Job, ds *Dataset, now time.Time) (*Policy, string) {
	var ids []string
	for id, p := range s.Policies {
		if p.Dataset == ds.Name && !p.Revoked {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Sprintf("no policy allows any use of dataset %q", ds.Name)
	}
	sort.Slice(ids, func(a, b int) bool { return policySeq(ids[a]) < policySeq(ids[b]) })
	var reasons []string
	for _, id := range ids {
		p := s.Policies[id]
		if r := s.checkJoin(p, ds, j, now); r != "" {
			reasons = append(reasons, r)
			continue
		}
		return p, ""
	}
	return nil, strings.Join(reasons, "; ")
}

// checkJoin returns the first rule of p that the join job breaks, or "".
func (s *state) checkJoin(p *Policy, ds *Dataset, j *Job, now time.Time) string {
	if p.Join == nil {
		return fmt.Sprintf("policy %s does not allow joining dataset %q (no join in the policy)", p.ID, ds.Name)
	}
	for _, sd := range j.Plan.Join {
		if sd.Dataset == ds.Name {
			continue
		}
		if j.IsList(sd.Dataset) {
			if r := listRule(p, ds, j.List); r != "" {
				return r
			}
			continue
		}
		if !p.Join.Allows(sd.Dataset) {
			return fmt.Sprintf("policy %s does not allow joining dataset %q with %q (join.datasets: %s)", p.ID, ds.Name, clip(sd.Dataset), strings.Join(p.Join.Datasets, ", "))
		}
		if o := s.Datasets[sd.Dataset]; o != nil && JoinKey(&o.Schema) == "" {
			return fmt.Sprintf("dataset %q has no consortium pseudonyms to join on", sd.Dataset)
		}
	}
	side := *j
	side.Plan = j.Plan.Side(ds.Name)
	if len(side.Plan.Aggregates) == 0 {
		// COUNT(*) over the join is every dataset's aggregate; an
		// aggregate over the other dataset's columns only still counts
		// this dataset's people in its groups.
		side.Plan.Aggregates = []Aggregate{{Func: "count", Columns: []string{"*"}}}
	}
	return s.check(p, ds, &side, now)
}

// debitJoin is the one place a join's budgets are spent (budget.go's
// model): the release is noised at the smallest epsilon_per_query of the
// involved policies, so that is what it costs every population it reads
// (each once, also when two datasets share one); each policy's
// epsilon_budget (within the consortium's limits) caps its population's
// spending. It rejects the job, debiting nothing, when any cap would be
// passed.
func (s *state) debitJoin(j *Job) {
	lim := s.limits()
	eps := j.Parts[0].Epsilon
	for _, pt := range j.Parts {
		eps = min(eps, pt.Epsilon)
	}
	holder := s.holderOf(j.Requester)
	seen := map[string]bool{}
	var pops []string
	for _, pt := range j.Parts {
		p := s.Policies[pt.Policy]
		if p.DP.EpsilonPerQuery > lim.MaxEpsilonPerQuery+1e-12 {
			j.Status, j.Reason = JobRejected, fmt.Sprintf("policy %s: epsilon_per_query %s exceeds the consortium's limit of %s per query", p.ID, fnum(p.DP.EpsilonPerQuery), fnum(lim.MaxEpsilonPerQuery))
			return
		}
		pop := s.populationOf(pt.Dataset)
		budget := min(p.DP.EpsilonBudget, lim.MaxEpsilonBudget)
		if spent := s.Budgets[pop][holder]; spent+eps > budget+1e-12 {
			j.Status = JobRejected
			j.Reason = fmt.Sprintf("privacy budget exhausted for dataset %q (population %s: %s; holder %s): spent %s of %s, this query needs %s",
				pt.Dataset, pop, strings.Join(s.populationDatasets(pop), ", "), holder, fnum(spent), fnum(budget), fnum(eps))
			return
		}
		if !seen[pop] {
			seen[pop] = true
			pops = append(pops, pop)
		}
	}
	sort.Strings(pops)
	for _, pop := range pops {
		s.spend(pop, holder, eps)
	}
	parts := append([]JobPart(nil), j.Parts...)
	for i := range parts {
		parts[i].Epsilon = eps
	}
	j.Parts, j.Epsilon = parts, eps
	j.Charge = &Charge{Holder: holder, Populations: pops, Epsilon: eps}
	j.Status, j.Reason = JobAuthorised, ""
}

// refundJoin credits back what the join's authorisation debited.
func (s *state) refundJoin(j *Job) {
	if s.refund(j) {
		j.Refunded = true
	}
}

// decideJoin records an approval or rejection of a pending join job by an
// account of one involved dataset's agency: each manual policy needs its
// own agency's approvals, all of them.
func (s *state) decideJoin(e Entry, j *Job, d JobDecisionDoc, now time.Time) error {
	actor := s.Accounts[e.Actor.String()]
	k := -1
	for i, pt := range j.Parts {
		if pt.Needed > 0 && sameOwner(s.Datasets[pt.Dataset], actor) {
			k = i
			break
		}
	}
	if k < 0 {
		return fmt.Errorf("%w: job %s joins no dataset of %s's agency that needs its approval", ErrForbidden, j.ID, e.Actor)
	}
	if j.Status != JobPending {
		return fmt.Errorf("%w: job %s is %s, not pending", ErrConflict, j.ID, j.Status)
	}
	j.Updated = now
	if e.Kind == KindJobReject {
		if strings.TrimSpace(d.Reason) == "" {
			return fmt.Errorf("%w: a rejection needs a reason", ErrInvalid)
		}
		j.Status, j.Reason = JobRejected, "rejected by "+e.Actor.String()+" for dataset "+j.Parts[k].Dataset+": "+clipN(d.Reason, 500)
		return nil
	}
	parts := append([]JobPart(nil), j.Parts...)
	pt := &parts[k]
	for _, a := range pt.Approvals {
		if a == e.Actor {
			return fmt.Errorf("%w: %s already approved job %s", ErrConflict, e.Actor, j.ID)
		}
	}
	if len(pt.Approvals) >= pt.Needed {
		return fmt.Errorf("%w: dataset %s of job %s has all its approvals", ErrConflict, pt.Dataset, j.ID)
	}
	pt.Approvals = append(append([]Address(nil), pt.Approvals...), e.Actor)
	j.Parts = parts
	j.Approvals = append(j.Approvals, e.Actor)
	for _, pt := range j.Parts {
		if len(pt.Approvals) < pt.Needed {
			return nil
		}
	}
	// Every agency approved: the policies are judged again as they are now.
	for _, pt := range j.Parts {
		p, ds := s.Policies[pt.Policy], s.Datasets[pt.Dataset]
		if p.Revoked {
			j.Status, j.Reason = JobRejected, "policy "+p.ID+" was revoked"
			return nil
		}
		if ds == nil {
			j.Status, j.Reason = JobRejected, fmt.Sprintf("dataset %q is gone", pt.Dataset)
			return nil
		}
		if r := s.checkJoin(p, ds, j, now); r != "" {
			j.Status, j.Reason = JobRejected, r
			return nil
		}
	}
	s.debitJoin(j)
	return nil
}

// executorFor checks that node may run join job j: a node's account that
// holds none of its datasets and is not operated by their organisations.
func (s *state) executorFor(j *Job, node Address) error {
	acc := s.Accounts[node.String()]
	if acc == nil || !s.can(node, PermNode) {
		return fmt.Errorf("%w: %s is not a node's account: only a node executes a join", ErrForbidden, node)
	}
	for _, pt := range j.Parts {
		ds := s.Datasets[pt.Dataset]
		if ds == nil {
			continue
		}
		if ds.Node == node {
			return fmt.Errorf("%w: node %s holds dataset %q of join job %s: a join runs on a node that holds none of its datasets", ErrForbidden, node, ds.Name, j.ID)
		}
		holder := ""
		if h := s.Accounts[ds.Node.String()]; h != nil {
			holder = h.Org
		}
		if acc.Org != "" && (acc.Org == ds.Org || acc.Org == holder) {
			return fmt.Errorf("%w: node %s is operated by organisation %q, which holds dataset %q of join job %s", ErrForbidden, node, acc.Org, ds.Name, j.ID)
		}
	}
	return nil
}

// progressJoin applies job.start, job.complete and job.fail to a join job.
// An eligible executor claims an authorised job, or a running one whose
// runner's lease ran out (block time); its runner renews by starting it
// again. Only the current runner completes it or fails it; before it
// starts, an owner node may fail it too (a dataset gone, an owner that
// cannot ship).
func (s *state) progressJoin(e Entry, j *Job, d JobResultDoc, now time.Time) error {
	switch e.Kind {
	case KindJobStart:
		if err := s.executorFor(j, e.Author); err != nil {
			return err
		}
		switch {
		case j.Status == JobAuthorised:
		case j.Status == JobRunning && j.Runner == e.Author:
		case j.Status == JobRunning && now.Sub(j.Claimed) >= s.joinLease():
		case j.Status == JobRunning:
			return fmt.Errorf("%w: job %s is run by %s, whose lease runs until %s", ErrConflict, j.ID, j.Runner, j.Claimed.Add(s.joinLease()).UTC().Format(time.RFC3339))
		default:
			return fmt.Errorf("%w: job %s is %s", ErrConflict, j.ID, j.Status)
		}
		j.Status, j.Node, j.Runner, j.Updated, j.Claimed = JobRunning, clip(d.Node), e.Author, now, now
		return nil
	case KindJobComplete, KindJobFail:
		switch {
		case j.Status == JobRunning && j.Runner != e.Author:
			return fmt.Errorf("%w: job %s is run by %s, not %s", ErrForbidden, j.ID, j.Runner, e.Author)
		case j.Status == JobRunning:
		case j.Status == JobAuthorised && e.Kind == KindJobFail:
			if !s.ownerNode(j, e.Author) && s.executorFor(j, e.Author) != nil {
				return fmt.Errorf("%w: job %s is failed before it starts only by an owner's node or an eligible executor, not %s", ErrForbidden, j.ID, e.Author)
			}
		default:
			return fmt.Errorf("%w: job %s is %s", ErrConflict, j.ID, j.Status)
		}
	}
	j.Updated = now
	if e.Kind == KindJobComplete {
		if !IsSHA256Hex(d.ResultHash) {
			return fmt.Errorf("%w: job.complete needs result_sha256", ErrInvalid)
		}
		if err := s.flowsComplete(j, e.Author); err != nil {
			return err
		}
		if j.Mode == ModeHE {
			// The result was re-encrypted to the requester by the
			// threshold of nodes, each recorded in he.share.
			if err := s.heReleased(j); err != nil {
				return err
			}
		}
		j.Status, j.ResultHash, j.Suppressed, j.Engine = JobCompleted, d.ResultHash, d.Suppressed, d.Engine
		return nil
	}
	j.Status, j.Reason = JobFailed, clipN(d.Reason, 500)
	if len(j.Shares) == 0 {
		s.refundJoin(j)
	}
	return nil
}

// ownerNode reports whether node holds one of the job's datasets.
func (s *state) ownerNode(j *Job, node Address) bool {
	for _, pt := range j.Parts {
		if ds := s.Datasets[pt.Dataset]; ds != nil && ds.Node == node {
			return true
		}
	}
	return false
}

// Documents of the join kinds.
type (
	// NodeHPKEDoc registers a node's long-term HPKE public key (X25519,
	// 32 bytes), to which join keys are sealed.
	NodeHPKEDoc struct {
		PublicKey []byte `json:"public_key"`
	}
	// JobKeyDoc carries a join's per-job key, sealed with HPKE to each
	// owner node but the one that drew it (node address -> sealed key).
	JobKeyDoc struct {
		Job    string            `json:"job"`
		Sealed map[string][]byte `json:"sealed"`
		// List is the key sealed to the job's list key (list.go).
		List []byte `json:"list,omitempty"`
	}
	// JobFlowDoc is an owner node's record, committed before it ships,
	// of what it ships to the job's runner.
	JobFlowDoc struct {
		Job     string   `json:"job"`
		Dataset string   `json:"dataset"`
		Columns []string `json:"columns"`
		BLAKE3  string   `json:"blake3,omitempty"` // of the shipment's bytes, 256 bits (sandbox.ShipmentDigest)
		SHA256  string   `json:"sha256,omitempty"` // instead, in entries committed before BLAKE3 (replayed as they were)
		Rows    int64    `json:"rows"`
		To      Address  `json:"to"`
	}
)

// maxSealedKey bounds one sealed job key (an HPKE encapsulation and a
// 32-byte key with its tag are under 100 bytes).
const maxSealedKey = 256

func (s *state) nodeHPKE(e Entry) error {
	var d NodeHPKEDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	if len(d.PublicKey) != 32 {
		return fmt.Errorf("%w: node.hpke: an X25519 public key is 32 bytes, not %d", ErrInvalid, len(d.PublicKey))
	}
	if e.Author != e.Actor {
		return fmt.Errorf("%w: node.hpke is the node's own act", ErrForbidden)
	}
	edit(s, s.Accounts, e.Actor.String(), newAccount).HPKE = d.PublicKey
	return nil
}

// KeyHolder returns the owner node that draws a join's per-job key: the
// lowest address among the nodes holding its datasets (deterministic, so
// every owner knows who it is without talking).
func (s *state) keyHolder(j *Job) (Address, []Address) {
	var owners []Address
	for _, pt := range j.Parts {
		if ds := s.Datasets[pt.Dataset]; ds != nil && !slices.Contains(owners, ds.Node) {
			owners = append(owners, ds.Node)
		}
	}
	slices.SortFunc(owners, func(a, b Address) int { return bytes.Compare(a[:], b[:]) })
	if len(owners) == 0 {
		return Address{}, nil
	}
	return owners[0], owners[1:]
}

// jobKey records a join's per-job key, sealed by the key holder to every
// other owner node, and to no other node (the executor never holds it).
func (s *state) jobKey(e Entry, now time.Time) error {
	var d JobKeyDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	j, err := s.liveJoin(d.Job)
	if err != nil {
		return err
	}
	holder, others := s.keyHolder(j)
	if e.Author != holder {
		return fmt.Errorf("%w: job %s's key is drawn by %s (the lowest address among its owner nodes), not %s", ErrForbidden, j.ID, holder, e.Author)
	}
	if j.KeyFrom != (Address{}) {
		return fmt.Errorf("%w: job %s already has its key", ErrConflict, j.ID)
	}
	if len(d.Sealed) != len(others) {
		return fmt.Errorf("%w: job %s's key is sealed to its %d other owner nodes, not to %d nodes", ErrInvalid, j.ID, len(others), len(d.Sealed))
	}
	for _, o := range others {
		b, ok := d.Sealed[o.String()]
		if !ok {
			return fmt.Errorf("%w: job %s's key is not sealed to owner node %s", ErrInvalid, j.ID, o)
		}
		if len(b) == 0 || len(b) > maxSealedKey {
			return fmt.Errorf("%w: the key sealed to %s is %d bytes (1 to %d)", ErrInvalid, o, len(b), maxSealedKey)
		}
	}
	j = edit(s, s.Jobs, j.ID, newJob)
	j.KeyFrom, j.KeySealed, j.Updated = e.Author, d.Sealed, now
	return s.sealList(j, d.List)
}

// liveJoin returns a join job that is authorised or running.
func (s *state) liveJoin(id string) (*Job, error) {
	j, ok := s.Jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: job %q", ErrNotFound, clip(id))
	}
	if !j.IsJoin() {
		return nil, fmt.Errorf("%w: job %s joins nothing", ErrInvalid, j.ID)
	}
	if j.Status != JobAuthorised && j.Status != JobRunning {
		return nil, fmt.Errorf("%w: job %s is %s", ErrConflict, j.ID, j.Status)
	}
	return j, nil
}

// jobFlow records a shipment before it leaves its owner: only the node
// holding the dataset ships it, only to the job's current runner, only
// the columns the plan ships from it, once per runner.
func (s *state) jobFlow(e Entry, index uint64, now time.Time) error {
	var d JobFlowDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	j, err := s.liveJoin(d.Job)
	if err != nil {
		return err
	}
	var side *JoinSide
	for i := range j.Plan.Join {
		if j.Plan.Join[i].Dataset == d.Dataset {
			side = &j.Plan.Join[i]
		}
	}
	switch ds := s.Datasets[d.Dataset]; {
	case side == nil:
		return fmt.Errorf("%w: job %s does not read dataset %q", ErrForbidden, j.ID, clip(d.Dataset))
	case ds == nil || ds.Node != e.Author:
		return fmt.Errorf("%w: dataset %q is shipped only by the node that holds it", ErrForbidden, clip(d.Dataset))
	case j.Status != JobRunning || d.To != j.Runner:
		return fmt.Errorf("%w: job %s's data goes only to its runner (%s), not %s", ErrForbidden, j.ID, j.Runner, d.To)
	case !slices.Equal(d.Columns, side.Columns):
		return fmt.Errorf("%w: job %s ships columns [%s] of %s, not [%s]", ErrForbidden, j.ID, strings.Join(side.Columns, ", "), d.Dataset, clip(strings.Join(d.Columns, ", ")))
	case !oneShipDigest(d.BLAKE3, d.SHA256) || d.Rows < 0:
		return fmt.Errorf("%w: job.flow needs the shipment's digest, its blake3 (or, as entries before BLAKE3 did, its sha256, not both) in 64 lowercase hex digits, and a row count", ErrInvalid)
	}
	// A policy revoked (or expired) since the job was authorised stops its
	// data from moving: the executor then fails the job, refunded.
	for _, pt := range j.Parts {
		if p := s.Policies[pt.Policy]; pt.Dataset == d.Dataset && (p == nil || p.Revoked || !p.Expires.After(now)) {
			return fmt.Errorf("%w: policy %s of dataset %s was revoked or expired after job %s was authorised: its data does not move", ErrForbidden, pt.Policy, d.Dataset, j.ID)
		}
	}
	for _, f := range j.Flows {
		if f.Dataset == d.Dataset && f.To == d.To {
			return fmt.Errorf("%w: dataset %s was already shipped to %s for job %s", ErrConflict, d.Dataset, d.To, j.ID)
		}
	}
	j = edit(s, s.Jobs, j.ID, newJob)
	j.Flows = append(j.Flows, JobFlow{Dataset: d.Dataset, Columns: d.Columns, BLAKE3: d.BLAKE3, SHA256: d.SHA256, Rows: d.Rows, To: d.To, From: e.Author, Index: index})
	return nil
}

// flowsComplete checks, at job.complete, that the runner received each
// dataset of the plan: a join completes only over the flows it needed.
func (s *state) flowsComplete(j *Job, runner Address) error {
	for _, sd := range j.Plan.Join {
		ok := false
		for _, f := range j.Flows {
			ok = ok || (f.Dataset == sd.Dataset && f.To == runner)
		}
		if !ok {
			return fmt.Errorf("%w: job %s completes without a job.flow of dataset %s to its runner", ErrConflict, j.ID, sd.Dataset)
		}
	}
	return nil
}

// Join is what a policy allows its dataset to be joined with (CONTRACT.md,
// "Joins"): other consortium-pseudonymised datasets, and the enterprise's
// own id lists. Without it a dataset is never joined. Datasets and
// MaxRowsPerPerson govern joins of datasets (below); Lists and MaxListIDs
// bound what an enterprise may pseudonymise for a job's list.
type Join struct {
	// Datasets names the datasets it may be joined with ("*": any
	// consortium-pseudonymised one).
	Datasets []string `json:"datasets,omitempty"`
	// Lists says whether an enterprise's own id list may be joined.
	Lists bool `json:"lists,omitempty"`
	// MaxRowsPerPerson bounds each person's rows from each side.
	MaxRowsPerPerson int `json:"max_rows_per_person"`
	// MaxListIDs bounds the ids an enterprise may have pseudonymised for
	// one job's list (DefaultMaxListIDs when 0). An extension of the
	// contract's join document.
	MaxListIDs int64 `json:"max_list_ids,omitempty"`
}

// MaxJoinRowsPerPerson bounds Join.MaxRowsPerPerson: past it, the DP
// noise calibrated to it would drown any answer.
const MaxJoinRowsPerPerson = 100

// Allows reports whether the rule lets its dataset be joined with the
// dataset named other.
func (j *Join) Allows(other string) bool {
	return j != nil && (contains(j.Datasets, other) || contains(j.Datasets, "*"))
}

// DefaultMaxListIDs is a job's list bound when the policy sets none.
const DefaultMaxListIDs = 100_000

// ListIDs is the bound on one job's list.
func (j *Join) ListIDs() int64 {
	if j.MaxListIDs > 0 {
		return j.MaxListIDs
	}
	return DefaultMaxListIDs
}

func (j *Join) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: policy: join: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	for _, d := range j.Datasets {
		if d != "*" && !identRE.MatchString(d) {
			return bad("dataset %q is neither a dataset name nor \"*\"", clip(d))
		}
	}
	if len(j.Datasets) == 0 && !j.Lists {
		return bad("names no dataset and allows no list: leave join out instead")
	}
	if j.MaxRowsPerPerson < 1 || j.MaxRowsPerPerson > MaxJoinRowsPerPerson {
		return bad("max_rows_per_person must be in [1, %d]", MaxJoinRowsPerPerson)
	}
	if j.MaxListIDs < 0 || j.MaxListIDs > 100_000_000 {
		return bad("max_list_ids must be in 0..100000000")
	}
	if j.MaxListIDs > 0 && !j.Lists {
		return bad("max_list_ids without lists")
	}
	return nil
}
