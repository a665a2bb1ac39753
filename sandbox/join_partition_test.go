package sandbox

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// matchTags against a plain nested-map join: with people of one row and
// of several rows in every part (so that the first part's partitions take
// both paths, without its index and with it), two or three parts, and sizes from empty to
// several partitions, every person in all parts gives every combination of
// its rows (kept rows: at most max per part, else all), contiguously, in
// the first part's row order within a person, and nobody else.
func TestMatchTagsMatchesNestedMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tagOf := func(person int) [TagSize]byte {
		var tg [TagSize]byte
		r := rand.New(rand.NewPCG(uint64(person), 99)) // a person's tag, the same in every part
		for i := range tg {
			tg[i] = byte(r.Uint32())
		}
		return tg
	}
	part := func(rows, people, dupEvery int) [][TagSize]byte {
		out := make([][TagSize]byte, 0, rows)
		if dupEvery < 0 { // distinct people, one row each
			for _, p := range rng.Perm(people)[:rows] {
				out = append(out, tagOf(p))
			}
			return out
		}
		for len(out) < rows {
			p := rng.IntN(people)
			out = append(out, tagOf(p))
			if dupEvery > 0 && p%dupEvery == 0 && len(out) < rows {
				out = append(out, tagOf(p)) // a second row of p
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	cases := []struct {
		rows    []int
		people  int
		dup     []int // every dup-th person drawn gets a second row in that part (0: none; people drawn at random can repeat anyway; -1: distinct people, one row each)
		maxRows []int
	}{
		{[]int{0, 10}, 10, []int{0, 0}, []int{1, 1}},
		{[]int{3000, 3000}, 4000, []int{-1, -1}, []int{1, 1}},
		{[]int{3000, 3000}, 4000, []int{-1, 0}, []int{1, 2}},
		{[]int{3000, 3000}, 4000, []int{0, 0}, []int{1, 1}},
		{[]int{3000, 3000}, 4000, []int{0, 3}, []int{1, 4}},
		{[]int{5000, 4000}, 4000, []int{2, 0}, []int{4, 1}},
		{[]int{5000, 4000}, 4000, []int{2, 5}, []int{1, 1}},
		{[]int{4000, 3000, 2000}, 3000, []int{7, 0, 3}, []int{4, 1, 4}},
		{[]int{3000, 3000, 2000}, 3000, []int{-1, 0, 3}, []int{1, 3, 4}},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d parts %v dup %v max %v", len(c.rows), c.rows, c.dup, c.maxRows), func(t *testing.T) {
			tags := make([][][TagSize]byte, len(c.rows))
			for j := range tags {
				tags[j] = part(c.rows[j], c.people, c.dup[j])
			}
			rows, person, err := matchTags(context.Background(), tags, c.maxRows, nil, []byte(fmt.Sprint("sel", i)))
			if err != nil {
				t.Fatal(err)
			}
			k := len(tags)
			// The reference: each tag's rows per part.
			byTag := make([]map[[TagSize]byte][]int32, k)
			for j := range tags {
				byTag[j] = map[[TagSize]byte][]int32{}
				for r, tg := range tags[j] {
					byTag[j][tg] = append(byTag[j][tg], int32(r))
				}
			}
			want := map[int32]int{} // person (first row in part 0) -> joined rows
			for tg, r0 := range byTag[0] {
				n := 1
				for j := range k {
					rs := byTag[j][tg]
					n *= min(len(rs), c.maxRows[j])
				}
				if n > 0 {
					want[r0[0]] = n
				}
			}
			got := map[int32]int{}
			for g := range person {
				p := person[g]
				if g > 0 && person[g-1] != p && got[p] > 0 {
					t.Fatalf("person %d's joined rows are not contiguous", p)
				}
				got[p]++
				tg := tags[0][p]
				for j := range k {
					r := rows[g*k+j]
					if tags[j][r] != tg {
						t.Fatalf("joined row %d: part %d row %d has another tag", g, j, r)
					}
					if !slices.Contains(byTag[j][tg], r) {
						t.Fatalf("joined row %d: part %d row %d is not the person's", g, j, r)
					}
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d people joined, want %d", len(got), len(want))
			}
			for p, n := range want {
				if got[p] != n {
					t.Fatalf("person %d: %d joined rows, want %d", p, got[p], n)
				}
			}
		})
	}
}

// A part partitioned from the counts ParseShipment took while hashing its
// tags is the part partitioned from scratch, over sizes of one and of
// several ranges of rows.
func TestPartitionFromParsedCounts(t *testing.T) {
	q, _ := ParseQuery(joinSQL)
	side := q.Plan().Join[0]
	for _, n := range []int{20, 5000, 1<<16 + 3, 200_000} {
		t.Run(fmt.Sprint(n, " rows"), func(t *testing.T) {
			tab := joinBenchTable(taxJoinSchema, 0, n, "region", "income", DemoRegions, 100000)
			b, sum := encodedPart(t, tab, side)
			got, err := ParseShipment(b, sum, "job-1", side, &tab.Schema)
			if err != nil {
				t.Fatal(err)
			}
			p := got.Part(&tab.Schema, 1)
			want := partition(p.Tags, partitionBits(n), nil)
			if !slices.Equal(p.parted.start, want.start) || !slices.Equal(p.parted.ents, want.ents) {
				t.Fatal("the partitions differ")
			}
			// A second Part of the same shipment (HEPart calls Part) reads
			// the same counts.
			if again := got.Part(&tab.Schema, 1); !slices.Equal(again.parted.ents, want.ents) {
				t.Fatal("a second Part partitions differently")
			}
		})
	}
}

// Tags an owner crafted to collide — one partition, the same last 8
// bytes, different first 4 — still spread over a partition's table: the
// hash mixes all 12 bytes under the join's secret, so finding each costs
// a few probes, not a walk through all of them (which made a partition of
// n crafted rows cost n² probes).
func TestCraftedTagsDoNotCollide(t *testing.T) {
	const n = 4096
	tags := make([][TagSize]byte, n)
	for i := range tags {
		binary.BigEndian.PutUint32(tags[i][:4], uint32(i)) // below any partition bits for n rows
	}
	p := partition(tags, 0, nil)
	p.max = 1
	x := &partTable{seed: [3]uint64{0x1234567, 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9}}
	x.build(p, 0, int32(n))
	probes := 0
	for i := range tags {
		h := x.hashOf(&tags[i])
		for j := (h >> 32) & x.mask; x.slot[j] != 0; j = (j + 1) & x.mask {
			probes++
			if e := int32(uint32(x.slot[j])) - 1; p.ents[e].tag == tags[i] {
				break
			}
		}
	}
	if avg := float64(probes) / n; avg > 4 {
		t.Fatalf("%.1f probes per crafted tag", avg)
	}
}
