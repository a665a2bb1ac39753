package chain

import (
	"crypto/rand"
	"fmt"
	"sync"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Ed25519 verification follows FIPS 186-5 / RFC 8032 with cofactored
// verification and canonical encodings (curve25519-voi's FIPS_186_5
// preset), both for single signatures and batches. One rule for both
// matters: a batch check must accept exactly the signatures a single check
// accepts, or nodes and auditors could disagree on an entry's validity.
// (Go's crypto/ed25519 verifies cofactorless, which differs only on
// signatures crafted with small-order components; CometBFT made the same
// choice for the same reason.) Batches are about twice as fast per
// signature, which is where the leader's time goes under load.
var ed25519Options = &voi.Options{Verify: voi.VerifyOptionsFIPS_186_5}

func verifyEd25519(pub, msg, sig []byte) bool {
	x, err := expandedKey(pub)
	return err == nil && voi.VerifyExpandedWithOptions(x, msg, sig, ed25519Options)
}

// Decompressing a public key is about a quarter of a verification; the
// same accounts sign again and again, so decompressed keys are cached.
var keyCache = struct {
	sync.Mutex
	m map[[voi.PublicKeySize]byte]*voi.ExpandedPublicKey
}{m: map[[voi.PublicKeySize]byte]*voi.ExpandedPublicKey{}}

const keyCacheSize = 8192

func expandedKey(pub []byte) (*voi.ExpandedPublicKey, error) {
	if len(pub) != voi.PublicKeySize {
		return nil, fmt.Errorf("%w: bad public key", ErrMalformedEntry)
	}
	k := [voi.PublicKeySize]byte(pub)
	keyCache.Lock()
	x, ok := keyCache.m[k]
	keyCache.Unlock()
	if ok {
		return x, nil
	}
	x, err := voi.NewExpandedPublicKey(voi.PublicKey(pub))
	if err != nil {
		return nil, fmt.Errorf("%w: bad public key", ErrMalformedEntry)
	}
	keyCache.Lock()
	if len(keyCache.m) >= keyCacheSize {
		for old := range keyCache.m { // evict an arbitrary key
			delete(keyCache.m, old)
			break
		}
	}
	keyCache.m[k] = x
	keyCache.Unlock()
	return x, nil
}

// batchChunk is how many signatures one batch check covers; chunks run in
// parallel.
const batchChunk = 64

// VerifyBatch checks the signatures of many entries, returning one error
// per entry (nil when valid). Ed25519 entries are checked in batches, in
// parallel; a failing batch is re-checked one by one to name the culprits.
func VerifyBatch(entries []*Entry) []error {
	errs := make([]error, len(entries))
	var ed []int
	for i, e := range entries {
		if e.Algorithm == Ed25519 {
			ed = append(ed, i)
		} else {
			errs[i] = e.Verify()
		}
	}
	var wg sync.WaitGroup
	for start := 0; start < len(ed); start += batchChunk {
		end := min(start+batchChunk, len(ed))
		idx := ed[start:end]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if len(idx) == 1 {
				errs[idx[0]] = entries[idx[0]].Verify()
				return
			}
			bv := voi.NewBatchVerifierWithCapacity(len(idx))
			msgs := make([][]byte, len(idx))
			for k, i := range idx {
				e := entries[i]
				body, err := e.body()
				var x *voi.ExpandedPublicKey
				if err == nil {
					x, err = expandedKey(e.PublicKey)
				}
				if err != nil {
					// Not well formed: check each one alone for its error.
					for _, j := range idx {
						errs[j] = entries[j].Verify()
					}
					return
				}
				msgs[k] = signedMessage(body)
				bv.AddExpandedWithOptions(x, msgs[k], e.Signature, ed25519Options)
			}
			ok, valid := bv.Verify(rand.Reader)
			if ok {
				return
			}
			for k, i := range idx {
				if !valid[k] {
					errs[i] = fmt.Errorf("%w: %s signature by %s does not verify", ErrBadSignature, Ed25519, entries[i].Author())
				}
			}
		}()
	}
	wg.Wait()
	return errs
}
