package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// A genesis may shorten or lengthen the join lease within bounds; outside
// them it is refused with the rule.
func TestGenesisJoinLease(t *testing.T) {
	cases := []struct {
		sec  int64
		want time.Duration
		err  string
	}{
		{0, JoinLease, ""},
		{10, 10 * time.Second, ""},
		{86400, 24 * time.Hour, ""},
		{4, 0, "join_lease_seconds 4 is outside [5, 86400]"},
		{-1, 0, "join_lease_seconds -1 is outside"},
		{86401, 0, "join_lease_seconds 86401 is outside"},
	}
	for _, c := range cases {
		t.Run(time.Duration(c.sec*int64(time.Second)).String(), func(t *testing.T) {
			w, err := genesisWorld(t, nil, func(g *Genesis) { g.JoinLeaseSeconds = c.sec })
			if c.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := w.m.JoinLease(); got != c.want {
				t.Fatalf("lease %s, want %s", got, c.want)
			}
		})
	}
}

// With a genesis lease of 10 s, another executor takes a join over 10 s
// (block time) after the runner's last claim, not before.
func TestJoinLeaseFromGenesis(t *testing.T) {
	w := joinWorld(t, 3, func(g *Genesis) { g.JoinLeaseSeconds = 10 })
	w.publishJoin([]string{"*"}, auto, auto)
	w.addNode("node5", 44, "ops2")
	w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
	start := JobResultDoc{Job: w.lastJob().ID, Node: "x"}
	w.must("node3", KindJobStart, start, nil)
	w.now = w.now.Add(9 * time.Second)
	if err := w.act("node5", KindJobStart, start, nil); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "lease runs until") {
		t.Fatalf("taken over 9 s into a 10 s lease: %v", err)
	}
	w.now = w.now.Add(time.Second)
	w.must("node5", KindJobStart, start, nil)
	if j, _ := w.m.Job(start.Job); j.Runner != w.addr("node5") {
		t.Fatalf("runner %s", j.Runner)
	}
}

// An he join whose runner dies after a node issued its decryption share:
// another executor takes the job over after the lease, but a node that
// shared one result ciphertext shares no other, so the new runner's result
// cannot reach the threshold; the job is failed and, since a share went
// out, stays charged (a share is part of a release: the budget it spent is
// not given back).
func TestHEJoinTakenOverAfterAShare(t *testing.T) {
	w := joinWorld(t, 3, func(g *Genesis) { g.JoinLeaseSeconds = 10 })
	w.approveCeremonies()
	w.must("node1", KindHECeremony, ceremonyDoc(w, 2, "node1", "node2"), nil)
	w.must("bank", KindHEKey, HEKeyDoc{Params: "p", PublicKey: bytes.Repeat([]byte{7}, 1000)}, nil)
	for d, by := range map[string]string{"tax2025": "agency1", "benefits2025": "agency2"} {
		agg := map[string][]string{"income": {"count", "avg"}}
		if d == "benefits2025" {
			agg = map[string][]string{"benefit": {"sum"}}
		}
		p := joinPolicy(d, []string{"*"}, agg, auto)
		p["modes"] = []string{"masked", "he"}
		w.must(by, KindPolicyPublish, p, nil)
	}
	w.addNode("node5", 45, "ops2")

	w.must("bank", KindJobSubmit, job("q", "he", "benefit statistics"), joinPlan())
	id := w.lastJob().ID
	spent := w.m.Spent(w.addr("bank"), "tax2025")
	if spent == 0 {
		t.Fatal("the he join charged nothing")
	}
	w.must("node3", KindJobStart, JobResultDoc{Job: id}, nil)
	w.ship(id, "node3")
	ctA, ctB := strings.Repeat("d", 64), strings.Repeat("e", 64)
	w.must("node1", KindHEShare, HEShareDoc{Job: id, Ciphertext: ctA, Active: []string{"node1", "node2"}}, nil)
	// node3 dies here. After the lease, node5 runs the job again.
	w.now = w.now.Add(10 * time.Second)
	w.must("node5", KindJobStart, JobResultDoc{Job: id}, nil)
	w.ship(id, "node5")
	if err := w.act("node1", KindHEShare, HEShareDoc{Job: id, Ciphertext: ctB, Active: []string{"node1", "node2"}}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("node1 shared the new runner's result after another: %v", err)
	}
	w.must("node2", KindHEShare, HEShareDoc{Job: id, Ciphertext: ctB, Active: []string{"node1", "node2"}}, nil)
	if err := w.act("node5", KindJobComplete, JobResultDoc{Job: id, ResultHash: strings.Repeat("b", 64)}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("completed with one share of each of two results: %v", err)
	}
	w.must("node5", KindJobFail, JobResultDoc{Job: id, Reason: "decryption shares below the threshold"}, nil)
	if j, _ := w.m.Job(id); j.Status != JobFailed || j.Refunded || w.m.Spent(w.addr("bank"), "tax2025") != spent {
		t.Fatalf("job %s refunded %v, spent %g (was %g)", j.Status, j.Refunded, w.m.Spent(w.addr("bank"), "tax2025"), spent)
	}
}

// addNode registers account name (key seed) and grants it a node of org.
func (w *world) addNode(name string, seed byte, org string) {
	w.t.Helper()
	k := pub(seed)
	w.keys[name] = k
	b, _ := json.Marshal(RegisterDoc{PublicKey: k, Algorithm: "ed25519", Name: name})
	if err := w.m.Apply(Entry{Author: w.addr(name), Actor: w.addr(name), Kind: KindAccountRegister, Payload: b, ReplayKey: "reg-" + name, ReplayTime: w.now}, w.index, w.now); err != nil {
		w.t.Fatal(err)
	}
	w.index++
	w.must("admin", KindAccountGrant, GrantDoc{Address: w.addr(name).String(), Role: "node", Org: org}, nil)
}
