package mpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"

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
