package mpc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/differential-privacy/go/v3/noise"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/ckks"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// A threshold release, a participant's side: one node's key-switch share
// of a job's result, with its DP noise.

// ShareRequest asks a participant for its share of a job's result.
type ShareRequest struct {
	Job        string   `json:"job"`
	Ciphertext []byte   `json:"ciphertext"` // heparams.MarshalCiphertext
	Active     []string `json:"active"`     // the nodes whose shares will be combined
	Positions  []int    `json:"positions"`  // released coefficients (DP noise)
	PerCell    int      `json:"per_cell"`   // quantities released per cell (the ε split)
	Runner     string   `json:"runner"`
	// Signer is filled in from the signed envelope on the receiving side.
	Signer policies.Address `json:"-"`
	// CT is the parsed ciphertext, filled in on the receiving side.
	CT *rlwe.Ciphertext `json:"-"`
}

// CiphertextSHA256 is the digest recorded in he.share.
func (r *ShareRequest) CiphertextSHA256() string { return hexSum(r.Ciphertext) }

// Ciphertexts and key-switch shares travel in heparams' strict format:
// Lattigo's own decoder recurses without end on some truncated inputs (a
// fatal stack overflow, not a panic), and these bytes come from other nodes.

func (p *Party) share(ctx context.Context, raw []byte) ([]byte, error) {
	var req ShareRequest
	signer, err := p.open(svcShare, raw, &req)
	if err != nil {
		return nil, err
	}
	req.Signer = signer
	p.mu.Lock()
	cer, tsk := p.cer, p.tsk
	p.mu.Unlock()
	if tsk == nil {
		return nil, errors.New("mpc: this node holds no key share (no ceremony yet)")
	}
	if len(req.Active) < cer.Threshold || !slices.Contains(req.Active, p.cfg.Node) {
		return nil, fmt.Errorf("mpc: the active set must hold %d nodes including %s", cer.Threshold, p.cfg.Node)
	}
	var active []mhe.ShamirPublicPoint
	for _, n := range req.Active {
		q := slices.IndexFunc(cer.Participants, func(x Participant) bool { return x.Node == n })
		if q < 0 {
			return nil, fmt.Errorf("mpc: %s is not a participant", n)
		}
		active = append(active, mhe.ShamirPublicPoint(cer.Participants[q].Point))
	}
	if req.CT, err = heparams.UnmarshalCiphertext(p.params, req.Ciphertext); err != nil {
		return nil, err
	}
	for _, pos := range req.Positions {
		if pos < 0 || pos >= p.params.N() {
			return nil, fmt.Errorf("mpc: position %d out of range", pos)
		}
	}
	if p.cfg.Authorise == nil {
		return nil, errors.New("mpc: no authorisation hook")
	}
	g, err := p.cfg.Authorise(ctx, &req)
	if err != nil {
		return nil, err
	}
	sh, err := p.genShare(cer, tsk, active, req.CT, g)
	if err != nil {
		return nil, err
	}
	return p.seal(svcShare, shareResp{Job: req.Job, Node: p.cfg.Node, Share: heparams.MarshalElement(p.params, sh.Value, req.CT.IsNTT, 0)})
}

type shareResp struct {
	Job   string `json:"job"`
	Node  string `json:"node"`
	Share []byte `json:"share"`
}

func (p *Party) genShare(cer *Plan, tsk *mhe.ShamirSecretShare, active []mhe.ShamirPublicPoint, ct *rlwe.Ciphertext, g *Grant) (*mhe.PublicKeySwitchShare, error) {
	params := p.params
	me := p.me(cer)
	var others []mhe.ShamirPublicPoint
	for _, q := range cer.Participants {
		if q.Node != p.cfg.Node {
			others = append(others, mhe.ShamirPublicPoint(q.Point))
		}
	}
	cmb := mhe.NewCombiner(*params.GetRLWEParameters(), mhe.ShamirPublicPoint(me.Point), others, cer.Threshold)
	sk := rlwe.NewSecretKey(params)
	if err := cmb.GenAdditiveShare(active, mhe.ShamirPublicPoint(me.Point), *tsk, sk); err != nil {
		return nil, err
	}
	pcks, err := mhe.NewPublicKeySwitchProtocol(params, ring.DiscreteGaussian{Sigma: SmudgingSigma, Bound: 6 * SmudgingSigma})
	if err != nil {
		return nil, err
	}
	sh := pcks.AllocateShare(ct.Level())
	pcks.GenShare(sk, g.Target, ct, &sh)
	if !g.NoNoise && len(g.Positions) > 0 {
		if err := addDPNoise(params, &sh, ct, g); err != nil {
			return nil, err
		}
	}
	return &sh, nil
}

// addDPNoise adds this node's draw of the policy's mechanism to every
// released coefficient, inside its share: the noise is under the
// requester's key like the result. Values are normalised (|x/B| ≤ 1,
// counts in units), so every quantity has sensitivity 1.
func addDPNoise(params ckks.Parameters, sh *mhe.PublicKeySwitchShare, ct *rlwe.Ciphertext, g *Grant) error {
	if !(g.Epsilon > 0) {
		return errors.New("mpc: no privacy budget for this release")
	}
	var mech noise.Noise = noise.Laplace()
	if g.Mechanism == "gaussian" {
		mech = noise.Gaussian()
	}
	ringQ := params.RingQ().AtLevel(ct.Level())
	poly := ringQ.NewPoly()
	scale := ct.Scale.Float64()
	for _, pos := range g.Positions {
		v, err := mech.AddNoiseFloat64(0, 1, 1, g.Epsilon, g.Delta)
		if err != nil {
			return fmt.Errorf("mpc: DP noise: %w", err)
		}
		x := math.Round(v * scale)
		for i := 0; i <= ct.Level(); i++ {
			q := ringQ.SubRings[i].Modulus
			if x >= 0 {
				poly.Coeffs[i][pos] = uint64(x) % q
			} else {
				poly.Coeffs[i][pos] = q - uint64(-x)%q
			}
		}
	}
	if ct.IsNTT {
		ringQ.NTT(poly, poly)
	}
	ringQ.Add(sh.Value[0], poly, sh.Value[0])
	return nil
}

// The release, the coordinator's side: t nodes' shares, combined.

// Release has t participants (this node first, then the others in order
// until t answered) re-encrypt ct to the job's requester, and returns the
// switched ciphertext and the nodes that shared. A node that fails is
// skipped: with t=2 of 3 one node may be down.
func (p *Party) Release(ctx context.Context, req ShareRequest, ct *rlwe.Ciphertext) (*rlwe.Ciphertext, []string, error) {
	p.mu.Lock()
	cer := p.cer
	p.mu.Unlock()
	if cer == nil {
		return nil, nil, errors.New("mpc: no key ceremony on this node")
	}
	order := []string{p.cfg.Node}
	for _, q := range cer.Participants {
		if q.Node != p.cfg.Node {
			order = append(order, q.Node)
		}
	}
	// Try active sets in order: self plus the first t-1 reachable others.
	var lastErr error
	tried := map[string]bool{}
	for attempt := 0; attempt < len(order); attempt++ {
		var active []string
		for _, n := range order {
			if !tried[n] || n == p.cfg.Node {
				active = append(active, n)
			}
			if len(active) == cer.Threshold {
				break
			}
		}
		if len(active) < cer.Threshold {
			break
		}
		req.Active = active
		out, failed, err := p.releaseWith(ctx, req, ct, cer)
		if err == nil {
			return out, active, nil
		}
		lastErr = err
		if failed == "" || failed == p.cfg.Node {
			return nil, nil, err
		}
		tried[failed] = true
	}
	return nil, nil, fmt.Errorf("mpc: fewer than %d nodes could share: %w", cer.Threshold, lastErr)
}

func (p *Party) releaseWith(ctx context.Context, req ShareRequest, ct *rlwe.Ciphertext, cer *Plan) (*rlwe.Ciphertext, string, error) {
	start := time.Now()
	msg, err := p.seal(svcShare, req)
	if err != nil {
		return nil, "", err
	}
	nodes := make([]Participant, len(req.Active))
	for i, n := range req.Active {
		q := slices.IndexFunc(cer.Participants, func(x Participant) bool { return x.Node == n })
		if q < 0 {
			return nil, n, fmt.Errorf("mpc: %s is not a participant", n)
		}
		nodes[i] = cer.Participants[q]
	}
	shares := make([][]byte, len(nodes))
	for i, a := range ask[shareResp](ctx, p.call, p.cfg.Ledger, svcShare, nodes, same(msg)) {
		err := a.Err
		if err == nil && a.Value.Job != req.Job {
			err = errors.New("mpc: a share of another job")
		}
		if err != nil {
			return nil, req.Active[i], fmt.Errorf("mpc: share of %s: %w", req.Active[i], err)
		}
		shares[i] = a.Value.Share
	}
	p.observe("shares", start)
	start = time.Now()
	defer p.observe("combine", start)
	return p.combine(ct, shares, req.Active)
}

func (p *Party) observe(phase string, since time.Time) {
	if p.cfg.Observe != nil {
		p.cfg.Observe(phase, time.Since(since))
	}
}

// combine adds key-switch shares to ct: the result decrypts under the
// target key of the shares. nodes[i] sent shares[i]; a malformed share
// names its node, so that the release is retried without it.
func (p *Party) combine(ct *rlwe.Ciphertext, shares [][]byte, nodes []string) (*rlwe.Ciphertext, string, error) {
	ringQ := p.params.RingQ().AtLevel(ct.Level())
	var agg []ring.Poly
	for i, b := range shares {
		polys, _, _, err := heparams.UnmarshalElement(p.params, b, 2)
		if err != nil {
			return nil, nodes[i], fmt.Errorf("mpc: share of %s: %w", nodes[i], err)
		}
		if len(polys) != 2 || polys[0].Level() != ct.Level() || polys[0].N() != ringQ.N() {
			return nil, nodes[i], fmt.Errorf("mpc: share of %s has another shape", nodes[i])
		}
		if agg == nil {
			agg = polys
			continue
		}
		ringQ.Add(agg[0], polys[0], agg[0])
		ringQ.Add(agg[1], polys[1], agg[1])
	}
	out := ct.CopyNew()
	ringQ.Add(out.Value[0], agg[0], out.Value[0])
	out.Value[1].CopyLvl(ct.Level(), agg[1])
	return out, "", nil
}
