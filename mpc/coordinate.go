package mpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
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
	var transcript [][]byte
	// Round 1.
	msg, err := p.seal(svcRound1, plan)
	if err != nil {
		return nil, err
	}
	r1raw, err := p.callAll(ctx, plan, svcRound1, func(string) []byte { return msg })
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
	hpkes := map[string][]byte{}
	for i, q := range plan.Participants {
		var r round1Resp
		signer, err := p.open(svcRound1, r1raw[i], &r)
		if err != nil {
			return nil, err
		}
		if signer != q.Address || r.Node != q.Node || r.ID != plan.ID || len(r.Galois) != len(plan.GaloisElements) {
			return nil, fmt.Errorf("mpc: round 1 answer of %s does not match the plan", q.Node)
		}
		transcript = append(transcript, r1raw[i])
		hpkes[q.Node] = r.HPKE
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
	pkb, err := pk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var gals [][]byte
	for k := range gAgg {
		gk := rlwe.NewGaloisKey(params)
		if err := gkg.GenGaloisKey(gAgg[k], gCRP[k], gk); err != nil {
			return nil, err
		}
		b, err := gk.MarshalBinary()
		if err != nil {
			return nil, err
		}
		gals = append(gals, b)
	}
	// Round 2.
	msg2, err := p.seal(svcRound2, round2Req{ID: plan.ID, HPKE: hpkes})
	if err != nil {
		return nil, err
	}
	r2raw, err := p.callAll(ctx, plan, svcRound2, func(string) []byte { return msg2 })
	if err != nil {
		return nil, err
	}
	to := map[string][]sealedShare{}
	for i, q := range plan.Participants {
		var r round2Resp
		signer, err := p.open(svcRound2, r2raw[i], &r)
		if err != nil {
			return nil, err
		}
		if signer != q.Address || r.Node != q.Node || r.ID != plan.ID || len(r.Shares) != len(plan.Participants) {
			return nil, fmt.Errorf("mpc: round 2 answer of %s does not match the plan", q.Node)
		}
		transcript = append(transcript, r2raw[i])
		for _, s := range r.Shares {
			if s.From != q.Node {
				return nil, fmt.Errorf("mpc: %s sent a share in another's name", q.Node)
			}
			to[s.To] = append(to[s.To], s)
		}
	}
	// Round 3.
	msgs := map[string][]byte{}
	for _, q := range plan.Participants {
		if msgs[q.Node], err = p.seal(svcRound3, round3Req{ID: plan.ID, Shares: to[q.Node], PK: pkb, Galois: gals}); err != nil {
			return nil, err
		}
	}
	r3raw, err := p.callAll(ctx, plan, svcRound3, func(n string) []byte { return msgs[n] })
	if err != nil {
		return nil, err
	}
	pkSum, galSum := hexSum(pkb), hexSum(joinBlobs(gals))
	for i, q := range plan.Participants {
		var r round3Resp
		signer, err := p.open(svcRound3, r3raw[i], &r)
		if err != nil {
			return nil, err
		}
		if signer != q.Address || r.PK != pkSum || r.Galois != galSum {
			return nil, fmt.Errorf("mpc: %s acknowledged other keys", q.Node)
		}
		transcript = append(transcript, r3raw[i])
	}
	doc := &policies.HECeremony{ID: plan.ID, Params: plan.Params, Threshold: t, GaloisElements: plan.GaloisElements,
		PublicKey: pkSum, GaloisKeys: galSum, Transcript: hexSum(joinBlobs(transcript))}
	for _, q := range plan.Participants {
		doc.Participants = append(doc.Participants, policies.HEParticipant{Node: q.Node, Address: q.Address, Point: q.Point})
	}
	return doc, nil
}

// callAll sends a round to every participant in parallel, in plan order.
func (p *Party) callAll(ctx context.Context, plan *Plan, svc string, body func(node string) []byte) ([][]byte, error) {
	out := make([][]byte, len(plan.Participants))
	errs := make([]error, len(plan.Participants))
	var wg sync.WaitGroup
	for i, q := range plan.Participants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if q.Node == p.cfg.Node {
				out[i], errs[i] = p.Serve(ctx, svc, body(q.Node))
				return
			}
			out[i], errs[i] = p.cfg.Call(ctx, q.Node, svc, body(q.Node))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("mpc: %s at %s: %w", svc, plan.Participants[i].Node, err)
		}
	}
	return out, nil
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
	shares := make([][]byte, len(req.Active))
	errs := make([]error, len(req.Active))
	var wg sync.WaitGroup
	for i, n := range req.Active {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var raw []byte
			var err error
			if n == p.cfg.Node {
				raw, err = p.Serve(ctx, svcShare, msg)
			} else {
				raw, err = p.cfg.Call(ctx, n, svcShare, msg)
			}
			if err != nil {
				errs[i] = err
				return
			}
			var r shareResp
			signer, err := p.open(svcShare, raw, &r)
			if err != nil {
				errs[i] = err
				return
			}
			q := slices.IndexFunc(cer.Participants, func(x Participant) bool { return x.Node == n })
			if q < 0 || signer != cer.Participants[q].Address || r.Job != req.Job {
				errs[i] = fmt.Errorf("mpc: share of %s signed by someone else", n)
				return
			}
			shares[i] = r.Share
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, req.Active[i], fmt.Errorf("mpc: share of %s: %w", req.Active[i], err)
		}
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
