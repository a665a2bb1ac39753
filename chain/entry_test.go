package chain

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func mustKey(t testing.TB, alg Algorithm) *Key {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEntryRoundTrip(t *testing.T) {
	for _, alg := range []Algorithm{Ed25519, MLDSA65} {
		t.Run(alg.String(), func(t *testing.T) {
			k := mustKey(t, alg)
			raw, err := k.NewEntry("job.submitted", 7, time.Unix(1700000000, 123), []byte(`{"a":1}`))
			if err != nil {
				t.Fatal(err)
			}
			e, err := ParseAndVerify(raw)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind != "job.submitted" || e.Nonce != 7 || string(e.Payload) != `{"a":1}` || e.Author() != k.Address() {
				t.Fatalf("fields lost: %+v", e)
			}
			again, _ := e.Marshal()
			if !bytes.Equal(again, raw) {
				t.Fatal("marshal(parse(x)) != x")
			}
		})
	}
}

// Every single-byte flip, truncation and extension of a signed entry must
// fail to parse or fail to verify.
func TestEntryTamperSweep(t *testing.T) {
	for _, alg := range []Algorithm{Ed25519, MLDSA65} {
		t.Run(alg.String(), func(t *testing.T) {
			k := mustKey(t, alg)
			raw, _ := k.NewEntry("test.note", 1, time.Now(), []byte("payload"))
			step := 1
			if alg == MLDSA65 {
				step = 13 // the signature is 3309 bytes; sample it
			}
			for i := 0; i < len(raw); i += step {
				b := append([]byte(nil), raw...)
				b[i] ^= 0x01
				if _, err := ParseAndVerify(b); err == nil {
					t.Fatalf("%s: flip of byte %d verified", alg, i)
				}
			}
			for n := 0; n < len(raw); n += step {
				if _, err := ParseAndVerify(raw[:n]); !errors.Is(err, ErrMalformedEntry) {
					t.Fatalf("%s: truncation to %d: %v", alg, n, err)
				}
			}
			if _, err := ParseAndVerify(append(append([]byte(nil), raw...), 0)); !errors.Is(err, ErrMalformedEntry) {
				t.Fatalf("%s: padded entry: %v", alg, err)
			}
		})
	}
}

func TestEntryErrors(t *testing.T) {
	k := mustKey(t, Ed25519)
	if _, err := k.NewEntry("Bad Kind", 1, time.Now(), nil); !errors.Is(err, ErrMalformedEntry) {
		t.Errorf("bad kind: %v", err)
	}
	if _, err := k.NewEntry("x", 1, time.Now(), make([]byte, MaxPayloadLen+1)); !errors.Is(err, ErrMalformedEntry) {
		t.Errorf("big payload: %v", err)
	}
	raw, _ := k.NewEntry("x", 1, time.Now(), nil)
	other := mustKey(t, Ed25519)
	e, _ := ParseEntry(raw)
	e.PublicKey = other.PublicKey() // claims another author
	raw2, _ := e.Marshal()
	if _, err := ParseAndVerify(raw2); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong author: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []Algorithm{Ed25519, MLDSA65} {
		t.Run(alg.String(), func(t *testing.T) {
			k := mustKey(t, alg)
			p := filepath.Join(dir, alg.String()+".key")
			if err := k.WriteKeyFile(p); err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", st.Mode().Perm())
			}
			k2, err := LoadKeyFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if k2.Address() != k.Address() {
				t.Fatal("address changed")
			}
			if err := k.WriteKeyFile(p); err == nil {
				t.Fatal("overwrote a key file")
			}
		})
	}
	if _, err := ParseKeyFile([]byte(`{"algorithm":"ed25519","private_key":"AAAA"}`)); !errors.Is(err, ErrBadKey) {
		t.Errorf("short seed: %v", err)
	}
	k := mustKey(t, Ed25519)
	b := bytes.Replace(k.MarshalKeyFile(), []byte(k.Address().String()), []byte("0000000000000000000000000000000000000000"), 1)
	if _, err := ParseKeyFile(b); !errors.Is(err, ErrBadKey) {
		t.Errorf("wrong address accepted: %v", err)
	}
}

func FuzzParseEntry(f *testing.F) {
	k, _ := NewKeyFromSeed(Ed25519, make([]byte, 32))
	raw, _ := k.NewEntry("test.note", 1, time.Unix(0, 0), []byte("hello"))
	f.Add(raw)
	f.Add([]byte("DSE1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntry(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatalf("parsed entry does not marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("parse is not canonical: marshal(parse(b)) != b")
		}
		_ = e.Verify()
	})
}

func FuzzParseProposal(f *testing.F) {
	p := &proposal{Time: time.Unix(1, 2), Proposer: "n1", Entries: [][]byte{[]byte("a"), nil}}
	f.Add(p.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseProposal(b)
		if err != nil {
			return
		}
		if !bytes.Equal(p.marshal(), b) {
			t.Fatal("proposal encoding is not canonical")
		}
	})
}

func FuzzParseRPC(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 1, 'x'})
	k, _ := NewKeyFromSeed(Ed25519, make([]byte, 32))
	j := &joinRequest{ID: "n4", Addr: "127.0.0.1:1", Time: time.Unix(0, 0)}
	e := &Entry{Kind: "node.join", Time: j.Time, Payload: j.message()}
	_ = k.Sign(e)
	j.Algorithm, j.PublicKey, j.Signature = e.Algorithm, e.PublicKey, e.Signature
	f.Add(j.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if raws, err := parseAppendBatch(b); err == nil && len(raws) > maxForwardBatch {
			t.Fatal("batch limit not enforced")
		}
		_, _ = parseJoinRequest(b)
	})
}
