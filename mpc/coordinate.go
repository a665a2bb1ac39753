package mpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// RunCeremony coordinates a key ceremony among the participants (this
// node among them) with threshold t and returns the he.ceremony document
// to commit. Participants get points 1..N in the order given.
func (p *Party) RunCeremony(ctx context.Context, nodes []Participant, t int) (*policies.HECeremony, error) {
	plan, err := p.newPlan(nodes, t)
	if err != nil {
		return nil, err
	}
	keys, err := p.keyRound(ctx, plan)
	if err != nil {
		return nil, err
	}
	to, r2, err := p.shareRound(ctx, plan, keys.hpke)
	if err != nil {
		return nil, err
	}
	r3, err := p.keepRound(ctx, plan, keys, to)
	if err != nil {
		return nil, err
	}
	transcript := append(append(keys.raw, r2...), r3...)
	doc := &policies.HECeremony{ID: plan.ID, Params: plan.Params, Threshold: t, GaloisElements: plan.GaloisElements,
		PublicKey: hexSum(keys.pk), GaloisKeys: hexSum(joinBlobs(keys.galois)), Transcript: hexSum(joinBlobs(transcript))}
	for _, q := range plan.Participants {
		doc.Participants = append(doc.Participants, policies.HEParticipant{Node: q.Node, Address: q.Address, Point: q.Point})
	}
	return doc, nil
}

// newPlan announces a ceremony: a fresh id and common reference string,
// points 1..N in order.
func (p *Party) newPlan(nodes []Participant, t int) (*Plan, error) {
	if t < 2 || t > len(nodes) {
		return nil, fmt.Errorf("mpc: threshold %d of %d nodes: need 2 ≤ t ≤ N", t, len(nodes))
	}
	id := make([]byte, 16)
	seed := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	plan := &Plan{ID: hex.EncodeToString(id), Params: heparams.Name, Seed: seed, Threshold: t,
		GaloisElements: p.galois, Coordinator: p.cfg.Node}
	for i, n := range nodes {
		n.Point = uint64(i + 1)
		plan.Participants = append(plan.Participants, n)
	}
	if p.me(plan) == nil {
		return nil, errors.New("mpc: the coordinator must be a participant")
	}
	return plan, nil
}

// collective is what round 1 yields: the collective public and Galois
// keys (marshalled), each participant's HPKE key for round 2, and the
// round's raw answers for the transcript.
type collective struct {
	pk     []byte
	galois [][]byte
	hpke   map[string][]byte
	raw    [][]byte
}

// keyRound (round 1) collects every participant's shares of the public
// and Galois keys and aggregates them into the collective keys.
func (p *Party) keyRound(ctx context.Context, plan *Plan) (*collective, error) {
	msg, err := p.seal(svcRound1, plan)
	if err != nil {
		return nil, err
	}
	answers, err := round[round1Resp](ctx, p.call, p.cfg.Ledger, svcRound1, plan.Participants, same(msg))
	if err != nil {
		return nil, err
	}
	params := p.params
	ckg := mhe.NewPublicKeyGenProtocol(params)
	gkg := mhe.NewGaloisKeyGenProtocol(params)
	ckgCRP, gCRP, err := p.crps(plan)
	if err != nil {
		return nil, err
	}
	var ckgAgg mhe.PublicKeyGenShare
	gAgg := make([]mhe.GaloisKeyGenShare, len(plan.GaloisElements))
	out := &collective{hpke: map[string][]byte{}}
	for i, q := range plan.Participants {
		r := answers[i].Value
		if r.Node != q.Node || r.ID != plan.ID || len(r.Galois) != len(plan.GaloisElements) {
			return nil, fmt.Errorf("mpc: round 1 answer of %s does not match the plan", q.Node)
		}
		out.raw = append(out.raw, answers[i].Raw)
		out.hpke[q.Node] = r.HPKE
		var sh mhe.PublicKeyGenShare
		if err := unmarshal(r.CKG, &sh); err != nil {
			return nil, err
		}
		if i == 0 {
			ckgAgg = sh
		} else {
			ckg.AggregateShares(ckgAgg, sh, &ckgAgg)
		}
		for k, b := range r.Galois {
			var gs mhe.GaloisKeyGenShare
			if err := unmarshal(b, &gs); err != nil {
				return nil, err
			}
			if gs.GaloisElement != plan.GaloisElements[k] {
				return nil, fmt.Errorf("mpc: %s sent a share of the wrong Galois key", q.Node)
			}
			if i == 0 {
				gAgg[k] = gs
			} else if err := gkg.AggregateShares(gAgg[k], gs, &gAgg[k]); err != nil {
				return nil, err
			}
		}
	}
	pk := rlwe.NewPublicKey(params)
	ckg.GenPublicKey(ckgAgg, ckgCRP, pk)
	if out.pk, err = pk.MarshalBinary(); err != nil {
		return nil, err
	}
	for k := range gAgg {
		gk := rlwe.NewGaloisKey(params)
		if err := gkg.GenGaloisKey(gAgg[k], gCRP[k], gk); err != nil {
			return nil, err
		}
		b, err := gk.MarshalBinary()
		if err != nil {
			return nil, err
		}
		out.galois = append(out.galois, b)
	}
	return out, nil
}

// shareRound (round 2) has every participant deal Shamir shares of its
// secret, sealed to each recipient's HPKE key; it returns them by
// recipient, and the round's raw answers.
func (p *Party) shareRound(ctx context.Context, plan *Plan, hpkes map[string][]byte) (map[string][]sealedShare, [][]byte, error) {
	msg, err := p.seal(svcRound2, round2Req{ID: plan.ID, HPKE: hpkes})
	if err != nil {
		return nil, nil, err
	}
	answers, err := round[round2Resp](ctx, p.call, p.cfg.Ledger, svcRound2, plan.Participants, same(msg))
	if err != nil {
		return nil, nil, err
	}
	to := map[string][]sealedShare{}
	var raw [][]byte
	for i, q := range plan.Participants {
		r := answers[i].Value
		if r.Node != q.Node || r.ID != plan.ID || len(r.Shares) != len(plan.Participants) {
			return nil, nil, fmt.Errorf("mpc: round 2 answer of %s does not match the plan", q.Node)
		}
		raw = append(raw, answers[i].Raw)
		for _, s := range r.Shares {
			if s.From != q.Node {
				return nil, nil, fmt.Errorf("mpc: %s sent a share in another's name", q.Node)
			}
			to[s.To] = append(to[s.To], s)
		}
	}
	return to, raw, nil
}

// keepRound (round 3) gives each participant its shares and the
// collective keys; each keeps them and acknowledges the keys' digests,
// which must be the coordinator's. It returns the round's raw answers.
func (p *Party) keepRound(ctx context.Context, plan *Plan, keys *collective, to map[string][]sealedShare) ([][]byte, error) {
	msgs := map[string][]byte{}
	for _, q := range plan.Participants {
		var err error
		if msgs[q.Node], err = p.seal(svcRound3, round3Req{ID: plan.ID, Shares: to[q.Node], PK: keys.pk, Galois: keys.galois}); err != nil {
			return nil, err
		}
	}
	answers, err := round[round3Resp](ctx, p.call, p.cfg.Ledger, svcRound3, plan.Participants, func(n string) []byte { return msgs[n] })
	if err != nil {
		return nil, err
	}
	pkSum, galSum := hexSum(keys.pk), hexSum(joinBlobs(keys.galois))
	var raw [][]byte
	for i, q := range plan.Participants {
		if r := answers[i].Value; r.PK != pkSum || r.Galois != galSum {
			return nil, fmt.Errorf("mpc: %s acknowledged other keys", q.Node)
		}
		raw = append(raw, answers[i].Raw)
	}
	return raw, nil
}

// call sends a message to a participant's service, serving it here when
// the participant is this node.
func (p *Party) call(ctx context.Context, node, svc string, body []byte) ([]byte, error) {
	if node == p.cfg.Node {
		return p.Serve(ctx, svc, body)
	}
	return p.cfg.Call(ctx, node, svc, body)
}

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
