package policies

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// world is a state after genesis with one account per role, plus a second
// agency and enterprise, a dataset and helpers to act.
type world struct {
	t       *testing.T
	m       *Machine
	index   uint64
	now     time.Time
	keys    map[string]ed25519.PublicKey
	node    Address
	replays int
}

func pub(seed byte) ed25519.PublicKey {
	s := make([]byte, 32)
	s[0] = seed
	return ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey)
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w, err := genesisWorld(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// newWorldLimits is newWorld with consortium limits in genesis.
func newWorldLimits(t *testing.T, l *Limits) *world {
	t.Helper()
	w, err := genesisWorld(t, l)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// genesisWorld: edit, when given, changes the genesis before it is applied.
func genesisWorld(t *testing.T, limits *Limits, edit ...func(*Genesis)) (*world, error) {
	w := &world{t: t, m: New(), now: t0, keys: map[string]ed25519.PublicKey{}}
	accounts := []struct{ name, role, org string }{
		{"admin", "admin", ""}, {"agency1", "agency", "tax"}, {"agency1b", "agency", "tax"}, {"agency2", "agency", "health"},
		{"bank", "enterprise", "bank"}, {"shop", "enterprise", "shop"}, {"auditor", "auditor", ""}, {"node1", "node", "tax"},
		{"node2", "node", "health"},
	}
	g := Genesis{Consortium: "test", Table: DefaultTable(), Limits: limits}
	for i, a := range accounts {
		k := pub(byte(i + 1))
		w.keys[a.name] = k
		g.Accounts = append(g.Accounts, GenesisAccount{PublicKey: k, Algorithm: "ed25519", Name: a.name, Org: a.org, Roles: []string{a.role}})
	}
	for _, f := range edit {
		f(&g)
	}
	w.node = AddressOf(w.keys["node1"])
	b, _ := json.Marshal(g)
	if err := w.m.Apply(Entry{Author: w.addr("admin"), Actor: w.addr("admin"), Kind: KindGenesis, Payload: b}, 0, t0); err != nil {
		return nil, err
	}
	w.index = 1
	return w, nil
}

func (w *world) addr(name string) Address { return AddressOf(w.keys[name]) }

// act applies a document as the named account, relayed by node1 (or, for
// the node-only kinds, signed by the account itself).
func (w *world) act(name, kind string, doc any, extra any) error {
	w.t.Helper()
	b, _ := json.Marshal(doc)
	var x []byte
	if extra != nil {
		x, _ = json.Marshal(extra)
	}
	w.replays++
	author := w.node
	if IsNodeKind(kind) {
		author = w.addr(name)
	}
	e := Entry{Author: author, Actor: w.addr(name), Kind: kind, Payload: b, Extra: x, Time: w.now,
		ReplayKey: fmt.Sprintf("r%d", w.replays), ReplayTime: w.now}
	err := w.m.Apply(e, w.index, w.now)
	if err == nil {
		w.index++
	}
	return err
}

// approveCeremonies commits the admin's approvals of one HE and one
// pseudonym key ceremony (every ceremony needs one).
func (w *world) approveCeremonies() {
	w.t.Helper()
	w.must("admin", KindHERotate, HERotateDoc{Reason: "the consortium's key ceremony"}, nil)
	w.must("admin", KindPseudonymRotate, map[string]string{"reason": "the consortium's key ceremony"}, nil)
}

func (w *world) must(name, kind string, doc any, extra any) {
	w.t.Helper()
	if err := w.act(name, kind, doc, extra); err != nil {
		w.t.Fatalf("%s %s: %v", name, kind, err)
	}
}

var taxSchema = Schema{Columns: []Column{
	{Name: "person_id", Type: TypeString, Class: Identifier},
	{Name: "age", Type: TypeInt, Class: QuasiIdentifier, Generalize: &Generalize{Band: 10}},
	{Name: "region", Type: TypeString, Class: Public},
	{Name: "income", Type: TypeFloat, Class: Sensitive, Bounds: []float64{0, 1e6}},
}}

func taxPolicy() map[string]any {
	return map[string]any{
		"dataset": "tax2025", "grantees": []string{"role:enterprise"}, "purpose": "credit risk statistics",
		"modes": []string{"masked", "he"}, "aggregates": map[string][]string{"income": {"count", "sum", "avg"}},
		"group_by": []string{"region", "age"}, "filter": []string{"region", "age"}, "min_group_size": 10,
		"dominance": map[string]any{"n": 1, "k": 0.5},
		"dp":        map[string]any{"epsilon_per_query": 0.5, "epsilon_budget": 5.0, "delta": 1e-6},
		"approval":  map[string]any{"mode": "auto"}, "expires": "2027-12-31T00:00:00Z",
	}
}

func (w *world) withDataset() {
	w.t.Helper()
	w.must("agency1", KindDatasetRegister, DatasetDoc{Name: "tax2025", Schema: taxSchema, SHA256: strings.Repeat("ab", 32), Rows: 1000}, nil)
}

func job(query, mode, purpose string) JobDoc {
	return JobDoc{Query: query, Mode: mode, Purpose: purpose}
}

func plan(aggs ...string) JobExtra {
	x := JobExtra{Dataset: "tax2025"}
	for _, a := range aggs {
		fn, col, _ := strings.Cut(a, ":")
		x.Plan.Aggregates = append(x.Plan.Aggregates, Aggregate{Func: fn, Columns: []string{col}})
	}
	return x
}

func (w *world) lastJob() Job {
	js := w.m.Jobs(nil)
	return js[len(js)-1]
}

func TestPolicyValidation(t *testing.T) {
	cases := []struct {
		name string
		edit func(p map[string]any)
		want string
	}{
		{"unknown column", func(p map[string]any) { p["aggregates"] = map[string][]string{"salary": {"sum"}} }, `unknown column "salary" in aggregates`},
		{"aggregate for class", func(p map[string]any) { p["aggregates"] = map[string][]string{"person_id": {"count"}} }, `aggregate count not allowed for identifier column "person_id"`},
		{"sum of quasi", func(p map[string]any) { p["aggregates"] = map[string][]string{"age": {"sum"}} }, `aggregate sum not allowed for quasi_identifier column "age"`},
		{"epsilon <= 0", func(p map[string]any) { p["dp"] = map[string]any{"epsilon_per_query": 0, "epsilon_budget": 1} }, "dp.epsilon_per_query must be > 0"},
		{"budget below query", func(p map[string]any) { p["dp"] = map[string]any{"epsilon_per_query": 2, "epsilon_budget": 1} }, "dp.epsilon_budget must be at least dp.epsilon_per_query"},
		{"delta", func(p map[string]any) {
			p["dp"] = map[string]any{"epsilon_per_query": 1, "epsilon_budget": 1, "delta": 1}
		}, "dp.delta must be in [0, 1)"},
		{"expired", func(p map[string]any) { p["expires"] = "2020-01-01T00:00:00Z" }, "expired at 2020-01-01T00:00:00Z"},
		{"group by sensitive", func(p map[string]any) { p["group_by"] = []string{"income"} }, `sensitive column "income" may not be used in group_by`},
		{"filter identifier", func(p map[string]any) { p["filter"] = []string{"person_id"} }, `identifier column "person_id" may not be used in filter`},
		{"unknown mode", func(p map[string]any) { p["modes"] = []string{"plain"} }, `unknown mode "plain"`},
		{"bad grantee", func(p map[string]any) { p["grantees"] = []string{"everyone"} }, `grantee "everyone" is not an address, role:R or org:O`},
		{"min group", func(p map[string]any) { p["min_group_size"] = 0 }, "min_group_size must be at least 1"},
		{"dominance", func(p map[string]any) { p["dominance"] = map[string]any{"n": 1, "k": 1.5} }, "dominance needs n >= 1 and 0 < k <= 1"},
		{"approval", func(p map[string]any) { p["approval"] = map[string]any{"mode": "manual"} }, "approval manual needs approvers >= 1"},
		{"unknown field", func(p map[string]any) { p["colour"] = "red" }, `unknown field "colour"`},
		{"no dataset", func(p map[string]any) { p["dataset"] = "nope" }, `policies: not found: dataset "nope"`},
		{"expires not a date", func(p map[string]any) { p["expires"] = "2027-12-31" }, `expires must be a date and time in RFC 3339 form, such as "2027-12-31T00:00:00Z", not "2027-12-31"`},
		{"expires a number", func(p map[string]any) { p["expires"] = 2027 }, `expires must be a date and time in RFC 3339 form, such as "2027-12-31T00:00:00Z", not 2027`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.withDataset()
			p := taxPolicy()
			c.edit(p)
			err := w.act("agency1", KindPolicyPublish, p, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// The same policy published twice is refused while the first is in force
// (and whoever publishes it); once revoked, it may be published again. A
// policy that differs in any term is a new policy.
func TestIdenticalPolicyRefused(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil)
	first := fmt.Sprintf("pol-%d", w.index-1)
	for _, who := range []string{"agency1", "agency1b"} {
		if err := w.act(who, KindPolicyPublish, taxPolicy(), nil); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "identical to "+first+", which is in force") {
			t.Fatalf("%s published the same policy again: %v", who, err)
		}
	}
	// The same instant written in another zone is the same term.
	p := taxPolicy()
	p["expires"] = "2027-12-31T01:00:00+01:00"
	if err := w.act("agency1", KindPolicyPublish, p, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("same expiry in another zone: %v", err)
	}
	p["min_group_size"] = 20
	w.must("agency1", KindPolicyPublish, p, nil)
	w.must("agency1", KindPolicyRevoke, PolicyRevokeDoc{Policy: first}, nil)
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil)
}

func TestPolicyEvaluation(t *testing.T) {
	cases := []struct {
		name   string
		who    string
		doc    JobDoc
		extra  JobExtra
		edit   func(p map[string]any)
		status string
		reason string
	}{
		{"allowed", "bank", job("q", "masked", "credit risk statistics"), plan("avg:income"), nil, JobAuthorised, ""},
		{"count star", "bank", job("q", "masked", "Credit Risk Statistics "), plan("count:*"), nil, JobAuthorised, ""},
		{"he without a ceremony", "bank", job("q", "he", "credit risk statistics"), plan("count:*"), nil, JobRejected, "he mode needs the consortium's HE key ceremony"},
		{"purpose", "bank", job("q", "masked", "marketing"), plan("avg:income"), nil, JobRejected, `policy pol-2: purpose "marketing" does not match "credit risk statistics"`},
		{"mode", "bank", job("q", "masked", "credit risk statistics"), plan("avg:income"), func(p map[string]any) { p["modes"] = []string{"he"} }, JobRejected, "policy pol-2: mode masked is not allowed (allowed: he)"},
		{"aggregate", "bank", job("q", "masked", "credit risk statistics"), plan("var:income"), nil, JobRejected, "policy pol-2: aggregate var(income) is not allowed"},
		{"group by", "bank", job("q", "masked", "credit risk statistics"), func() JobExtra { x := plan("sum:income"); x.Plan.GroupBy = []string{"region"}; return x }(), func(p map[string]any) { p["group_by"] = []string{"age"} }, JobRejected, `policy pol-2: column "region" may not be grouped by`},
		// Query rules hold whatever the policy says (the API refuses these
		// before the ledger; the state machine refuses them too).
		{"group by identifier", "bank", job("q", "masked", "credit risk statistics"), func() JobExtra { x := plan("sum:income"); x.Plan.GroupBy = []string{"person_id"}; return x }(), nil, JobRejected, `query: identifier column "person_id" may not be used in GROUP BY`},
		{"group by unknown column", "bank", job("q", "masked", "credit risk statistics"), func() JobExtra { x := plan("sum:income"); x.Plan.GroupBy = []string{"regon"}; return x }(), nil, JobRejected, `query: unknown column "regon" in GROUP BY of dataset "tax2025"`},
		{"group by sensitive", "bank", job("q", "masked", "credit risk statistics"), func() JobExtra { x := plan("count:*"); x.Plan.GroupBy = []string{"income"}; return x }(), nil, JobRejected, `query: sensitive column "income" may not be grouped by`},
		{"min of sensitive", "bank", job("q", "masked", "credit risk statistics"), plan("min:income"), nil, JobRejected, `query: MIN of sensitive column "income" would return an individual's value`},
		{"filter", "bank", job("q", "masked", "credit risk statistics"), func() JobExtra { x := plan("sum:income"); x.Plan.Filter = []string{"income"}; return x }(), nil, JobRejected, `policy pol-2: column "income" may not be filtered on`},
		{"grantee", "bank", job("q", "masked", "credit risk statistics"), plan("sum:income"), func(p map[string]any) { p["grantees"] = []string{"org:shop"} }, JobRejected, "is not a grantee"},
		{"grantee by org", "shop", job("q", "masked", "credit risk statistics"), plan("sum:income"), func(p map[string]any) { p["grantees"] = []string{"org:shop"} }, JobAuthorised, ""},
		{"unknown dataset", "bank", job("q", "masked", "credit risk statistics"), JobExtra{Dataset: "nope", Plan: plan("sum:income").Plan}, nil, JobRejected, `unknown dataset "nope"`},
		{"manual", "bank", job("q", "masked", "credit risk statistics"), plan("sum:income"), func(p map[string]any) { p["approval"] = map[string]any{"mode": "manual", "approvers": 2} }, JobPending, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.withDataset()
			p := taxPolicy()
			if c.edit != nil {
				c.edit(p)
			}
			w.must("agency1", KindPolicyPublish, p, nil)
			w.must(c.who, KindJobSubmit, c.doc, c.extra)
			j := w.lastJob()
			if j.Status != c.status || !strings.Contains(j.Reason, c.reason) || (c.reason == "" && j.Reason != "") {
				t.Fatalf("job %+v, want %s %q", j, c.status, c.reason)
			}
		})
	}
}

func TestExpiredPolicyRefusesJobs(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	p := taxPolicy()
	p["expires"] = "2026-02-01T00:00:00Z"
	w.must("agency1", KindPolicyPublish, p, nil)
	w.now = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("sum:income"))
	if j := w.lastJob(); j.Status != JobRejected || j.Reason != "policy pol-2 expired at 2026-02-01T00:00:00Z" {
		t.Fatalf("%+v", j)
	}
}

func TestPermissions(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	cases := []struct {
		who, kind string
		doc       any
		want      error
	}{
		{"bank", KindPolicyPublish, taxPolicy(), ErrForbidden},
		{"agency2", KindPolicyPublish, taxPolicy(), ErrForbidden}, // another agency's dataset
		{"auditor", KindAccountGrant, GrantDoc{Address: w.addr("bank").String(), Role: "admin"}, ErrForbidden},
		{"bank", KindDatasetRegister, DatasetDoc{Name: "x", Schema: taxSchema, SHA256: strings.Repeat("0", 64)}, ErrForbidden},
		{"agency1", KindJobSubmit, job("q", "masked", "p"), ErrForbidden},
		{"admin", "mystery", map[string]any{}, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.who+" "+c.kind, func(t *testing.T) {
			if err := w.act(c.who, c.kind, c.doc, nil); !errors.Is(err, c.want) {
				t.Errorf("%s %s: %v, want %v", c.who, c.kind, err, c.want)
			}
		})
	}
	// An account not in the ledger, and a relay by a non-node.
	ghost := Entry{Author: w.node, Actor: Address{9}, Kind: "note.x", Payload: []byte(`{}`), ReplayKey: "g", ReplayTime: w.now}
	if err := w.m.Apply(ghost, w.index, w.now); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("ghost: %v", err)
	}
	relay := Entry{Author: w.addr("bank"), Actor: w.addr("shop"), Kind: "note.x", Payload: []byte(`{}`), ReplayKey: "h", ReplayTime: w.now}
	if err := w.m.Apply(relay, w.index, w.now); !errors.Is(err, ErrForbidden) {
		t.Errorf("relay by enterprise: %v", err)
	}
}

func TestApprovals(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	p := taxPolicy()
	p["approval"] = map[string]any{"mode": "manual", "approvers": 2}
	w.must("agency1", KindPolicyPublish, p, nil)
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("sum:income"))
	id := w.lastJob().ID
	if err := w.act("agency2", KindJobApprove, JobDecisionDoc{Job: id}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("other agency approved: %v", err)
	}
	w.must("agency1", KindJobApprove, JobDecisionDoc{Job: id}, nil)
	if err := w.act("agency1", KindJobApprove, JobDecisionDoc{Job: id}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("same approver twice: %v", err)
	}
	if j, _ := w.m.Job(id); j.Status != JobPending {
		t.Fatalf("after one approval: %s", j.Status)
	}
	w.must("agency1b", KindJobApprove, JobDecisionDoc{Job: id}, nil)
	if j, _ := w.m.Job(id); j.Status != JobAuthorised || w.m.Spent(w.addr("bank"), "tax2025") != 0.5 {
		t.Fatalf("after two approvals: %+v", j)
	}
	// A rejection needs a reason and a pending job.
	w.must("bank", KindJobSubmit, job("q2", "masked", "credit risk statistics"), plan("sum:income"))
	id2 := w.lastJob().ID
	if err := w.act("agency1", KindJobReject, JobDecisionDoc{Job: id2}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reject without reason: %v", err)
	}
	w.must("agency1", KindJobReject, JobDecisionDoc{Job: id2, Reason: "not now"}, nil)
	if j, _ := w.m.Job(id2); j.Status != JobRejected || !strings.HasSuffix(j.Reason, ": not now") {
		t.Fatalf("%+v", j)
	}
}

func TestBudgetNeverOverdrawn(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil) // 0.5 per query, 5 in all
	authorised := 0
	for i := 0; i < 50; i++ {
		w.must("bank", KindJobSubmit, job(fmt.Sprint(i), "masked", "credit risk statistics"), plan("sum:income"))
		if w.lastJob().Status == JobAuthorised {
			authorised++
		}
	}
	if authorised != 10 || w.m.Spent(w.addr("bank"), "tax2025") != 5 {
		t.Fatalf("authorised %d, spent %v", authorised, w.m.Spent(w.addr("bank"), "tax2025"))
	}
	if r := w.lastJob().Reason; r != `privacy budget exhausted for dataset "tax2025" (population pop:tax2025: tax2025; holder org:bank): spent 5 of 5, this query needs 0.5` {
		t.Fatalf("reason %q", r)
	}
}

// A job that fails released nothing: its epsilon goes back to the budget.
func TestFailedJobRefunded(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil) // 0.5 per query
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("sum:income"))
	ok := w.lastJob().ID
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("sum:income"))
	bad := w.lastJob().ID
	if got := w.m.Spent(w.addr("bank"), "tax2025"); got != 1 {
		t.Fatalf("spent %v after two jobs", got)
	}
	w.must("node1", KindJobStart, JobResultDoc{Job: bad, Node: "node1"}, nil)
	w.must("node1", KindJobFail, JobResultDoc{Job: bad, Reason: "the engine failed"}, nil)
	if j, _ := w.m.Job(bad); !j.Refunded || w.m.Spent(w.addr("bank"), "tax2025") != 0.5 {
		t.Fatalf("failed job %+v, spent %v", j, w.m.Spent(w.addr("bank"), "tax2025"))
	}
	w.must("node1", KindJobStart, JobResultDoc{Job: ok, Node: "node1"}, nil)
	w.must("node1", KindJobComplete, JobResultDoc{Job: ok, ResultHash: strings.Repeat("a", 64)}, nil)
	if got := w.m.Spent(w.addr("bank"), "tax2025"); got != 0.5 {
		t.Fatalf("spent %v", got)
	}
}

func TestReplayRefused(t *testing.T) {
	w := newWorld(t)
	e := Entry{Author: w.addr("bank"), Actor: w.addr("bank"), Kind: "note.x", Payload: []byte(`{}`), ReplayKey: "k1", ReplayTime: w.now}
	if err := w.m.Apply(e, 1, w.now); err != nil {
		t.Fatal(err)
	}
	if err := w.m.Apply(e, 2, w.now.Add(time.Minute)); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	// Too old to be accepted at all, whether or not it was seen.
	e.ReplayKey = "k2"
	if err := w.m.Apply(e, 2, w.now.Add(time.Hour)); !errors.Is(err, ErrReplay) {
		t.Fatalf("stale: %v", err)
	}
	// Keys expire: the state does not grow without bound.
	for i := 0; i < 100; i++ {
		e := Entry{Author: w.addr("bank"), Actor: w.addr("bank"), Kind: "note.x", Payload: []byte(`{}`), ReplayKey: fmt.Sprint("n", i), ReplayTime: w.now.Add(time.Duration(i) * time.Minute)}
		if err := w.m.Apply(e, uint64(3+i), e.ReplayTime); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(w.m.s.Used); n > 25 {
		t.Fatalf("%d replay keys kept", n)
	}
}

func TestGenesisRules(t *testing.T) {
	m := New()
	if err := m.Apply(Entry{Kind: "note.x", Payload: []byte(`{}`)}, 0, t0); err == nil {
		t.Fatal("entry before genesis accepted")
	}
	k := pub(1)
	g, _ := json.Marshal(Genesis{Table: DefaultTable(), Accounts: []GenesisAccount{{PublicKey: k, Algorithm: "ed25519", Roles: []string{"enterprise"}}}})
	if err := m.Apply(Entry{Author: AddressOf(k), Kind: KindGenesis, Payload: g}, 0, t0); err == nil {
		t.Fatal("genesis without an admin accepted")
	}
	if m.HasGenesis() {
		t.Fatal("failed genesis left state")
	}
	w := newWorld(t)
	if err := w.m.Apply(Entry{Author: w.addr("admin"), Kind: KindGenesis, Payload: g}, 5, t0); err == nil {
		t.Fatal("second genesis accepted")
	}
	// The last admin cannot remove itself.
	if err := w.act("admin", KindAccountRevoke, GrantDoc{Address: w.addr("admin").String(), Role: "admin"}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("last admin revoked: %v", err)
	}
	if !w.m.Can(w.addr("admin"), PermGrant) {
		t.Fatal("refused revoke changed the state")
	}
}

func TestAccountsLifecycle(t *testing.T) {
	w := newWorld(t)
	newKey := pub(77)
	w.keys["newco"] = newKey
	// Granted before it registers its key; then registers; then rotates.
	w.must("admin", KindAccountGrant, GrantDoc{Address: w.addr("newco").String(), Role: "enterprise", Org: "newco"}, nil)
	if !w.m.Can(w.addr("newco"), PermSubmitJob) {
		t.Fatal("grant")
	}
	w.must("newco", KindAccountRegister, RegisterDoc{PublicKey: newKey, Algorithm: "ed25519"}, nil)
	if err := w.act("newco", KindAccountRegister, RegisterDoc{PublicKey: newKey, Algorithm: "ed25519"}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("second register: %v", err)
	}
	rotated := pub(78)
	w.must("newco", KindAccountRotate, RotateDoc{PublicKey: rotated}, nil)
	if a, _ := w.m.Account(w.addr("newco")); string(a.PublicKey) != string(rotated) || a.Org != "newco" {
		t.Fatalf("rotate: %+v", a)
	}
	w.must("admin", KindAccountRevoke, GrantDoc{Address: w.addr("newco").String(), Role: "enterprise"}, nil)
	if w.m.Can(w.addr("newco"), PermSubmitJob) {
		t.Fatal("revoke")
	}
	// The table itself changes by admin entries.
	w.must("admin", KindTableSet, TableDoc{Role: "enterprise", Permissions: []string{PermReadOwn}}, nil)
	if w.m.Can(w.addr("bank"), PermSubmitJob) {
		t.Fatal("table.set")
	}
}

// The same random log on two machines gives the same state hash, and
// snapshot -> restore gives it back.
func TestDeterministicReplayAndSnapshot(t *testing.T) {
	build := func(seed uint64) (*Machine, [32]byte) {
		w := newWorld(t)
		w.withDataset()
		rng := rand.New(rand.NewPCG(seed, 1))
		who := []string{"bank", "shop", "agency1", "agency2", "admin"}
		for i := 0; i < 300; i++ {
			w.now = w.now.Add(time.Duration(rng.IntN(90)) * time.Second)
			switch rng.IntN(5) {
			case 0:
				p := taxPolicy()
				if rng.IntN(2) == 0 {
					p["approval"] = map[string]any{"mode": "manual", "approvers": 1}
				}
				_ = w.act(who[rng.IntN(5)], KindPolicyPublish, p, nil)
			case 1, 2:
				_ = w.act(who[rng.IntN(5)], KindJobSubmit, job("q", []string{"masked", "he"}[rng.IntN(2)], "credit risk statistics"), plan("sum:income"))
			case 3:
				if js := w.m.Jobs(nil); len(js) > 0 {
					_ = w.act(who[rng.IntN(5)], KindJobApprove, JobDecisionDoc{Job: js[rng.IntN(len(js))].ID}, nil)
				}
			case 4:
				_ = w.act(who[rng.IntN(5)], "note.x", map[string]int{"i": i}, nil)
			}
		}
		return w.m, w.m.StateHash()
	}
	m1, h1 := build(42)
	_, h2 := build(42)
	if h1 != h2 {
		t.Fatal("same log, different state hash")
	}
	if _, h3 := build(43); h3 == h1 {
		t.Fatal("different logs, same state hash")
	}
	snap, err := m1.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	m2 := New()
	if err := m2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if m2.StateHash() != h1 {
		t.Fatal("snapshot -> restore changed the state hash")
	}
}

func TestSchemaValidation(t *testing.T) {
	cases := map[string]string{
		`{"columns":[]}`: "schema has no columns",
		`{"columns":[{"name":"Age","type":"int","class":"public"}]}`:                                          "must match",
		`{"columns":[{"name":"a","type":"int","class":"public"},{"name":"a","type":"int","class":"public"}]}`: "duplicate column",
		`{"columns":[{"name":"a","type":"blob","class":"public"}]}`:                                           `unknown type "blob"`,
		`{"columns":[{"name":"a","type":"int","class":"secret"}]}`:                                            `unknown class "secret"`,
		`{"columns":[{"name":"a","type":"float","class":"sensitive"}]}`:                                       "needs bounds",
		`{"columns":[{"name":"a","type":"float","class":"sensitive","bounds":[5,1]}]}`:                        "lo < hi",
		`{"columns":[{"name":"a","type":"int","class":"quasi_identifier"}]}`:                                  "needs a generalize rule",
		`{"columns":[{"name":"a","type":"int","class":"public","generalize":{"band":5}}]}`:                    "only quasi_identifier",
		`{"columns":[{"name":"a","type":"string","class":"quasi_identifier","generalize":{"band":5}}]}`:       "generalize must be one of",
		`{"columns":[{"name":"a","type":"int","class":"public"}],"x":1}`:                                      `unknown field "x"`,
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			if _, err := ParseSchema([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want %q", in, err, want)
			}
		})
	}
	good := `{"columns":[{"name":"person_id","type":"string","class":"identifier"},{"name":"age","type":"int","class":"quasi_identifier","generalize":{"band":10}},{"name":"region","type":"string","class":"public"},{"name":"income","type":"float","class":"sensitive","bounds":[0,1000000]}]}`
	if _, err := ParseSchema([]byte(good)); err != nil {
		t.Fatalf("contract schema refused: %v", err)
	}
}

func FuzzParsePolicy(f *testing.F) {
	b, _ := json.Marshal(taxPolicy())
	f.Add(b)
	f.Add([]byte(`{"dataset":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		if p.DP.EpsilonPerQuery <= 0 || p.MinGroupSize < 1 || len(p.Grantees) == 0 {
			t.Fatalf("invalid policy accepted: %+v", p)
		}
		_ = p.validateAgainst(&taxSchema, t0)
	})
}

func FuzzParseSchema(f *testing.F) {
	b, _ := json.Marshal(taxSchema)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSchema(b)
		if err == nil && len(s.Columns) == 0 {
			t.Fatal("empty schema accepted")
		}
	})
}
