package mpc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/ckks"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

type fakeLedger struct {
	accounts map[policies.Address]policies.Account
}

func (l *fakeLedger) Account(a policies.Address) (policies.Account, bool) {
	x, ok := l.accounts[a]
	return x, ok
}
func (l *fakeLedger) Can(a policies.Address, perm string) bool {
	x, ok := l.accounts[a]
	return ok && perm == policies.PermNode && slices.Contains(x.Roles, "node")
}

type consortium struct {
	params  ckks.Parameters
	parties map[string]*Party
	nodes   []Participant
	down    sync.Map // node -> true: calls fail
	target  *rlwe.PublicKey
	reqSK   *rlwe.SecretKey
	refuse  sync.Map // job -> reason
	noNoise bool
}

func newConsortium(t *testing.T) *consortium {
	t.Helper()
	params := heparams.Params()
	c := &consortium{params: params, parties: map[string]*Party{}, noNoise: true}
	led := &fakeLedger{accounts: map[policies.Address]policies.Account{}}
	kg := rlwe.NewKeyGenerator(params)
	c.reqSK = kg.GenSecretKeyNew()
	c.target = kg.GenPublicKeyNew(c.reqSK)
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("node%d", i)
		key, err := chain.GenerateKey(chain.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		addr := policies.Address(key.Address())
		led.accounts[addr] = policies.Account{Address: addr, PublicKey: key.PublicKey(), Algorithm: "ed25519", Roles: []string{"node"}}
		c.nodes = append(c.nodes, Participant{Node: name, Address: addr})
		p, err := New(Config{Node: name, Key: key, Dir: t.TempDir(), Ledger: led,
			Call: func(ctx context.Context, peer, svc string, body []byte) ([]byte, error) {
				if _, down := c.down.Load(peer); down {
					return nil, errors.New("connection refused")
				}
				return c.parties[peer].Serve(ctx, svc, body)
			},
			Authorise: func(ctx context.Context, req *ShareRequest) (*Grant, error) {
				if r, ok := c.refuse.Load(req.Job); ok {
					return nil, errors.New(r.(string))
				}
				return &Grant{Target: c.target, Positions: req.Positions, Epsilon: 0.5, NoNoise: c.noNoise}, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		c.parties[name] = p
	}
	doc, err := c.parties["node1"].RunCeremony(context.Background(), c.nodes, 2)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Threshold != 2 || len(doc.Participants) != 3 || len(doc.Transcript) != 64 {
		t.Fatalf("ceremony document %+v", doc)
	}
	for name, p := range c.parties {
		k, ok := p.Keys()
		if !ok || k.PKSHA256 != doc.PublicKey || k.GaloisSHA256 != doc.GaloisKeys {
			t.Fatalf("%s keeps other keys than the ceremony committed", name)
		}
		// A restarted node finds its share and keys on disk.
		again, err := New(p.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if k2, ok := again.Keys(); !ok || k2.PKSHA256 != doc.PublicKey || k2.GaloisSHA256 != doc.GaloisKeys || again.tsk == nil {
			t.Fatalf("%s reloads other keys", name)
		}
	}
	return c
}

// encrypt puts values at coefficients 0.. under the collective key.
func (c *consortium) encrypt(t *testing.T, vals []float64) *rlwe.Ciphertext {
	keys, _ := c.parties["node1"].Keys()
	pk := keys.PK
	ringQ := c.params.RingQ().AtLevel(0)
	q := ringQ.SubRings[0].Modulus
	pt := rlwe.NewPlaintext(c.params, 0)
	for i, v := range vals {
		x := math.Round(v * math.Ldexp(1, 36))
		if x >= 0 {
			pt.Value.Coeffs[0][i] = uint64(x)
		} else {
			pt.Value.Coeffs[0][i] = q - uint64(-x)
		}
	}
	ringQ.NTT(pt.Value, pt.Value)
	pt.IsNTT, pt.IsBatched = true, false
	pt.Scale = rlwe.NewScale(math.Ldexp(1, 36))
	ct, err := rlwe.NewEncryptor(c.params, pk).EncryptNew(pt)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func (c *consortium) decrypt(ct *rlwe.Ciphertext, sk *rlwe.SecretKey, n int) []float64 {
	pt := rlwe.NewDecryptor(c.params, sk).DecryptNew(ct)
	ringQ := c.params.RingQ().AtLevel(0)
	ringQ.INTT(pt.Value, pt.Value)
	q := ringQ.SubRings[0].Modulus
	out := make([]float64, n)
	for i := range out {
		v := pt.Value.Coeffs[0][i]
		if v > q/2 {
			out[i] = -float64(q-v) / math.Ldexp(1, 36)
		} else {
			out[i] = float64(v) / math.Ldexp(1, 36)
		}
	}
	return out
}

func (c *consortium) request(t *testing.T, job string, ct *rlwe.Ciphertext, positions []int) ShareRequest {
	b := heparams.MarshalCiphertext(c.params, ct)
	return ShareRequest{Job: job, Ciphertext: b, Positions: positions, PerCell: 1, Runner: "node1"}
}

// Stated bound: each share's smudging is ≤ 6σ = 6·2^26 at scale 2^36, so
// two shares move a value by less than 12·2^26/2^36 ≈ 0.0118.
const smudgeBound = 12.0 * SmudgingSigma / (1 << 36)

func TestThresholdRelease(t *testing.T) {
	c := newConsortium(t)
	vals := []float64{1234.5, -77.25, 0.125, 40000}
	ct := c.encrypt(t, vals)
	out, active, err := c.parties["node1"].Release(context.Background(), c.request(t, "A", ct, []int{0, 1, 2, 3}), ct)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 2 || active[0] != "node1" {
		t.Fatalf("active set %v", active)
	}
	got := c.decrypt(out, c.reqSK, len(vals))
	worst := 0.0
	for i := range vals {
		worst = max(worst, math.Abs(got[i]-vals[i]))
	}
	t.Logf("threshold release: worst absolute error %.3g (bound %.3g)", worst, smudgeBound)
	if worst > smudgeBound {
		t.Fatalf("got %v, want %v", got, vals)
	}

	// t-1 shares: one node's share alone gives garbage.
	sh := c.shares(t, "A1", ct, []string{"node1", "node2"})
	one, _, err := c.parties["node1"].combine(ct, sh[:1], []string{"node1"})
	if err != nil {
		t.Fatal(err)
	}
	// A malformed share names its node (the release is retried without it).
	if _, failed, err := c.parties["node1"].combine(ct, [][]byte{sh[0], []byte("garbage")}, []string{"node1", "node2"}); err == nil || failed != "node2" {
		t.Fatalf("malformed share: failed %q, %v", failed, err)
	}
	if e := maxErr(c.decrypt(one, c.reqSK, len(vals)), vals); e < 1e6 {
		t.Fatalf("one share of two decrypts within %g", e)
	}
	t.Logf("t-1 shares: error %.3g (>> bound)", maxErr(c.decrypt(one, c.reqSK, len(vals)), vals))

	// Shares for job B's ciphertext do not decrypt job A's.
	ctB := c.encrypt(t, []float64{5, 6, 7, 8})
	shB := c.shares(t, "B", ctB, []string{"node1", "node2"})
	mixed, _, err := c.parties["node1"].combine(ct, shB, []string{"node1", "node2"})
	if err != nil {
		t.Fatal(err)
	}
	if e := maxErr(c.decrypt(mixed, c.reqSK, len(vals)), vals); e < 1e6 {
		t.Fatalf("job B's shares decrypt job A within %g", e)
	}
}

func maxErr(got, want []float64) float64 {
	w := 0.0
	for i := range want {
		w = max(w, math.Abs(got[i]-want[i]))
	}
	return w
}

func (c *consortium) shares(t *testing.T, job string, ct *rlwe.Ciphertext, active []string) [][]byte {
	t.Helper()
	req := c.request(t, job, ct, nil)
	req.Active = active
	msg, err := c.parties["node1"].seal(svcShare, req)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, n := range active {
		raw, err := c.parties[n].Serve(context.Background(), svcShare, msg)
		if err != nil {
			t.Fatal(err)
		}
		var r shareResp
		if _, err := c.parties["node1"].open(svcShare, raw, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Share)
	}
	return out
}

func TestReleaseSurvivesADownNode(t *testing.T) {
	c := newConsortium(t)
	c.down.Store("node2", true)
	ct := c.encrypt(t, []float64{42})
	out, active, err := c.parties["node1"].Release(context.Background(), c.request(t, "A", ct, []int{0}), ct)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(active) != "[node1 node3]" {
		t.Fatalf("active %v", active)
	}
	if got := c.decrypt(out, c.reqSK, 1)[0]; math.Abs(got-42) > smudgeBound {
		t.Fatalf("got %v", got)
	}
	c.down.Store("node3", true)
	if _, _, err := c.parties["node1"].Release(context.Background(), c.request(t, "A2", ct, []int{0}), ct); err == nil {
		t.Fatal("released with one node of three")
	}
}

func TestShareRefusedWhenNotAuthorised(t *testing.T) {
	c := newConsortium(t)
	c.refuse.Store("R", "job R is rejected")
	ct := c.encrypt(t, []float64{1})
	_, _, err := c.parties["node1"].Release(context.Background(), c.request(t, "R", ct, []int{0}), ct)
	if err == nil || !strings.Contains(err.Error(), "job R is rejected") {
		t.Fatalf("err %v", err)
	}
	// A request not signed by a node is refused before any check.
	stranger, _ := chain.GenerateKey(chain.Ed25519)
	p := &Party{cfg: Config{Key: stranger}}
	msg, _ := p.seal(svcShare, c.request(t, "A", ct, nil))
	if _, err := c.parties["node2"].Serve(context.Background(), svcShare, msg); err == nil || !strings.Contains(err.Error(), "unknown signer") {
		t.Fatalf("err %v", err)
	}
	// Corrupted ciphertexts are refused with an error, never a panic.
	req := c.request(t, "A", ct, nil)
	req.Active = []string{"node1", "node2"}
	for _, cut := range []int{0, 10, len(req.Ciphertext) / 2} {
		t.Run(fmt.Sprint(cut, " bytes"), func(t *testing.T) {
			bad := req
			bad.Ciphertext = req.Ciphertext[:cut]
			msg, _ := c.parties["node1"].seal(svcShare, bad)
			if _, err := c.parties["node2"].Serve(context.Background(), svcShare, msg); err == nil {
				t.Fatalf("truncated ciphertext (%d bytes) accepted", cut)
			}
		})
	}
}

func TestDPNoiseShares(t *testing.T) {
	c := newConsortium(t)
	c.noNoise = false
	// Each of the 2 nodes adds Laplace(1/ε) with ε=0.5 (scale 2); the sum
	// of two exceeds 2·2·ln(1/0.0005) ≈ 30.4 with probability < 0.1%.
	const bound = 2 * 2 * 7.6
	vals := make([]float64, 64)
	pos := make([]int, 64)
	for i := range pos {
		pos[i] = i
		vals[i] = float64(i * 100)
	}
	ct := c.encrypt(t, vals)
	out, _, err := c.parties["node1"].Release(context.Background(), c.request(t, "N", ct, pos), ct)
	if err != nil {
		t.Fatal(err)
	}
	got := c.decrypt(out, c.reqSK, len(vals))
	over, moved := 0, 0
	for i := range vals {
		d := math.Abs(got[i] - vals[i])
		if d > bound {
			over++
		}
		if d > smudgeBound {
			moved++
		}
	}
	if over > 1 || moved < len(vals)/2 {
		t.Fatalf("%d of %d values beyond the 99.9%% bound, %d moved by noise", over, len(vals), moved)
	}
}

// Messages from peers are parsed only after their signature checks out
// against a node account on the ledger; whatever arrives, open answers
// with an error or a verified body, never a panic.
func FuzzOpenMessage(f *testing.F) {
	key, led := wireKey(f) // fixed: testdata/fuzz/FuzzOpenMessage holds messages it signed
	addr := policies.Address(key.Address())
	p := &Party{cfg: Config{Node: "node1", Key: key, Ledger: led}}
	good, err := p.seal(svcShare, ShareRequest{Job: "job-1", Runner: "node1"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"body":"e30=","signer":"` + addr.String() + `","sig":"AAAA"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req ShareRequest
		signer, err := p.open(svcShare, raw, &req)
		if err == nil && signer != addr {
			t.Fatalf("opened a message from %s", signer)
		}
	})
}
