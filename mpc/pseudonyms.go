package mpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cloudflare/circl/hpke"
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

// ---- the ceremony, coordinator's side ----

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

// ---- the ceremony, participant's side ----

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
	for i := range plan.Participants {
		if plan.Participants[i].Node == p.cfg.Node {
			return &plan.Participants[i]
		}
	}
	return nil
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

// ---- storage ----

// psFile is the share file: every share this node holds, by ceremony.
type psFile struct {
	Shares map[string][]byte `json:"shares"` // ceremony id -> pseudonym.KeyShare encoding
}

const psFileName = "pseudonym.share"

// maxShares bounds the shares kept: the committed one and a few from
// ceremonies that may yet be committed (the oldest others are dropped).
const maxShares = 4

// store adds a share to the file (0600, fsync, atomic rename) and to
// memory; the committed ceremony's share is never dropped.
func (p *Pseudonyms) store(id string, ks *pseudonym.KeyShare) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := psFile{Shares: map[string][]byte{}}
	for cid, s := range p.shares {
		f.Shares[cid], _ = s.MarshalBinary()
	}
	f.Shares[id], _ = ks.MarshalBinary()
	p.order = append(p.order, id)
	if c, ok := p.cfg.Ledger.Pseudonym(); len(p.order) > maxShares {
		for i, old := range p.order {
			if old != id && (!ok || old != c.ID) {
				delete(f.Shares, old)
				p.order = append(p.order[:i], p.order[i+1:]...)
				break
			}
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	path := filepath.Join(p.cfg.Dir, psFileName)
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = fh.Write(b)
	if err = errors.Join(err, fh.Sync(), fh.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	shares := map[string]*pseudonym.KeyShare{}
	for cid := range f.Shares {
		if cid == id {
			shares[cid] = ks
		} else {
			shares[cid] = p.shares[cid]
		}
	}
	p.shares = shares
	return nil
}

func (p *Pseudonyms) load() error {
	b, err := os.ReadFile(filepath.Join(p.cfg.Dir, psFileName))
	if err != nil {
		return err
	}
	var f psFile
	if err := json.Unmarshal(b, &f); err != nil {
		return errors.New("the share file is malformed") // never echo its bytes
	}
	p.shares = map[string]*pseudonym.KeyShare{}
	for cid, sb := range f.Shares {
		ks, err := pseudonym.ParseKeyShare(sb)
		if err != nil {
			return fmt.Errorf("the share file holds an invalid key share for ceremony %q", clipID(cid))
		}
		p.shares[cid] = ks
		p.order = append(p.order, cid)
	}
	slices.Sort(p.order) // the age is unknown after a restart; any order bounds the count
	return nil
}

// ---- evaluation ----

// EvalRequest asks a participant for its partial evaluation of a
// committed batch.
type EvalRequest struct {
	Batch   string `json:"batch"`
	Request []byte `json:"request"` // pseudonym.Request encoding
}

type evalResp struct {
	Batch   string `json:"batch"`
	Node    string `json:"node"`
	Partial []byte `json:"partial"`
}

// checkBatch: the batch is committed on this node's ledger, for this
// request and its size. Quota was enforced when it was committed.
func checkBatch(l PseudonymLedger, id string, req []byte, n int) error {
	b, ok := l.PseudonymBatch(id)
	if !ok {
		return fmt.Errorf("mpc: no pseudonym batch %q on this node's ledger", id)
	}
	if b.Request != pseudonym.RequestSHA256(req) || b.Count != int64(n) {
		return fmt.Errorf("mpc: batch %s was committed for another request (or size)", id)
	}
	return nil
}

func (p *Pseudonyms) evaluate(raw []byte) ([]byte, error) {
	var req EvalRequest
	if _, err := open(p.cfg.Ledger, svcPsEval, raw, &req); err != nil {
		return nil, err
	}
	ks, _, ok := p.committed()
	if !ok {
		return nil, fmt.Errorf("mpc: %s holds no share of the committed pseudonym key", p.cfg.Node)
	}
	r, err := pseudonym.ParseRequest(req.Request)
	if err != nil {
		return nil, err
	}
	if err := checkBatch(p.cfg.Ledger, req.Batch, req.Request, r.Len()); err != nil {
		return nil, err
	}
	part, err := ks.Evaluate(r)
	if err != nil {
		return nil, err
	}
	pb, _ := part.MarshalBinary()
	return seal(p.cfg.Key, svcPsEval, evalResp{Batch: req.Batch, Node: p.cfg.Node, Partial: pb})
}

// Gather asks need participants (this node first, then the others in
// order, skipping the points in exclude and any node that fails) for
// their partial evaluations of a committed batch, and returns them
// encoded.
// The caller (the client) verifies each against the ledger's keys and may
// ask again excluding a node whose proof failed.
func (p *Pseudonyms) Gather(ctx context.Context, batch string, req []byte, need int, exclude []uint64) ([][]byte, error) {
	c, ok := p.cfg.Ledger.Pseudonym()
	if !ok {
		return nil, errors.New("mpc: no pseudonym ceremony on the ledger")
	}
	if need < 1 || need > c.Threshold {
		return nil, fmt.Errorf("mpc: %d partials asked, the threshold is %d", need, c.Threshold)
	}
	r, err := pseudonym.ParseRequest(req)
	if err != nil {
		return nil, err
	}
	// Refused before any node evaluates.
	if p.cfg.Sync != nil {
		if err := p.cfg.Sync(ctx); err != nil {
			return nil, err
		}
	}
	if err := checkBatch(p.cfg.Ledger, batch, req, r.Len()); err != nil {
		return nil, err
	}
	var order []policies.PseudonymParticipant
	for _, q := range c.Participants {
		if q.Node == p.cfg.Node && !slices.Contains(exclude, q.Point) {
			order = append(order, q)
		}
	}
	for _, q := range c.Participants {
		if q.Node != p.cfg.Node && !slices.Contains(exclude, q.Point) {
			order = append(order, q)
		}
	}
	msg, err := seal(p.cfg.Key, svcPsEval, EvalRequest{Batch: batch, Request: req})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	var errs []error
	// Ask t at a time; replace the ones that fail by the next ones.
	for next := 0; len(out) < need && next < len(order); {
		k := min(need-len(out), len(order)-next)
		nodes := make([]Participant, k)
		for i, q := range order[next : next+k] {
			nodes[i] = Participant{Node: q.Node, Address: q.Address}
		}
		next += k
		for i, a := range ask[evalResp](ctx, p.call, p.cfg.Ledger, svcPsEval, nodes, same(msg)) {
			err := a.Err
			if err == nil && a.Value.Batch != batch {
				err = errors.New("answered another batch")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", nodes[i].Node, err))
				continue
			}
			out = append(out, a.Value.Partial)
		}
	}
	if len(out) < need {
		return nil, fmt.Errorf("mpc: %d of the %d partial evaluations needed: %w", len(out), need, errors.Join(errs...))
	}
	return out, nil
}

func clipID(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
