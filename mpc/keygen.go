package mpc

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/cloudflare/circl/hpke"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// The key ceremony, a participant's side: three rounds, each answering
// the coordinator (coordinate.go runs them).

// Round 1: key shares.

type round1Resp struct {
	ID     string   `json:"id"`
	Node   string   `json:"node"`
	HPKE   []byte   `json:"hpke"`
	CKG    []byte   `json:"ckg"`
	Galois [][]byte `json:"galois"`
}

func (p *Party) crps(plan *Plan) (mhe.PublicKeyGenCRP, []mhe.GaloisKeyGenCRP, error) {
	crs, err := sampling.NewKeyedPRNG(plan.Seed)
	if err != nil {
		return mhe.PublicKeyGenCRP{}, nil, err
	}
	ckg := mhe.NewPublicKeyGenProtocol(p.params)
	gkg := mhe.NewGaloisKeyGenProtocol(p.params)
	c := ckg.SampleCRP(crs)
	g := make([]mhe.GaloisKeyGenCRP, len(plan.GaloisElements))
	for i := range g {
		g[i] = gkg.SampleCRP(crs)
	}
	return c, g, nil
}

func (p *Party) checkPlan(plan *Plan) error {
	if plan.Params != heparams.Name {
		return fmt.Errorf("mpc: ceremony for parameters %q, this node runs %q", plan.Params, heparams.Name)
	}
	if len(plan.Seed) < 32 || plan.ID == "" || plan.Threshold < 2 || plan.Threshold > len(plan.Participants) {
		return errors.New("mpc: malformed ceremony plan")
	}
	if !slices.Equal(plan.GaloisElements, p.galois) {
		return errors.New("mpc: the ceremony asks for other Galois keys than the engine uses")
	}
	if p.me(plan) == nil {
		return fmt.Errorf("mpc: %s is not a participant of ceremony %s", p.cfg.Node, plan.ID)
	}
	return nil
}

func (p *Party) me(plan *Plan) *Participant {
	return participant(plan.Participants, p.cfg.Node)
}

// participant is node's entry in a ceremony's participants, or nil.
func participant(ps []Participant, node string) *Participant {
	for i := range ps {
		if ps[i].Node == node {
			return &ps[i]
		}
	}
	return nil
}

func (p *Party) round1(raw []byte) ([]byte, error) {
	var plan Plan
	if _, err := p.open(svcRound1, raw, &plan); err != nil {
		return nil, err
	}
	if err := p.checkPlan(&plan); err != nil {
		return nil, err
	}
	params := p.params
	sk := rlwe.NewKeyGenerator(params).GenSecretKeyNew()
	ckgCRP, gCRP, err := p.crps(&plan)
	if err != nil {
		return nil, err
	}
	ckg := mhe.NewPublicKeyGenProtocol(params)
	sh := ckg.AllocateShare()
	ckg.GenShare(sk, ckgCRP, &sh)
	resp := round1Resp{ID: plan.ID, Node: p.cfg.Node}
	if resp.CKG, err = sh.MarshalBinary(); err != nil {
		return nil, err
	}
	gkg := mhe.NewGaloisKeyGenProtocol(params)
	for i, g := range plan.GaloisElements {
		gs := gkg.AllocateShare()
		if err := gkg.GenShare(sk, g, gCRP[i], &gs); err != nil {
			return nil, err
		}
		b, err := gs.MarshalBinary()
		if err != nil {
			return nil, err
		}
		resp.Galois = append(resp.Galois, b)
	}
	hpk, hsk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	if resp.HPKE, err = hpk.MarshalBinary(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.pend[plan.ID] = &pending{plan: &plan, sk: sk, hsk: hsk}
	p.mu.Unlock()
	return p.seal(svcRound1, resp)
}

// Round 2: Shamir shares, sealed.

type round2Req struct {
	ID   string            `json:"id"`
	HPKE map[string][]byte `json:"hpke"` // node -> HPKE public key
}

type sealedShare struct {
	From string `json:"from"`
	To   string `json:"to"`
	Enc  []byte `json:"enc"`
	CT   []byte `json:"ct"`
}

type round2Resp struct {
	ID     string        `json:"id"`
	Node   string        `json:"node"`
	Shares []sealedShare `json:"shares"`
}

func shareInfo(id, from, to string) []byte {
	return []byte("datasandbox mpc shamir share\n" + id + "\n" + from + "\n" + to)
}

// fromCoordinator opens a round-2/3 message: signed by the coordinator
// of a ceremony this node has in flight.
func (p *Party) fromCoordinator(service string, raw []byte, id func() string, v any) (*pending, error) {
	signer, err := p.open(service, raw, v)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	pd := p.pend[id()]
	p.mu.Unlock()
	if pd == nil {
		return nil, fmt.Errorf("mpc: no ceremony %q in flight here", id())
	}
	if coordinatorAddr(pd.plan) != signer {
		return nil, fmt.Errorf("mpc: %s not from the ceremony's coordinator", service)
	}
	return pd, nil
}

func (p *Party) round2(raw []byte) ([]byte, error) {
	var req round2Req
	pd, err := p.fromCoordinator(svcRound2, raw, func() string { return req.ID }, &req)
	if err != nil {
		return nil, err
	}
	thr := mhe.NewThresholdizer(p.params)
	poly, err := thr.GenShamirPolynomial(pd.plan.Threshold, pd.sk)
	if err != nil {
		return nil, err
	}
	resp := round2Resp{ID: req.ID, Node: p.cfg.Node}
	for _, to := range pd.plan.Participants {
		share := thr.AllocateThresholdSecretShare()
		thr.GenShamirSecretShare(mhe.ShamirPublicPoint(to.Point), poly, &share)
		b, err := share.MarshalBinary()
		if err != nil {
			return nil, err
		}
		enc, ct, err := sealTo(req.HPKE[to.Node], shareInfo(req.ID, p.cfg.Node, to.Node), b)
		if err != nil {
			return nil, fmt.Errorf("mpc: sealing the share of %s: %w", to.Node, err)
		}
		resp.Shares = append(resp.Shares, sealedShare{From: p.cfg.Node, To: to.Node, Enc: enc, CT: ct})
	}
	return p.seal(svcRound2, resp)
}

func coordinatorAddr(plan *Plan) policies.Address {
	for _, q := range plan.Participants {
		if q.Node == plan.Coordinator {
			return q.Address
		}
	}
	return policies.Address{}
}

// Round 3: open shares, keep keys.

type round3Req struct {
	ID     string        `json:"id"`
	Shares []sealedShare `json:"shares"`
	PK     []byte        `json:"pk"`
	Galois [][]byte      `json:"galois"`
}

type round3Resp struct {
	ID     string `json:"id"`
	Node   string `json:"node"`
	PK     string `json:"pk_sha256"`
	Galois string `json:"galois_sha256"`
}

func (p *Party) round3(raw []byte) ([]byte, error) {
	var req round3Req
	pd, err := p.fromCoordinator(svcRound3, raw, func() string { return req.ID }, &req)
	if err != nil {
		return nil, err
	}
	if len(req.Shares) != len(pd.plan.Participants) {
		return nil, fmt.Errorf("mpc: %d shares for %d participants", len(req.Shares), len(pd.plan.Participants))
	}
	thr := mhe.NewThresholdizer(p.params)
	total := thr.AllocateThresholdSecretShare()
	from := map[string]bool{}
	for i, s := range req.Shares {
		if s.To != p.cfg.Node || from[s.From] || !slices.ContainsFunc(pd.plan.Participants, func(q Participant) bool { return q.Node == s.From }) {
			return nil, fmt.Errorf("mpc: share %d is not addressed to %s from a distinct participant", i, p.cfg.Node)
		}
		from[s.From] = true
		b, err := openWith(pd.hsk, shareInfo(req.ID, s.From, s.To), s.Enc, s.CT)
		if err != nil {
			return nil, fmt.Errorf("mpc: share from %s does not open: %w", s.From, err)
		}
		var sh mhe.ShamirSecretShare
		if err := unmarshal(b, &sh); err != nil {
			return nil, err
		}
		if i == 0 {
			total = sh
		} else if err := thr.AggregateShares(total, sh, &total); err != nil {
			return nil, err
		}
	}
	pk := rlwe.NewPublicKey(p.params)
	if err := unmarshal(req.PK, pk); err != nil {
		return nil, err
	}
	gks := make([]*rlwe.GaloisKey, len(req.Galois))
	for i, b := range req.Galois {
		gks[i] = new(rlwe.GaloisKey)
		if err := unmarshal(b, gks[i]); err != nil {
			return nil, err
		}
	}
	tb, err := total.MarshalBinary()
	if err != nil {
		return nil, err
	}
	planb, err := json.Marshal(pd.plan)
	if err != nil {
		return nil, err
	}
	galb := joinBlobs(req.Galois)
	if err := p.store(planb, tb, req.PK, galb); err != nil {
		return nil, err
	}
	keys := &Keys{PK: pk, Galois: gks, PKSHA256: hexSum(req.PK), GaloisSHA256: hexSum(galb)}
	p.mu.Lock()
	delete(p.pend, req.ID) // s_i is forgotten here
	p.cer, p.tsk, p.keys = pd.plan, &total, keys
	p.mu.Unlock()
	return p.seal(svcRound3, round3Resp{ID: req.ID, Node: p.cfg.Node, PK: keys.PKSHA256, Galois: keys.GaloisSHA256})
}

func unmarshal(b []byte, into interface{ UnmarshalBinary([]byte) error }) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("mpc: malformed key material: %v", r)
		}
	}()
	if err := into.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("mpc: malformed key material: %w", err)
	}
	return nil
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// joinBlobs frames blobs for hashing and storage: u32 length, bytes.
func joinBlobs(bs [][]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b)))
		out = append(out, b...)
	}
	return out
}

func splitBlobs(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, errors.New("mpc: truncated key file")
		}
		n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if n < 0 || n > len(b)-4 {
			return nil, errors.New("mpc: truncated key file")
		}
		out = append(out, b[4:4+n])
		b = b[4+n:]
	}
	return out, nil
}
