package sandbox

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/ckks"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// HEKeys are the collective keys the engine uses: the public key (ingest,
// and a fresh zero when a result has a single sum) and the Galois keys of
// Pack. Nobody holds the matching secret key: it is shared t-of-N between
// the agency nodes (mpc/).
type HEKeys struct {
	PK     *rlwe.PublicKey
	Galois []*rlwe.GaloisKey
}

// HELayout says where each released quantity sits in an HE result
// ciphertext and how the requester turns them into the result table. It
// holds no data values: counts and sums are inside the ciphertext.
type HELayout struct {
	Query   string                `json:"query"`
	Keys    [][]any               `json:"keys"`     // per released cell, its group values
	PerCell []string              `json:"per_cell"` // quantities per cell: "count", "x:c", "xx:c", "xy:a,b"
	Spacing int                   `json:"spacing"`  // coefficient of cell g, quantity j: (g·len(PerCell)+j)·Spacing
	Norms   map[string]float64    `json:"norms"`    // B of each encrypted column
	Bounds  map[string][2]float64 `json:"bounds"`   // AVG is clamped to them
	Depth   int                   `json:"depth"`    // ciphertext×ciphertext multiplications: always 0
	Notes   string                `json:"notes,omitempty"`
	// Noise is what the requester needs to state each value's noise and
	// clamp it (interval.go); nil when no DP noise is added (tests).
	Noise *HENoise `json:"noise,omitempty"`
	// Suppressed counts the cells under the minimum size (Result has it).
	Suppressed int `json:"-"`
}

// HENoise is the policy's noise on an he result: each decrypting node adds
// one draw of the mechanism with Epsilon/len(PerCell) (and Delta/len(PerCell))
// to every released quantity (sandbox's AuthoriseHEShare, mpc's addDPNoise).
type HENoise struct {
	Mechanism        string  `json:"mechanism,omitempty"`
	Epsilon          float64 `json:"epsilon"`
	Delta            float64 `json:"delta,omitempty"`
	Rows             int64   `json:"rows"`
	MinGroupSize     int     `json:"min_group_size"`
	MaxIntervalRatio float64 `json:"max_interval_ratio,omitempty"`
}

// Positions lists the coefficients that carry released quantities.
func (l *HELayout) Positions() []int {
	var out []int
	for g := range l.Keys {
		for j := range l.PerCell {
			out = append(out, (g*len(l.PerCell)+j)*l.Spacing)
		}
	}
	return out
}

// HEStats are the engine's timings.
type HEStats struct {
	Plan, Evaluate, Pack time.Duration
	Ciphertexts          int
	Masks                int
}

// maxHECells bounds cells × quantities of one HE result.
const maxHECells = 2048

// heNeeds maps an aggregate to the quantities it reads.
func heNeeds(q *Query, a *Agg, enc map[string]bool) ([]string, error) {
	for _, c := range a.Args {
		if c != "*" && !enc[c] && a.Func != "count" {
			return nil, q.refuseAt(a.Pos, RuleHE, "in he mode aggregates read encrypted (sensitive) columns; %s(%s) reads a clear column: use mode masked", strings.ToUpper(a.Func), c)
		}
	}
	switch a.Func {
	case "count":
		return nil, nil
	case "sum", "avg":
		return []string{"x:" + a.Args[0]}, nil
	case "var", "stddev":
		return []string{"x:" + a.Args[0], "xx:" + a.Args[0]}, nil
	case "corr", "regr_slope", "regr_intercept":
		x, y := a.Args[0], a.Args[1]
		return []string{"x:" + x, "x:" + y, "xx:" + x, "xx:" + y, pairName(x, y)}, nil
	}
	return nil, q.refuseAt(a.Pos, RuleHE, "%s is not available in he mode (it needs comparisons on ciphertexts): use mode masked", strings.ToUpper(a.Func))
}

func pairName(a, b string) string { return "xy:" + a + "," + b }

// CheckHE refuses, before anything is recorded or run, an he query the
// engine cannot evaluate on a dataset of this schema: aggregates read
// encrypted columns (sensitive numbers with bounds), WHERE and GROUP BY
// clear ones, and nothing needs comparisons on ciphertexts (HISTOGRAM).
func CheckHE(q *Query, schema *policies.Schema) error {
	cols, _ := heColumns(schema, false)
	enc := map[string]bool{}
	for _, c := range cols {
		enc[c.Name] = true
	}
	return checkHE(q, enc)
}

// checkHE is CheckHE with the encrypted columns given. WHERE, GROUP BY
// and CASE conditions read clear columns; the select list's expressions
// and HAVING are evaluated by the requester on the decrypted values.
func checkHE(q *Query, enc map[string]bool) error {
	for _, r := range q.refs {
		if !enc[r.Name] {
			continue
		}
		switch r.Use {
		case "filter":
			return q.refuseAt(r.Pos, RuleHE, "in he mode WHERE reads clear columns only; %s is encrypted", r.Name)
		case "group":
			return q.refuseAt(r.Pos, RuleHE, "in he mode GROUP BY uses clear columns only; %s is encrypted", r.Name)
		case "case":
			return q.refuseAt(r.Pos, RuleHE, "in he mode CASE conditions read clear columns only; %s is encrypted", r.Name)
		}
	}
	for _, a := range q.Aggs {
		if a.Case != nil {
			return q.refuseAt(a.Pos, RuleHE, "a CASE inside an aggregate is not evaluated in he mode (it needs a mask per aggregate on the ciphertexts): use mode masked, or WHERE")
		}
		if _, err := heNeeds(q, a, enc); err != nil {
			return err
		}
	}
	return nil
}

// HEEvaluate runs a query on an encrypted dataset: clear counts, masks from
// the clear group and filter columns, encrypted sums packed into one
// ciphertext (see heparams). Output control that needs clear counts
// (minimum cell size) happens here; DP noise is added by the decrypting
// nodes.
func HEEvaluate(ctx context.Context, t *Table, d *heData, keys *HEKeys, q *Query, ctl Control, lim Limits) (*rlwe.Ciphertext, *HELayout, *HEStats, error) {
	st := &HEStats{}
	start := time.Now()
	if err := CheckQuery(q, &t.Schema, policies.ModeMasked); err != nil {
		return nil, nil, nil, err
	}
	enc := map[string]bool{}
	for _, c := range d.meta.Columns {
		enc[c] = true
	}
	if err := checkHE(q, enc); err != nil {
		return nil, nil, nil, err
	}
	perCell, err := hePerCell(q, d, enc)
	if err != nil {
		return nil, nil, nil, err
	}
	mask, err := evalWhere(t, q.Where)
	if err != nil {
		return nil, nil, nil, err
	}
	gid, ngroups, gkeys, err := groupIDs(t, q.Keys, lim)
	if err != nil {
		return nil, nil, nil, err
	}
	counts, err := parallelCount(ctx, t.Rows, mask, gid, ngroups)
	if err != nil {
		return nil, nil, nil, err
	}
	lay := newHELayout(q, t, d, enc, ctl, perCell)
	r := newHERun(d, perCell)
	r.releasedCells(lay, counts, gkeys, ctl.MinGroupSize)
	if positions := r.cells * len(perCell); positions > maxHECells {
		return nil, nil, nil, refuse("he mode releases at most %d cells×quantities in one result; this query has %d (fewer groups or aggregates, or mode masked)", maxHECells, positions)
	}
	lay.Spacing = r.spacing(len(perCell))
	st.Plan = time.Since(start)

	evalStart := time.Now()
	accs, ncts := r.sum(ctx, t.Rows, mask, gid)
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	st.Ciphertexts = ncts * len(r.encQ)
	for _, a := range accs {
		st.Masks += a.masks
	}
	packIn := r.merge(accs, lay.Spacing)
	st.Evaluate = time.Since(evalStart)

	packStart := time.Now()
	out, err := hePack(keys, packIn, counts, r.cellOf, lay)
	if err != nil {
		return nil, nil, nil, err
	}
	st.Pack = time.Since(packStart)
	return out, lay, st, nil
}

// hePerCell lists the quantities each released cell carries: its count,
// then every encrypted quantity the aggregates read, each once.
func hePerCell(q *Query, d *heData, enc map[string]bool) ([]string, error) {
	perCell := []string{"count"}
	seen := map[string]bool{"count": true}
	for _, a := range q.Aggs {
		need, err := heNeeds(q, a, enc)
		if err != nil {
			return nil, err
		}
		for _, n := range need {
			if strings.HasPrefix(n, "xy:") {
				n = canonicalPair(n, d.meta.Columns)
			}
			if !seen[n] {
				seen[n] = true
				perCell = append(perCell, n)
			}
		}
	}
	for _, n := range perCell[1:] {
		if d.cts[n] == nil {
			return nil, fmt.Errorf("sandbox: dataset lacks quantity %s", n)
		}
	}
	return perCell, nil
}

// newHELayout starts the result's layout: what the requester needs besides
// the cells (filled in by releasedCells) and the spacing.
func newHELayout(q *Query, t *Table, d *heData, enc map[string]bool, ctl Control, perCell []string) *HELayout {
	lay := &HELayout{Query: q.Source, PerCell: perCell, Norms: d.meta.Norms, Depth: 0, Bounds: map[string][2]float64{}}
	for _, c := range t.Schema.Columns {
		if enc[c.Name] && len(c.Bounds) == 2 {
			lay.Bounds[c.Name] = [2]float64{c.Bounds[0], c.Bounds[1]}
		}
	}
	if !ctl.NoNoise {
		lay.Noise = &HENoise{Mechanism: ctl.Mechanism, Epsilon: ctl.Epsilon, Delta: ctl.Delta, Rows: int64(t.Rows),
			MinGroupSize: ctl.MinGroupSize, MaxIntervalRatio: ctl.MaxIntervalRatio}
	}
	if ctl.Dominance != nil {
		lay.Notes = "the dominance rule needs per-person values and is not evaluated in he mode; minimum cell size and DP apply"
	}
	return lay
}

// heRun is one evaluation's working state over the ciphertexts.
type heRun struct {
	params ckks.Parameters
	ringQ  *ring.Ring // level 0
	qmod   uint64     // Q0
	n      int        // rows per ciphertext (the ring degree)
	d      *heData
	encQ   []string // the encrypted quantities per cell (perCell[1:])
	cellOf []int32  // group -> released cell, -1: none
	cells  int
}

func newHERun(d *heData, perCell []string) *heRun {
	params := heparams.Params()
	ringQ := params.RingQ().AtLevel(0)
	return &heRun{params: params, ringQ: ringQ, qmod: ringQ.SubRings[0].Modulus, n: params.N(), d: d, encQ: perCell[1:]}
}

// releasedCells numbers the groups that are released: not empty, and not
// under the minimum cell size (counted as suppressed in lay).
func (r *heRun) releasedCells(lay *HELayout, counts []int64, gkeys [][]any, minGroupSize int) {
	r.cellOf = make([]int32, len(counts))
	for g, n := range counts {
		r.cellOf[g] = -1
		if n == 0 {
			continue
		}
		if n < int64(minGroupSize) {
			lay.Suppressed++
			continue
		}
		r.cellOf[g] = int32(r.cells)
		r.cells++
		lay.Keys = append(lay.Keys, gkeys[g])
	}
}

// spacing spreads the released quantities evenly over the coefficients: a
// power of two slots, at least two.
func (r *heRun) spacing(perCell int) int {
	slots := 2
	for slots < r.cells*perCell {
		slots <<= 1
	}
	return r.n / slots
}

// heAcc is one worker's encrypted sums: per quantity and cell, the masked
// products of mixed ciphertexts (sel) and the plain sums of ciphertexts
// whose rows all fall in one cell (pure).
type heAcc struct {
	sel, pure [][]*rlwe.Ciphertext // [quantity][cell]
	masks     int
}

// sum runs the workers over the dataset's ciphertexts, each taking every
// workers-th one; it returns their sums and the ciphertexts per quantity.
func (r *heRun) sum(ctx context.Context, rows int, mask []bool, gid []uint32) ([]*heAcc, int) {
	var ncts int
	if len(r.encQ) > 0 {
		ncts = len(r.d.cts[r.encQ[0]])
	}
	workers := min(runtime.GOMAXPROCS(0), max(ncts, 1))
	accs := make([]*heAcc, workers)
	var wg sync.WaitGroup
	for w := range workers {
		a := &heAcc{sel: make([][]*rlwe.Ciphertext, len(r.encQ)), pure: make([][]*rlwe.Ciphertext, len(r.encQ))}
		for i := range r.encQ {
			a.sel[i] = make([]*rlwe.Ciphertext, r.cells)
			a.pure[i] = make([]*rlwe.Ciphertext, r.cells)
		}
		accs[w] = a
		if len(r.encQ) == 0 {
			continue
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r.sumWorker(ctx, a, w, workers, ncts, rows, mask, gid)
		}(w)
	}
	wg.Wait()
	return accs, ncts
}

// sumWorker adds ciphertexts w, w+workers, ... into a. One pass over a
// ciphertext's rows builds the selection polynomial of every cell present
// in it; a ciphertext whose rows all fall in one cell is added unmasked.
func (r *heRun) sumWorker(ctx context.Context, a *heAcc, w, workers, ncts, rows int, mask []bool, gid []uint32) {
	ringQ, N, cellOf, qmod := r.ringQ, r.n, r.cellOf, r.qmod
	var polys []ring.Poly          // by order of first appearance
	var present []int32            // the cells, in that order
	slot := make([]int32, r.cells) // cell -> index in present, -1
	for i := range slot {
		slot[i] = -1
	}
	for c := w; c < ncts; c += workers {
		if c%8 == 0 && ctx.Err() != nil {
			return
		}
		lo, hi := c*N, min((c+1)*N, rows)
		for _, cell := range present {
			slot[cell] = -1
		}
		present = present[:0]
		pure := true
		for row := lo; row < hi; row++ {
			cell := int32(-1)
			if mask == nil || mask[row] {
				g := 0
				if gid != nil {
					g = int(gid[row])
				}
				cell = cellOf[g]
			}
			if cell < 0 {
				pure = false
				continue
			}
			k := slot[cell]
			if k < 0 {
				k = int32(len(present))
				slot[cell] = k
				present = append(present, cell)
				if int(k) == len(polys) {
					polys = append(polys, ringQ.NewPoly())
				} else {
					clear(polys[k].Coeffs[0])
				}
			}
			setSelect(polys[k].Coeffs[0], row-lo, qmod)
		}
		if len(present) == 0 {
			continue
		}
		if pure && len(present) == 1 {
			cell := present[0]
			for qi, name := range r.encQ {
				ct := r.d.cts[name][c]
				if a.pure[qi][cell] == nil {
					a.pure[qi][cell] = ct.CopyNew()
				} else {
					ringQ.Add(a.pure[qi][cell].Value[0], ct.Value[0], a.pure[qi][cell].Value[0])
					ringQ.Add(a.pure[qi][cell].Value[1], ct.Value[1], a.pure[qi][cell].Value[1])
				}
			}
			continue
		}
		for k, cell := range present {
			b := polys[k]
			ringQ.NTT(b, b)
			ringQ.MForm(b, b)
			a.masks++
			for qi, name := range r.encQ {
				ct := r.d.cts[name][c]
				if a.sel[qi][cell] == nil {
					a.sel[qi][cell] = rlwe.NewCiphertext(r.params, 1, 0)
					*a.sel[qi][cell].MetaData = *ct.MetaData
				}
				ringQ.MulCoeffsMontgomeryThenAdd(ct.Value[0], b, a.sel[qi][cell].Value[0])
				ringQ.MulCoeffsMontgomeryThenAdd(ct.Value[1], b, a.sel[qi][cell].Value[1])
			}
		}
	}
}

// merge adds the workers' sums, moves each pure sum's total to coefficient
// 0 with the all-ones selection, and places each cell's quantity at its
// coefficient for Pack.
func (r *heRun) merge(accs []*heAcc, spacing int) map[int]*rlwe.Ciphertext {
	ringQ := r.ringQ
	all := ringQ.NewPoly()
	for row := range r.n {
		setSelect(all.Coeffs[0], row, r.qmod)
	}
	ringQ.NTT(all, all)
	ringQ.MForm(all, all)
	perCell := len(r.encQ) + 1
	packIn := map[int]*rlwe.Ciphertext{}
	for qi := range r.encQ {
		for cell := range r.cells {
			var sel, pure *rlwe.Ciphertext
			for _, a := range accs {
				sel = addInto(ringQ, sel, a.sel[qi][cell])
				pure = addInto(ringQ, pure, a.pure[qi][cell])
			}
			if pure != nil {
				if sel == nil {
					sel = rlwe.NewCiphertext(r.params, 1, 0)
					*sel.MetaData = *pure.MetaData
				}
				ringQ.MulCoeffsMontgomeryThenAdd(pure.Value[0], all, sel.Value[0])
				ringQ.MulCoeffsMontgomeryThenAdd(pure.Value[1], all, sel.Value[1])
			}
			if sel == nil { // an empty cell cannot be released; kept for shape
				continue
			}
			packIn[(cell*perCell+1+qi)*spacing] = sel
		}
	}
	return packIn
}

// hePack packs an he result: the clear count of each released cell (a
// trivial ciphertext at the cell's first position) and the encrypted sums
// in packIn (by coefficient), into one ciphertext, as lay lays it out.
// HEEvaluate and the executor of an he join (HEEvaluateJoin) share it.
func hePack(keys *HEKeys, packIn map[int]*rlwe.Ciphertext, counts []int64, cellOf []int32, lay *HELayout) (*rlwe.Ciphertext, error) {
	params := heparams.Params()
	addCounts(params, packIn, counts, cellOf, len(lay.PerCell)*lay.Spacing)
	return packSums(params, keys, packIn, lay.Spacing)
}

// addCounts puts the released cells' clear counts in as trivial
// ciphertexts (no mask, c1 = 0) at each cell's first coefficient (stride
// apart): the decrypting nodes add their noise to them like to every sum.
func addCounts(params ckks.Parameters, packIn map[int]*rlwe.Ciphertext, counts []int64, cellOf []int32, stride int) {
	ringQ := params.RingQ().AtLevel(0)
	qmod := ringQ.SubRings[0].Modulus
	for g, n := range counts {
		if cellOf[g] < 0 {
			continue
		}
		ct := rlwe.NewCiphertext(params, 1, 0)
		ct.Value[0].Coeffs[0][0] = encodeCoeff(float64(n), qmod)
		ringQ.NTT(ct.Value[0], ct.Value[0])
		ct.IsNTT = true
		ct.Scale = rlwe.NewScale(heScale)
		ct.IsBatched = false
		packIn[int(cellOf[g])*stride] = ct
	}
}

// packSums packs the placed quantities into one ciphertext with the
// Galois keys; with nothing released, the result is a fresh encryption of
// zero.
func packSums(params ckks.Parameters, keys *HEKeys, packIn map[int]*rlwe.Ciphertext, spacing int) (*rlwe.Ciphertext, error) {
	zero := func() (*rlwe.Ciphertext, error) {
		ct := rlwe.NewCiphertext(params, 1, 0)
		if err := rlwe.NewEncryptor(params, keys.PK).EncryptZero(ct); err != nil {
			return nil, err
		}
		ct.Scale = rlwe.NewScale(heScale)
		ct.IsBatched = false
		return ct, nil
	}
	var out *rlwe.Ciphertext
	var err error
	if len(packIn) == 0 { // no released cell: an encryption of zero
		if out, err = zero(); err != nil {
			return nil, err
		}
	} else {
		if len(packIn) == 1 {
			z, err := zero()
			if err != nil {
				return nil, err
			}
			packIn[spacing] = z
		}
		eval := rlwe.NewEvaluator(params, rlwe.NewMemEvaluationKeySet(nil, keys.Galois...))
		if out, err = eval.Pack(packIn, params.LogN(), true); err != nil {
			return nil, fmt.Errorf("sandbox: packing the result: %w", err)
		}
	}
	out.Scale = rlwe.NewScale(heScale)
	out.IsBatched = false
	return out, nil
}

func addInto(r *ring.Ring, dst, src *rlwe.Ciphertext) *rlwe.Ciphertext {
	if src == nil {
		return dst
	}
	if dst == nil {
		return src
	}
	r.Add(dst.Value[0], src.Value[0], dst.Value[0])
	r.Add(dst.Value[1], src.Value[1], dst.Value[1])
	return dst
}

// setSelect sets the coefficient of x(X)·b(X) that carries row i to the
// constant term: Σ b_i x_i is the constant coefficient of x·b̃ with
// b̃ = b_0 − Σ_{i≥1} b_i X^{N−i} (negacyclic ring).
func setSelect(b []uint64, i int, q uint64) {
	if i == 0 {
		b[0] = 1
		return
	}
	b[len(b)-i] = q - 1
}

func canonicalPair(n string, cols []string) string {
	parts := strings.SplitN(strings.TrimPrefix(n, "xy:"), ",", 2)
	if len(parts) != 2 {
		return n
	}
	if slices.Index(cols, parts[0]) > slices.Index(cols, parts[1]) {
		parts[0], parts[1] = parts[1], parts[0]
	}
	return pairName(parts[0], parts[1])
}
