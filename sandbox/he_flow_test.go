package sandbox

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

type heFlowLedger struct {
	jobs     map[string]policies.Job
	keys     map[policies.Address][]byte
	policies map[string]policies.Policy
}

func (l *heFlowLedger) HE() (policies.HECeremony, bool) { return policies.HECeremony{}, false }
func (l *heFlowLedger) HEKey(a policies.Address) ([]byte, bool) {
	k, ok := l.keys[a]
	return k, ok
}
func (l *heFlowLedger) Job(id string) (policies.Job, bool) {
	j, ok := l.jobs[id]
	return j, ok
}
func (l *heFlowLedger) Policy(id string) (policies.Policy, bool) {
	p, ok := l.policies[id]
	return p, ok
}

// A share is granted only for a running he job, to the node that runs it,
// once he.share is committed; the policy's budget is split over the
// quantities per cell.
func TestAuthoriseHEShare(t *testing.T) {
	pk, err := heparams.RequesterPublicKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	runner, requester, other := policies.Address{1}, policies.Address{2}, policies.Address{3}
	running := policies.Job{ID: "job-1", Mode: policies.ModeHE, Status: policies.JobRunning, Runner: runner, Requester: requester, Policy: "pol-1"}
	ledger := func(edit func(l *heFlowLedger)) *heFlowLedger {
		l := &heFlowLedger{
			jobs:     map[string]policies.Job{"job-1": running},
			keys:     map[policies.Address][]byte{requester: pk},
			policies: map[string]policies.Policy{"pol-1": {ID: "pol-1", DP: policies.DP{EpsilonPerQuery: 1, Delta: 1e-6, Mechanism: "gaussian"}}},
		}
		if edit != nil {
			edit(l)
		}
		return l
	}
	ask := HEShareAsk{Job: "job-1", Runner: runner, PerCell: 4, CiphertextSHA256: "ab", Active: []string{"n1", "n2"}}
	for _, tc := range []struct {
		name      string
		ledger    *heFlowLedger
		ask       HEShareAsk
		commitErr error
		ok        bool
	}{
		{"granted", ledger(nil), ask, nil, true},
		{"unknown job", ledger(nil), HEShareAsk{Job: "job-9", Runner: runner}, nil, false},
		{"not running", ledger(func(l *heFlowLedger) { j := running; j.Status = policies.JobCompleted; l.jobs["job-1"] = j }), ask, nil, false},
		{"masked job", ledger(func(l *heFlowLedger) { j := running; j.Mode = policies.ModeMasked; l.jobs["job-1"] = j }), ask, nil, false},
		{"another runner", ledger(nil), HEShareAsk{Job: "job-1", Runner: other, PerCell: 4}, nil, false},
		{"no requester key", ledger(func(l *heFlowLedger) { delete(l.keys, requester) }), ask, nil, false},
		{"malformed requester key", ledger(func(l *heFlowLedger) { l.keys[requester] = pk[:100] }), ask, nil, false},
		{"policy gone", ledger(func(l *heFlowLedger) { delete(l.policies, "pol-1") }), ask, nil, false},
		{"he.share refused", ledger(nil), ask, policies.ErrConflict, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var committed []policies.HEShareDoc
			commit := func(_ context.Context, kind string, doc any) error {
				if kind != policies.KindHEShare {
					t.Fatalf("committed %s", kind)
				}
				if tc.commitErr != nil {
					return tc.commitErr
				}
				committed = append(committed, doc.(policies.HEShareDoc))
				return nil
			}
			g, err := AuthoriseHEShare(context.Background(), tc.ledger, commit, tc.ask)
			if !tc.ok {
				if err == nil || g != nil || len(committed) != 0 {
					t.Fatalf("granted %+v, committed %v, err %v", g, committed, err)
				}
				if tc.commitErr != nil && !errors.Is(err, tc.commitErr) {
					t.Fatalf("err %v, want %v", err, tc.commitErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(committed) != 1 || committed[0].Job != "job-1" || committed[0].Ciphertext != "ab" || len(committed[0].Active) != 2 {
				t.Fatalf("committed %+v", committed)
			}
			if g.Target == nil || g.Epsilon != 0.25 || g.Delta != 0.25e-6 || g.Mechanism != "gaussian" {
				t.Fatalf("grant %+v", g)
			}
		})
	}
}
