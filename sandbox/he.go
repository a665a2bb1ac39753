package sandbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"math"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"

	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// HEMaxRows bounds an encrypted dataset so that sums cannot wrap Q0 (the
// CKKS parameters and their wire format are in package heparams).
const HEMaxRows = 4_000_000

// encryptor encrypts coefficient vectors under the collective public key
// at ingest: RLWE public-key encryption as Lattigo's encryptor does it
// (Encryptor.encryptZeroPk: sampled in QP, then divided by P, so the
// fresh noise stays a few units: TestHEMatchesMasked sees sums within
// ~1e-8 of the column's bound), written out here for two reasons: its
// samplers draw from AES-256-CTR keyed from crypto/rand (a standard CSPRNG
// that, with AES-NI, costs a fraction of the blake2b XOF Lattigo's
// encryptor is fixed to, which was a quarter of the encryption time), and
// the message is added before the final NTT, saving the plaintext's own.
type encryptor struct {
	ringQ  *ring.Ring
	ringQP ringqp.Ring
	be     *ring.BasisExtender
	pk     *rlwe.PublicKey
	xs, xe ring.Sampler
	u, e   ringqp.Poly
	c0, c1 ringqp.Poly
}

func newEncryptor(pk *rlwe.PublicKey) (*encryptor, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	prng := &ctrPRNG{cipher.NewCTR(block, make([]byte, aes.BlockSize))}
	params := heparams.Params()
	ringQ := params.RingQ().AtLevel(0)
	xs, err := ring.NewSampler(prng, ringQ, params.Xs(), false)
	if err != nil {
		return nil, err
	}
	xe, err := ring.NewSampler(prng, ringQ, params.Xe(), false)
	if err != nil {
		return nil, err
	}
	rqp := params.RingQP().AtLevel(0, 0)
	return &encryptor{ringQ: ringQ, ringQP: rqp, be: ring.NewBasisExtender(params.RingQ(), params.RingP()), pk: pk, xs: xs, xe: xe,
		u: rqp.NewPoly(), e: rqp.NewPoly(), c0: rqp.NewPoly(), c1: rqp.NewPoly()}, nil
}

// encrypt sets ct (degree 1, level 0, NTT form) to an encryption of the
// coefficients m (each < q; the rest of the polynomial is zero).
func (enc *encryptor) encrypt(m []uint64, ct *rlwe.Ciphertext) error {
	r := enc.ringQP
	// u ternary, in QP
	enc.xs.Read(enc.u.Q)
	r.ExtendBasisSmallNormAndCenter(enc.u.Q, 0, enc.u.Q, enc.u.P)
	r.NTT(enc.u, enc.u)
	// (u·pk0, u·pk1) in QP, back to coefficients
	r.MulCoeffsMontgomery(enc.u, enc.pk.Value[0], enc.c0)
	r.MulCoeffsMontgomery(enc.u, enc.pk.Value[1], enc.c1)
	r.INTT(enc.c0, enc.c0)
	r.INTT(enc.c1, enc.c1)
	// + (e0, e1) Gaussian, in QP
	for _, c := range []ringqp.Poly{enc.c0, enc.c1} {
		enc.xe.Read(enc.e.Q)
		r.ExtendBasisSmallNormAndCenter(enc.e.Q, 0, enc.e.Q, enc.e.P)
		r.Add(c, enc.e, c)
	}
	// divide by P into Q; + m; NTT
	enc.be.ModDownQPtoQ(0, 0, enc.c0.Q, enc.c0.P, ct.Value[0])
	enc.be.ModDownQPtoQ(0, 0, enc.c1.Q, enc.c1.P, ct.Value[1])
	mod := enc.ringQ.SubRings[0].Modulus
	c := ct.Value[0].Coeffs[0]
	for i, x := range m {
		c[i] += x
		if c[i] >= mod {
			c[i] -= mod
		}
	}
	enc.ringQ.NTT(ct.Value[0], ct.Value[0])
	enc.ringQ.NTT(ct.Value[1], ct.Value[1])
	ct.IsNTT, ct.IsBatched = true, false
	ct.Scale = rlwe.NewScale(heScale)
	return nil
}

// ctrPRNG reads an AES-CTR key stream.
type ctrPRNG struct{ s cipher.Stream }

func (p *ctrPRNG) Read(b []byte) (int, error) {
	clear(b)
	p.s.XORKeyStream(b, b)
	return len(b), nil
}

// heScale is 2^heparams.ScaleLog as a float.
var heScale = math.Ldexp(1, heparams.ScaleLog)
