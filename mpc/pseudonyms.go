package mpc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cloudflare/circl/kem"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
)

// Services of the consortium-pseudonym protocols on the node-to-node
// transport (package pseudonym has the cryptography).
const (
	svcPsRound1 = "pseudonym.round1" // plan -> the participant's HPKE key
	svcPsRound2 = "pseudonym.round2" // HPKE keys -> its commitments and sealed shares
	svcPsRound3 = "pseudonym.round3" // shares for it, all commitments -> its verification key
	svcPsEval   = "pseudonym.eval"   // a committed batch's request -> its partial evaluation
)

// IsPseudonymService reports whether a node-to-node service belongs to
// Pseudonyms.Serve.
func IsPseudonymService(service string) bool {
	switch service {
	case svcPsRound1, svcPsRound2, svcPsRound3, svcPsEval:
		return true
	}
	return false
}

// PseudonymLedger is what the pseudonym party reads of the committed
// state (policies.Machine).
type PseudonymLedger interface {
	Ledger
	Pseudonym() (policies.PseudonymCeremony, bool)
	PseudonymBatch(id string) (policies.PseudonymBatch, bool)
}

// PseudonymConfig configures Pseudonyms.
type PseudonymConfig struct {
	Node   string     // this node's name
	Key    *chain.Key // its account key: signs every message
	Dir    string     // where its key share is kept (0600)
	Call   Caller
	Ledger PseudonymLedger
	// Sync, when set, runs before a request is opened (a read barrier):
	// a batch the coordinator committed is then visible here.
	Sync func(ctx context.Context) error
}

// Pseudonyms is one node's side of the consortium-pseudonym protocols:
// the joint-Feldman key ceremony and partial evaluations of committed
// batches. Its key share lives in Dir/pseudonym.share (0600) and is never
// logged or sent.
type Pseudonyms struct {
	cfg PseudonymConfig

	mu    sync.Mutex
	pend  map[string]*psPending
	order []string // ceremony ids of shares, oldest first
	// shares by ceremony id: a ceremony that completes among the nodes
	// but is never committed (refused, or a rotation in progress) adds a
	// share and takes nothing away from the committed one.
	shares map[string]*pseudonym.KeyShare
}

// committed returns the share of the committed ceremony, if this node
// holds one.
func (p *Pseudonyms) committed() (*pseudonym.KeyShare, policies.PseudonymCeremony, bool) {
	c, ok := p.cfg.Ledger.Pseudonym()
	if !ok {
		return nil, c, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ks, ok := p.shares[c.ID]
	return ks, c, ok
}

type psPending struct {
	plan *psPlan
	hsk  kem.PrivateKey
	deal *pseudonym.Dealing
}

type psPlan struct {
	ID           string        `json:"id"`
	Threshold    int           `json:"threshold"`
	Participants []Participant `json:"participants"`
	Coordinator  string        `json:"coordinator"`
}

// NewPseudonyms makes the party, loading a finished ceremony's share.
func NewPseudonyms(cfg PseudonymConfig) (*Pseudonyms, error) {
	if cfg.Key == nil || cfg.Dir == "" || cfg.Call == nil || cfg.Ledger == nil {
		return nil, errors.New("mpc: pseudonym config needs Key, Dir, Call and Ledger")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	p := &Pseudonyms{cfg: cfg, pend: map[string]*psPending{}, shares: map[string]*pseudonym.KeyShare{}}
	if err := p.load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("mpc: loading the pseudonym key share: %w", err)
	}
	return p, nil
}

// Share returns this node's point and verification key in the committed
// ceremony, once it holds a share of it (never the share itself).
func (p *Pseudonyms) Share() (ceremony string, point uint64, vk []byte, ok bool) {
	ks, c, ok := p.committed()
	if !ok {
		return "", 0, nil, false
	}
	return c.ID, ks.Point, ks.VerificationKey(), true
}

// Serve answers a peer's request for one of the pseudonym services.
func (p *Pseudonyms) Serve(ctx context.Context, service string, body []byte) ([]byte, error) {
	if p.cfg.Sync != nil {
		if err := p.cfg.Sync(ctx); err != nil {
			return nil, err
		}
	}
	switch service {
	case svcPsRound1:
		return p.round1(body)
	case svcPsRound2:
		return p.round2(body)
	case svcPsRound3:
		return p.round3(body)
	case svcPsEval:
		return p.evaluate(body)
	}
	return nil, fmt.Errorf("mpc: unknown service %q", service)
}
