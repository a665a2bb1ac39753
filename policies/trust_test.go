package policies

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// refused applies an entry that must be refused with want and checks that
// the refusal left the state byte-identical.
func (w *world) refused(e Entry, want error) {
	w.t.Helper()
	before := w.m.StateHash()
	err := w.m.Apply(e, w.index, w.now)
	if !errors.Is(err, want) {
		w.t.Fatalf("%s by %s (actor %s): %v, want %v", e.Kind, e.Author, e.Actor, err, want)
	}
	if w.m.StateHash() != before {
		w.t.Fatalf("%s refused (%v) but the state changed", e.Kind, err)
	}
}

// entry builds an entry with a fresh replay key.
func (w *world) entry(author, actor, kind string, doc any) Entry {
	b, _ := json.Marshal(doc)
	w.replays++
	return Entry{Author: w.addr(author), Actor: w.addr(actor), Kind: kind, Payload: b, Time: w.now,
		ReplayKey: fmt.Sprintf("r%d", w.replays), ReplayTime: w.now}
}

// runningJob submits an auto-authorised masked job on tax2025 (held by
// node1) and returns its id, started by node1 if start is set.
func (w *world) authorisedJob(start bool) string {
	w.t.Helper()
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("sum:income"))
	id := w.lastJob().ID
	if start {
		w.must("node1", KindJobStart, JobResultDoc{Job: id, Node: "node1"}, nil)
	}
	return id
}

// Finding 2 of issue 12: the node-only kinds were accepted from any
// account with the join permission, which agencies hold. Each is tried
// directly and relayed, from an agency, an enterprise, and a node that is
// not entitled to the act.
func TestNodeOnlyKindsNeedTheEntitledNode(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil)
	w.approveCeremonies()
	w.must("node1", KindHECeremony, ceremonyDoc(w, 2, "node1", "node2"), nil)
	authorised := w.authorisedJob(false)
	running := w.authorisedJob(true)
	done := JobResultDoc{Job: running, ResultHash: strings.Repeat("f", 64)}
	cases := []struct {
		kind string
		doc  any
	}{
		{KindJobStart, JobResultDoc{Job: authorised, Node: "x"}},
		{KindJobComplete, done},
		{KindJobFail, JobResultDoc{Job: running, Reason: "x"}},
		{KindJobFail, JobResultDoc{Job: authorised, Reason: "x"}},
		{KindHECeremony, ceremonyDoc(w, 2, "agency1", "agency2")},
		{KindHEShare, HEShareDoc{Job: running, Ciphertext: strings.Repeat("1", 64), Active: []string{"node1", "node2"}}},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			w.t = t
			for _, who := range []string{"agency1", "agency2", "bank"} {
				w.refused(w.entry(who, who, c.kind, c.doc), ErrForbidden)     // signed by the account
				w.refused(w.entry("node1", who, c.kind, c.doc), ErrForbidden) // relayed for it
			}
		})
	}
	// A node that does not hold the dataset neither starts nor moves the
	// job (node2 is another organisation's node).
	t.Run("other node", func(t *testing.T) {
		w.t = t
		w.refused(w.entry("node2", "node2", KindJobStart, JobResultDoc{Job: authorised, Node: "node2"}), ErrForbidden)
		w.refused(w.entry("node2", "node2", KindJobFail, JobResultDoc{Job: authorised, Reason: "x"}), ErrForbidden)
		w.refused(w.entry("node2", "node2", KindJobComplete, done), ErrForbidden)
		w.refused(w.entry("node2", "node2", KindJobFail, JobResultDoc{Job: running, Reason: "x"}), ErrForbidden)
		// node2 is a ceremony participant, but shares only for he jobs.
		w.refused(w.entry("node2", "node2", KindHEShare, HEShareDoc{Job: running, Ciphertext: strings.Repeat("1", 64), Active: []string{"node1", "node2"}}), ErrForbidden)
	})
	// The entitled node still can.
	w.t = t
	w.must("node1", KindJobStart, JobResultDoc{Job: authorised, Node: "node1"}, nil)
	w.must("node1", KindJobComplete, done, nil)
}

// Finding 2: a second ceremony replaced the consortium's key. A re-key
// needs an admin's he.rotate, recorded on the new ceremony.
func TestHECeremonyOnceUnlessRotated(t *testing.T) {
	w := newWorld(t)
	// Not even the first ceremony without an admin's approval (a node
	// could otherwise commit one before the admin's, of its choosing).
	w.refused(w.entry("node1", "node1", KindHECeremony, ceremonyDoc(w, 2, "node1", "node2")), ErrForbidden)
	w.approveCeremonies()
	w.must("node1", KindHECeremony, ceremonyDoc(w, 2, "node1", "node2"), nil)
	second := ceremonyDoc(w, 2, "node1", "node2")
	second.ID = "c2"
	w.refused(w.entry("node1", "node1", KindHECeremony, second), ErrConflict)
	w.refused(w.entry("node1", "agency1", KindHERotate, HERotateDoc{Reason: "share lost"}), ErrForbidden)
	w.refused(w.entry("node1", "admin", KindHERotate, HERotateDoc{}), ErrInvalid)

	w.must("admin", KindHERotate, HERotateDoc{Reason: "node3's share was lost"}, nil)
	approval := w.index - 1
	w.refused(w.entry("node1", "admin", KindHERotate, HERotateDoc{Reason: "again"}), ErrConflict)
	forged := second
	forged.Rotation = 7
	w.refused(w.entry("node1", "node1", KindHECeremony, forged), ErrInvalid)
	w.must("node2", KindHECeremony, second, nil)
	c, _ := w.m.HE()
	if c.ID != "c2" || c.Rotation != approval {
		t.Fatalf("rotated ceremony %+v, want id c2 rotation %d", c, approval)
	}
	// The approval is used up.
	third := ceremonyDoc(w, 2, "node1", "node2")
	third.ID = "c3"
	w.refused(w.entry("node1", "node1", KindHECeremony, third), ErrConflict)
}

// Finding 3: any node took any agency's upload. A registration comes
// through a node of the agency's own organisation, which is recorded as
// the node holding the data.
func TestDatasetRegisteredOnlyThroughOwnNode(t *testing.T) {
	w := newWorld(t)
	doc := DatasetDoc{Name: "tax2025", Schema: taxSchema, SHA256: strings.Repeat("ab", 32), Rows: 1000}
	w.refused(w.entry("node2", "agency1", KindDatasetRegister, doc), ErrForbidden)   // another org's node
	w.refused(w.entry("agency1", "agency1", KindDatasetRegister, doc), ErrForbidden) // no node holds it
	w.refused(w.entry("agency2", "agency1", KindDatasetRegister, doc), ErrForbidden) // an agency is no relay
	w.withDataset()
	if d, _ := w.m.Dataset("tax2025"); d.Node != w.addr("node1") {
		t.Fatalf("dataset held by %s, want node1", d.Node)
	}
}

// Finding 1: a signed act is applied once; the refusal names the entry
// that applied it first.
func TestReplayedActNamesFirstEntry(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil)
	e := w.entry("node1", "bank", KindJobSubmit, job("q", "masked", "credit risk statistics"))
	e.Extra, _ = json.Marshal(plan("sum:income"))
	first := w.index
	if err := w.m.Apply(e, first, w.now); err != nil {
		t.Fatal(err)
	}
	w.index++
	spent := w.m.Spent(w.addr("bank"), "tax2025")
	for _, relay := range []string{"node1", "node2"} {
		again := e
		again.Author = w.addr(relay)
		again.Time = w.now.Add(time.Minute)
		before := w.m.StateHash()
		err := w.m.Apply(again, w.index, w.now.Add(time.Minute))
		var re *ReplayError
		if !errors.As(err, &re) || re.Index != first || !errors.Is(err, ErrReplay) {
			t.Fatalf("replay through %s: %v", relay, err)
		}
		if w.m.StateHash() != before {
			t.Fatal("a refused replay changed the state")
		}
	}
	if got := w.m.Spent(w.addr("bank"), "tax2025"); got != spent || len(w.m.Jobs(nil)) != 1 {
		t.Fatalf("replays spent budget (%g, was %g) or made jobs (%d)", got, spent, len(w.m.Jobs(nil)))
	}
	if i, ok := w.m.Act(e.ReplayKey); !ok || i != first {
		t.Fatalf("Act = %d, %v", i, ok)
	}
}

// Finding 4: a refusal pruned replay keys before its checks, so a live
// node (which applies entries the ledger then refuses) and an auditor
// (who replays only committed ones) could disagree. A refusal after a
// quiet spell, when every key has expired, changes nothing.
func TestRefusalAfterQuietSpellChangesNothing(t *testing.T) {
	w := newWorld(t)
	w.must("bank", "note.x", map[string]int{}, nil)
	w.now = w.now.Add(2 * time.Hour)
	w.refused(w.entry("node1", "bank", KindJobApprove, JobDecisionDoc{Job: "job-9"}), ErrForbidden)
	w.refused(w.entry("node1", "agency1", KindJobApprove, JobDecisionDoc{Job: "job-9"}), ErrNotFound)
}

// TestApplyIsTransactional applies random streams of valid, invalid and
// replayed entries. At every step a refusal leaves the state hash as it
// was, and the state equals that of a machine fed only the accepted
// entries (what an auditor replays from the ledger).
func TestApplyIsTransactional(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			live, audit := newWorld(t), newWorld(t)
			live.approveCeremonies() // so that ceremonies can be accepted too
			audit.approveCeremonies()
			rng := rand.New(rand.NewPCG(seed, 12))
			var seen []Entry
			accepted := 0
			for step := range 300 {
				e, blockTime := randomEntry(live, rng, seen)
				before := live.m.StateHash()
				err := live.m.Apply(e, live.index, blockTime)
				if err != nil {
					if live.m.StateHash() != before {
						t.Fatalf("step %d: %s refused (%v) but the state changed", step, e.Kind, err)
					}
					continue
				}
				seen = append(seen, e)
				if err := audit.m.Apply(e, live.index, blockTime); err != nil {
					t.Fatalf("step %d: accepted live, refused on replay: %v", step, err)
				}
				live.index++
				accepted++
				if live.m.StateHash() != audit.m.StateHash() {
					t.Fatalf("step %d: live and replayed states differ after %s", step, e.Kind)
				}
			}
			if accepted < 20 {
				t.Fatalf("only %d of 300 entries accepted: the stream tests too little", accepted)
			}
		})
	}
}

// randomEntry draws an entry: a replay of an earlier one, or a fresh act
// of a random kind by a random account with a random (often wrong)
// document, at a block time that sometimes jumps past every replay key.
func randomEntry(w *world, rng *rand.Rand, seen []Entry) (Entry, time.Time) {
	if rng.IntN(100) < 15 {
		w.now = w.now.Add(time.Duration(rng.IntN(40)) * time.Minute)
	} else {
		w.now = w.now.Add(time.Second)
	}
	if len(seen) > 0 && rng.IntN(8) == 0 {
		e := seen[rng.IntN(len(seen))]
		e.Author = w.addr([]string{"node1", "node2"}[rng.IntN(2)])
		return e, w.now
	}
	names := []string{"admin", "agency1", "agency1b", "agency2", "bank", "shop", "auditor", "node1", "node2"}
	who := names[rng.IntN(len(names))]
	// Mostly the account entitled to the kind's act, so that enough entries
	// are accepted for the accepted ones to build a state worth checking.
	right := func(name string) {
		if rng.IntN(10) < 7 {
			who = name
		}
	}
	jobID := fmt.Sprintf("job-%d", rng.IntN(int(w.index)+1))
	ds := DatasetDoc{Name: []string{"tax2025", "health", "Bad Name", "taxcopy"}[rng.IntN(4)], Schema: taxSchema, SHA256: []string{strings.Repeat("ab", 32), strings.Repeat("cd", 32)}[rng.IntN(2)], Rows: 10}
	pol := taxPolicy()
	if rng.IntN(2) == 0 {
		pol["dataset"] = "health"
	}
	var kind string
	var doc any
	var extra any
	switch rng.IntN(17) {
	case 0:
		right("agency1")
		kind, doc = KindDatasetRegister, ds
	case 1:
		right("agency1b")
		kind, doc = KindPolicyPublish, pol
	case 2, 3:
		right("bank")
		kind, doc, extra = KindJobSubmit, job("q", []string{"masked", "he"}[rng.IntN(2)], "credit risk statistics"), plan("sum:income")
	case 4:
		right("agency1")
		kind, doc = KindJobApprove, JobDecisionDoc{Job: jobID}
	case 5:
		right("agency1")
		kind, doc = KindJobReject, JobDecisionDoc{Job: jobID, Reason: []string{"", "no"}[rng.IntN(2)]}
	case 6:
		right("node1")
		kind, doc = KindJobStart, JobResultDoc{Job: jobID, Node: who}
	case 7:
		right("node1")
		kind, doc = []string{KindJobComplete, KindJobFail}[rng.IntN(2)], JobResultDoc{Job: jobID, ResultHash: strings.Repeat("f", 64*rng.IntN(2)), Reason: "r"}
	case 8:
		right("admin")
		kind, doc = KindAccountGrant, GrantDoc{Address: w.addr(names[rng.IntN(len(names))]).String(), Role: []string{"agency", "admin", "nosuch"}[rng.IntN(3)]}
	case 9:
		right("admin")
		kind, doc = KindAccountRevoke, GrantDoc{Address: w.addr(names[rng.IntN(len(names))]).String(), Role: []string{"agency", "admin", "enterprise"}[rng.IntN(3)]}
	case 10:
		right("node1")
		kind, doc = KindHECeremony, ceremonyDoc(w, 2, "node1", []string{"node2", "agency1"}[rng.IntN(2)])
	case 11:
		right("node2")
		kind, doc = KindHEShare, HEShareDoc{Job: jobID, Ciphertext: strings.Repeat("1", 64), Active: []string{"node1", "node2"}}
	case 12:
		right("node1")
		kind, doc = KindPseudonymCeremony, pseudonymDoc(w, 2, "node1", []string{"node2", "agency1"}[rng.IntN(2)])
	case 13:
		right([]string{"agency1", "node1", "bank"}[rng.IntN(3)])
		if rng.IntN(2) == 0 {
			kind, doc = KindPseudonymBatch, batch(int64(rng.IntN(3)*20_000), PurposeDataset, []string{"census", "tax2025"}[rng.IntN(2)], "")
		} else {
			kind, doc = KindPseudonymBatch, batch(int64(rng.IntN(3)*20_000), PurposeJob, "", jobID)
		}
	case 14:
		right("admin")
		kind, doc = KindPseudonymRotate, map[string]string{"reason": []string{"", "lost"}[rng.IntN(2)]}
	case 15: // budgets: limits, some refused
		right("admin")
		kind, doc = KindLimitsSet, Limits{MaxEpsilonPerQuery: []float64{0, 0.5, 1}[rng.IntN(3)], MaxEpsilonBudget: []float64{5, 10}[rng.IntN(2)], MaxDelta: 1e-5}
	case 16: // budgets: a policy linking populations (merges), some refused
		right("agency1")
		pol["dataset"] = []string{"tax2025", "taxcopy"}[rng.IntN(2)]
		pol["purpose"] = "linked"
		pol["dp"] = map[string]any{"epsilon_per_query": 0.5, "epsilon_budget": 5.0, "delta": 1e-6,
			"shares_budget_with": []string{[]string{"tax2025", "taxcopy", "health", "nosuch"}[rng.IntN(4)]}}
		kind, doc = KindPolicyPublish, pol
	}
	b, _ := json.Marshal(doc)
	var x []byte
	if extra != nil {
		x, _ = json.Marshal(extra)
	}
	author := "node1"
	switch {
	case IsNodeKind(kind) && rng.IntN(4) > 0:
		author = who
	case rng.IntN(5) == 0:
		author = []string{"node2", who}[rng.IntN(2)]
	}
	skew := time.Duration(0)
	if rng.IntN(6) == 0 {
		skew = time.Duration(rng.IntN(3)-1) * 11 * time.Minute
	}
	w.replays++
	e := Entry{Author: w.addr(author), Actor: w.addr(who), Kind: kind, Payload: b, Extra: x, Time: w.now,
		ReplayKey: fmt.Sprintf("r%d", w.replays), ReplayTime: w.now.Add(skew)}
	return e, w.now
}
