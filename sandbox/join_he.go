package sandbox

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// He-mode joins (DESIGN.md, "Joining across agencies"): each owner ships
// its tags, the clear columns the plan filters and groups on, and its
// encrypted columns as the ciphertexts it stores (N rows a ciphertext, in
// its row order). The executor joins on tags as in masked mode, so it
// knows which rows of each owner every cell's joined rows use, and how
// often (a row joined with several rows of another dataset counts once for
// each); it turns that into one plaintext weight polynomial per cell and
// ciphertext and sums each owner's ciphertexts with them (no ciphertext
// is multiplied by another: a product of two datasets' columns is
// refused). Counts are clear, as in he mode on one dataset.
//
// The owners ship (ShipHE), the executor evaluates (HEEvaluateJoin) and
// has t nodes re-encrypt the result to the requester (Joiner.runHE), each
// re-checking the job on its own ledger (AuthoriseHEShare).

// HEJoinPart is an owner's part of an he join: its clear part and the
// ciphertexts of its encrypted columns, in the same row order.
type HEJoinPart struct {
	JoinPart
	HE *heData
}

// heJoinQuantity is one released quantity of an he join: the owner part
// whose ciphertexts hold it, and its name there (columns unqualified).
type heJoinQuantity struct {
	part int
	name string
}

// HEEvaluateJoin runs a join query in he mode on the executor: the join
// on tags, at most MaxRows rows per person and part (as ExecuteJoin),
// clear WHERE and GROUP BY over the clear shipped columns, the minimum
// group size counted in people, and each encrypted sum a weighted sum of
// its owner's ciphertexts, packed into one ciphertext for the threshold
// decryption. The layout's noise is calibrated to the rows one person
// adds to the join.
func HEEvaluateJoin(ctx context.Context, q *Query, parts []HEJoinPart, keys *HEKeys, ctl Control, lim Limits, selKey []byte) (*rlwe.Ciphertext, *HELayout, error) {
	j, err := newHEJoin(q, parts)
	if err != nil {
		return nil, nil, err
	}
	if err := j.quantities(); err != nil {
		return nil, nil, err
	}
	rows, person, err := matchTags(ctx, j.tags, j.maxRows, j.parted, selKey)
	if err != nil {
		return nil, nil, err
	}
	t, err := joinedTable(q, j.order, j.byName, rows, j.enc)
	if err != nil {
		return nil, nil, err
	}
	if need := int64(t.Rows) * int64(9+8*len(t.Cols)+8); need > lim.MaxMemory {
		return nil, nil, fmt.Errorf("%w: the join needs about %d MiB, limit %d MiB", ErrLimit, need>>20, lim.MaxMemory>>20)
	}
	mask, err := evalWhere(t, q.Where)
	if err != nil {
		return nil, nil, err
	}
	gid, ngroups, gkeys, err := groupIDs(t, q.Keys, lim)
	if err != nil {
		return nil, nil, err
	}
	counts, err := parallelCount(ctx, t.Rows, mask, gid, ngroups)
	if err != nil {
		return nil, nil, err
	}
	people := distinctPeople(t.Rows, mask, gid, ngroups, person)
	lay := j.layout(len(parts[0].Tags), ctl)
	cellOf, cells, err := j.cells(lay, people, gkeys, ngroups, ctl.MinGroupSize)
	if err != nil {
		return nil, nil, err
	}
	packIn, err := j.sums(ctx, t, rows, mask, gid, cellOf, cells, lay)
	if err != nil {
		return nil, nil, err
	}
	out, err := hePack(keys, packIn, counts, cellOf, lay)
	if err != nil {
		return nil, nil, err
	}
	return out, lay, nil
}

// heJoin is an he join's parts in the query's dataset order, and the
// quantities it releases per cell.
type heJoin struct {
	q       *Query
	order   []string
	byName  map[string]*JoinPart
	index   map[string]int
	tags    [][][TagSize]byte
	parted  []*partitioned
	maxRows []int
	heParts []*heData
	enc     map[string]bool // encrypted columns, dataset-qualified
	bound   int             // joined rows one person changes at most
	perCell []string
	from    []heJoinQuantity
}

// newHEJoin checks the parts against each other and the query, and orders them as the query names their datasets.
func newHEJoin(q *Query, parts []HEJoinPart) (*heJoin, error) {
	env := JoinEnv{Schemas: map[string]*policies.Schema{}, Nodes: policies.MinJoinNodes}
	enc := map[string]bool{}
	for _, p := range parts {
		env.Schemas[p.Dataset] = &p.Table.Schema
		if len(p.Tags) != p.Table.Rows || p.HE == nil || p.HE.meta.Rows != int64(p.Table.Rows) {
			return nil, fmt.Errorf("%w: dataset %s: tags, rows and ciphertexts disagree", ErrBadData, p.Dataset)
		}
		for _, c := range p.HE.meta.Columns {
			enc[p.Dataset+"."+c] = true
		}
	}
	if err := CheckJoin(q, env, policies.ModeMasked); err != nil {
		return nil, err
	}
	if err := checkHEJoinEnc(q, enc); err != nil {
		return nil, err
	}
	order := q.datasets()
	if len(parts) != len(order) {
		return nil, fmt.Errorf("%w: %d parts for a join of %d datasets", ErrBadData, len(parts), len(order))
	}
	j := &heJoin{q: q, order: order, byName: map[string]*JoinPart{}, index: map[string]int{}, enc: enc,
		tags: make([][][TagSize]byte, len(order)), parted: make([]*partitioned, len(order)), maxRows: make([]int, len(order)), heParts: make([]*heData, len(order)), bound: 1}
	for i := range parts {
		j.byName[parts[i].Dataset] = &parts[i].JoinPart
	}
	for i, d := range order {
		p := j.byName[d]
		if p == nil {
			return nil, fmt.Errorf("%w: no part for dataset %s", ErrBadData, d)
		}
		if p.MaxRows < 1 {
			return nil, fmt.Errorf("%w: dataset %s has no bound on rows per person", ErrRefused, d)
		}
		j.bound *= p.MaxRows
		j.tags[i], j.parted[i], j.maxRows[i], j.index[d] = p.Tags, p.parted, p.MaxRows, i
		for _, hp := range parts {
			if hp.Dataset == d {
				j.heParts[i] = hp.HE
			}
		}
	}
	return j, nil
}

// quantities lists the released quantities per cell (count first), and the part holding each.
func (j *heJoin) quantities() error {
	j.perCell = []string{"count"}
	j.from = []heJoinQuantity{{part: -1}}
	for _, a := range j.q.Aggs {
		need, err := heNeeds(j.q, a, j.enc)
		if err != nil {
			return err
		}
		for _, n := range need {
			kind, cols, _ := strings.Cut(n, ":")
			ds, local := "", []string{}
			for _, c := range strings.Split(cols, ",") {
				d, name, _ := strings.Cut(c, ".")
				ds = d
				local = append(local, name)
			}
			pi := j.index[ds]
			qn := kind + ":" + strings.Join(local, ",")
			if kind == "xy" {
				qn = canonicalPair(qn, j.heParts[pi].meta.Columns)
				a, b, _ := strings.Cut(strings.TrimPrefix(qn, "xy:"), ",")
				n = pairName(ds+"."+a, ds+"."+b)
			}
			if j.heParts[pi].cts[qn] == nil {
				return fmt.Errorf("%w: dataset %s shipped no quantity %s", ErrBadData, ds, qn)
			}
			if !slices.Contains(j.perCell, n) {
				j.perCell = append(j.perCell, n)
				j.from = append(j.from, heJoinQuantity{part: pi, name: qn})
			}
		}
	}
	return nil
}

// layout starts the result's layout: quantities, norms and bounds of the encrypted columns, and the noise calibrated to the join.
func (j *heJoin) layout(public int, ctl Control) *HELayout {
	norms, bounds := map[string]float64{}, map[string][2]float64{}
	for i, d := range j.order {
		public = min(public, len(j.tags[i]))
		for c, b := range j.heParts[i].meta.Norms {
			norms[d+"."+c] = b
		}
		for _, c := range j.byName[d].Table.Schema.Columns {
			if j.enc[d+"."+c.Name] && len(c.Bounds) == 2 {
				bounds[d+"."+c.Name] = [2]float64{c.Bounds[0], c.Bounds[1]}
			}
		}
	}
	lay := &HELayout{Query: j.q.Source, PerCell: j.perCell, Norms: norms, Bounds: bounds}
	if !ctl.NoNoise {
		// One person changes at most bound joined rows (ExecuteJoin).
		lay.Noise = &HENoise{Mechanism: ctl.Mechanism, Epsilon: ctl.Epsilon / float64(j.bound), Delta: ctl.Delta, Rows: int64(public * j.bound),
			MinGroupSize: ctl.MinGroupSize, MaxIntervalRatio: ctl.MaxIntervalRatio}
	}
	if ctl.Dominance != nil {
		lay.Notes = "the dominance rule needs per-person values and is not evaluated in he mode; minimum cell size and DP apply"
	}
	return lay
}

// cells numbers the released groups (those with at least minGroup people), records their keys and the suppressed count in lay, and sets its slot spacing.
func (j *heJoin) cells(lay *HELayout, people []int64, gkeys [][]any, ngroups, minGroup int) ([]int32, int, error) {
	cellOf := make([]int32, ngroups)
	cells := 0
	for g, n := range people {
		cellOf[g] = -1
		if n == 0 {
			continue
		}
		if n < int64(minGroup) {
			lay.Suppressed++
			continue
		}
		cellOf[g] = int32(cells)
		cells++
		lay.Keys = append(lay.Keys, gkeys[g])
	}
	if positions := cells * len(j.perCell); positions > maxHECells {
		return nil, 0, refuse("he mode releases at most %d cells×quantities in one result; this query has %d (fewer groups or aggregates, or mode masked)", maxHECells, positions)
	}
	N := heparams.Params().N()
	slots := 2
	for slots < cells*len(j.perCell) {
		slots <<= 1
	}
	lay.Spacing = N / slots
	return cellOf, cells, nil
}

// sums computes each part's weighted sums of its ciphertexts per cell, keyed by their slot in the packed result.
func (j *heJoin) sums(ctx context.Context, t *Table, rows []int32, mask []bool, gid []uint32, cellOf []int32, cells int, lay *HELayout) (map[int]*rlwe.Ciphertext, error) {
	packIn := map[int]*rlwe.Ciphertext{}
	k := len(j.order)
	for pi := range j.order {
		var qs []int // indices into perCell of this part's quantities
		for jj, f := range j.from {
			if f.part == pi {
				qs = append(qs, jj)
			}
		}
		if len(qs) == 0 {
			continue
		}
		// Each selected joined row's row of this part, and its cell.
		var sel []rowCell
		for jj := range t.Rows {
			if mask != nil && !mask[jj] {
				continue
			}
			g := 0
			if gid != nil {
				g = int(gid[jj])
			}
			if c := cellOf[g]; c >= 0 {
				sel = append(sel, rowCell{row: rows[jj*k+pi], cell: c})
			}
		}
		sums, err := heWeightedSums(ctx, j.heParts[pi], j.from, qs, sel, cells)
		if err != nil {
			return nil, err
		}
		for i, jj := range qs {
			for cell, ct := range sums[i] {
				if ct != nil {
					packIn[(cell*len(j.perCell)+jj)*lay.Spacing] = ct
				}
			}
		}
	}
	return packIn, nil
}

// rowCell is one joined row's row in a part, and the cell it counts in.
type rowCell struct{ row, cell int32 }

// heWeightedSums sums, per quantity qs[i] of d (its name in from) and
// cell, the ciphertexts of d weighted by how often each row is in the
// cell (sel), ciphertext by ciphertext, in parallel.
func heWeightedSums(ctx context.Context, d *heData, from []heJoinQuantity, qs []int, sel []rowCell, cells int) ([][]*rlwe.Ciphertext, error) {
	params := heparams.Params()
	N := params.N()
	ringQ := params.RingQ().AtLevel(0)
	qmod := ringQ.SubRings[0].Modulus
	// The weights are written in Montgomery form (one = 2^64 mod q), so
	// that their NTT multiplies ciphertexts as it is.
	one := ring.MForm(1, qmod, ringQ.SubRings[0].BRedConstant)
	ncts := len(d.cts[from[qs[0]].name])
	// Bucket the rows by ciphertext (counting sort).
	start := make([]int, ncts+1)
	for _, s := range sel {
		start[int(s.row)/N+1]++
	}
	for c := range ncts {
		start[c+1] += start[c]
	}
	byCt := make([]rowCell, len(sel))
	fill := append([]int(nil), start[:ncts]...)
	for _, s := range sel {
		c := int(s.row) / N
		byCt[fill[c]] = s
		fill[c]++
	}
	workers := min(runtime.GOMAXPROCS(0), max(ncts, 1))
	accs := make([][][]*rlwe.Ciphertext, workers) // [worker][quantity][cell]
	var wg sync.WaitGroup
	for w := range workers {
		acc := make([][]*rlwe.Ciphertext, len(qs))
		for i := range acc {
			acc[i] = make([]*rlwe.Ciphertext, cells)
		}
		accs[w] = acc
		wg.Add(1)
		go func() {
			defer wg.Done()
			polys := make([]ring.Poly, cells) // reused from one ciphertext to the next
			used := make([]bool, cells)
			for c := w; c < ncts; c += workers {
				if ctx.Err() != nil {
					return
				}
				clear(used)
				for _, s := range byCt[start[c]:start[c+1]] {
					b := &polys[s.cell]
					if !used[s.cell] {
						if b.N() == 0 {
							*b = ringQ.NewPoly()
						} else {
							b.Zero()
						}
						used[s.cell] = true
					}
					addSelect(b.Coeffs[0], int(s.row)-c*N, one, qmod)
				}
				for cell, b := range polys {
					if !used[cell] {
						continue
					}
					ringQ.NTT(b, b)
					for i, j := range qs {
						ct := d.cts[from[j].name][c]
						if acc[i][cell] == nil {
							acc[i][cell] = rlwe.NewCiphertext(params, 1, 0)
							*acc[i][cell].MetaData = *ct.MetaData
						}
						ringQ.MulCoeffsMontgomeryThenAdd(ct.Value[0], b, acc[i][cell].Value[0])
						ringQ.MulCoeffsMontgomeryThenAdd(ct.Value[1], b, acc[i][cell].Value[1])
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := accs[0]
	for _, acc := range accs[1:] {
		for i := range out {
			for cell := range out[i] {
				out[i][cell] = addInto(ringQ, out[i][cell], acc[i][cell])
			}
		}
	}
	return out, nil
}

// addSelect adds one (in Montgomery form) to the weight of row i in a
// selection polynomial (setSelect's coefficients, counted: a row may be
// joined several times).
func addSelect(b []uint64, i int, one, q uint64) {
	if i == 0 {
		if b[0] += one; b[0] >= q {
			b[0] -= q
		}
		return
	}
	j := len(b) - i
	if b[j] < one {
		b[j] += q
	}
	b[j] -= one
}

// checkHEJoin refuses, before the ledger, an he join the encrypted engine
// cannot evaluate: its rules (checkHE) over the joined datasets' encrypted
// columns, and no aggregate of columns of two datasets (a product of
// their ciphertexts).
func checkHEJoin(q *Query, schemas map[string]*policies.Schema) error {
	enc := map[string]bool{}
	for d, s := range schemas {
		cols, _ := heColumns(s, false)
		for _, c := range cols {
			enc[d+"."+c.Name] = true
		}
	}
	return checkHEJoinEnc(q, enc)
}

func checkHEJoinEnc(q *Query, enc map[string]bool) error {
	if err := checkHE(q, enc); err != nil {
		return err
	}
	for _, a := range q.Aggs {
		if len(a.Args) < 2 {
			continue
		}
		d0, _, _ := strings.Cut(a.Args[0], ".")
		for _, c := range a.Args[1:] {
			if d, _, _ := strings.Cut(c, "."); d != d0 {
				return q.refuseAt(a.Pos, RuleHE, "%s of columns of two datasets needs a product of ciphertexts, which he mode never computes: use mode masked", strings.ToUpper(a.Func))
			}
		}
	}
	return nil
}

// joinDP is the noise of an he join's release, as the masked join's
// (Joiner.run, ExecuteJoin): the policy with the smallest
// epsilon_per_query among the joined datasets', its epsilon divided by the
// rows one person adds to the join (the product of the parts' bounds).
func joinDP(st HEFlowState, j policies.Job) (policies.DP, error) {
	var dp policies.DP
	bound := 1
	for i, pt := range j.Parts {
		p, ok := st.Policy(pt.Policy)
		if !ok {
			return dp, fmt.Errorf("policy %s is gone", pt.Policy)
		}
		if i == 0 || p.DP.EpsilonPerQuery < dp.EpsilonPerQuery {
			dp = p.DP
		}
		bound *= max(pt.MaxRows, 1)
	}
	dp.EpsilonPerQuery /= float64(bound)
	return dp, nil
}
