package pseudonym

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/math/polynomial"
	"github.com/cloudflare/circl/secretsharing"
)

// MaxParticipants bounds a ceremony (and the points it hands out).
const MaxParticipants = 256

// Dealing is one dealer's part of the joint-Feldman key generation: a
// random polynomial f of degree t-1, its Feldman commitments a_l·G (public,
// on the ledger) and the share f(x) of every participant (secret: each is
// sealed to its participant). The consortium key is the sum of every
// dealer's f(0); nobody ever computes it.
type Dealing struct {
	threshold   int
	commitments [][]byte
	shares      map[uint64]group.Scalar
}

// Deal draws a dealer's polynomial for threshold t and the given points.
func Deal(t int, points []uint64) (*Dealing, error) {
	if err := checkPoints(t, points); err != nil {
		return nil, err
	}
	// secretsharing counts the degree (t-1), not the threshold.
	ss := secretsharing.New(rand.Reader, uint(t-1), g.RandomScalar(rand.Reader))
	d := &Dealing{threshold: t, shares: map[uint64]group.Scalar{}}
	for _, c := range ss.CommitSecret() {
		d.commitments = append(d.commitments, marshalElement(c))
	}
	for _, x := range points {
		d.shares[x] = ss.ShareWithID(scalarOf(x)).Value
	}
	return d, nil
}

func checkPoints(t int, points []uint64) error {
	if t < 1 || t > len(points) || len(points) > MaxParticipants {
		return fmt.Errorf("%w: threshold %d of %d participants (need 1 ≤ t ≤ N ≤ %d)", ErrInvalidInput, t, len(points), MaxParticipants)
	}
	seen := map[uint64]bool{}
	for _, x := range points {
		if x == 0 || x > MaxParticipants || seen[x] {
			return fmt.Errorf("%w: points must be distinct and in 1..%d, got %d", ErrInvalidInput, MaxParticipants, x)
		}
		seen[x] = true
	}
	return nil
}

// Commitments returns the dealer's Feldman commitments (t elements).
func (d *Dealing) Commitments() [][]byte { return slices.Clone(d.commitments) }

// Share returns the secret share f(x) for point x. It must only travel
// sealed to x's owner.
func (d *Dealing) Share(x uint64) ([]byte, error) {
	s, ok := d.shares[x]
	if !ok {
		return nil, fmt.Errorf("%w: no share for point %d", ErrInvalidInput, x)
	}
	return marshalScalar(s), nil
}

// parseCommitments reads t Feldman commitments.
func parseCommitments(t int, c [][]byte) ([]group.Element, error) {
	if len(c) != t {
		return nil, fmt.Errorf("%w: %d commitments for threshold %d", ErrInvalidInput, len(c), t)
	}
	out := make([]group.Element, t)
	for i, b := range c {
		e, err := parseElement(b)
		if err != nil {
			return nil, fmt.Errorf("commitment %d: %w", i, err)
		}
		out[i] = e
	}
	return out, nil
}

// evalCommitted returns Σ_l C_l·x^l, the public image f(x)·G of a share.
func evalCommitted(c []group.Element, x uint64) group.Element {
	xs := scalarOf(x)
	sum := g.NewElement().Set(c[len(c)-1])
	for i := len(c) - 2; i >= 0; i-- {
		sum.Mul(sum, xs)
		sum.Add(sum, c[i])
	}
	return sum
}

// VerifyShare checks a received share f(x) against its dealer's
// commitments (Feldman): f(x)·G = Σ_l C_l·x^l.
func VerifyShare(t int, x uint64, share []byte, commitments [][]byte) error {
	c, err := parseCommitments(t, commitments)
	if err != nil {
		return err
	}
	s, err := parseScalar(share)
	if err != nil {
		return err
	}
	if !secretsharing.Verify(uint(t-1), secretsharing.Share{ID: scalarOf(x), Value: s}, c) {
		return errors.New("pseudonym: the share does not match its dealer's commitments")
	}
	return nil
}

// Combine sums the shares a participant at point x received, one from
// every dealer (in the order of the dealers' commitments), into its key
// share k_x = Σ_d f_d(x), after checking each against its commitments.
func Combine(t int, x uint64, shares [][]byte, commitments [][][]byte) (*KeyShare, error) {
	if len(shares) == 0 || len(shares) != len(commitments) {
		return nil, fmt.Errorf("%w: %d shares for %d dealers", ErrInvalidInput, len(shares), len(commitments))
	}
	k := g.NewScalar()
	for d := range shares {
		if err := VerifyShare(t, x, shares[d], commitments[d]); err != nil {
			return nil, fmt.Errorf("dealer %d: %w", d, err)
		}
		s, _ := parseScalar(shares[d])
		k.Add(k, s)
	}
	if k.IsZero() {
		return nil, fmt.Errorf("%w: a zero key share", ErrInvalidInput)
	}
	return newKeyShare(x, k), nil
}

// Public is what anyone may know of a ceremony: the threshold, each
// participant's verification key k_x·G, and the consortium's public key
// k·G (RFC 9497's pkS).
type Public struct {
	Threshold int
	keys      map[uint64]group.Element
	key       group.Element
}

// NewPublic derives the public part of a ceremony from the dealers'
// commitments: the public key Σ_d C_d0 and the verification key of each
// point Σ_d Σ_l C_dl·x^l. Everyone derives the same keys from the ledger.
func NewPublic(t int, points []uint64, commitments [][][]byte) (*Public, error) {
	if err := checkPoints(t, points); err != nil {
		return nil, err
	}
	if len(commitments) == 0 {
		return nil, fmt.Errorf("%w: no dealers", ErrInvalidInput)
	}
	agg := make([]group.Element, t)
	for i := range agg {
		agg[i] = g.Identity()
	}
	for d, cb := range commitments {
		c, err := parseCommitments(t, cb)
		if err != nil {
			return nil, fmt.Errorf("dealer %d: %w", d, err)
		}
		for i := range c {
			agg[i].Add(agg[i], c[i])
		}
	}
	p := &Public{Threshold: t, keys: map[uint64]group.Element{}, key: agg[0]}
	if p.key.IsIdentity() {
		return nil, fmt.Errorf("%w: the public key is the identity", ErrInvalidInput)
	}
	for _, x := range points {
		vk := evalCommitted(agg, x)
		if vk.IsIdentity() {
			return nil, fmt.Errorf("%w: the verification key of point %d is the identity", ErrInvalidInput, x)
		}
		p.keys[x] = vk
	}
	return p, nil
}

// NewSingle is the public part of one ordinary RFC 9497 key k (threshold
// 1, one point): the single-key case the protocol reduces to.
func NewSingle(x uint64, pk []byte) (*Public, error) {
	e, err := parseElement(pk)
	if err != nil {
		return nil, err
	}
	return &Public{Threshold: 1, keys: map[uint64]group.Element{x: e}, key: e}, nil
}

// PublicKey is the consortium key k·G.
func (p *Public) PublicKey() []byte { return marshalElement(p.key) }

// Points lists the participants' points in order.
func (p *Public) Points() []uint64 {
	out := make([]uint64, 0, len(p.keys))
	for x := range p.keys {
		out = append(out, x)
	}
	slices.Sort(out)
	return out
}

// VerificationKey is the key k_x·G a partial from point x is checked with.
func (p *Public) VerificationKey(x uint64) ([]byte, bool) {
	e, ok := p.keys[x]
	if !ok {
		return nil, false
	}
	return marshalElement(e), true
}

// CheckKey reports whether point x's verification key equals vk (for
// comparing a ledger's record with the commitments).
func (p *Public) CheckKey(x uint64, vk []byte) bool {
	e, ok := p.keys[x]
	return ok && subtle.ConstantTimeCompare(marshalElement(e), vk) == 1
}

// lagrangeAtZero returns the Lagrange coefficients at 0 for the points.
func lagrangeAtZero(points []uint64) []group.Scalar {
	xs := make([]group.Scalar, len(points))
	for i, x := range points {
		xs[i] = scalarOf(x)
	}
	zero := g.NewScalar()
	out := make([]group.Scalar, len(points))
	for i := range points {
		out[i] = polynomial.LagrangeBase(uint(i), xs, zero)
	}
	return out
}

// KeyShare is one participant's share k_x of the consortium key. It is
// secret: kept in a 0600 file, never logged, never sent.
type KeyShare struct {
	Point uint64
	k     group.Scalar
	vk    group.Element
}

func newKeyShare(x uint64, k group.Scalar) *KeyShare {
	return &KeyShare{Point: x, k: k, vk: g.NewElement().MulGen(k)}
}

// VerificationKey is k_x·G.
func (s *KeyShare) VerificationKey() []byte { return marshalElement(s.vk) }

const keyShareMagic = "PSK1"

// KeyShareSize is the length of a marshalled key share.
const KeyShareSize = len(keyShareMagic) + 8 + ScalarSize

// MarshalBinary encodes the share (magic, point, scalar) for its file.
func (s *KeyShare) MarshalBinary() ([]byte, error) {
	b := append([]byte(keyShareMagic), binary.BigEndian.AppendUint64(nil, s.Point)...)
	return append(b, marshalScalar(s.k)...), nil
}

// ParseKeyShare reads a marshalled key share.
func ParseKeyShare(b []byte) (*KeyShare, error) {
	if len(b) != KeyShareSize || string(b[:4]) != keyShareMagic {
		return nil, fmt.Errorf("%w: a key share is %d bytes starting %q", ErrInvalidInput, KeyShareSize, keyShareMagic)
	}
	x := binary.BigEndian.Uint64(b[4:12])
	if x == 0 || x > MaxParticipants {
		return nil, fmt.Errorf("%w: key share point %d", ErrInvalidInput, x)
	}
	k, err := parseScalar(b[12:])
	if err != nil {
		return nil, err
	}
	if k.IsZero() {
		return nil, fmt.Errorf("%w: a zero key share", ErrInvalidInput)
	}
	return newKeyShare(x, k), nil
}

// String and GoString keep the secret out of logs and error messages
// (%v, %s and %#v print only the point).
func (s *KeyShare) String() string   { return fmt.Sprintf("pseudonym key share of point %d", s.Point) }
func (s *KeyShare) GoString() string { return s.String() }
