// Package heparams is the consortium's CKKS parameter set and the strict
// wire format of its elements, the one home of both for the engine
// (package sandbox: ingest encryption, homomorphic evaluation, decryption
// by the requester) and the key ceremony and threshold release (package
// mpc), which may import this package but not sandbox (audit's
// TestLayering).
//
// Threat model: every byte string read here is untrusted (a requester's
// public key from the ledger, a ciphertext or key-switch share from
// another node, a ciphertext file on disk). Lattigo's own decoders recurse
// without end on some truncated inputs (a fatal stack overflow, not a
// panic), so nothing untrusted reaches them: ParsePublicKey,
// UnmarshalElement and UnmarshalCiphertext check the header, the length
// and that every coefficient is reduced modulo its prime, and return
// ErrBadCiphertext otherwise. Nothing here is secret but the requester's
// secret key, derived from the seed of its account key file
// (RequesterSecretKey) and never sent anywhere. Parsing is not
// constant-time; it handles no secret.
//
// Spec: CKKS as implemented by Lattigo v5 (Cheon, Kim, Kim, Song,
// "Homomorphic encryption for arithmetic of approximate numbers",
// ASIACRYPT 2017), used in coefficient encoding; the parameters are within
// the Homomorphic Encryption Standard's 128-bit bounds (below).
package heparams

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/ckks"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// The HE engine's CKKS parameters (Lattigo v5 hefloat/ckks, standard
// ring). Why these:
//
//   - The engine never multiplies two ciphertexts. Everything a query needs
//     beyond sums (x², x·y) is computed by the data owner at ingest, where
//     the rows are in the clear anyway, and encrypted as its own column.
//     Filters and groups are integer 0/1 polynomials applied to ciphertexts
//     that hold one row per coefficient ("coefficient encoding"), which
//     consumes no level and changes no scale. So one 60-bit modulus Q0 is
//     enough: no rescaling, no relinearisation key.
//   - Sums are moved into one coefficient each and packed into a single
//     ciphertext with Lattigo's Pack (ring packing, Chen–Dai–Kim–Song), the
//     only key-switching step, hence the Galois keys and P.
//   - LogN=13 with log(QP)=121 is far inside the 128-bit bound of the
//     homomorphic encryption standard for ternary secrets (log(QP) ≤ 218 at
//     N=8192). N=2^14 would cost twice per ciphertext for nothing here.
//   - Values are stored normalised by their column's bound B (|x/B| ≤ 1)
//     at scale 2^36: a sum over up to sandbox.HEMaxRows rows (4M) stays below
//     Q0/2.
var heLiteral = ckks.ParametersLiteral{
	LogN:            13,
	LogQ:            []int{60},
	LogP:            []int{61},
	LogDefaultScale: ScaleLog,
	RingType:        ring.Standard,
}

// ScaleLog is log2 of the scale of every encoded value.
const ScaleLog = 36

var (
	heOnce   sync.Once
	heParams ckks.Parameters
	heErr    error
)

// Params returns the engine's CKKS parameters.
func Params() ckks.Parameters {
	heOnce.Do(func() { heParams, heErr = ckks.NewParametersFromLiteral(heLiteral) })
	if heErr != nil {
		panic(fmt.Sprintf("heparams: %v", heErr)) // a constant literal: cannot happen
	}
	return heParams
}

// Name names the parameter set on the ledger.
const Name = "ckks-n13-q60-p61-s36-coeff"

// GaloisElements are the rotations the engine uses (Pack), the only
// evaluation keys the ceremony has to produce.
func GaloisElements() []uint64 {
	p := Params()
	return rlwe.GaloisElementsForPack(p, p.LogN())
}

// ErrBadCiphertext: a ciphertext, share or public key blob that does not
// decode.
var ErrBadCiphertext = errors.New("heparams: malformed ciphertext")

// Ciphertexts and shares on disk and on the wire: "DSC1", degree+1 (u8),
// level (u8), NTT flag (u8), log2 scale (u8), then per polynomial and per
// modulus the N coefficients bit-packed at the modulus' width. At Q0 of 60
// bits a ciphertext costs 15 bytes per coefficient (lattigo's own format
// stores 8 bytes per 60-bit word and per modulus plus metadata).
const ctMagic = "DSC1"

// MarshalElement writes a degree-1 element (ciphertext, key-switch share)
// at level 0..MaxLevel in the compact format.
func MarshalElement(params ckks.Parameters, polys []ring.Poly, isNTT bool, logScale int) []byte {
	return marshalRing(params.RingQ(), params.N(), polys, isNTT, logScale)
}

func marshalRing(r *ring.Ring, n int, polys []ring.Poly, isNTT bool, logScale int) []byte {
	level := polys[0].Level()
	ringQ := r.AtLevel(level)
	size := 8
	for i := 0; i <= level; i++ {
		size += len(polys) * ((n*bits.Len64(ringQ.SubRings[i].Modulus) + 7) / 8)
	}
	out := make([]byte, 0, size)
	out = append(out, ctMagic...)
	flag := byte(0)
	if isNTT {
		flag = 1
	}
	out = append(out, byte(len(polys)), byte(level), flag, byte(logScale))
	for _, p := range polys {
		for i := 0; i <= level; i++ {
			out = packBits(out, p.Coeffs[i][:n], bits.Len64(ringQ.SubRings[i].Modulus))
		}
	}
	return out
}

// UnmarshalElement reads what MarshalElement wrote, refusing anything
// malformed: wrong header, length, degree, level or a coefficient not
// reduced modulo its prime.
func UnmarshalElement(params ckks.Parameters, b []byte, wantPolys int) (polys []ring.Poly, isNTT bool, logScale int, err error) {
	return unmarshalRing(params.RingQ(), params.N(), b, wantPolys)
}

func unmarshalRing(r *ring.Ring, n int, b []byte, wantPolys int) (polys []ring.Poly, isNTT bool, logScale int, err error) {
	if len(b) < 8 || string(b[:4]) != ctMagic {
		return nil, false, 0, fmt.Errorf("%w: bad header", ErrBadCiphertext)
	}
	np, level, flag, ls := int(b[4]), int(b[5]), b[6], int(b[7])
	if np != wantPolys || level > r.Level() || flag > 1 || ls > 120 {
		return nil, false, 0, fmt.Errorf("%w: %d polynomials at level %d (want %d at most level %d)", ErrBadCiphertext, np, level, wantPolys, r.Level())
	}
	ringQ := r.AtLevel(level)
	want := 8
	for i := 0; i <= level; i++ {
		want += np * ((n*bits.Len64(ringQ.SubRings[i].Modulus) + 7) / 8)
	}
	if len(b) != want {
		return nil, false, 0, fmt.Errorf("%w: %d bytes, want %d", ErrBadCiphertext, len(b), want)
	}
	rest := b[8:]
	polys = make([]ring.Poly, np)
	for k := range polys {
		polys[k] = ringQ.NewPoly()
		for i := 0; i <= level; i++ {
			q := ringQ.SubRings[i].Modulus
			w := bits.Len64(q)
			used := (n*w + 7) / 8
			if err := unpackBits(rest[:used], polys[k].Coeffs[i][:n], w, q); err != nil {
				return nil, false, 0, err
			}
			rest = rest[used:]
		}
	}
	return polys, flag == 1, ls, nil
}

// MarshalCiphertext writes a ciphertext in the compact format.
func MarshalCiphertext(params ckks.Parameters, ct *rlwe.Ciphertext) []byte {
	return MarshalElement(params, ct.Value, ct.IsNTT, int(math.Round(math.Log2(ct.Scale.Float64()))))
}

// UnmarshalCiphertext reads a degree-1 ciphertext.
func UnmarshalCiphertext(params ckks.Parameters, b []byte) (*rlwe.Ciphertext, error) {
	polys, isNTT, ls, err := UnmarshalElement(params, b, 2)
	if err != nil {
		return nil, err
	}
	ct := rlwe.NewCiphertext(params, 1, polys[0].Level())
	ct.Value = polys
	ct.IsNTT = isNTT
	ct.Scale = rlwe.NewScale(math.Ldexp(1, ls))
	ct.IsBatched = false
	return ct, nil
}

func packBits(out []byte, coeffs []uint64, w int) []byte {
	// The bits of every c < 2^w, least significant first, in 64-bit
	// little-endian words; the last partial word in whole bytes.
	var acc uint64
	nacc := 0 // pending bits in acc, < 64
	for _, c := range coeffs {
		acc |= c << nacc
		if nacc+w < 64 {
			nacc += w
			continue
		}
		out = binary.LittleEndian.AppendUint64(out, acc)
		used := 64 - nacc // bits of c in that word
		acc = c >> used   // 0 when used is 64
		nacc = w - used
	}
	for ; nacc > 0; nacc -= 8 {
		out = append(out, byte(acc))
		acc >>= 8
	}
	return out
}

func unpackBits(b []byte, coeffs []uint64, w int, q uint64) error {
	if w < 1 || w > 64 {
		return unpackBitsBytewise(b, coeffs, w, q, 0)
	}
	// A coefficient starts at bit i·w: a load of the 8 bytes from its
	// first byte, and one more byte when it runs past them (w + i·w%8 >
	// 64), while 9 bytes are left.
	mask := uint64(1)<<w - 1 // 0 - 1 for w = 64: all ones
	i := 0
	for ; i < len(coeffs); i++ {
		off := i * w
		at, sh := off/8, uint(off%8)
		if at+9 > len(b) {
			break
		}
		v := binary.LittleEndian.Uint64(b[at:]) >> sh
		if sh > 0 {
			v |= uint64(b[at+8]) << (64 - sh)
		}
		v &= mask
		if v >= q {
			return fmt.Errorf("%w: coefficient %d not reduced", ErrBadCiphertext, i)
		}
		coeffs[i] = v
	}
	if i == len(coeffs) {
		return nil
	}
	// The last few, from the byte where the next one starts.
	off := i * w
	rest := b[off/8:]
	tail := make([]uint64, len(coeffs)-i)
	if err := unpackBitsBytewise(shiftBits(rest, off%8), tail, w, q, i); err != nil {
		return err
	}
	copy(coeffs[i:], tail)
	return nil
}

// shiftBits drops the first k bits (k < 8) of the little-endian bit stream
// b.
func shiftBits(b []byte, k int) []byte {
	if k == 0 {
		return b
	}
	out := make([]byte, len(b))
	for j := range b {
		out[j] = b[j] >> k
		if j+1 < len(b) {
			out[j] |= b[j+1] << (8 - k)
		}
	}
	return out
}

// unpackBitsBytewise is unpackBits a byte at a time; first numbers the
// coefficients in errors.
func unpackBitsBytewise(b []byte, coeffs []uint64, w int, q uint64, first int) error {
	var acc uint64
	var nacc int
	pos := 0
	for i := range coeffs {
		var v uint64
		got := 0
		for got < w {
			if nacc == 0 {
				if pos >= len(b) {
					return fmt.Errorf("%w: truncated", ErrBadCiphertext)
				}
				acc = uint64(b[pos])
				pos++
				nacc = 8
			}
			take := min(w-got, nacc)
			v |= (acc & (1<<take - 1)) << got
			acc >>= take
			nacc -= take
			got += take
		}
		if v >= q {
			return fmt.Errorf("%w: coefficient %d not reduced", ErrBadCiphertext, first+i)
		}
		coeffs[i] = v
	}
	return nil
}

// RequesterSecretKey derives an account's CKKS secret key from its key
// file's private seed (HKDF-SHA256, then Lattigo's ternary sampler over a
// keyed BLAKE2 XOF), so the one key file an enterprise already keeps also
// decrypts its HE results.
func RequesterSecretKey(seed []byte) (*rlwe.SecretKey, error) {
	if len(seed) < 32 {
		return nil, errors.New("heparams: a 32-byte private seed is needed for the HE key")
	}
	k, err := hkdf.Key(sha256.New, seed, nil, "datasandbox he requester key v1", 64)
	if err != nil {
		return nil, err
	}
	prng, err := sampling.NewKeyedPRNG(k)
	if err != nil {
		return nil, err
	}
	params := Params()
	sampler, err := ring.NewSampler(prng, params.RingQ(), params.Xs(), false)
	if err != nil {
		return nil, err
	}
	sk := rlwe.NewSecretKey(params)
	ringQP := params.RingQP().AtLevel(sk.LevelQ(), sk.LevelP())
	sampler.AtLevel(sk.LevelQ()).Read(sk.Value.Q)
	if lp := sk.LevelP(); lp > -1 {
		ringQP.ExtendBasisSmallNormAndCenter(sk.Value.Q, lp, sk.Value.Q, sk.Value.P)
	}
	ringQP.NTT(sk.Value, sk.Value)
	ringQP.MForm(sk.Value, sk.Value)
	return sk, nil
}

// RequesterPublicKey returns the public key an account registers for its
// HE results (account.hekey): the Q part then the P part of (b, a), each
// in the compact format.
func RequesterPublicKey(seed []byte) ([]byte, error) {
	sk, err := RequesterSecretKey(seed)
	if err != nil {
		return nil, err
	}
	return MarshalPublicKey(rlwe.NewKeyGenerator(Params()).GenPublicKeyNew(sk)), nil
}

// MarshalPublicKey encodes a public key as RequesterPublicKey does: the Q
// part then the P part of (b, a), each in the compact format.
func MarshalPublicKey(pk *rlwe.PublicKey) []byte {
	p := Params()
	out := marshalRing(p.RingQ(), p.N(), []ring.Poly{pk.Value[0].Q, pk.Value[1].Q}, true, 0)
	return append(out, marshalRing(p.RingP(), p.N(), []ring.Poly{pk.Value[0].P, pk.Value[1].P}, true, 0)...)
}

// ParsePublicKey reads a public key RequesterPublicKey wrote. The format
// is checked strictly: an enterprise's key is untrusted input.
func ParsePublicKey(b []byte) (*rlwe.PublicKey, error) {
	p := Params()
	qsize := len(marshalRing(p.RingQ(), p.N(), []ring.Poly{p.RingQ().NewPoly(), p.RingQ().NewPoly()}, true, 0))
	if len(b) <= qsize {
		return nil, fmt.Errorf("%w: public key of %d bytes", ErrBadCiphertext, len(b))
	}
	qs, qNTT, qScale, err := unmarshalRing(p.RingQ(), p.N(), b[:qsize], 2)
	if err != nil {
		return nil, err
	}
	ps, pNTT, pScale, err := unmarshalRing(p.RingP(), p.N(), b[qsize:], 2)
	if err != nil {
		return nil, err
	}
	// A key is written in NTT form without a scale (MarshalPublicKey):
	// any other header is refused, so that one key has one encoding.
	if !qNTT || !pNTT || qScale != 0 || pScale != 0 {
		return nil, fmt.Errorf("%w: public key header: want NTT form and no scale", ErrBadCiphertext)
	}
	if qs[0].Level() != p.MaxLevelQ() || ps[0].Level() != p.MaxLevelP() {
		return nil, fmt.Errorf("%w: public key of other parameters", ErrBadCiphertext)
	}
	pk := rlwe.NewPublicKey(p)
	pk.Value[0].Q, pk.Value[1].Q, pk.Value[0].P, pk.Value[1].P = qs[0], qs[1], ps[0], ps[1]
	return pk, nil
}
