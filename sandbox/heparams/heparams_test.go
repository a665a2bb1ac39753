package heparams

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

func TestCiphertextCodec(t *testing.T) {
	params := Params()
	kg := rlwe.NewKeyGenerator(params)
	ct := rlwe.NewEncryptor(params, kg.GenPublicKeyNew(kg.GenSecretKeyNew())).EncryptZeroNew(0)
	ct.Scale = rlwe.NewScale(math.Ldexp(1, ScaleLog))
	b := MarshalCiphertext(params, ct)
	back, err := UnmarshalCiphertext(params, b)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Value[0].Equal(&ct.Value[0]) || !back.Value[1].Equal(&ct.Value[1]) || back.Scale.Cmp(ct.Scale) != 0 || !back.IsNTT {
		t.Fatal("ciphertext does not round-trip")
	}
	t.Logf("a ciphertext is %d bytes (%.1f per coefficient)", len(b), float64(len(b))/float64(params.N()))
	bad := map[string][]byte{
		"empty":     nil,
		"truncated": b[:len(b)-1],
		"longer":    append(append([]byte{}, b...), 0),
		"magic":     append([]byte("XXXX"), b[4:]...),
		"degree":    append(append([]byte{}, b[:4]...), append([]byte{3}, b[5:]...)...),
		"level":     append(append([]byte{}, b[:5]...), append([]byte{9}, b[6:]...)...),
	}
	unreduced := append([]byte{}, b...)
	for i := 8; i < 16; i++ {
		unreduced[i] = 0xff // the first 60-bit coefficient becomes 2^60-1 > q
	}
	bad["unreduced"] = unreduced
	for name, x := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := UnmarshalCiphertext(params, x); !errors.Is(err, ErrBadCiphertext) {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
}

// A requester's key: its public half parses strictly, and its secret
// half decrypts what is encrypted to the public one.
func TestRequesterKey(t *testing.T) {
	params := Params()
	seed := bytes.Repeat([]byte{5}, 32)
	pkb, err := RequesterPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(pkb)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{0, 100, len(pkb) / 2, len(pkb) - 1} {
		if _, err := ParsePublicKey(pkb[:cut]); !errors.Is(err, ErrBadCiphertext) {
			t.Errorf("public key cut at %d: %v", cut, err)
		}
	}
	sk, err := RequesterSecretKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RequesterSecretKey(seed[:31]); err == nil {
		t.Error("a 31-byte seed gave a key")
	}
	ct := rlwe.NewEncryptor(params, pk).EncryptZeroNew(0)
	pt := rlwe.NewDecryptor(params, sk).DecryptNew(ct)
	params.RingQ().AtLevel(0).INTT(pt.Value, pt.Value)
	q, c := params.Q()[0], pt.Value.Coeffs[0][0]
	v := float64(c)
	if c > q/2 {
		v = -float64(q - c)
	}
	if v = v / math.Ldexp(1, ScaleLog); math.Abs(v) > 1e-6 {
		t.Fatalf("zero decrypts to %v", v)
	}
}

// TestPublicKeyRoundTrip: RequesterPublicKey's bytes read as a key that
// encodes to the same bytes.
func TestPublicKeyRoundTrip(t *testing.T) {
	b, err := RequesterPublicKey(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(MarshalPublicKey(pk), b) {
		t.Fatal("the key does not encode to the bytes it was read from")
	}
}

func FuzzUnmarshalCiphertext(f *testing.F) {
	params := Params()
	f.Add(MarshalCiphertext(params, rlwe.NewCiphertext(params, 1, 0)))
	f.Add([]byte("DSC1\x02\x00\x01\x24"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ct, err := UnmarshalCiphertext(params, b)
		if err == nil && !bytes.Equal(MarshalCiphertext(params, ct), b) {
			t.Fatal("accepted bytes do not re-encode to themselves")
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	pkb, _ := RequesterPublicKey(bytes.Repeat([]byte{1}, 32))
	f.Add(pkb)
	f.Add(pkb[:len(pkb)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		pk, err := ParsePublicKey(b) // an error, never a panic
		if err != nil {
			return
		}
		// A key read encodes (as RequesterPublicKey does) to bytes that
		// read back as the same key, and encode to themselves.
		enc := MarshalPublicKey(pk)
		pk2, err := ParsePublicKey(enc)
		if err != nil || !pk2.Equal(pk) {
			t.Fatalf("a key read does not read back after encoding: %v", err)
		}
		if !bytes.Equal(MarshalPublicKey(pk2), enc) {
			t.Fatal("an encoded key does not encode to itself")
		}
		// The codec is strict: a key has one encoding, the one it was read from.
		if !bytes.Equal(enc, b) {
			t.Fatal("a key read from bytes encodes to other bytes")
		}
	})
}

// TestPublicKeyHeaderIsStrict: a key whose header claims another form
// (not NTT, or a scale) is refused, so one key has one encoding.
func TestPublicKeyHeaderIsStrict(t *testing.T) {
	pkb, err := RequesterPublicKey(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	p := Params()
	qsize := len(marshalRing(p.RingQ(), p.N(), []ring.Poly{p.RingQ().NewPoly(), p.RingQ().NewPoly()}, true, 0))
	for _, tc := range []struct {
		name string
		at   int
		v    byte
	}{
		{"Q part not in NTT form", 6, 0},
		{"Q part with a scale", 7, 40},
		{"P part not in NTT form", qsize + 6, 0},
		{"P part with a scale", qsize + 7, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(pkb)
			b[tc.at] = tc.v
			if _, err := ParsePublicKey(b); !errors.Is(err, ErrBadCiphertext) {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
}

// unpackBits (a load per coefficient) reads what packBits wrote, and
// agrees with the byte-at-a-time reader on any bytes, errors included.
func TestUnpackBits(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	for _, w := range []int{1, 7, 8, 30, 55, 56, 57, 61, 64} {
		for _, n := range []int{0, 1, 7, 8, 9, 100, 8192} {
			t.Run(fmt.Sprintf("w%d n%d", w, n), func(t *testing.T) {
				q := uint64(1)<<w - 1
				if w == 64 {
					q = ^uint64(0)
				}
				coeffs := make([]uint64, n)
				for i := range coeffs {
					coeffs[i] = rng.Uint64() % q
				}
				b := packBits(nil, coeffs, w)
				got := make([]uint64, n)
				if err := unpackBits(b, got, w, q); err != nil || !slices.Equal(got, coeffs) {
					t.Fatalf("round trip: %v", err)
				}
				// Random bytes: both readers give the same values or the same error.
				for range 20 {
					rnd := make([]byte, len(b))
					for i := range rnd {
						rnd[i] = byte(rng.Uint32())
					}
					q2 := q - q/4 // some coefficients not reduced
					a, c := make([]uint64, n), make([]uint64, n)
					ea, ec := unpackBits(rnd, a, w, q2), unpackBitsBytewise(rnd, c, w, q2, 0)
					if fmt.Sprint(ea) != fmt.Sprint(ec) || (ea == nil && !slices.Equal(a, c)) {
						t.Fatalf("readers differ: %v / %v", ea, ec)
					}
				}
			})
		}
	}
}
