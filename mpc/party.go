package mpc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cloudflare/circl/kem"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/schemes/ckks"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// SmudgingSigma is the standard deviation of the noise each node adds to
// its key-switch share (bounded at 6σ). At the engine's scale 2^36 it
// moves a released value normalised to |x/B| ≤ 1 by about 2^-10 per
// share: for a sum of incomes bounded by 10^6 about ±1,000 per share,
// far below the DP noise on the same sum.
const SmudgingSigma = 1 << 26

// Services the party serves over the node-to-node transport.
const (
	svcRound1 = "mpc.round1"
	svcRound2 = "mpc.round2"
	svcRound3 = "mpc.round3"
	svcShare  = "mpc.share"
)

// Ledger is what the party reads of the committed state.
type Ledger interface {
	Account(a policies.Address) (policies.Account, bool)
	Can(a policies.Address, perm string) bool
}

// Caller sends a request to a peer's service (chain.Node.Call).
type Caller func(ctx context.Context, peer, service string, body []byte) ([]byte, error)

// Grant is what Authorise hands back for a share request: the requester's
// CKKS public key and the DP noise each released coefficient gets.
type Grant struct {
	Target    *rlwe.PublicKey
	Positions []int   // coefficients to noise
	Epsilon   float64 // per quantity
	Delta     float64 // per quantity (gaussian)
	Mechanism string  // laplace or gaussian
	NoNoise   bool    // tests only: no DP noise
}

// Config configures a Party.
type Config struct {
	Node   string     // this node's name
	Key    *chain.Key // its account key: signs every message
	Dir    string     // where the key share and keys are kept
	Call   Caller
	Ledger Ledger
	// Sync, when set, runs before any message is opened, so that the
	// sender's account (and a job's state) are read as the sender saw
	// them (a read barrier on the ledger).
	Sync func(ctx context.Context) error
	// Observe, when set, is told how long the phases of a release took on
	// the coordinating node: "shares" (asking t nodes until every share is
	// in) and "combine".
	Observe func(phase string, d time.Duration)
	// Authorise checks a share request against the committed ledger and
	// commits he.share before the share is computed.
	Authorise func(ctx context.Context, req *ShareRequest) (*Grant, error)
}

// Party is one node's side of the protocols.
type Party struct {
	cfg    Config
	params ckks.Parameters // heparams.Params
	galois []uint64        // heparams.GaloisElements

	mu   sync.Mutex
	pend map[string]*pending // ceremonies in flight, by id
	// The finished ceremony: this node's t-of-N share and the keys.
	cer  *Plan
	tsk  *mhe.ShamirSecretShare
	keys *Keys
}

// Keys are the collective keys a finished ceremony left on this node,
// with the digests he.ceremony commits.
type Keys struct {
	PK           *rlwe.PublicKey
	Galois       []*rlwe.GaloisKey
	PKSHA256     string
	GaloisSHA256 string
}

type pending struct {
	plan *Plan
	sk   *rlwe.SecretKey
	hsk  kem.PrivateKey
}

// Plan is a ceremony as the coordinator announces it.
type Plan struct {
	ID             string        `json:"id"`
	Params         string        `json:"params"`
	Seed           []byte        `json:"seed"` // common reference string
	Threshold      int           `json:"threshold"`
	Participants   []Participant `json:"participants"`
	GaloisElements []uint64      `json:"galois_elements"`
	Coordinator    string        `json:"coordinator"`
}

// Participant is a node taking part, with its Shamir point.
type Participant struct {
	Node    string           `json:"node"`
	Address policies.Address `json:"address"`
	Point   uint64           `json:"point"`
}

// New makes a party, loading a finished ceremony's share from Dir.
func New(cfg Config) (*Party, error) {
	if cfg.Key == nil || cfg.Dir == "" || cfg.Call == nil || cfg.Ledger == nil {
		return nil, errors.New("mpc: config needs Key, Dir, Call and Ledger")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	p := &Party{cfg: cfg, params: heparams.Params(), galois: heparams.GaloisElements(), pend: map[string]*pending{}}
	if err := p.load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("mpc: loading the key share: %w", err)
	}
	return p, nil
}

// Keys returns the collective keys, once this node took part in a
// ceremony.
func (p *Party) Keys() (*Keys, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys, p.keys != nil
}

// Serve answers a peer's request (chain.Config.Services).
func (p *Party) Serve(ctx context.Context, service string, body []byte) ([]byte, error) {
	if p.cfg.Sync != nil {
		if err := p.cfg.Sync(ctx); err != nil {
			return nil, err
		}
	}
	switch service {
	case svcRound1:
		return p.round1(body)
	case svcRound2:
		return p.round2(body)
	case svcRound3:
		return p.round3(body)
	case svcShare:
		return p.share(ctx, body)
	}
	return nil, fmt.Errorf("mpc: unknown service %q", service)
}
