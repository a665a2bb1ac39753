package sandbox

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"hash/maphash"
	"math/bits"
	"slices"
	"sort"
	"sync"
)

// tagIndex finds a part's rows by tag: an open-addressing table (linear
// probing, hashed with a random seed, so that tags an owner chose cannot
// collide on purpose) holds each tag's first row, with 32 bits of the
// tag's hash that spare most reads of the tag itself; next chains the rows
// with the same tag in row order (-1 ends a chain); later marks the rows
// that are not their tag's first.
type tagIndex struct {
	tags  [][TagSize]byte
	slot  []uint64 // hash<<32 | 1 + a tag's first row; 0: empty
	mask  uint64
	seed  maphash.Seed
	next  []int32
	later []bool
	max   int
	part  int
}

func newTagIndex(tags [][TagSize]byte, max, part int) *tagIndex {
	size := 16
	if n := 2 * len(tags); n > size {
		size = 1 << bits.Len(uint(n-1))
	}
	x := &tagIndex{tags: tags, slot: make([]uint64, size), mask: uint64(size - 1), seed: maphash.MakeSeed(),
		next: make([]int32, len(tags)), later: make([]bool, len(tags)), max: max, part: part}
	for i := len(tags) - 1; i >= 0; i-- {
		pos, r := x.find(&tags[i])
		x.next[i] = r
		if r >= 0 {
			x.later[r] = true
		}
		x.slot[pos] = x.hash(&tags[i])&^0xffffffff | uint64(i+1)
	}
	return x
}

// find returns the slot of tag t and its first row, or the empty slot it
// would take and -1.
func (x *tagIndex) find(t *[TagSize]byte) (uint64, int32) {
	h := x.hash(t)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		v := x.slot[i]
		if v == 0 {
			return i, -1
		}
		if r := int32(uint32(v)) - 1; (v^h)>>32 == 0 && x.tags[r] == *t {
			return i, r
		}
	}
}

func (x *tagIndex) hash(t *[TagSize]byte) uint64 { return maphash.Bytes(x.seed, t[:]) }

// rows appends the rows of the person whose first row is r, at most max
// of them: when it has more, those with the smallest HMAC(selKey, part,
// tag, row) (mac is keyed with selKey), an unbiased choice the data cannot
// steer (selKey is secret and fresh per job), in row order.
func (x *tagIndex) rows(r int32, mac hash.Hash, out []int32) []int32 {
	for ; r >= 0; r = x.next[r] {
		out = append(out, r)
	}
	if len(out) <= x.max {
		return out
	}
	t := x.tags[out[0]]
	rank := make(map[int32]string, len(out))
	var buf [4 + TagSize + 4]byte
	for _, r := range out {
		binary.BigEndian.PutUint32(buf[:4], uint32(x.part))
		copy(buf[4:], t[:])
		binary.BigEndian.PutUint32(buf[4+TagSize:], uint32(r))
		mac.Reset()
		mac.Write(buf[:])
		rank[r] = string(mac.Sum(nil))
	}
	sort.Slice(out, func(a, b int) bool { return rank[out[a]] < rank[out[b]] })
	out = out[:x.max]
	slices.Sort(out)
	return out
}

// matchTags is the hash join: for each person in every part (tags[i] and
// maxRows[i] of part i), every combination of one of its kept rows per
// part, as k row indices per joined row (flat), and per joined row the
// person (its first row in the first part). The first part drives, in its
// row order, so the result does not depend on the scheduling: a person's
// joined rows are contiguous. The parts are indexed in parallel and the
// first part's rows are probed in parallel ranges, concatenated in order.
func matchTags(ctx context.Context, tags [][][TagSize]byte, maxRows []int, selKey []byte) (rows, person []int32, err error) {
	k := len(tags)
	idx := make([]*tagIndex, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx[i] = newTagIndex(tags[i], maxRows[i], i)
		}()
	}
	wg.Wait()
	ranges := chunks(len(tags[0]))
	outRows := make([][]int32, len(ranges))
	outPerson := make([][]int32, len(ranges))
	errs := make([]error, len(ranges))
	for c, rg := range ranges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := hmac.New(sha256.New, selKey)
			per := make([][]int32, k)
			var rs, ps []int32
			for r0 := rg[0]; r0 < rg[1]; r0++ {
				if idx[0].later[r0] {
					continue
				}
				if (r0-rg[0])%65536 == 0 {
					if errs[c] = ctx.Err(); errs[c] != nil {
						return
					}
				}
				ok := true
				for i := range k {
					first := int32(r0)
					if i > 0 {
						_, first = idx[i].find(&tags[0][r0])
					}
					if first < 0 {
						ok = false
						break
					}
					per[i] = idx[i].rows(first, mac, per[i][:0])
				}
				if ok {
					emitCombos(per, &rs, &ps, int32(r0))
				}
			}
			outRows[c], outPerson[c] = rs, ps
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return nil, nil, e
		}
	}
	return slices.Concat(outRows...), slices.Concat(outPerson...), nil
}
