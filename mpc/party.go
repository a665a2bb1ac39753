package mpc

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/google/differential-privacy/go/v3/noise"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/ckks"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"

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

// signed is a message with its sender's signature.
type signed struct {
	Body   []byte           `json:"body"`
	Signer policies.Address `json:"signer"`
	Sig    []byte           `json:"sig"`
}

const sigContext = "datasandbox mpc v1\n"

func (p *Party) seal(service string, v any) ([]byte, error) { return seal(p.cfg.Key, service, v) }

// seal signs a message for a service with a node's key.
func seal(key *chain.Key, service string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sig, err := key.SignMessage(sigMessage(service, body))
	if err != nil {
		return nil, err
	}
	return json.Marshal(signed{Body: body, Signer: policies.Address(key.Address()), Sig: sig})
}

func sigMessage(service string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return append([]byte(sigContext+service+"\n"), sum[:]...)
}

// open checks a message's signature against its signer's account on the
// committed ledger; the account must be a node (join).
func (p *Party) open(service string, raw []byte, v any) (policies.Address, error) {
	return open(p.cfg.Ledger, service, raw, v)
}

// open checks a message's signature against its signer's node account on
// the committed ledger and decodes its body.
func open(ledger Ledger, service string, raw []byte, v any) (policies.Address, error) {
	var s signed
	if err := json.Unmarshal(raw, &s); err != nil {
		return policies.Address{}, fmt.Errorf("mpc: %s: malformed message: %v", service, err)
	}
	a, ok := ledger.Account(s.Signer)
	if !ok {
		return policies.Address{}, fmt.Errorf("mpc: %s: unknown signer %s", service, s.Signer)
	}
	if !ledger.Can(s.Signer, policies.PermNode) {
		return policies.Address{}, fmt.Errorf("mpc: %s: signer %s is not a node (needs %s)", service, s.Signer, policies.PermNode)
	}
	msg := sigMessage(service, s.Body)
	okSig := false
	switch a.Algorithm {
	case "ed25519":
		okSig = len(a.PublicKey) == ed25519.PublicKeySize && ed25519.Verify(a.PublicKey, msg, s.Sig)
	case "ml-dsa-65":
		var pk mldsa65.PublicKey
		okSig = pk.UnmarshalBinary(a.PublicKey) == nil && mldsa65.Verify(&pk, msg, nil, s.Sig)
	}
	if !okSig {
		return policies.Address{}, fmt.Errorf("mpc: %s: bad signature of %s", service, s.Signer)
	}
	if err := json.Unmarshal(s.Body, v); err != nil {
		return policies.Address{}, fmt.Errorf("mpc: %s: malformed body: %v", service, err)
	}
	return s.Signer, nil
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

// ---- round 1: key shares ----

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
	for i := range plan.Participants {
		if plan.Participants[i].Node == p.cfg.Node {
			return &plan.Participants[i]
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

// ---- round 2: Shamir shares, sealed ----

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

// ---- round 3: open shares, keep keys ----

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

// ---- storage ----

func (p *Party) store(plan, share, pk, galois []byte) error {
	for name, b := range map[string][]byte{"galois.bin": galois, "pk.bin": pk, "share.bin": share, "ceremony.json": plan} {
		tmp := filepath.Join(p.cfg.Dir, name+".tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return err
		}
		f, err := os.Open(tmp)
		if err == nil {
			err = errors.Join(f.Sync(), f.Close())
		}
		if err != nil {
			return err
		}
	}
	// ceremony.json last: its presence marks a complete set.
	for _, name := range []string{"galois.bin", "pk.bin", "share.bin", "ceremony.json"} {
		if err := os.Rename(filepath.Join(p.cfg.Dir, name+".tmp"), filepath.Join(p.cfg.Dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func (p *Party) load() error {
	planb, err := os.ReadFile(filepath.Join(p.cfg.Dir, "ceremony.json"))
	if err != nil {
		return err
	}
	var plan Plan
	if err := json.Unmarshal(planb, &plan); err != nil {
		return err
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(p.cfg.Dir, name)) }
	sb, err := read("share.bin")
	if err != nil {
		return err
	}
	pkb, err := read("pk.bin")
	if err != nil {
		return err
	}
	gb, err := read("galois.bin")
	if err != nil {
		return err
	}
	var tsk mhe.ShamirSecretShare
	if err := unmarshal(sb, &tsk); err != nil {
		return err
	}
	pk := rlwe.NewPublicKey(p.params)
	if err := unmarshal(pkb, pk); err != nil {
		return err
	}
	blobs, err := splitBlobs(gb)
	if err != nil {
		return err
	}
	gks := make([]*rlwe.GaloisKey, len(blobs))
	for i, b := range blobs {
		gks[i] = new(rlwe.GaloisKey)
		if err := unmarshal(b, gks[i]); err != nil {
			return err
		}
	}
	p.cer, p.tsk = &plan, &tsk
	p.keys = &Keys{PK: pk, Galois: gks, PKSHA256: hexSum(pkb), GaloisSHA256: hexSum(gb)}
	return nil
}

// ---- release: one node's key-switch share ----

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
