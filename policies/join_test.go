package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var joinSchema = Schema{Columns: []Column{
	{Name: "person_id", Type: TypeString, Class: Identifier, Pseudonym: PseudonymConsortium},
	{Name: "region", Type: TypeString, Class: Public},
	{Name: "income", Type: TypeFloat, Class: Sensitive, Bounds: []float64{0, 1e6}},
}}

var benefitSchema = Schema{Columns: []Column{
	{Name: "person_id", Type: TypeString, Class: Identifier, Pseudonym: PseudonymConsortium},
	{Name: "region", Type: TypeString, Class: Public},
	{Name: "benefit", Type: TypeFloat, Class: Sensitive, Bounds: []float64{0, 5e4}},
}}

// joinWorld: tax2025 held by node1 (org tax), benefits2025 held by node2
// (org health), and node3 of a third organisation, the executor.
func joinWorld(t *testing.T, nodes int, edit ...func(*Genesis)) *world {
	t.Helper()
	w, err := genesisWorld(t, nil, edit...)
	if err != nil {
		t.Fatal(err)
	}
	if nodes >= 3 {
		k := pub(42)
		w.keys["node3"] = k
		b, _ := json.Marshal(RegisterDoc{PublicKey: k, Algorithm: "ed25519", Name: "node3"})
		w.replays++
		if err := w.m.Apply(Entry{Author: w.addr("node3"), Actor: w.addr("node3"), Kind: KindAccountRegister, Payload: b, Time: w.now,
			ReplayKey: fmt.Sprintf("r%d", w.replays), ReplayTime: w.now}, w.index, w.now); err != nil {
			t.Fatal(err)
		}
		w.index++
		w.must("admin", KindAccountGrant, GrantDoc{Address: w.addr("node3").String(), Role: "node", Org: "ops"}, nil)
	}
	w.must("agency1", KindDatasetRegister, DatasetDoc{Name: "tax2025", Schema: joinSchema, SHA256: strings.Repeat("ab", 32), Rows: 1000}, nil)
	w.node = w.addr("node2")
	w.must("agency2", KindDatasetRegister, DatasetDoc{Name: "benefits2025", Schema: benefitSchema, SHA256: strings.Repeat("cd", 32), Rows: 800}, nil)
	w.node = w.addr("node1")
	return w
}

func joinPolicy(ds string, with []string, agg map[string][]string, approval map[string]any) map[string]any {
	return map[string]any{
		"dataset": ds, "grantees": []string{"role:enterprise"}, "purpose": "benefit statistics",
		"modes": []string{"masked"}, "aggregates": agg, "group_by": []string{"region"}, "filter": []string{"region"},
		"min_group_size": 10, "dp": map[string]any{"epsilon_per_query": 0.5, "epsilon_budget": 1.0},
		"approval": approval, "expires": "2027-12-31T00:00:00Z",
		"join": map[string]any{"datasets": with, "lists": false, "max_rows_per_person": 1},
	}
}

var auto = map[string]any{"mode": "auto"}

func joinPlan() JobExtra {
	return JobExtra{Dataset: "tax2025", Plan: Plan{
		Aggregates: []Aggregate{{Func: "count", Columns: []string{"*"}}, {Func: "avg", Columns: []string{"tax2025.income"}}},
		GroupBy:    []string{"benefits2025.region"},
		Join: []JoinSide{
			{Dataset: "tax2025", Key: "person_id", Columns: []string{"income"}},
			{Dataset: "benefits2025", Key: "person_id", Columns: []string{"region"}},
		},
	}}
}

func (w *world) publishJoin(taxWith []string, taxApproval, benApproval map[string]any) {
	w.t.Helper()
	w.must("agency1", KindPolicyPublish, joinPolicy("tax2025", taxWith, map[string][]string{"income": {"count", "avg"}}, taxApproval), nil)
	w.must("agency2", KindPolicyPublish, joinPolicy("benefits2025", []string{"*"}, map[string][]string{"benefit": {"sum"}}, benApproval), nil)
}

func TestJoinPolicyValidation(t *testing.T) {
	cases := []struct {
		name string
		join any
		want string
	}{
		{"allows nothing", map[string]any{"datasets": []string{}, "lists": false, "max_rows_per_person": 1}, "names no dataset and allows no list"},
		{"bad name", map[string]any{"datasets": []string{"Tax!"}, "max_rows_per_person": 1}, `dataset "Tax!" is neither a dataset name nor "*"`},
		{"self", map[string]any{"datasets": []string{"tax2025"}, "max_rows_per_person": 1}, "self-joins are never run"},
		{"no rows", map[string]any{"datasets": []string{"*"}, "max_rows_per_person": 0}, "join: max_rows_per_person must be in [1, 100]"},
		{"too many rows", map[string]any{"datasets": []string{"*"}, "max_rows_per_person": 101}, "join: max_rows_per_person must be in [1, 100]"},
		{"unknown field", map[string]any{"datasets": []string{"*"}, "max_rows_per_person": 1, "rows": 2}, "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := taxPolicy()
			p["join"] = c.join
			b, _ := json.Marshal(p)
			_, err := ParsePolicy(b)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	t.Run("dataset without consortium pseudonyms", func(t *testing.T) {
		w := newWorld(t)
		w.withDataset() // agency pseudonyms
		p := taxPolicy()
		p["join"] = map[string]any{"datasets": []string{"*"}, "max_rows_per_person": 1}
		err := w.act("agency1", KindPolicyPublish, p, nil)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "consortium pseudonyms") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestJoinAuthorisation(t *testing.T) {
	cases := []struct {
		name    string
		nodes   int
		taxWith []string
		edit    func(x *JobExtra)
		status  string
		reason  string
	}{
		{"allowed", 3, []string{"benefits2025"}, nil, JobAuthorised, ""},
		{"any consortium dataset", 3, []string{"*"}, nil, JobAuthorised, ""},
		{"two nodes", 2, []string{"*"}, nil, JobRejected, "needs at least 3 nodes in the consortium, there are 2"},
		{"policy names another dataset", 3, []string{"other2025"}, nil, JobRejected, `does not allow joining dataset "tax2025" with "benefits2025"`},
		{"self-join", 3, []string{"*"}, func(x *JobExtra) { x.Plan.Join[1].Dataset = "tax2025" }, JobRejected, "joined with itself"},
		{"key not consortium", 3, []string{"*"}, func(x *JobExtra) { x.Plan.Join[1].Key = "region" }, JobRejected, `joined on "region", which is not an identifier column with consortium pseudonyms`},
		{"aggregate the other policy forbids", 3, []string{"*"}, func(x *JobExtra) {
			x.Plan.Aggregates = append(x.Plan.Aggregates, Aggregate{Func: "avg", Columns: []string{"benefits2025.benefit"}})
		}, JobRejected, "aggregate avg(benefit) is not allowed"},
		{"group by the other side's forbidden column", 3, []string{"*"}, func(x *JobExtra) { x.Plan.GroupBy = []string{"tax2025.income"} }, JobRejected, `column "income" may not be grouped by`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := joinWorld(t, c.nodes)
			w.publishJoin(c.taxWith, auto, auto)
			x := joinPlan()
			if c.edit != nil {
				c.edit(&x)
			}
			w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), x)
			j := w.lastJob()
			if j.Status != c.status || !strings.Contains(j.Reason, c.reason) {
				t.Fatalf("job %s: %q, want %s: %q", j.Status, j.Reason, c.status, c.reason)
			}
			spent := w.m.Spent(w.addr("bank"), "tax2025") + w.m.Spent(w.addr("bank"), "benefits2025")
			if (c.status == JobAuthorised) != (spent == 1) {
				t.Fatalf("spent %v with status %s", spent, j.Status)
			}
		})
	}
	t.Run("he mode", func(t *testing.T) {
		w := joinWorld(t, 3)
		w.publishJoin([]string{"*"}, auto, auto)
		w.approveCeremonies()
		w.must("node1", KindHECeremony, ceremonyDoc(w, 2, "node1", "node2"), nil)
		w.must("bank", KindHEKey, HEKeyDoc{Params: "p", PublicKey: bytes.Repeat([]byte{7}, 1000)}, nil)
		// Policies of mode masked only: refused by each.
		w.must("bank", KindJobSubmit, job("q", "he", "benefit statistics"), joinPlan())
		if j := w.lastJob(); j.Status != JobRejected || !strings.Contains(j.Reason, "mode he is not allowed") {
			t.Fatalf("%s %q", j.Status, j.Reason)
		}
		for _, d := range []string{"tax2025", "benefits2025"} {
			agg := map[string][]string{"income": {"count", "avg"}}
			if d == "benefits2025" {
				agg = map[string][]string{"benefit": {"sum"}}
			}
			p := joinPolicy(d, []string{"*"}, agg, auto)
			p["modes"] = []string{"masked", "he"}
			w.must(map[string]string{"tax2025": "agency1", "benefits2025": "agency2"}[d], KindPolicyPublish, p, nil)
		}
		w.must("bank", KindJobSubmit, job("q", "he", "benefit statistics"), joinPlan())
		id := w.lastJob().ID
		if j := w.lastJob(); j.Status != JobAuthorised {
			t.Fatalf("%s %q", j.Status, j.Reason)
		}
		// Completed only once the threshold of nodes shared the result.
		w.must("node3", KindJobStart, JobResultDoc{Job: id}, nil)
		w.ship(id, "node3")
		done := JobResultDoc{Job: id, ResultHash: strings.Repeat("b", 64)}
		if err := w.act("node3", KindJobComplete, done, nil); err == nil || !strings.Contains(err.Error(), "share") {
			t.Fatalf("an he join completed without shares: %v", err)
		}
		share := HEShareDoc{Job: id, Ciphertext: strings.Repeat("d", 64), Active: []string{"node1", "node2"}}
		w.must("node1", KindHEShare, share, nil)
		w.must("node2", KindHEShare, share, nil)
		w.must("node3", KindJobComplete, done, nil)
	})
	t.Run("a policy without join", func(t *testing.T) {
		w := joinWorld(t, 3)
		p := joinPolicy("tax2025", nil, map[string][]string{"income": {"count", "avg"}}, auto)
		delete(p, "join")
		w.must("agency1", KindPolicyPublish, p, nil)
		w.must("agency2", KindPolicyPublish, joinPolicy("benefits2025", []string{"*"}, map[string][]string{"benefit": {"sum"}}, auto), nil)
		w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
		if j := w.lastJob(); j.Status != JobRejected || !strings.Contains(j.Reason, "does not allow joining") {
			t.Fatalf("%s %q", j.Status, j.Reason)
		}
	})
	t.Run("every budget, or none", func(t *testing.T) {
		w := joinWorld(t, 3)
		w.publishJoin([]string{"*"}, auto, auto)
		// Exhaust benefits2025's budget (1.0) with two joins, then the third
		// is refused and debits tax2025 nothing.
		for range 2 {
			w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
		}
		w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
		j := w.lastJob()
		if j.Status != JobRejected || !strings.Contains(j.Reason, "privacy budget exhausted") {
			t.Fatalf("%s %q", j.Status, j.Reason)
		}
		if a, b := w.m.Spent(w.addr("bank"), "tax2025"), w.m.Spent(w.addr("bank"), "benefits2025"); a != 1 || b != 1 {
			t.Fatalf("spent %v and %v", a, b)
		}
	})
}

// Manual policies need their own agency's approvals, all of them; an
// agency approves only for its own dataset.
func TestJoinApprovals(t *testing.T) {
	w := joinWorld(t, 3)
	w.publishJoin([]string{"*"}, map[string]any{"mode": "manual", "approvers": 2}, map[string]any{"mode": "manual", "approvers": 1})
	w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
	id := w.lastJob().ID
	if j, _ := w.m.Job(id); j.Status != JobPending || j.Needed != 3 {
		t.Fatalf("%+v", j)
	}
	if err := w.act("shop", KindJobApprove, JobDecisionDoc{Job: id}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("an enterprise approved: %v", err)
	}
	w.must("agency2", KindJobApprove, JobDecisionDoc{Job: id}, nil)
	if err := w.act("agency2", KindJobApprove, JobDecisionDoc{Job: id}, nil); err == nil {
		t.Fatal("agency2 approved twice")
	}
	w.must("agency1", KindJobApprove, JobDecisionDoc{Job: id}, nil)
	if j, _ := w.m.Job(id); j.Status != JobPending {
		t.Fatalf("authorised with one of tax's two approvals: %s", j.Status)
	}
	if w.m.Spent(w.addr("bank"), "tax2025") != 0 {
		t.Fatal("debited while pending")
	}
	w.must("agency1b", KindJobApprove, JobDecisionDoc{Job: id}, nil)
	if j, _ := w.m.Job(id); j.Status != JobAuthorised || len(j.Parts[0].Approvals) != 2 || len(j.Parts[1].Approvals) != 1 {
		t.Fatalf("%+v", j)
	}
	if a, b := w.m.Spent(w.addr("bank"), "tax2025"), w.m.Spent(w.addr("bank"), "benefits2025"); a != 0.5 || b != 0.5 {
		t.Fatalf("spent %v and %v", a, b)
	}
	// A rejection by either agency ends a pending join.
	w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
	id = w.lastJob().ID
	w.must("agency2", KindJobReject, JobDecisionDoc{Job: id, Reason: "not for this purpose"}, nil)
	if j, _ := w.m.Job(id); j.Status != JobRejected || !strings.Contains(j.Reason, "benefits2025") {
		t.Fatalf("%+v", j)
	}
}

// The executor holds none of the joined datasets and is not operated by
// their organisations; another executor takes over after the lease, in
// block time; only the current runner completes; a failure refunds every
// budget.
func TestJoinExecutor(t *testing.T) {
	w := joinWorld(t, 3)
	w.publishJoin([]string{"*"}, auto, auto)
	w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
	id := w.lastJob().ID
	start := JobResultDoc{Job: id, Node: "x"}
	for _, n := range []string{"node1", "node2"} {
		if err := w.act(n, KindJobStart, start, nil); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "holds dataset") {
			t.Fatalf("%s, an owner's node, started the join: %v", n, err)
		}
	}
	// node4: a node of the tax organisation that holds no dataset.
	w.addNode("node4", 43, "tax")
	if err := w.act("node4", KindJobStart, start, nil); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `organisation "tax"`) {
		t.Fatalf("a node of an owner's organisation started the join: %v", err)
	}
	w.must("node3", KindJobStart, start, nil)
	if j, _ := w.m.Job(id); j.Status != JobRunning || j.Runner != w.addr("node3") {
		t.Fatalf("%+v", j)
	}
	// node5 of another organisation: eligible, but the lease holds.
	w.addNode("node5", 44, "ops2")
	if err := w.act("node5", KindJobStart, start, nil); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "lease") {
		t.Fatalf("taken over within the lease: %v", err)
	}
	w.now = w.now.Add(JoinLease)
	w.must("node5", KindJobStart, start, nil)
	done := JobResultDoc{Job: id, ResultHash: strings.Repeat("a", 64)}
	if err := w.act("node3", KindJobComplete, done, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("the first runner completed after the takeover: %v", err)
	}
	w.must("node5", KindJobFail, JobResultDoc{Job: id, Reason: "owner node2 did not ship within the deadline"}, nil)
	j, _ := w.m.Job(id)
	if j.Status != JobFailed || !j.Refunded || w.m.Spent(w.addr("bank"), "tax2025") != 0 || w.m.Spent(w.addr("bank"), "benefits2025") != 0 {
		t.Fatalf("%+v", j)
	}
	// A completed join is final.
	w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
	id = w.lastJob().ID
	w.must("node3", KindJobStart, JobResultDoc{Job: id}, nil)
	w.ship(id, "node3")
	w.must("node3", KindJobComplete, JobResultDoc{Job: id, ResultHash: strings.Repeat("b", 64)}, nil)
	w.now = w.now.Add(time.Hour)
	if err := w.act("node5", KindJobStart, JobResultDoc{Job: id}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("a completed join restarted: %v", err)
	}
}

// ship commits both owners' flows of the join job to node to.
func (w *world) ship(id, to string) {
	w.t.Helper()
	x := joinPlan()
	for i, n := range []string{"node1", "node2"} {
		side := x.Plan.Join[i]
		w.must(n, KindJobFlow, JobFlowDoc{Job: id, Dataset: side.Dataset, Columns: side.Columns, BLAKE3: strings.Repeat("e", 64), Rows: 10, To: w.addr(to)}, nil)
	}
}

// The per-job key is drawn by the owner node with the lowest address and
// sealed to the other owner nodes only; flows go from each dataset's node
// to the runner, with exactly the plan's columns; a join completes only
// once every dataset reached its runner.
func TestJoinKeyAndFlows(t *testing.T) {
	w := joinWorld(t, 3)
	w.publishJoin([]string{"*"}, auto, auto)
	w.must("node1", KindNodeHPKE, NodeHPKEDoc{PublicKey: make([]byte, 32)}, nil)
	if err := w.act("node1", KindNodeHPKE, NodeHPKEDoc{PublicKey: make([]byte, 31)}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a 31-byte HPKE key: %v", err)
	}
	w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
	id := w.lastJob().ID
	holder, other := "node1", "node2"
	if a, b := w.addr("node1"), w.addr("node2"); string(b[:]) < string(a[:]) {
		holder, other = "node2", "node1"
	}
	sealed := func(to ...string) JobKeyDoc {
		d := JobKeyDoc{Job: id, Sealed: map[string][]byte{}}
		for _, n := range to {
			d.Sealed[w.addr(n).String()] = []byte("sealed")
		}
		return d
	}
	keyCases := []struct {
		name, by string
		doc      JobKeyDoc
		want     error
	}{
		{"drawn by the other owner", other, sealed(holder), ErrForbidden},
		{"drawn by the executor", "node3", sealed(holder, other), ErrForbidden},
		{"sealed to the executor too", holder, sealed(other, "node3"), ErrInvalid},
		{"sealed to the executor instead", holder, sealed("node3"), ErrInvalid},
		{"sealed to nobody", holder, sealed(), ErrInvalid},
	}
	for _, c := range keyCases {
		t.Run(c.name, func(t *testing.T) {
			if err := w.act(c.by, KindJobKey, c.doc, nil); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	w.must(holder, KindJobKey, sealed(other), nil)
	if err := w.act(holder, KindJobKey, sealed(other), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second key: %v", err)
	}
	x := joinPlan()
	flow := func(to string, cols ...string) JobFlowDoc {
		return JobFlowDoc{Job: id, Dataset: "tax2025", Columns: cols, BLAKE3: strings.Repeat("e", 64), Rows: 10, To: w.addr(to)}
	}
	if err := w.act("node1", KindJobFlow, flow("node3", "income"), nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("shipped before a runner claimed the job: %v", err)
	}
	w.must("node3", KindJobStart, JobResultDoc{Job: id}, nil)
	flowCases := []struct {
		name, by string
		doc      JobFlowDoc
		want     error
	}{
		{"to another node", "node1", flow("node2", "income"), ErrForbidden},
		{"a column the plan does not ship", "node1", flow("node3", "income", "region"), ErrForbidden},
		{"the identifier", "node1", flow("node3", "person_id"), ErrForbidden},
		{"shipped by a node that does not hold it", "node2", flow("node3", "income"), ErrForbidden},
		{"no digest", "node1", JobFlowDoc{Job: id, Dataset: "tax2025", Columns: []string{"income"}, To: w.addr("node3")}, ErrInvalid},
		{"both digests", "node1", JobFlowDoc{Job: id, Dataset: "tax2025", Columns: []string{"income"}, BLAKE3: strings.Repeat("e", 64), SHA256: strings.Repeat("e", 64), To: w.addr("node3")}, ErrInvalid},
		{"a digest in upper case", "node1", JobFlowDoc{Job: id, Dataset: "tax2025", Columns: []string{"income"}, BLAKE3: strings.Repeat("E", 64), To: w.addr("node3")}, ErrInvalid},
	}
	for _, c := range flowCases {
		t.Run(c.name, func(t *testing.T) {
			if err := w.act(c.by, KindJobFlow, c.doc, nil); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	w.must("node1", KindJobFlow, flow("node3", x.Plan.Join[0].Columns...), nil)
	if err := w.act("node1", KindJobFlow, flow("node3", x.Plan.Join[0].Columns...), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("shipped twice: %v", err)
	}
	done := JobResultDoc{Job: id, ResultHash: strings.Repeat("a", 64)}
	if err := w.act("node3", KindJobComplete, done, nil); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "benefits2025") {
		t.Fatalf("completed without benefits2025's flow: %v", err)
	}
	// A flow as entries before BLAKE3 committed it (a ledger from then
	// replays; a node not yet upgraded ships): its SHA-256, kept as such.
	w.must("node2", KindJobFlow, JobFlowDoc{Job: id, Dataset: "benefits2025", Columns: x.Plan.Join[1].Columns, SHA256: strings.Repeat("f", 64), Rows: 8, To: w.addr("node3")}, nil)
	w.must("node3", KindJobComplete, done, nil)
	j, _ := w.m.Job(id)
	if j.Status != JobCompleted || len(j.Flows) != 2 || j.KeyFrom != w.addr(holder) || len(j.KeySealed) != 1 {
		t.Fatalf("%+v", j)
	}
	for i, want := range [][2]string{{"blake3", strings.Repeat("e", 64)}, {"sha256", strings.Repeat("f", 64)}} {
		if alg, sum := j.Flows[i].Digest(); alg != want[0] || sum != want[1] {
			t.Errorf("flow %d's digest: %s %s, want %s %s", i, alg, sum, want[0], want[1])
		}
	}
}

// A policy revoked after the join was authorised stops its dataset's
// shipment; the runner then fails the job and every budget is refunded.
func TestJoinPolicyRevokedMidJob(t *testing.T) {
	w := joinWorld(t, 3)
	w.publishJoin([]string{"*"}, auto, auto)
	w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
	id := w.lastJob().ID
	w.must("node3", KindJobStart, JobResultDoc{Job: id}, nil)
	x := joinPlan()
	w.must("node1", KindJobFlow, JobFlowDoc{Job: id, Dataset: "tax2025", Columns: x.Plan.Join[0].Columns, BLAKE3: strings.Repeat("e", 64), To: w.addr("node3")}, nil)
	j, _ := w.m.Job(id)
	w.node = w.addr("node2")
	w.must("agency2", KindPolicyRevoke, PolicyRevokeDoc{Policy: j.Parts[1].Policy}, nil)
	err := w.act("node2", KindJobFlow, JobFlowDoc{Job: id, Dataset: "benefits2025", Columns: x.Plan.Join[1].Columns, BLAKE3: strings.Repeat("f", 64), To: w.addr("node3")}, nil)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("shipped under a revoked policy: %v", err)
	}
	w.must("node3", KindJobFail, JobResultDoc{Job: id, Reason: "benefits2025 was not shipped: its policy was revoked"}, nil)
	if j, _ := w.m.Job(id); !j.Refunded || w.m.Spent(w.addr("bank"), "tax2025") != 0 || w.m.Spent(w.addr("bank"), "benefits2025") != 0 {
		t.Fatalf("%+v", j)
	}
}
