package sandbox

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math/bits"
	"slices"
	"sort"
	"sync"
)

// The executor joins the parts with a partitioned hash join. Each part's
// rows are first grouped by the first bits of their tags (one counting
// pass and one scatter, each part as soon as it is parsed), into
// partitions of about partitionRows rows; then the partitions, each small
// enough for its hash tables to stay in cache, are joined in parallel
// ranges, and their results concatenated in partition order. A part
// split finer than another is joined by groups of its partitions (those
// sharing the coarser part's bits). Tags are pseudorandom, so the
// partitions are even whatever the data, and the tables hash a tag's last
// bits, which no partition uses, with a secret drawn per join (a
// multiplication folded, not invertible without it), so that an owner
// cannot craft tags that collide in a table; a part crafted to fill one
// partition costs linear time, and the job's context is checked at every
// partition.

// partitionRows is about how many rows of the largest part a partition
// holds.
const partitionRows = 1024

// partitioned is a part's rows grouped by the first pbits bits of their
// tags: partition p's rows are entries start[p] to start[p+1], in row
// order.
type partitioned struct {
	pbits uint
	start []int32
	ents  []entry
	max   int // rows kept per person
	part  int
}

// partitionBits is the partition bits for a part of n rows.
func partitionBits(n int) uint { return uint(bits.Len(uint(n / partitionRows))) }

// bounds is where the entries of partition d at pb bits (pb <= p.pbits)
// start and end.
func (p *partitioned) bounds(d int, pb uint) (int32, int32) {
	s := p.pbits - pb
	return p.start[d<<s], p.start[(d+1)<<s]
}

// entry is a row and its tag (one write per row when partitioning).
type entry struct {
	tag [TagSize]byte
	row int32
}

// partition groups tags into 1<<pbits partitions by their first pbits
// bits, in parallel ranges of rows (each range's rows of a partition
// follow the previous range's, so a partition stays in row order).
// counts, when not nil, is what countTags counted of these tags.
func partition(tags [][TagSize]byte, pbits uint, counts [][]int32) *partitioned {
	n := 1 << pbits
	p := &partitioned{pbits: pbits, start: make([]int32, n+1), ents: make([]entry, len(tags))}
	shift := 64 - pbits // 64: every tag in partition 0
	ranges := chunks(len(tags))
	// pos: per range, where its next row of each partition goes (counts
	// are copied: they may serve again, for another Part of the shipment).
	var pos [][]int32
	if len(counts) == len(ranges) {
		pos = make([][]int32, len(counts))
		total := 0
		for r := range counts {
			pos[r] = slices.Clone(counts[r])
			for _, c := range counts[r] {
				total += int(c)
			}
		}
		if total != len(tags) {
			pos = nil
		}
	}
	var wg sync.WaitGroup
	if pos == nil {
		pos = newTagCounts(len(tags), pbits)
		for r, rg := range ranges {
			wg.Add(1)
			go func() {
				defer wg.Done()
				countTags(pos[r], tags[rg[0]:rg[1]], shift)
			}()
		}
		wg.Wait()
	}
	next := int32(0)
	for d := range n {
		p.start[d] = next
		for r := range ranges {
			c := pos[r][d]
			pos[r][d] = next
			next += c
		}
	}
	p.start[n] = next
	for r, rg := range ranges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, ents := pos[r], p.ents
			for i := rg[0]; i < rg[1]; i++ {
				d := binary.BigEndian.Uint64(tags[i][:8]) >> shift
				// Field by field through a pointer: a composite literal
				// here was built on the stack and copied, three times
				// slower.
				j := at[d]
				e := &ents[j]
				e.tag, e.row = tags[i], int32(i)
				at[d] = j + 1
			}
		}()
	}
	wg.Wait()
	return p
}

// newTagCounts is a count per partition for each of chunks(rows) ranges.
func newTagCounts(rows int, pbits uint) [][]int32 {
	out := make([][]int32, len(chunks(rows)))
	for r := range out {
		out[r] = make([]int32, 1<<pbits)
	}
	return out
}

// countTags adds tags to the count of their partitions.
func countTags(count []int32, tags [][TagSize]byte, shift uint) {
	for i := range tags {
		count[binary.BigEndian.Uint64(tags[i][:8])>>shift]++
	}
}

// partTable finds one partition's entries by tag: an open-addressing
// table (linear probing) of each tag's first entry, with 32 bits of the
// tag's hash that spare most reads of the entry itself; next chains the
// entries of one tag in row order (-1 ends a chain) and later marks the
// entries that are not their tag's first. Its slices are reused from one
// partition to the next.
type partTable struct {
	p     *partitioned
	lo    int32    // the partition's first entry
	slot  []uint64 // hash<<32 | 1 + a tag's first entry; 0: empty
	mask  uint64
	seed  [3]uint64 // secret per join: tags an owner chose cannot be made to collide
	next  []int32
	later []bool
}

// tableLoad is how many slots a table has per entry, at least. A lookup
// that misses walks the run of full slots from its hash on, each step a
// branch the processor mispredicts about half the time, and in a join
// many lookups miss (half of them with half the people in common): at 8
// slots an entry (64 KiB for a partition of 1,024 rows, in the core's L2
// cache) runs are short, and the partitions' joins took 35% less CPU than
// at 2 (BenchmarkJoin, 28 to 18 ms for 2 x 1M rows; 16 gained nothing
// more). A partition far above partitionRows (tags an owner crafted into
// one partition, or parts of very different sizes) gets 2 slots an entry,
// so that its table takes 16 bytes a row, not 64.
const tableLoad = 8

// build indexes the entries [lo, hi) of p.
func (x *partTable) build(p *partitioned, lo, hi int32) {
	n := int(hi - lo)
	load := tableLoad
	if n > 8*partitionRows {
		load = 2
	}
	size := 16
	if load*n > size {
		size = 1 << bits.Len(uint(load*n-1))
	}
	if cap(x.slot) < size {
		x.slot = make([]uint64, size)
	}
	x.slot = x.slot[:size]
	clear(x.slot)
	x.next, x.later = slices.Grow(x.next[:0], n)[:n], slices.Grow(x.later[:0], n)[:n]
	clear(x.later)
	x.p, x.lo, x.mask = p, lo, uint64(size-1)
	for e := n - 1; e >= 0; e-- { // backwards: a chain comes out in row order
		s, h, first := x.find(&p.ents[lo+int32(e)].tag)
		x.next[e] = first
		if first >= 0 {
			x.later[first] = true
		}
		x.slot[s] = h&^0xffffffff | uint64(e+1)
	}
}

// find returns the slot of tag t, its hash and its first entry (relative
// to the partition), or the empty slot it would take, its hash and -1.
func (x *partTable) find(t *[TagSize]byte) (uint64, uint64, int32) {
	h := x.hashOf(t)
	for i := (h >> 32) & x.mask; ; i = (i + 1) & x.mask {
		v := x.slot[i]
		if v == 0 {
			return i, h, -1
		}
		if e := int32(uint32(v)) - 1; (v^h)>>32 == 0 && x.p.ents[x.lo+e].tag == *t {
			return i, h, e
		}
	}
}

// hashOf hashes all 12 bytes of t (tags that share their last 8 bytes
// must not share a slot: the first 4 are mixed in under a secret
// multiplier), folded from a 128-bit product with a secret.
func (x *partTable) hashOf(t *[TagSize]byte) uint64 {
	v := binary.LittleEndian.Uint64(t[TagSize-8:]) ^ x.seed[0] ^ uint64(binary.LittleEndian.Uint32(t[:4]))*x.seed[2]
	hi, lo := bits.Mul64(v, x.seed[1])
	return hi ^ lo
}

// rows appends the rows of the person whose first entry is e, at most max
// of them: when it has more, those with the smallest HMAC(selKey, part,
// tag, row) (mac is keyed with selKey), an unbiased choice the data cannot
// steer (selKey is secret and fresh per job), in row order.
func (x *partTable) rows(e int32, mac hash.Hash, out []int32) []int32 {
	p := x.p
	t := &p.ents[x.lo+e].tag
	for ; e >= 0; e = x.next[e] {
		out = append(out, p.ents[x.lo+e].row)
	}
	if len(out) <= p.max {
		return out
	}
	rank := make(map[int32]string, len(out))
	var buf [4 + TagSize + 4]byte
	for _, r := range out {
		binary.BigEndian.PutUint32(buf[:4], uint32(p.part))
		copy(buf[4:], t[:])
		binary.BigEndian.PutUint32(buf[4+TagSize:], uint32(r))
		mac.Reset()
		mac.Write(buf[:])
		rank[r] = string(mac.Sum(nil))
	}
	sort.Slice(out, func(a, b int) bool { return rank[out[a]] < rank[out[b]] })
	out = out[:p.max]
	slices.Sort(out)
	return out
}

// matchTags is the join: for each person in every part (tags[i] and
// maxRows[i] of part i), every combination of one of its kept rows per
// part, as k row indices per joined row (flat), and per joined row the
// person (its first row in the first part). The result is in partition
// order, and within a partition in the first part's row order, so it
// does not depend on the scheduling, and a person's joined rows are
// contiguous.
func matchTags(ctx context.Context, tags [][][TagSize]byte, maxRows []int, pre []*partitioned, selKey []byte) (rows, person []int32, err error) {
	k := len(tags)
	parts := make([]*partitioned, k)
	var wg sync.WaitGroup
	for i := range k {
		if i < len(pre) && pre[i] != nil && len(pre[i].ents) == len(tags[i]) {
			p := *pre[i] // partitioned as it was parsed
			parts[i] = &p
		} else {
			wg.Add(1)
			go func() {
				defer wg.Done()
				parts[i] = partition(tags[i], partitionBits(len(tags[i])), nil)
			}()
		}
	}
	wg.Wait()
	pb := parts[0].pbits
	for i, p := range parts {
		p.max, p.part = maxRows[i], i
		pb = min(pb, p.pbits)
	}
	ranges := chunks(1 << pb)
	if len(ranges) == 1 && pb > 0 { // chunks keeps at least 1<<16 together
		ranges = [][2]int{{0, 1 << (pb - 1)}, {1 << (pb - 1), 1 << pb}}
	}
	outRows := make([][]int32, len(ranges))
	outPerson := make([][]int32, len(ranges))
	errs := make([]error, len(ranges))
	for c, rg := range ranges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outRows[c], outPerson[c], errs[c] = joinPartitions(ctx, parts, pb, rg, selKey)
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

// joinPartitions joins the partitions [rg[0], rg[1]) at pb bits of the
// parts.
func joinPartitions(ctx context.Context, parts []*partitioned, pb uint, rg [2]int, selKey []byte) (rs, ps []int32, err error) {
	k := len(parts)
	pj := &partJoin{parts: parts, mac: hmac.New(sha256.New, selKey), tabs: make([]partTable, k), per: make([][]int32, k), lo: make([]int32, k), hi: make([]int32, k)}
	// The tables' hash secret, from selKey (secret, fresh per job).
	pj.mac.Write([]byte("datasandbox join table seed"))
	sum := pj.mac.Sum(nil)
	pj.mac.Reset()
	for i := range pj.tabs {
		pj.tabs[i].seed = [3]uint64{binary.LittleEndian.Uint64(sum), binary.LittleEndian.Uint64(sum[8:]) | 1, binary.LittleEndian.Uint64(sum[16:]) | 1}
	}
	expect := len(parts[0].ents) // joined rows, about, if most match
	for _, p := range parts {
		lo, _ := p.bounds(rg[0], pb)
		_, hi := p.bounds(rg[1]-1, pb)
		expect = min(expect, int(hi-lo))
	}
	pj.rs, pj.ps = make([]int32, 0, k*expect), make([]int32, 0, expect)
	for d := rg[0]; d < rg[1]; d++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		empty := false
		for i, p := range parts {
			pj.lo[i], pj.hi[i] = p.bounds(d, pb)
			if i > 0 {
				pj.tabs[i].build(p, pj.lo[i], pj.hi[i])
			}
			empty = empty || pj.lo[i] == pj.hi[i]
		}
		if empty {
			continue
		}
		// Most people have one row in the first part: join without
		// indexing it, unless two of its rows match (one person's), then
		// again with its index.
		nr, np := len(pj.rs), len(pj.ps)
		if !pj.single() {
			pj.rs, pj.ps = pj.rs[:nr], pj.ps[:np]
			pj.tabs[0].build(parts[0], pj.lo[0], pj.hi[0])
			pj.indexed()
		}
	}
	return pj.rs, pj.ps, nil
}

// partJoin is one worker's join of partitions: the other parts' tables
// are built for the partition at hand, whose entries in part i are
// lo[i] to hi[i].
type partJoin struct {
	parts  []*partitioned
	lo, hi []int32
	mac    hash.Hash
	tabs   []partTable
	per    [][]int32
	rs, ps []int32
	seen   []bool // of the second part's entries, matched in single
}

// single joins the partition's rows of the first part one by one, and
// reports false when two of them are one person's (then some of the
// partition's result may have been appended: the caller drops it).
func (pj *partJoin) single() bool {
	p0, t1 := pj.parts[0], &pj.tabs[1]
	pj.seen = slices.Grow(pj.seen[:0], len(t1.next))[:len(t1.next)]
	clear(pj.seen)
	if len(pj.parts) == 2 && t1.p.max >= 1 {
		// Two parts: the loop below without the loop over parts, and a
		// person with one row in the second part (most) joined in place.
		for e := pj.lo[0]; e < pj.hi[0]; e++ {
			_, _, f := t1.find(&p0.ents[e].tag)
			if f < 0 {
				continue
			}
			if pj.seen[f] {
				return false
			}
			pj.seen[f] = true
			r := p0.ents[e].row
			if t1.next[f] < 0 {
				pj.rs, pj.ps = append(pj.rs, r, t1.p.ents[t1.lo+f].row), append(pj.ps, r)
				continue
			}
			pj.per[1] = t1.rows(f, pj.mac, pj.per[1][:0])
			pj.per[0] = append(pj.per[0][:0], r)
			emitCombos(pj.per, &pj.rs, &pj.ps, r)
		}
		return true
	}
	for e := pj.lo[0]; e < pj.hi[0]; e++ {
		t := &p0.ents[e].tag
		ok := true
		for i := 1; i < len(pj.parts) && ok; i++ {
			_, _, f := pj.tabs[i].find(t)
			if ok = f >= 0; ok {
				if i == 1 {
					if pj.seen[f] {
						return false
					}
					pj.seen[f] = true
				}
				pj.per[i] = pj.tabs[i].rows(f, pj.mac, pj.per[i][:0])
			}
		}
		switch r := p0.ents[e].row; {
		case !ok:
		case len(pj.parts) == 2 && len(pj.per[1]) == 1: // the common case, one joined row
			pj.rs, pj.ps = append(pj.rs, r, pj.per[1][0]), append(pj.ps, r)
		default:
			pj.per[0] = append(pj.per[0][:0], r)
			emitCombos(pj.per, &pj.rs, &pj.ps, r)
		}
	}
	return true
}

// indexed joins the partition the first part's table was built for,
// person by person.
func (pj *partJoin) indexed() {
	first := &pj.tabs[0]
	for e := range int32(len(first.next)) {
		if first.later[e] {
			continue
		}
		t := &pj.parts[0].ents[first.lo+e].tag
		ok := true
		for i := 1; i < len(pj.parts) && ok; i++ {
			_, _, f := pj.tabs[i].find(t)
			if ok = f >= 0; ok {
				pj.per[i] = pj.tabs[i].rows(f, pj.mac, pj.per[i][:0])
			}
		}
		if ok {
			pj.per[0] = first.rows(e, pj.mac, pj.per[0][:0])
			emitCombos(pj.per, &pj.rs, &pj.ps, pj.parts[0].ents[first.lo+e].row)
		}
	}
}
