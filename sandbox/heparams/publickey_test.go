package heparams

import (
	"bytes"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// marshalPublicKey is RequesterPublicKey's encoding of a public key.
func marshalPublicKey(pk *rlwe.PublicKey) []byte {
	p := Params()
	out := marshalRing(p.RingQ(), p.N(), []ring.Poly{pk.Value[0].Q, pk.Value[1].Q}, true, 0)
	return append(out, marshalRing(p.RingP(), p.N(), []ring.Poly{pk.Value[0].P, pk.Value[1].P}, true, 0)...)
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
	if !bytes.Equal(marshalPublicKey(pk), b) {
		t.Fatal("the key does not encode to the bytes it was read from")
	}
}

// FuzzParsePublicKey: whatever arrives is an error, never a panic; a key
// read encodes (as RequesterPublicKey does) to bytes that read back as the
// same key and encode to themselves.
func FuzzParsePublicKey(f *testing.F) {
	pkb, _ := RequesterPublicKey(bytes.Repeat([]byte{1}, 32))
	f.Add(pkb)
	f.Add(pkb[:len(pkb)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		pk, err := ParsePublicKey(b)
		if err != nil {
			return
		}
		enc := marshalPublicKey(pk)
		pk2, err := ParsePublicKey(enc)
		if err != nil || !pk2.Equal(pk) {
			t.Fatalf("a key read does not read back after encoding: %v", err)
		}
		if !bytes.Equal(marshalPublicKey(pk2), enc) {
			t.Fatal("an encoded key does not encode to itself")
		}
	})
}
