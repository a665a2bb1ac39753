package pseudonym

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
	"github.com/cloudflare/circl/secretsharing"
)

// ceremony runs the joint-Feldman key generation in memory: every point
// deals, every point combines what it received.
func ceremony(t testing.TB, thr, n int) (*Public, []*KeyShare) {
	t.Helper()
	points := make([]uint64, n)
	for i := range points {
		points[i] = uint64(i + 1)
	}
	deals := make([]*Dealing, n)
	var comms [][][]byte
	for d := range deals {
		var err error
		if deals[d], err = Deal(thr, points); err != nil {
			t.Fatal(err)
		}
		comms = append(comms, deals[d].Commitments())
	}
	shares := make([]*KeyShare, n)
	for i, x := range points {
		var got [][]byte
		for _, d := range deals {
			s, err := d.Share(x)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		ks, err := Combine(thr, x, got, comms)
		if err != nil {
			t.Fatal(err)
		}
		shares[i] = ks
	}
	pub, err := NewPublic(thr, points, comms)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shares {
		if !pub.CheckKey(s.Point, s.VerificationKey()) {
			t.Fatalf("point %d: verification key from the commitments differs from k_x·G", s.Point)
		}
	}
	return pub, shares
}

// reconstruct interpolates k from t shares: only a test may do this.
func reconstruct(t *testing.T, thr int, shares []*KeyShare) group.Scalar {
	t.Helper()
	var ss []secretsharing.Share
	for _, s := range shares {
		ss = append(ss, secretsharing.Share{ID: scalarOf(s.Point), Value: s.k})
	}
	k, err := secretsharing.Recover(uint(thr-1), ss)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func subsets(n, k int) [][]int {
	var out [][]int
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			out = append(out, append([]int(nil), cur...))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
	return out
}

func evaluateAt(t *testing.T, c *Client, ids [][]byte, shares []*KeyShare) ([][]byte, error) {
	t.Helper()
	b, req, err := c.Blind(ids)
	if err != nil {
		t.Fatal(err)
	}
	var vs []*Verified
	for _, s := range shares {
		p, err := s.Evaluate(req)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Verify(req, p)
		if err != nil {
			t.Fatalf("point %d: %v", s.Point, err)
		}
		vs = append(vs, v)
	}
	return c.Finalize(b, vs)
}

var testIDs = [][]byte{[]byte("110101199003071234"), []byte("A"), []byte("person 42"), bytes.Repeat([]byte{0xff}, 300)}

func TestThresholdEqualsSingleKeyServer(t *testing.T) {
	for _, tc := range []struct{ t, n int }{{1, 1}, {2, 2}, {2, 3}, {3, 5}, {4, 7}} {
		t.Run(fmt.Sprintf("%d-of-%d", tc.t, tc.n), func(t *testing.T) {
			pub, shares := ceremony(t, tc.t, tc.n)
			k := reconstruct(t, tc.t, shares[len(shares)-tc.t:])
			var sk oprf.PrivateKey
			if err := sk.UnmarshalBinary(oprf.SuiteRistretto255, marshalScalar(k)); err != nil {
				t.Fatal(err)
			}
			pkS, _ := sk.Public().MarshalBinary()
			if !bytes.Equal(pkS, pub.PublicKey()) {
				t.Fatal("the public key from the commitments is not k·G")
			}
			server := oprf.NewVerifiableServer(oprf.SuiteRistretto255, &sk)
			c := NewClient(pub)
			for _, set := range subsets(tc.n, tc.t) {
				var use []*KeyShare
				for _, i := range set {
					use = append(use, shares[i])
				}
				got, err := evaluateAt(t, c, testIDs, use)
				if err != nil {
					t.Fatalf("subset %v: %v", set, err)
				}
				for i, id := range testIDs {
					want, err := server.FullEvaluate(id)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got[i], want) {
						t.Fatalf("subset %v, id %d: threshold output differs from circl's FullEvaluate", set, i)
					}
				}
			}
		})
	}
}

func TestFewerThanThresholdCannotEvaluate(t *testing.T) {
	pub, shares := ceremony(t, 3, 5)
	k := reconstruct(t, 3, shares[:3])
	var sk oprf.PrivateKey
	if err := sk.UnmarshalBinary(oprf.SuiteRistretto255, marshalScalar(k)); err != nil {
		t.Fatal(err)
	}
	server := oprf.NewVerifiableServer(oprf.SuiteRistretto255, &sk)
	want, _ := server.FullEvaluate(testIDs[0])
	c := NewClient(pub)
	for _, set := range subsets(5, 2) {
		use := []*KeyShare{shares[set[0]], shares[set[1]]}
		if _, err := evaluateAt(t, c, testIDs[:1], use); !errors.Is(err, ErrThreshold) {
			t.Fatalf("subset %v: Finalize with t-1 partials: %v, want ErrThreshold", set, err)
		}
		// Two colluders interpolating their own shares as if t were 2 get
		// a value unrelated to the pseudonym.
		c2 := NewClient(&Public{Threshold: 2, keys: pub.keys, key: pub.key})
		got, err := evaluateAt(t, c2, testIDs[:1], use)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got[0], want) {
			t.Fatalf("subset %v: t-1 shares computed the pseudonym", set)
		}
	}
}

func TestBadOrMissingPartialDetected(t *testing.T) {
	pub, shares := ceremony(t, 2, 3)
	c := NewClient(pub)
	b, req, err := c.Blind(testIDs)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := shares[0].Evaluate(req)
	// A node evaluating with another key than its committed share.
	rogue := newKeyShare(shares[1].Point, g.RandomNonZeroScalar(rand.Reader))
	wrongKey, _ := rogue.Evaluate(req)
	// A node whose answer was altered after proving.
	honest, _ := shares[1].Evaluate(req)
	tb, _ := honest.MarshalBinary()
	other2 := marshalElement(g.NewElement().Add(honest.elements[2], g.Generator()))
	copy(tb[16+2*ElementSize:], other2)
	tampered, err := ParsePartial(tb)
	if err != nil {
		t.Fatal(err)
	}
	// A partial of another request.
	_, req2, _ := c.Blind(testIDs)
	other, _ := shares[1].Evaluate(req2)
	// A point outside the ceremony.
	outsider := newKeyShare(9, shares[1].k)
	stranger, _ := outsider.Evaluate(req)
	for _, tc := range []struct {
		name string
		p    *Partial
		want error
	}{
		{"wrong key", wrongKey, ErrBadProof},
		{"tampered element", tampered, ErrBadProof},
		{"other request", other, ErrBadProof},
		{"unknown node", stranger, ErrUnknownNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Verify(req, tc.p)
			var pe *PartialError
			if !errors.Is(err, tc.want) || !errors.As(err, &pe) || pe.Point != tc.p.Point {
				t.Fatalf("Verify = %v, want %v naming point %d", err, tc.want, tc.p.Point)
			}
		})
	}
	vGood, err := c.Verify(req, good)
	if err != nil {
		t.Fatal(err)
	}
	// Missing: one good partial is not enough; asking the third node is.
	if _, err := c.Finalize(b, []*Verified{vGood}); !errors.Is(err, ErrThreshold) {
		t.Fatalf("Finalize with one partial: %v", err)
	}
	if _, err := c.Finalize(b, []*Verified{vGood, vGood}); !errors.Is(err, ErrThreshold) {
		t.Fatalf("Finalize with one node twice: %v", err)
	}
	third, _ := shares[2].Evaluate(req)
	vThird, err := c.Verify(req, third)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Finalize(b, []*Verified{vGood, vThird})
	if err != nil {
		t.Fatal(err)
	}
	want, err := evaluateAt(t, c, testIDs, shares[:2])
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if !bytes.Equal(out[i], want[i]) {
			t.Fatalf("id %d: nodes {1,3} and {1,2} disagree", i)
		}
	}
	// A verified partial of another request cannot be mixed in.
	vOther, err := c.Verify(req2, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Finalize(b, []*Verified{vGood, vOther}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("Finalize mixing requests: %v", err)
	}
}

func TestDealtShareChecked(t *testing.T) {
	points := []uint64{1, 2, 3}
	d, err := Deal(2, points)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := Deal(2, points)
	s1, _ := d.Share(1)
	s2, _ := d.Share(2)
	other, _ := d2.Share(1)
	for _, tc := range []struct {
		name  string
		x     uint64
		share []byte
		comm  [][]byte
		ok    bool
	}{
		{"right", 1, s1, d.Commitments(), true},
		{"share of another point", 1, s2, d.Commitments(), false},
		{"share of another dealer", 1, other, d.Commitments(), false},
		{"too few commitments", 1, s1, d.Commitments()[:1], false},
		{"short share", 1, s1[:31], d.Commitments(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyShare(2, tc.x, tc.share, tc.comm)
			if (err == nil) != tc.ok {
				t.Fatalf("VerifyShare = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := Combine(2, 1, [][]byte{s1, other}, [][][]byte{d.Commitments(), d.Commitments()}); err == nil || !strings.Contains(err.Error(), "dealer 1") {
		t.Fatalf("Combine with a bad share: %v", err)
	}
	for _, tc := range []struct {
		t      int
		points []uint64
	}{{0, points}, {4, points}, {2, []uint64{1, 1, 2}}, {2, []uint64{0, 1}}, {1, []uint64{MaxParticipants + 1}}} {
		t.Run(fmt.Sprintf("Deal(%d, %v)", tc.t, tc.points), func(t *testing.T) {
			if _, err := Deal(tc.t, tc.points); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("Deal(%d, %v) = %v", tc.t, tc.points, err)
			}
		})
	}
}

// TestRFC9497Vectors runs RFC 9497's ristretto255-SHA512 verifiable-mode
// test vectors (appendix A.1.2) through the wrapper, single-key case: one
// share of threshold 1 at point 1 is the key itself.
func TestRFC9497Vectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc9497-ristretto255-voprf.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		PkSm, SkSm string
		Vectors    []struct {
			Batch                                                   int
			Blind, BlindedElement, EvaluationElement, Input, Output string
			Proof                                                   struct{ Proof, R string }
		}
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	hexes := func(s string) [][]byte {
		var out [][]byte
		for _, h := range strings.Split(s, ",") {
			b, err := hex.DecodeString(h)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	one := func(s string) []byte { return hexes(s)[0] }
	k, err := parseScalar(one(v.SkSm))
	if err != nil {
		t.Fatal(err)
	}
	share := newKeyShare(1, k)
	if !bytes.Equal(share.VerificationKey(), one(v.PkSm)) {
		t.Fatal("pkSm differs")
	}
	pub, err := NewSingle(1, one(v.PkSm))
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(pub)
	for i, vec := range v.Vectors {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var blinds []group.Scalar
			for _, b := range hexes(vec.Blind) {
				s, err := parseScalar(b)
				if err != nil {
					t.Fatal(err)
				}
				blinds = append(blinds, s)
			}
			b, req, err := c.blind(hexes(vec.Input), blinds)
			if err != nil {
				t.Fatal(err)
			}
			if got := marshalElements(requestMagic, nil, req.elements); !bytes.Equal(got[8:], bytes.Join(hexes(vec.BlindedElement), nil)) {
				t.Fatal("blinded elements differ")
			}
			r, _ := parseScalar(one(vec.Proof.R))
			p, err := share.evaluate(req, r)
			if err != nil {
				t.Fatal(err)
			}
			pb, _ := p.MarshalBinary()
			if !bytes.Equal(pb[16:len(pb)-ProofSize], bytes.Join(hexes(vec.EvaluationElement), nil)) {
				t.Fatal("evaluated elements differ")
			}
			if !bytes.Equal(pb[len(pb)-ProofSize:], one(vec.Proof.Proof)) {
				t.Fatal("proof differs")
			}
			ver, err := c.Verify(req, p)
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.Finalize(b, []*Verified{ver})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bytes.Join(out, nil), bytes.Join(hexes(vec.Output), nil)) {
				t.Fatal("outputs differ")
			}
		})
	}
}

func TestRoundTrips(t *testing.T) {
	pub, shares := ceremony(t, 2, 3)
	c := NewClient(pub)
	_, req, err := c.Blind(testIDs)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := req.MarshalBinary()
	req2, err := ParseRequest(rb)
	if err != nil {
		t.Fatal(err)
	}
	if rb2, _ := req2.MarshalBinary(); !bytes.Equal(rb, rb2) {
		t.Fatal("request round trip differs")
	}
	p, _ := shares[1].Evaluate(req2)
	pb, _ := p.MarshalBinary()
	p2, err := ParsePartial(pb)
	if err != nil {
		t.Fatal(err)
	}
	if pb2, _ := p2.MarshalBinary(); !bytes.Equal(pb, pb2) {
		t.Fatal("partial round trip differs")
	}
	if _, err := c.Verify(req, p2); err != nil {
		t.Fatalf("a parsed partial of a parsed request: %v", err)
	}
	kb, _ := shares[2].MarshalBinary()
	k2, err := ParseKeyShare(kb)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Point != shares[2].Point || !bytes.Equal(k2.VerificationKey(), shares[2].VerificationKey()) {
		t.Fatal("key share round trip differs")
	}
	// Every truncation and every padding is refused.
	for name, tc := range map[string]struct {
		b     []byte
		parse func([]byte) error
	}{
		"request":   {rb, func(b []byte) error { _, err := ParseRequest(b); return err }},
		"partial":   {pb, func(b []byte) error { _, err := ParsePartial(b); return err }},
		"key share": {kb, func(b []byte) error { _, err := ParseKeyShare(b); return err }},
	} {
		t.Run(name, func(t *testing.T) {
			for n := range len(tc.b) {
				if err := tc.parse(tc.b[:n]); !errors.Is(err, ErrInvalidInput) {
					t.Fatalf("truncated to %d bytes: %v", n, err)
				}
			}
			if err := tc.parse(append(bytes.Clone(tc.b), 0)); !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("padded: %v", err)
			}
		})
	}
}

func TestBadInputsRefused(t *testing.T) {
	pub, _ := ceremony(t, 2, 3)
	c := NewClient(pub)
	identity := make([]byte, ElementSize)
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"no ids", func() error { _, _, err := c.Blind(nil); return err }},
		{"empty id", func() error { _, _, err := c.Blind([][]byte{{}}); return err }},
		{"too long id", func() error { _, _, err := c.Blind([][]byte{make([]byte, MaxInputLen+1)}); return err }},
		{"too many ids", func() error { _, _, err := c.Blind(make([][]byte, MaxBatch+1)); return err }},
		{"identity element", func() error {
			_, err := ParseRequest(append([]byte("PSR1\x00\x00\x00\x01"), identity...))
			return err
		}},
		{"non-canonical element", func() error {
			_, err := ParseRequest(append([]byte("PSR1\x00\x00\x00\x01"), bytes.Repeat([]byte{0xff}, 32)...))
			return err
		}},
		{"zero count", func() error { _, err := ParseRequest([]byte("PSR1\x00\x00\x00\x00")); return err }},
		{"huge count", func() error { _, err := ParseRequest([]byte("PSR1\xff\xff\xff\xff")); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("got %v, want ErrInvalidInput", err)
			}
		})
	}
}

func TestSecretsStayOutOfPrints(t *testing.T) {
	_, shares := ceremony(t, 2, 3)
	c := NewClient(&Public{Threshold: 1})
	b, _, err := c.Blind([][]byte{[]byte("secret-id-123")})
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		t.Run(verb, func(t *testing.T) {
			if got := fmt.Sprintf(verb, shares[0]); got != "pseudonym key share of point 1" {
				t.Errorf("%s of a key share prints %q", verb, got)
			}
			if got := fmt.Sprintf(verb, b); got != "pseudonym blinding of 1 ids" {
				t.Errorf("%s of a blinding prints %q", verb, got)
			}
		})
	}
}
