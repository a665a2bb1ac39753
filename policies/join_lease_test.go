package policies

import (
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
	k := pub(44)
	w.keys["node5"] = k
	b, _ := json.Marshal(RegisterDoc{PublicKey: k, Algorithm: "ed25519", Name: "node5"})
	if err := w.m.Apply(Entry{Author: w.addr("node5"), Actor: w.addr("node5"), Kind: KindAccountRegister, Payload: b, ReplayKey: "n5", ReplayTime: w.now}, w.index, w.now); err != nil {
		t.Fatal(err)
	}
	w.index++
	w.must("admin", KindAccountGrant, GrantDoc{Address: w.addr("node5").String(), Role: "node", Org: "ops2"}, nil)
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
