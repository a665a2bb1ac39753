package chain

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"math/bits"
)

// Hash is a SHA-256 digest.
type Hash = [32]byte

// LeafHash is the RFC 6962 hash of a leaf: SHA-256(0x00 || data).
func LeafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash is the RFC 6962 hash of an interior node: SHA-256(0x01 || l || r).
func NodeHash(l, r Hash) Hash {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[33:], r[:])
	return sha256.Sum256(buf[:])
}

// EmptyRoot returns the root of the empty tree, SHA-256 of the empty
// string. It is a function, not a variable, so that no caller can change
// what every node and auditor takes for the empty log's root.
func EmptyRoot() Hash { return emptyRoot }

var emptyRoot = sha256.Sum256(nil)

// Tree is an append-only RFC 6962 Merkle tree that keeps the hash of every
// complete subtree: level k holds the root of leaves [i<<k, (i+1)<<k) at i.
// It answers roots and proofs for any size up to its own in O(log² n)
// hashes without recomputing the tree. It uses two hashes of memory per
// leaf, in fixed-size chunks so that growing never copies old hashes.
//
// Tree is not safe for concurrent use; Ledger guards it.
type Tree struct {
	levels []hashList
}

// hashChunk is the number of hashes per chunk (2 MiB).
const hashChunk = 1 << 16

// hashList is an append-only list of hashes stored in chunks.
type hashList struct {
	chunks [][]Hash
	n      uint64
}

func (l *hashList) at(i uint64) Hash { return l.chunks[i/hashChunk][i%hashChunk] }

func (l *hashList) append(h Hash) {
	c := l.n / hashChunk
	if c == uint64(len(l.chunks)) {
		l.chunks = append(l.chunks, make([]Hash, 0, 1024))
	}
	l.chunks[c] = append(l.chunks[c], h)
	l.n++
}

// truncate keeps the first n hashes.
func (l *hashList) truncate(n uint64) {
	if n >= l.n {
		return
	}
	l.n = n
	c := (n + hashChunk - 1) / hashChunk
	l.chunks = l.chunks[:c]
	if c > 0 {
		last := n - (c-1)*hashChunk
		l.chunks[c-1] = l.chunks[c-1][:last]
	}
}

// Size returns the number of leaves.
func (t *Tree) Size() uint64 {
	if len(t.levels) == 0 {
		return 0
	}
	return t.levels[0].n
}

// AppendLeafHash adds a leaf by its hash.
func (t *Tree) AppendLeafHash(h Hash) {
	if len(t.levels) == 0 {
		t.levels = append(t.levels, hashList{})
	}
	t.levels[0].append(h)
	// Complete every subtree that this leaf closes.
	for k := 0; t.levels[k].n%2 == 0; k++ {
		n := t.levels[k].n
		parent := NodeHash(t.levels[k].at(n-2), t.levels[k].at(n-1))
		if k+1 == len(t.levels) {
			t.levels = append(t.levels, hashList{})
		}
		t.levels[k+1].append(parent)
	}
}

// Truncate cuts the tree back to its first size leaves.
func (t *Tree) Truncate(size uint64) {
	for k := range t.levels {
		t.levels[k].truncate(size >> k)
	}
}

// LeafHashAt returns the hash of leaf i.
func (t *Tree) LeafHashAt(i uint64) Hash { return t.levels[0].at(i) }

// rangeHash returns MTH(D[lo:hi]) for lo < hi, where lo is a multiple of the
// largest power of two below hi-lo (true of every range RFC 6962's recursion
// visits).
func (t *Tree) rangeHash(lo, hi uint64) Hash {
	n := hi - lo
	if n&(n-1) == 0 { // a complete subtree, stored
		k := bits.TrailingZeros64(n)
		return t.levels[k].at(lo >> k)
	}
	k := splitPoint(n)
	return NodeHash(t.rangeHash(lo, lo+k), t.rangeHash(lo+k, hi))
}

// splitPoint is the largest power of two strictly less than n (n > 1).
func splitPoint(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}

// Root returns the root of the first size leaves.
func (t *Tree) Root(size uint64) (Hash, error) {
	if size > t.Size() {
		return Hash{}, fmt.Errorf("%w: size %d exceeds tree size %d", ErrBadProofRequest, size, t.Size())
	}
	if size == 0 {
		return emptyRoot, nil
	}
	return t.rangeHash(0, size), nil
}

// InclusionProof returns the RFC 6962 audit path of leaf index in the tree of
// the given size, leaf-side first.
func (t *Tree) InclusionProof(index, size uint64) ([]Hash, error) {
	if size > t.Size() || index >= size {
		return nil, fmt.Errorf("%w: need index < size <= %d, got index %d size %d", ErrBadProofRequest, t.Size(), index, size)
	}
	var path []Hash
	lo, hi := uint64(0), size
	// Walk down from the root, collecting siblings, then reverse.
	for hi-lo > 1 {
		k := splitPoint(hi - lo)
		if index < lo+k {
			path = append(path, t.rangeHash(lo+k, hi))
			hi = lo + k
		} else {
			path = append(path, t.rangeHash(lo, lo+k))
			lo += k
		}
	}
	reverse(path)
	return path, nil
}

// ConsistencyProof returns the RFC 6962 consistency proof between the trees of
// sizes first and second. A proof from the empty tree is refused: there is
// nothing to prove, and some verifiers accept anything for it.
func (t *Tree) ConsistencyProof(first, second uint64) ([]Hash, error) {
	if first == 0 || first > second || second > t.Size() {
		return nil, fmt.Errorf("%w: need 0 < first <= second <= %d, got first %d second %d", ErrBadProofRequest, t.Size(), first, second)
	}
	var proof []Hash
	// SUBPROOF(m, D[lo:hi], b) from RFC 6962 section 2.1.2, iteratively.
	lo, hi, m, b := uint64(0), second, first, true
	for {
		n := hi - lo
		if m == n {
			if !b {
				proof = append(proof, t.rangeHash(lo, hi))
			}
			break
		}
		k := splitPoint(n)
		if m <= k {
			proof = append(proof, t.rangeHash(lo+k, hi))
			hi = lo + k
		} else {
			proof = append(proof, t.rangeHash(lo, lo+k))
			lo += k
			m -= k
			b = false
		}
	}
	reverse(proof)
	return proof, nil
}

func reverse(h []Hash) {
	for i, j := 0, len(h)-1; i < j; i, j = i+1, j-1 {
		h[i], h[j] = h[j], h[i]
	}
}

// VerifyInclusion checks an audit path (RFC 9162 section 2.1.3.2).
func VerifyInclusion(index, size uint64, leaf Hash, proof []Hash, root Hash) error {
	if index >= size {
		return fmt.Errorf("chain: inclusion: index %d not below size %d", index, size)
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return fmt.Errorf("chain: inclusion: proof has %d hashes, too many", len(proof))
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("chain: inclusion: proof has %d hashes, too few", len(proof))
	}
	if subtle.ConstantTimeCompare(r[:], root[:]) != 1 {
		return fmt.Errorf("chain: inclusion: computed root does not match")
	}
	return nil
}

// VerifyConsistency checks a consistency proof (RFC 9162 section 2.1.4.2).
// Like the tree, it refuses proofs from size 0.
func VerifyConsistency(first, second uint64, proof []Hash, firstRoot, secondRoot Hash) error {
	switch {
	case first == 0 || first > second:
		return fmt.Errorf("chain: consistency: need 0 < first <= second, got %d, %d", first, second)
	case first == second:
		if len(proof) != 0 {
			return fmt.Errorf("chain: consistency: proof between equal sizes must be empty")
		}
		if firstRoot != secondRoot {
			return fmt.Errorf("chain: consistency: roots of equal sizes differ")
		}
		return nil
	}
	if len(proof) == 0 {
		return fmt.Errorf("chain: consistency: empty proof")
	}
	if first&(first-1) == 0 { // first is a power of two: its root starts the path
		proof = append([]Hash{firstRoot}, proof...)
	}
	fn, sn := first-1, second-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := proof[0], proof[0]
	for _, c := range proof[1:] {
		if sn == 0 {
			return fmt.Errorf("chain: consistency: proof too long")
		}
		if fn&1 == 1 || fn == sn {
			fr = NodeHash(c, fr)
			sr = NodeHash(c, sr)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			sr = NodeHash(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("chain: consistency: proof too short")
	}
	if fr != firstRoot {
		return fmt.Errorf("chain: consistency: first root does not match")
	}
	if sr != secondRoot {
		return fmt.Errorf("chain: consistency: second root does not match")
	}
	return nil
}
