package pseudonym

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"

	"github.com/cloudflare/circl/group"
	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
)

// The batched DLEQ proof of RFC 9497 section 2.2 (GenerateProof,
// VerifyProof, ComputeComposites[Fast]). It is circl's zk/dleq, byte for
// byte (the RFC's test vectors check it), except that the composites
// M = Σ d_i·B_i and Z = Σ d_i·Z_i — sums over public points with public
// weights — are computed with curve25519-voi's variable-time multiscalar
// multiplication (Pippenger) instead of one scalar multiplication per
// element: that is most of the cost of proving and verifying a batch.
// Every multiplication by a secret (the key share k, the nonce r) stays
// circl's constant-time one.

var (
	seedDST      = append([]byte("Seed-"), contextString...)
	hashScalarDS = append([]byte("HashToScalar-"), contextString...)
)

// proof is a DLEQ proof (c, s).
type proof struct{ c, s group.Scalar }

func (p *proof) marshal() []byte { return append(marshalScalar(p.c), marshalScalar(p.s)...) }

// points decodes compressed elements into voi's representation (for the
// multiscalar multiplications; the encodings were checked when parsed).
func points(encs [][]byte) ([]*curve.RistrettoPoint, error) {
	out := make([]*curve.RistrettoPoint, len(encs))
	err := parallel(len(encs), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			out[i] = curve.NewRistrettoPoint()
			if err := out[i].UnmarshalBinary(encs[i]); err != nil {
				return fmt.Errorf("%w: element %d", ErrInvalidInput, i)
			}
		}
		return nil
	})
	return out, err
}

// weights returns the composite weights d_i of RFC 9497's
// ComputeComposites: HashToScalar(seed, i, B_i, Z_i, "Composite").
func weights(kEnc []byte, bEnc, zEnc [][]byte) []*scalar.Scalar {
	h := sha512.New()
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(kEnc)))
	h.Write(l[:])
	h.Write(kEnc)
	binary.BigEndian.PutUint16(l[:], uint16(len(seedDST)))
	h.Write(l[:])
	h.Write(seedDST)
	seed := h.Sum(nil)
	out := make([]*scalar.Scalar, len(bEnc))
	_ = parallel(len(bEnc), func(lo, hi int) error {
		buf := make([]byte, 0, 2+len(seed)+2+2+ElementSize+2+ElementSize+len("Composite"))
		for i := lo; i < hi; i++ {
			buf = binary.BigEndian.AppendUint16(buf[:0], uint16(len(seed)))
			buf = append(buf, seed...)
			buf = binary.BigEndian.AppendUint16(buf, uint16(i))
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(bEnc[i])))
			buf = append(buf, bEnc[i]...)
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(zEnc[i])))
			buf = append(buf, zEnc[i]...)
			buf = append(buf, "Composite"...)
			d := g.HashToScalar(buf, hashScalarDS)
			s, err := scalar.NewFromCanonicalBytes(marshalScalar(d))
			if err != nil {
				panic(err) // circl's scalars are reduced
			}
			out[i] = s
		}
		return nil
	})
	return out
}

// composite is Σ w_i·P_i over public values, in variable time, split
// over the CPUs for large batches.
func composite(ws []*scalar.Scalar, ps []*curve.RistrettoPoint) group.Element {
	const chunk = 256
	n := len(ws)
	parts := make([]*curve.RistrettoPoint, (n+chunk-1)/chunk)
	_ = parallel(len(parts), func(lo, hi int) error {
		for k := lo; k < hi; k++ {
			a, b := k*chunk, min((k+1)*chunk, n)
			parts[k] = curve.NewRistrettoPoint().MultiscalarMulVartime(ws[a:b], ps[a:b])
		}
		return nil
	})
	sum := curve.NewRistrettoPoint().Sum(parts)
	b, err := sum.MarshalBinary()
	if err != nil {
		panic(err)
	}
	e := g.NewElement()
	if err := e.UnmarshalBinary(b); err != nil {
		panic(err) // voi's encodings are canonical
	}
	return e
}

func challenge(kEnc []byte, es ...group.Element) group.Scalar {
	buf := binary.BigEndian.AppendUint16(nil, uint16(len(kEnc)))
	buf = append(buf, kEnc...)
	for _, e := range es {
		b := marshalElement(e)
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(b)))
		buf = append(buf, b...)
	}
	buf = append(buf, "Challenge"...)
	return g.HashToScalar(buf, hashScalarDS)
}

// prove is GenerateProof with ComputeCompositesFast: Z = k·M.
func prove(k group.Scalar, kEnc []byte, bEnc [][]byte, bPts []*curve.RistrettoPoint, zEnc [][]byte, r group.Scalar) *proof {
	m := composite(weights(kEnc, bEnc, zEnc), bPts)
	z := g.NewElement().Mul(m, k)
	t2 := g.NewElement().MulGen(r)
	t3 := g.NewElement().Mul(m, r)
	c := challenge(kEnc, m, z, t2, t3)
	s := g.NewScalar().Sub(r, g.NewScalar().Mul(c, k))
	return &proof{c: c, s: s}
}

// verify is VerifyProof: t2 = s·G + c·K, t3 = s·M + c·Z, and c must be
// the challenge over them.
func verify(key group.Element, kEnc []byte, bEnc [][]byte, bPts []*curve.RistrettoPoint, zEnc [][]byte, zPts []*curve.RistrettoPoint, p *proof) bool {
	ws := weights(kEnc, bEnc, zEnc)
	m, z := composite(ws, bPts), composite(ws, zPts)
	t2 := g.NewElement().Add(g.NewElement().MulGen(p.s), g.NewElement().Mul(key, p.c))
	t3 := g.NewElement().Add(g.NewElement().Mul(m, p.s), g.NewElement().Mul(z, p.c))
	return challenge(kEnc, m, z, t2, t3).IsEqual(p.c)
}
