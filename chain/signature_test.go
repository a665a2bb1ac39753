package chain

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"testing"
)

func TestVerifySignature(t *testing.T) {
	ed, ml := mustKey(t, Ed25519), mustKey(t, MLDSA65)
	msg := []byte("a ceremony message")
	sign := func(k *Key) []byte {
		sig, err := k.SignMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	edSig, mlSig := sign(ed), sign(ml)
	flip := func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 1
		return b
	}
	cases := []struct {
		name          string
		alg           Algorithm
		pub, msg, sig []byte
		want          bool
	}{
		{"ed25519", Ed25519, ed.PublicKey(), msg, edSig, true},
		{"ml-dsa-65", MLDSA65, ml.PublicKey(), msg, mlSig, true},
		{"ed25519 other message", Ed25519, ed.PublicKey(), []byte("another"), edSig, false},
		{"ed25519 flipped signature", Ed25519, ed.PublicKey(), msg, flip(edSig), false},
		{"ml-dsa-65 flipped signature", MLDSA65, ml.PublicKey(), msg, flip(mlSig), false},
		{"ed25519 short signature", Ed25519, ed.PublicKey(), msg, edSig[:63], false},
		{"ed25519 short key", Ed25519, ed.PublicKey()[:31], msg, edSig, false},
		{"ml-dsa-65 short key", MLDSA65, ml.PublicKey()[:100], msg, mlSig, false},
		{"wrong algorithm", MLDSA65, ed.PublicKey(), msg, edSig, false},
		{"unknown algorithm", Algorithm(9), ed.PublicKey(), msg, edSig, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := VerifySignature(c.alg, c.pub, c.msg, c.sig); got != c.want {
				t.Fatalf("VerifySignature = %v, want %v", got, c.want)
			}
		})
	}
}

// TestVerifySignatureCofactored pins the rule that differs from Go's
// crypto/ed25519: a signature with small-order components (public key of
// order 8, R of order 2, S = 0) satisfies the cofactored equation
// [8][S]B = [8]R + [8][k]A for every message, the cofactorless one only
// when [k]A = R. A message where the two disagree shows VerifySignature
// (and so every caller of it: entries, mpc's messages) follows FIPS 186-5.
func TestVerifySignatureCofactored(t *testing.T) {
	pub, _ := hex.DecodeString("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05") // order 8
	r, _ := hex.DecodeString("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")   // order 2
	sig := append(r, make([]byte, 32)...)
	for i := range 64 {
		msg := []byte(fmt.Sprintf("message %d", i))
		if ed25519.Verify(pub, msg, sig) {
			continue // cofactorless happens to agree here
		}
		if !VerifySignature(Ed25519, pub, msg, sig) {
			t.Fatalf("%q: the cofactored rule refuses a signature it must accept", msg)
		}
		return
	}
	t.Fatal("no message where the cofactorless rule refuses (1 in 8 accept, so 64 cannot all)")
}
