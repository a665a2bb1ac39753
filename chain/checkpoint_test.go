package chain

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestCheckpointSignParse(t *testing.T) {
	k := mustKey(t, Ed25519)
	root := LeafHash([]byte("x"))
	now := time.Unix(1750000000, 0)
	signed, err := SignCheckpoint(k, "node1", "example/log", 42, root, now)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewCheckpointVerifier("node1", k.PublicKey())
	cp, err := ParseCheckpoint(signed, v)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 42 || cp.Root != root || cp.Origin != "example/log" || !cp.Time.Equal(now) {
		t.Fatalf("got %+v", cp)
	}
	// vkey round trip.
	v2, err := ParseCheckpointVerifier(v.VerifierKey())
	if err != nil || v2.KeyHash() != v.KeyHash() {
		t.Fatalf("vkey round trip: %v", err)
	}
	// A second node cosigns; both verify.
	k2 := mustKey(t, Ed25519)
	both, err := CosignCheckpoint(k2, "node2", signed, now)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := NewCheckpointVerifier("node2", k2.PublicKey())
	cp2, err := ParseCheckpoint(both, v, w)
	if err != nil || len(cp2.Signer) != 2 {
		t.Fatalf("cosigned: %v %+v", err, cp2)
	}
	// Unknown key, and every byte flip, fail.
	if _, err := ParseCheckpoint(signed, w); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("unknown key: %v", err)
	}
	for i := range signed {
		for _, bit := range []byte{0x01, 0x02, 0x04, 0x10} {
			b := bytes.Clone(signed)
			b[i] ^= bit
			if _, err := ParseCheckpoint(b, v); err == nil {
				t.Fatalf("flip of bit %#x of byte %d verified", bit, i)
			}
		}
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	k, _ := NewKeyFromSeed(Ed25519, make([]byte, 32))
	v, _ := NewCheckpointVerifier("n", k.PublicKey())
	signed, _ := SignCheckpoint(k, "n", "o", 3, Hash{}, time.Unix(0, 0))
	f.Add(signed)
	f.Add([]byte(v.VerifierKey()))
	f.Fuzz(func(t *testing.T, b []byte) {
		if cp, err := ParseCheckpoint(b, v); err == nil {
			// The body is exactly the canonical text of what was read, the
			// unverified reading agrees, and signing what was read again
			// parses to the same checkpoint.
			text, _, err := splitNote(b)
			if err != nil || text != checkpointBody(cp.Origin, cp.Size, cp.Root) {
				t.Fatalf("body %q is not the canonical %q (%v)", text, checkpointBody(cp.Origin, cp.Size, cp.Root), err)
			}
			u, err := ParseUnverifiedCheckpoint(b)
			if err != nil || u.Origin != cp.Origin || u.Size != cp.Size || u.Root != cp.Root {
				t.Fatalf("unverified reading %+v (%v), verified %+v", u, err, cp)
			}
			again, err := SignCheckpoint(k, "n", cp.Origin, cp.Size, cp.Root, cp.Time)
			if err != nil {
				t.Fatal(err)
			}
			cp2, err := ParseCheckpoint(again, v)
			if err != nil || cp2.Origin != cp.Origin || cp2.Size != cp.Size || cp2.Root != cp.Root || !cp2.Time.Equal(cp.Time) {
				t.Fatalf("re-signed %+v (%v), read %+v", cp2, err, cp)
			}
		}
		if w, err := ParseCheckpointVerifier(string(b)); err == nil {
			w2, err := ParseCheckpointVerifier(w.VerifierKey())
			if err != nil || w2.name != w.name || w2.hash != w.hash || !bytes.Equal(w2.pub, w.pub) || w2.VerifierKey() != w.VerifierKey() {
				t.Fatalf("vkey %q read back as %+v (%v), read %+v", w.VerifierKey(), w2, err, w)
			}
		}
	})
}
