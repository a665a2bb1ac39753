package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// The he job flow, on the nodes that did not run the job: a node asked for
// its decryption share of an he job's result re-checks the job on its own
// committed ledger and commits he.share before the share exists
// (AuthoriseHEShare); a node uses the collective keys only once they match
// the committed ceremony (CheckHEKeys). The multiparty protocol itself is
// package mpc's; the api wires the two together.

// HEFlowState is what the he job flow reads of the committed state
// (policies.Machine).
type HEFlowState interface {
	HE() (policies.HECeremony, bool)
	HEKey(policies.Address) ([]byte, bool)
	Job(id string) (policies.Job, bool)
	Policy(id string) (policies.Policy, bool)
}

// HEShareAsk is a request for one node's decryption share of an he job's
// result, as the node that runs the job signed it.
type HEShareAsk struct {
	Job              string
	Runner           policies.Address // who signed the request
	PerCell          int              // quantities released per cell (the ε split)
	CiphertextSHA256 string           // the result ciphertext's digest
	Active           []string         // the nodes whose shares will be combined
}

// HEShareGrant is what a node grants for its share: the requester's CKKS
// key the share re-encrypts to, and the DP noise each released quantity
// gets (the policy's ε, and δ for the gaussian mechanism, split evenly
// over the quantities a cell releases).
type HEShareGrant struct {
	Target    *rlwe.PublicKey
	Epsilon   float64
	Delta     float64
	Mechanism string
}

// CommitFunc signs doc as this node's own entry of the kind and commits
// it; it returns once the entry is committed or refused.
type CommitFunc func(ctx context.Context, kind string, doc any) error

// AuthoriseHEShare checks a share request against st, read after a read
// barrier: the job is a running he job, run by the node that asks, whose
// requester registered an HE key and whose policy still exists. It then
// commits he.share through commit (the state machine's own checks apply
// there too) and only then returns the grant: no share exists that the
// ledger does not record.
func AuthoriseHEShare(ctx context.Context, st HEFlowState, commit CommitFunc, ask HEShareAsk) (*HEShareGrant, error) {
	j, ok := st.Job(ask.Job)
	if !ok {
		return nil, fmt.Errorf("no job %s on the ledger", ask.Job)
	}
	if j.Mode != policies.ModeHE || j.Status != policies.JobRunning {
		return nil, fmt.Errorf("job %s is %s (mode %s): shares are issued only for a running he job", j.ID, j.Status, j.Mode)
	}
	if j.Runner != ask.Runner {
		return nil, fmt.Errorf("job %s is run by %s, not by the requesting node", j.ID, j.Runner)
	}
	kb, ok := st.HEKey(j.Requester)
	if !ok {
		return nil, fmt.Errorf("requester %s registered no HE key", j.Requester)
	}
	target, err := heparams.ParsePublicKey(kb)
	if err != nil {
		return nil, err
	}
	p, ok := st.Policy(j.Policy)
	if !ok {
		return nil, fmt.Errorf("policy %s is gone", j.Policy)
	}
	dp := p.DP
	if j.IsJoin() {
		if dp, err = joinDP(st, j); err != nil {
			return nil, err
		}
	}
	share := policies.HEShareDoc{Job: j.ID, Ciphertext: ask.CiphertextSHA256, Active: ask.Active}
	if err := commit(ctx, policies.KindHEShare, share); err != nil {
		return nil, err
	}
	return heGrant(target, dp, ask.PerCell), nil
}

// heGrant splits the policy's budget for one release over the quantities
// each cell releases (at least one).
func heGrant(target *rlwe.PublicKey, dp policies.DP, perCell int) *HEShareGrant {
	per := float64(max(perCell, 1))
	g := &HEShareGrant{Target: target, Epsilon: dp.EpsilonPerQuery / per, Mechanism: dp.Mechanism}
	if dp.Mechanism == "gaussian" {
		g.Delta = dp.Delta / per
	}
	return g
}

// CheckHEKeys reports whether the collective keys this node holds (their
// digests) are the committed ceremony's.
func CheckHEKeys(st HEFlowState, took bool, pkSHA256, galoisSHA256 string) error {
	cer, ok := st.HE()
	if !ok {
		return errors.New("no key ceremony on the ledger yet")
	}
	if !took {
		return errors.New("this node took no part in the key ceremony")
	}
	if pkSHA256 != cer.PublicKey || galoisSHA256 != cer.GaloisKeys {
		return errors.New("this node's HE keys differ from the committed ceremony")
	}
	return nil
}
