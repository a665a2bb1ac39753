package chain

// Frontier computes the RFC 6962 root of a log streamed leaf by leaf in
// O(log n) memory: it keeps only the roots of the complete subtrees on the
// log's right edge (a "compact range" starting at 0). Auditors use it to
// check a log of any length without holding it.
type Frontier struct {
	size  uint64
	peaks []Hash // peaks[0] is the largest (leftmost) subtree
}

// Append adds the next leaf by its hash.
func (f *Frontier) Append(leaf Hash) {
	h := leaf
	for s := f.size; s&1 == 1; s >>= 1 {
		h = NodeHash(f.peaks[len(f.peaks)-1], h)
		f.peaks = f.peaks[:len(f.peaks)-1]
	}
	f.peaks = append(f.peaks, h)
	f.size++
}

// Size is the number of leaves appended.
func (f *Frontier) Size() uint64 { return f.size }

// Root is the root of the leaves appended so far.
func (f *Frontier) Root() Hash {
	if f.size == 0 {
		return EmptyRoot()
	}
	r := f.peaks[len(f.peaks)-1]
	for i := len(f.peaks) - 2; i >= 0; i-- {
		r = NodeHash(f.peaks[i], r)
	}
	return r
}
