package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// Source yields a ledger's blocks in order, each with its entries. A node's
// API and an exported file are both sources.
type Source interface {
	// Next returns the next block and its entries, io.EOF after the last.
	Next(ctx context.Context) (*chain.Block, [][]byte, error)
}

// Report is what a verification finds.
type Report struct {
	OK        bool                          `json:"ok"`
	Entries   uint64                        `json:"entries"`
	Blocks    int                           `json:"blocks"`
	Root      string                        `json:"root"`
	StateHash string                        `json:"state_hash"`
	Kinds     map[string]int                `json:"kinds"`
	Actors    int                           `json:"actors"`
	Jobs      map[string]int                `json:"jobs_by_status"`
	Epsilon   map[string]map[string]float64 `json:"epsilon_spent"` // requester -> dataset -> epsilon
	// Budgets is the epsilon each holder (organisation) spent on each
	// population of data subjects: what the budgets cap (policies/budget.go).
	Budgets      map[string]map[string]float64 `json:"budgets_spent,omitempty"` // population -> holder -> epsilon
	Refusals     map[string]int                `json:"refusals_by_rule"`
	Timeline     []JobEvent                    `json:"timeline"`
	FirstFailure *Failure                      `json:"first_failure,omitempty"`
}

// JobEvent is one job in the report's timeline.
type JobEvent struct {
	Job        string    `json:"job"`
	Time       time.Time `json:"time"`
	Requester  string    `json:"requester"`
	Dataset    string    `json:"dataset"`
	Purpose    string    `json:"purpose"`
	Status     string    `json:"status"`
	Epsilon    float64   `json:"epsilon"`
	ResultHash string    `json:"result_sha256,omitempty"`
}

// Failure names the first index that failed and why.
type Failure struct {
	Index  int64  `json:"index"`
	Reason string `json:"reason"`
}

func (r *Report) fail(index uint64, format string, a ...any) {
	if r.FirstFailure == nil {
		r.FirstFailure = &Failure{Index: int64(index), Reason: fmt.Sprintf(format, a...)}
	}
}

// Verify streams a ledger from src up to the checkpoint's size (the caller
// has checked the checkpoint's signature) and checks, reporting the first
// failing index and why: every block links to the one before and its hash
// covers its header; every entry parses and its signature verifies; every
// block's Merkle root is the root of the log up to it; the state machine
// replays every entry with its block's time, re-verifying relayed
// requests and every rule (permissions replayed from genesis, approvals by
// distinct eligible agencies, budgets); the final root is the
// checkpoint's. Then the replayed state's invariants are checked. Memory
// stays flat in the ledger's length (a compact Merkle frontier; the state
// itself is metadata).
func Verify(ctx context.Context, src Source, cp *chain.Checkpoint) (*Report, StateMachine, error) {
	return VerifyWith(ctx, NewStateMachine(), src, cp)
}

// VerifyWith is Verify replaying through sm, a fresh StateMachine: with
// its Plan set, every job's plan is derived again from its SQL text and
// checked against the plan on the ledger.
func VerifyWith(ctx context.Context, sm StateMachine, src Source, cp *chain.Checkpoint) (*Report, StateMachine, error) {
	rep := &Report{Kinds: map[string]int{}, Jobs: map[string]int{}, Epsilon: map[string]map[string]float64{}, Budgets: map[string]map[string]float64{}, Refusals: map[string]int{}}
	var fr chain.Frontier
	var prev chain.Hash
	actors := map[policies.Address]bool{}
	for height := uint64(1); fr.Size() < cp.Size && rep.FirstFailure == nil; height++ {
		b, entries, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			rep.fail(fr.Size(), "the ledger ends at %d entries though the checkpoint has %d", fr.Size(), cp.Size)
			break
		}
		if err != nil {
			return nil, sm, err
		}
		if b.Height != height || b.Prev != prev || b.FirstIndex != fr.Size() || int(b.Count) != len(entries) {
			rep.fail(fr.Size(), "block %d does not link to block %d", b.Height, height-1)
			break
		}
		for i, raw := range entries {
			idx := b.FirstIndex + uint64(i)
			e, err := chain.ParseAndVerify(raw)
			if err != nil {
				rep.fail(idx, "%v", err)
				break
			}
			if err := sm.Apply(e, idx, b.Time); err != nil {
				rep.fail(idx, "replay: %v", err)
				break
			}
			fr.Append(chain.LeafHash(raw))
			rep.Kinds[e.Kind]++
			actors[Actor(e)] = true
		}
		if rep.FirstFailure != nil {
			break
		}
		if fr.Root() != b.Root {
			rep.fail(b.FirstIndex, "block %d: its Merkle root does not match its entries", b.Height)
			break
		}
		prev = b.Hash()
		rep.Blocks++
		if ctx.Err() != nil {
			return nil, sm, ctx.Err()
		}
	}
	rep.Entries = fr.Size()
	rep.Actors = len(actors)
	root := fr.Root()
	rep.Root = hex.EncodeToString(root[:])
	if rep.FirstFailure == nil && root != cp.Root {
		rep.fail(cp.Size, "the root of the %d entries does not match the signed checkpoint", cp.Size)
	}
	sh := sm.M.StateHash()
	rep.StateHash = hex.EncodeToString(sh[:])
	if rep.FirstFailure == nil {
		invariants(rep, sm.M)
	}
	rep.OK = rep.FirstFailure == nil
	return rep, sm, nil
}

// invariants re-checks the replayed state as a whole and summarises it.
func invariants(rep *Report, m *policies.Machine) {
	pols := map[string]policies.Policy{}
	for _, p := range m.Policies() {
		pols[p.ID] = p
	}
	for _, j := range m.Jobs(nil) {
		rep.Jobs[j.Status]++
		rep.Timeline = append(rep.Timeline, jobEvent(j))
		switch j.Status {
		case policies.JobAuthorised, policies.JobRunning, policies.JobCompleted, policies.JobFailed:
			if !checkAuthorised(rep, m, pols, j) {
				return
			}
		case policies.JobRejected:
			rep.Refusals[refusalRule(j.Reason)]++
		}
		if j.Status == policies.JobCompleted && !policies.IsSHA256Hex(j.ResultHash) {
			rep.fail(0, "job %s completed without a result hash", j.ID)
			return
		}
		if err := joinFlows(j); err != nil {
			rep.fail(0, "%v", err)
			return
		}
	}
	checkBudgets(rep, m, pols)
}

// jobEvent is a job's line in the report's timeline; its epsilon is what
// the job cost (nothing if it never ran or gave its epsilon back).
func jobEvent(j policies.Job) JobEvent {
	ev := JobEvent{Job: j.ID, Time: j.Submitted, Requester: j.Requester.String(), Dataset: j.Dataset, Purpose: j.Purpose, Status: j.Status, ResultHash: j.ResultHash}
	if j.Status != policies.JobRejected && j.Status != policies.JobPending && !j.Refunded {
		ev.Epsilon = j.Epsilon
	}
	return ev
}

// checkAuthorised checks a job that was authorised (and perhaps ran): a
// committed authorising policy, enough distinct approvals, and unless it
// was refunded a budget charge of its policy's epsilon, which it adds to
// the report's epsilon and budget totals. False: it failed the report.
func checkAuthorised(rep *Report, m *policies.Machine, pols map[string]policies.Policy, j policies.Job) bool {
	p, ok := pols[j.Policy]
	if !ok {
		rep.fail(0, "job %s is %s without a committed authorising policy", j.ID, j.Status)
		return false
	}
	if len(j.Approvals) < j.Needed {
		rep.fail(0, "job %s is %s with %d of %d approvals", j.ID, j.Status, len(j.Approvals), j.Needed)
		return false
	}
	seen := map[policies.Address]bool{}
	for _, a := range j.Approvals {
		if seen[a] {
			rep.fail(0, "job %s was approved twice by %s", j.ID, a)
			return false
		}
		seen[a] = true
	}
	if j.Refunded {
		return true // failed before releasing anything: its epsilon went back
	}
	want, ok := jobEpsilon(rep, pols, j, p)
	if !ok {
		return false
	}
	if j.Charge == nil || j.Charge.Epsilon != want || len(j.Charge.Populations) == 0 {
		rep.fail(0, "job %s is %s without a budget charge of its policy's epsilon", j.ID, j.Status)
		return false
	}
	for _, pop := range j.Charge.Populations {
		pop = m.Population(pop)
		if rep.Budgets[pop] == nil {
			rep.Budgets[pop] = map[string]float64{}
		}
		rep.Budgets[pop][j.Charge.Holder] += j.Charge.Epsilon
	}
	return true
}

// jobEpsilon is the epsilon a job must have been charged (its policy's,
// or for a join the smallest of its datasets' policies'), added to the
// report's epsilon per requester and dataset. False: it failed the report.
func jobEpsilon(rep *Report, pols map[string]policies.Policy, j policies.Job, p policies.Policy) (float64, bool) {
	if rep.Epsilon[j.Requester.String()] == nil {
		rep.Epsilon[j.Requester.String()] = map[string]float64{}
	}
	want := p.DP.EpsilonPerQuery
	if !j.IsJoin() {
		rep.Epsilon[j.Requester.String()][j.Dataset] += want
		return want, true
	}
	// A join is noised at, and charged, the smallest epsilon of its
	// datasets' policies, on every population it reads.
	for i, pt := range j.Parts {
		pp, ok := pols[pt.Policy]
		if !ok || pp.Dataset != pt.Dataset {
			rep.fail(0, "join job %s reads %s without a committed authorising policy", j.ID, pt.Dataset)
			return 0, false
		}
		if i == 0 || pp.DP.EpsilonPerQuery < want {
			want = pp.DP.EpsilonPerQuery
		}
	}
	for _, pt := range j.Parts {
		rep.Epsilon[j.Requester.String()][pt.Dataset] += want
	}
	return want, true
}

// checkBudgets: what the jobs charged matches the state's own account, and
// never exceeds the largest budget of a policy on the population.
func checkBudgets(rep *Report, m *policies.Machine, pols map[string]policies.Policy) {
	lines := m.Budgets()
	if len(lines) != countLines(rep.Budgets) {
		rep.fail(0, "the state keeps %d budgets with spending, the jobs charged %d", len(lines), countLines(rep.Budgets))
		return
	}
	for _, l := range lines {
		eps := rep.Budgets[l.Population][l.Holder]
		if l.Spent < eps-1e-9 || l.Spent > eps+1e-9 {
			rep.fail(0, "budget of %s on %s: the state says %g spent, the jobs %g", l.Holder, l.Population, l.Spent, eps)
			return
		}
		budget := 0.0
		for _, p := range pols {
			if slices.Contains(l.Datasets, p.Dataset) && p.DP.EpsilonBudget > budget {
				budget = p.DP.EpsilonBudget
			}
		}
		if eps > budget+1e-9 {
			rep.fail(0, "budget of %s on %s overdrawn: %g spent of %g", l.Holder, l.Population, eps, budget)
			return
		}
	}
}

func countLines(m map[string]map[string]float64) int {
	n := 0
	for _, byHolder := range m {
		n += len(byHolder)
	}
	return n
}

// refusalRule names the rule a rejection broke, from its reason.
func refusalRule(reason string) string {
	for _, r := range []struct{ key, rule string }{
		{"query: ", "query"}, {"consortium's limit", "limits"}, {"privacy budget exhausted", "budget"}, {"does not match", "purpose"}, {"is not a grantee", "grantee"},
		{"mode ", "mode"}, {"aggregate ", "aggregate"}, {"grouped by", "group_by"}, {"filtered on", "filter"},
		{"expired", "expired"}, {"rejected by", "agency rejection"}, {"unknown dataset", "unknown dataset"},
		{"no policy", "no policy"}, {"revoked", "revoked"},
		{"distinct ids", "list"}, {"does not allow joining", "join"}, {"nodes in the consortium", "join"}, {"joined with itself", "join"}, {"consortium pseudonyms", "join"},
	} {
		if strings.Contains(reason, r.key) {
			return r.rule
		}
	}
	return "other"
}

// joinFlows checks a job's data flows: only a join moves data; every flow
// ships a dataset of its plan, exactly the plan's columns of it, from the
// node that holds it; a completed join's runner received each dataset
// exactly once, and the ledger shows no other flow to it.
func joinFlows(j policies.Job) error {
	if !j.IsJoin() {
		if len(j.Flows) > 0 {
			return fmt.Errorf("job %s moved data but joins nothing", j.ID)
		}
		return nil
	}
	cols := map[string][]string{}
	for _, sd := range j.Plan.Join {
		cols[sd.Dataset] = sd.Columns
	}
	toRunner := map[string]int{}
	for _, f := range j.Flows {
		want, ok := cols[f.Dataset]
		if !ok || !slices.Equal(want, f.Columns) {
			return fmt.Errorf("job %s moved columns [%s] of %s, which its plan does not ship", j.ID, strings.Join(f.Columns, ", "), f.Dataset)
		}
		if f.To == j.Runner {
			toRunner[f.Dataset]++
		}
	}
	if j.Status != policies.JobCompleted {
		return nil
	}
	for ds := range cols {
		if toRunner[ds] != 1 {
			return fmt.Errorf("completed join job %s: its runner received dataset %s %d times, not once", j.ID, ds, toRunner[ds])
		}
	}
	return nil
}
