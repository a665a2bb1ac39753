package chain

import (
	"crypto/rand"
	"fmt"
	"runtime"
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

// A batch check costs less per signature the more it holds (on the bench
// machine about 22 µs at 64 signatures, 15 µs at 256, 13 µs at 1024,
// against 40-70 µs for one alone), so a batch is split across cores only
// as far as its chunks keep a minimum size: minBatchChunk when throughput
// matters most, latencyChunk when a caller waits for the answer (see
// verifyLoop).
const (
	minBatchChunk = 128
	latencyChunk  = 32
)

// VerifyBatch checks the signatures of many entries, returning one error
// per entry (nil when valid). Ed25519 entries are checked in batches, in
// parallel; a failing batch is re-checked one by one to name the culprits.
func VerifyBatch(entries []*Entry) []error { return verifyBatch(entries, nil, minBatchChunk) }

// verifyBatch is VerifyBatch for entries parsed from raws (raws[i] is the
// encoding of entries[i], as ParseEntry read it): the signed bytes are then
// taken from raws instead of encoded again. raws may be nil. Chunks run in
// parallel and hold at least minChunk signatures.
func verifyBatch(entries []*Entry, raws [][]byte, minChunk int) []error {
	errs := make([]error, len(entries))
	var ed []int
	for i, e := range entries {
		if e.Algorithm == Ed25519 {
			ed = append(ed, i)
		} else {
			errs[i] = e.Verify()
		}
	}
	chunks := max(1, min(runtime.GOMAXPROCS(0), len(ed)/minChunk))
	size := (len(ed) + chunks - 1) / chunks
	var wg sync.WaitGroup
	for start := 0; start < len(ed); start += size {
		idx := ed[start:min(start+size, len(ed))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			verifyChunk(entries, raws, idx, errs)
		}()
	}
	wg.Wait()
	return errs
}

// batchVerifiers keeps batch verifiers (a few hundred bytes per signature)
// for reuse.
var batchVerifiers = sync.Pool{New: func() any { return voi.NewBatchVerifier() }}

// verifyChunk checks the Ed25519 entries idx as one batch.
func verifyChunk(entries []*Entry, raws [][]byte, idx []int, errs []error) {
	if len(idx) == 1 {
		errs[idx[0]] = entries[idx[0]].Verify()
		return
	}
	bv := batchVerifiers.Get().(*voi.BatchVerifier)
	defer batchVerifiers.Put(bv.Reset())
	// Adding a signature hashes its message; the batch keeps no reference
	// to it, so one buffer serves every message.
	var msg []byte
	for _, i := range idx {
		e := entries[i]
		var body []byte
		var err error
		if raws != nil {
			body = raws[i][:len(raws[i])-2-len(e.Signature)]
		} else {
			body, err = e.body()
		}
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
		msg = append(append(append(msg[:0], signingContext...), 0), body...)
		bv.AddExpandedWithOptions(x, msg, e.Signature, ed25519Options)
	}
	if ok, valid := bv.Verify(rand.Reader); !ok {
		for k, i := range idx {
			if !valid[k] {
				errs[i] = fmt.Errorf("%w: %s signature by %s does not verify", ErrBadSignature, Ed25519, entries[i].Author())
			}
		}
	}
}
