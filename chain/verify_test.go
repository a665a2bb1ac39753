package chain

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestVerifyBatchMatchesVerify: a batch check gives each entry exactly the
// answer its own Verify gives, whatever the batch's size (one chunk or
// several run in parallel), wherever the bad signatures are, with and
// without the raw encodings, and with ML-DSA entries mixed in.
func TestVerifyBatchMatchesVerify(t *testing.T) {
	keys := make([]*Key, 8)
	for i := range keys {
		keys[i] = mustKey(t, Ed25519)
	}
	ml := mustKey(t, MLDSA65)
	now := time.Now()
	make1 := func(i int, k *Key) ([]byte, *Entry) {
		raw, err := k.NewEntry("test.note", uint64(i+1), now, []byte(fmt.Sprintf("payload %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		e, err := ParseEntry(raw)
		if err != nil {
			t.Fatal(err)
		}
		return raw, e
	}
	cases := []struct {
		name  string
		n     int
		bad   []int // entries whose signature is broken
		mldsa []int // entries signed with ML-DSA-65
	}{
		{"one", 1, nil, nil},
		{"one bad", 1, []int{0}, nil},
		{"two, second bad", 2, []int{1}, nil},
		{"one chunk, all good", minBatchChunk - 1, nil, nil},
		{"one chunk, first and last bad", minBatchChunk - 1, []int{0, minBatchChunk - 2}, nil},
		{"several chunks, good", 3*minBatchChunk + 5, nil, nil},
		{"several chunks, bad in each", 3*minBatchChunk + 5, []int{3, minBatchChunk + 7, 2*minBatchChunk + 9, 3*minBatchChunk + 4}, nil},
		{"mixed algorithms", 40, []int{5, 6}, []int{6, 7, 20}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raws := make([][]byte, c.n)
			entries := make([]*Entry, c.n)
			for i := range entries {
				k := keys[i%len(keys)]
				for _, j := range c.mldsa {
					if i == j {
						k = ml
					}
				}
				raws[i], entries[i] = make1(i, k)
			}
			for _, i := range c.bad {
				// Flip a bit of the signature, in the entry and its encoding.
				raws[i] = append([]byte(nil), raws[i]...)
				raws[i][len(raws[i])-1] ^= 1
				var err error
				if entries[i], err = ParseEntry(raws[i]); err != nil {
					t.Fatal(err)
				}
			}
			for _, withRaws := range []bool{false, true} {
				var errs []error
				if withRaws {
					errs = verifyBatch(entries, raws, latencyChunk)
				} else {
					errs = VerifyBatch(entries)
				}
				if len(errs) != c.n {
					t.Fatalf("raws %v: %d answers for %d entries", withRaws, len(errs), c.n)
				}
				for i, e := range entries {
					want := e.Verify()
					if (errs[i] == nil) != (want == nil) {
						t.Fatalf("raws %v: entry %d: batch says %v, Verify says %v", withRaws, i, errs[i], want)
					}
					if want != nil && !errors.Is(errs[i], ErrBadSignature) {
						t.Fatalf("raws %v: entry %d: %v is not ErrBadSignature", withRaws, i, errs[i])
					}
				}
			}
		})
	}
}

// TestVerifyBatchMalformed: an entry that is not well formed (here a public
// key of the wrong length, which ParseEntry would refuse) gets its own
// error, and the valid entries of its batch still pass.
func TestVerifyBatchMalformed(t *testing.T) {
	k := mustKey(t, Ed25519)
	var entries []*Entry
	for i := 0; i < 5; i++ {
		raw, _ := k.NewEntry("test.note", uint64(i+1), time.Now(), nil)
		e, err := ParseEntry(raw)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	entries[2].PublicKey = entries[2].PublicKey[:31]
	errs := VerifyBatch(entries)
	for i, err := range errs {
		if (i == 2) != (err != nil) {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if !errors.Is(errs[2], ErrMalformedEntry) {
		t.Fatalf("short key: %v, want ErrMalformedEntry", errs[2])
	}
}
