package mpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/cloudflare/circl/hpke"

	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
)

// The pseudonym key ceremony: the coordinator's side (RunCeremony, one
// function per round), then a participant's.

// RunCeremony coordinates the joint-Feldman key generation among the
// participants (this node among them) with threshold t and returns the
// pseudonym.ceremony document to commit. Participants get points 1..N in
// the order given. Every participant deals; the coordinator only relays
// sealed shares it cannot open.
func (p *Pseudonyms) RunCeremony(ctx context.Context, nodes []Participant, t int) (*policies.PseudonymCeremony, error) {
	plan, err := p.newPlan(nodes, t)
	if err != nil {
		return nil, err
	}
	hpkes, err := p.psRound1(ctx, plan)
	if err != nil {
		return nil, err
	}
	comms, to, err := p.psRound2(ctx, plan, hpkes)
	if err != nil {
		return nil, err
	}
	points := make([]uint64, len(plan.Participants))
	for i, q := range plan.Participants {
		points[i] = q.Point
	}
	pub, err := pseudonym.NewPublic(t, points, comms)
	if err != nil {
		return nil, fmt.Errorf("mpc: the dealers' commitments: %w", err)
	}
	return p.psRound3(ctx, plan, pub, comms, to)
}

// newPlan announces a ceremony: a fresh id, points 1..N in order.
func (p *Pseudonyms) newPlan(nodes []Participant, t int) (*psPlan, error) {
	if t < 2 || t > len(nodes) || len(nodes) > pseudonym.MaxParticipants {
		return nil, fmt.Errorf("mpc: threshold %d of %d nodes: need 2 ≤ t ≤ N ≤ %d", t, len(nodes), pseudonym.MaxParticipants)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	plan := &psPlan{ID: hex.EncodeToString(id), Threshold: t, Coordinator: p.cfg.Node}
	for i, n := range nodes {
		n.Point = uint64(i + 1)
		plan.Participants = append(plan.Participants, n)
	}
	if !slices.ContainsFunc(plan.Participants, func(q Participant) bool { return q.Node == p.cfg.Node }) {
		return nil, errors.New("mpc: the coordinator must be a participant")
	}
	return plan, nil
}

// psRound1 collects every participant's fresh HPKE key, by node.
func (p *Pseudonyms) psRound1(ctx context.Context, plan *psPlan) (map[string][]byte, error) {
	msg, err := seal(p.cfg.Key, svcPsRound1, plan)
	if err != nil {
		return nil, err
	}
	answers, err := round[psRound1Resp](ctx, p.call, p.cfg.Ledger, svcPsRound1, plan.Participants, same(msg))
	if err != nil {
		return nil, err
	}
	hpkes := map[string][]byte{}
	for i, q := range plan.Participants {
		r := answers[i].Value
		if r.ID != plan.ID || r.Node != q.Node {
			return nil, fmt.Errorf("mpc: pseudonym round 1 answer of %s does not match the plan", q.Node)
		}
		hpkes[q.Node] = r.HPKE
	}
	return hpkes, nil
}

// psRound2 has every participant deal: it returns each dealer's
// commitments (in participant order) and the sealed shares by recipient.
func (p *Pseudonyms) psRound2(ctx context.Context, plan *psPlan, hpkes map[string][]byte) ([][][]byte, map[string][]sealedShare, error) {
	msg, err := seal(p.cfg.Key, svcPsRound2, psRound2Req{ID: plan.ID, HPKE: hpkes})
	if err != nil {
		return nil, nil, err
	}
	answers, err := round[psRound2Resp](ctx, p.call, p.cfg.Ledger, svcPsRound2, plan.Participants, same(msg))
	if err != nil {
		return nil, nil, err
	}
	comms := make([][][]byte, len(plan.Participants))
	to := map[string][]sealedShare{}
	for i, q := range plan.Participants {
		r := answers[i].Value
		if r.ID != plan.ID || r.Node != q.Node || len(r.Shares) != len(plan.Participants) || len(r.Commitments) != plan.Threshold {
			return nil, nil, fmt.Errorf("mpc: pseudonym round 2 answer of %s does not match the plan", q.Node)
		}
		comms[i] = r.Commitments
		for k, s := range r.Shares {
			if s.From != q.Node || s.To != plan.Participants[k].Node {
				return nil, nil, fmt.Errorf("mpc: %s sent a share in another's name or out of order", q.Node)
			}
			to[s.To] = append(to[s.To], s)
		}
	}
	return comms, to, nil
}

// psRound3 gives each participant its shares (one per dealer, in dealer
// order) and every commitment; each checks and combines them and answers
// with its verification key, which must match the commitments.
func (p *Pseudonyms) psRound3(ctx context.Context, plan *psPlan, pub *pseudonym.Public, comms [][][]byte, to map[string][]sealedShare) (*policies.PseudonymCeremony, error) {
	msgs := map[string][]byte{}
	for _, q := range plan.Participants {
		var err error
		if msgs[q.Node], err = seal(p.cfg.Key, svcPsRound3, psRound3Req{ID: plan.ID, Shares: to[q.Node], Commitments: comms}); err != nil {
			return nil, err
		}
	}
	answers, err := round[psRound3Resp](ctx, p.call, p.cfg.Ledger, svcPsRound3, plan.Participants, func(n string) []byte { return msgs[n] })
	if err != nil {
		return nil, err
	}
	doc := &policies.PseudonymCeremony{ID: plan.ID, Suite: policies.PseudonymSuite, Threshold: plan.Threshold, Commitments: comms, PublicKey: pub.PublicKey()}
	for i, q := range plan.Participants {
		r := answers[i].Value
		if r.ID != plan.ID || !pub.CheckKey(q.Point, r.VerificationKey) {
			return nil, fmt.Errorf("mpc: %s holds a share that does not match the commitments", q.Node)
		}
		doc.Participants = append(doc.Participants, policies.PseudonymParticipant{Node: q.Node, Address: q.Address, Point: q.Point, VerificationKey: r.VerificationKey})
	}
	return doc, nil
}

func (p *Pseudonyms) call(ctx context.Context, node, svc string, body []byte) ([]byte, error) {
	if node == p.cfg.Node {
		return p.Serve(ctx, svc, body)
	}
	return p.cfg.Call(ctx, node, svc, body)
}

// A participant's side.

type psRound1Resp struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	HPKE []byte `json:"hpke"`
}

type psRound2Req struct {
	ID   string            `json:"id"`
	HPKE map[string][]byte `json:"hpke"`
}

type psRound2Resp struct {
	ID          string        `json:"id"`
	Node        string        `json:"node"`
	Commitments [][]byte      `json:"commitments"`
	Shares      []sealedShare `json:"shares"` // in participant order
}

type psRound3Req struct {
	ID          string        `json:"id"`
	Shares      []sealedShare `json:"shares"`      // one per dealer, in dealer order
	Commitments [][][]byte    `json:"commitments"` // per dealer
}

type psRound3Resp struct {
	ID              string `json:"id"`
	Node            string `json:"node"`
	VerificationKey []byte `json:"verification_key"`
}

func psShareInfo(id, from, to string) []byte {
	return []byte("datasandbox pseudonym feldman share\n" + id + "\n" + from + "\n" + to)
}

func (p *Pseudonyms) me(plan *psPlan) *Participant {
	return participant(plan.Participants, p.cfg.Node)
}

func (p *Pseudonyms) round1(raw []byte) ([]byte, error) {
	var plan psPlan
	signer, err := open(p.cfg.Ledger, svcPsRound1, raw, &plan)
	if err != nil {
		return nil, err
	}
	if plan.ID == "" || plan.Threshold < 2 || plan.Threshold > len(plan.Participants) || len(plan.Participants) > pseudonym.MaxParticipants {
		return nil, errors.New("mpc: malformed pseudonym ceremony plan")
	}
	var coord Participant
	for _, q := range plan.Participants {
		if q.Node == plan.Coordinator {
			coord = q
		}
	}
	if coord.Address != signer {
		return nil, errors.New("mpc: the pseudonym plan is not signed by its coordinator")
	}
	if p.me(&plan) == nil {
		return nil, fmt.Errorf("mpc: %s is not a participant of pseudonym ceremony %s", p.cfg.Node, plan.ID)
	}
	hpk, hsk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	hb, err := hpk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.pend[plan.ID] = &psPending{plan: &plan, hsk: hsk}
	p.mu.Unlock()
	return seal(p.cfg.Key, svcPsRound1, psRound1Resp{ID: plan.ID, Node: p.cfg.Node, HPKE: hb})
}

// fromCoordinator opens a round-2/3 message of a ceremony in flight.
func (p *Pseudonyms) fromCoordinator(svc string, raw []byte, id func() string, v any) (*psPending, error) {
	signer, err := open(p.cfg.Ledger, svc, raw, v)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	pd := p.pend[id()]
	p.mu.Unlock()
	if pd == nil {
		return nil, fmt.Errorf("mpc: no pseudonym ceremony %q in flight here", id())
	}
	for _, q := range pd.plan.Participants {
		if q.Node == pd.plan.Coordinator && q.Address == signer {
			return pd, nil
		}
	}
	return nil, fmt.Errorf("mpc: %s not from the ceremony's coordinator", svc)
}

func (p *Pseudonyms) round2(raw []byte) ([]byte, error) {
	var req psRound2Req
	pd, err := p.fromCoordinator(svcPsRound2, raw, func() string { return req.ID }, &req)
	if err != nil {
		return nil, err
	}
	points := make([]uint64, len(pd.plan.Participants))
	for i, q := range pd.plan.Participants {
		points[i] = q.Point
	}
	deal, err := pseudonym.Deal(pd.plan.Threshold, points)
	if err != nil {
		return nil, err
	}
	resp := psRound2Resp{ID: req.ID, Node: p.cfg.Node, Commitments: deal.Commitments()}
	for _, to := range pd.plan.Participants {
		b, err := deal.Share(to.Point)
		if err != nil {
			return nil, err
		}
		enc, ct, err := sealTo(req.HPKE[to.Node], psShareInfo(req.ID, p.cfg.Node, to.Node), b)
		if err != nil {
			return nil, fmt.Errorf("mpc: sealing the share of %s: %w", to.Node, err)
		}
		resp.Shares = append(resp.Shares, sealedShare{From: p.cfg.Node, To: to.Node, Enc: enc, CT: ct})
	}
	p.mu.Lock()
	pd.deal = deal
	p.mu.Unlock()
	return seal(p.cfg.Key, svcPsRound2, resp)
}

func (p *Pseudonyms) round3(raw []byte) ([]byte, error) {
	var req psRound3Req
	pd, err := p.fromCoordinator(svcPsRound3, raw, func() string { return req.ID }, &req)
	if err != nil {
		return nil, err
	}
	n := len(pd.plan.Participants)
	if len(req.Shares) != n || len(req.Commitments) != n {
		return nil, fmt.Errorf("mpc: %d shares and %d commitments for %d participants", len(req.Shares), len(req.Commitments), n)
	}
	me := p.me(pd.plan)
	// This node's own dealing must be among the commitments unchanged.
	mine := slices.IndexFunc(pd.plan.Participants, func(q Participant) bool { return q.Node == p.cfg.Node })
	if pd.deal == nil || !slices.EqualFunc(req.Commitments[mine], pd.deal.Commitments(), func(a, b []byte) bool { return string(a) == string(b) }) {
		return nil, errors.New("mpc: the coordinator altered this node's commitments")
	}
	shares := make([][]byte, n)
	for i, s := range req.Shares {
		if s.To != p.cfg.Node || s.From != pd.plan.Participants[i].Node {
			return nil, fmt.Errorf("mpc: share %d is not addressed to %s from dealer %d", i, p.cfg.Node, i)
		}
		var err error
		if shares[i], err = openWith(pd.hsk, psShareInfo(req.ID, s.From, s.To), s.Enc, s.CT); err != nil {
			return nil, fmt.Errorf("mpc: share from %s does not open", s.From)
		}
	}
	ks, err := pseudonym.Combine(pd.plan.Threshold, me.Point, shares, req.Commitments)
	if err != nil {
		return nil, fmt.Errorf("mpc: pseudonym ceremony %s: %w", req.ID, err)
	}
	if err := p.store(req.ID, ks); err != nil {
		return nil, err
	}
	p.mu.Lock()
	delete(p.pend, req.ID)
	p.mu.Unlock()
	return seal(p.cfg.Key, svcPsRound3, psRound3Resp{ID: req.ID, Node: p.cfg.Node, VerificationKey: ks.VerificationKey()})
}
