package sandbox

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/datasandbox/datasandbox/policies"
)

// aggState holds one aggregate's per-group moments.
type aggState struct {
	agg          *Agg
	n            []int64
	sx, sxx      []float64
	sy, syy, sxy []float64
	hist         [][]int64
	top          [][]float64 // dominance: the n largest contributions
	min, max     []float64
	xlo, xhi     float64
	ylo, yhi     float64
	hasX, hasY   bool
	public       bool // min/max of public data: no noise
}

func newAggState(a *Agg, groups int) *aggState {
	s := &aggState{agg: a, n: make([]int64, groups)}
	return s
}

func (s *aggState) alloc(groups int, dom *policies.Dominance) {
	switch s.agg.Func {
	case "sum", "avg", "var", "stddev":
		s.sx, s.sxx = make([]float64, groups), make([]float64, groups)
		if dom != nil && (s.agg.Func == "sum" || s.agg.Func == "avg") {
			s.top = make([][]float64, groups)
		}
	case "corr", "regr_slope", "regr_intercept":
		s.sx, s.sxx = make([]float64, groups), make([]float64, groups)
		s.sy, s.syy, s.sxy = make([]float64, groups), make([]float64, groups), make([]float64, groups)
	case "histogram":
		s.hist = make([][]int64, groups)
		for g := range s.hist {
			s.hist[g] = make([]int64, int(s.agg.Params[2]))
		}
	case "min", "max":
		s.min, s.max = make([]float64, groups), make([]float64, groups)
		for g := range s.min {
			s.min[g], s.max[g] = math.Inf(1), math.Inf(-1)
		}
	}
}

func (s *aggState) merge(o *aggState) {
	for g := range s.n {
		s.n[g] += o.n[g]
		if s.sx != nil {
			s.sx[g] += o.sx[g]
			s.sxx[g] += o.sxx[g]
		}
		if s.sy != nil {
			s.sy[g] += o.sy[g]
			s.syy[g] += o.syy[g]
			s.sxy[g] += o.sxy[g]
		}
		if s.hist != nil {
			for b := range s.hist[g] {
				s.hist[g][b] += o.hist[g][b]
			}
		}
		if s.min != nil {
			s.min[g] = math.Min(s.min[g], o.min[g])
			s.max[g] = math.Max(s.max[g], o.max[g])
		}
		if s.top != nil {
			for _, v := range o.top[g] {
				s.top[g] = pushTop(s.top[g], v, cap(s.top[g]))
			}
		}
	}
}

// pushTop keeps the k largest values, largest first.
func pushTop(top []float64, v float64, k int) []float64 {
	if len(top) < k {
		top = append(top, v)
	} else if v <= top[len(top)-1] {
		return top
	} else {
		top[len(top)-1] = v
	}
	for i := len(top) - 1; i > 0 && top[i] > top[i-1]; i-- {
		top[i], top[i-1] = top[i-1], top[i]
	}
	return top
}

func computeAgg(ctx context.Context, t *Table, a *Agg, mask []bool, gid []uint32, groups int, dom *policies.Dominance) (*aggState, error) {
	return computeAggCounted(ctx, t, a, mask, gid, groups, dom, nil)
}

// computeAggCounted is computeAgg given the selected rows' count per group
// (nil if not known), which a COUNT without CASE releases as it is rather
// than counting the rows again.
func computeAggCounted(ctx context.Context, t *Table, a *Agg, mask []bool, gid []uint32, groups int, dom *policies.Dominance, counts []int64) (*aggState, error) {
	st := newAggState(a, groups)
	if len(a.Args) > 0 && a.Args[0] != "*" {
		c := t.Cols[a.Args[0]]
		if len(c.Meta.Bounds) == 2 {
			st.xlo, st.xhi = a.bounds(c.Meta.Bounds[0], c.Meta.Bounds[1])
			st.hasX = true
		}
		st.public = c.Meta.Class == policies.Public
	}
	if len(a.Args) > 1 {
		c := t.Cols[a.Args[1]]
		if len(c.Meta.Bounds) == 2 {
			st.ylo, st.yhi, st.hasY = c.Meta.Bounds[0], c.Meta.Bounds[1], true
		}
	}
	xs, ys, mask, err := aggValues(t, a, mask)
	if err != nil {
		return nil, err
	}
	if a.Func != "count" && a.Func != "min" && a.Func != "max" && xs == nil {
		return nil, refuse("%s needs a numeric column", a.Func)
	}
	if (a.Func == "min" || a.Func == "max") && xs == nil {
		return nil, refuse("%s needs a numeric public column", strings.ToUpper(a.Func))
	}
	if a.Func == "count" && a.Case == nil && len(counts) == groups {
		// COUNT reads the query's selection, which counts counted.
		copy(st.n, counts)
		return st, ctx.Err()
	}
	k := 0
	if dom != nil {
		k = dom.N
	}
	parts := chunks(t.Rows)
	res := make([]*aggState, len(parts))
	var wg sync.WaitGroup
	for p, r := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newAggState(a, groups)
			s.alloc(groups, dom)
			if s.top != nil {
				for g := range s.top {
					s.top[g] = make([]float64, 0, k)
				}
			}
			accumulate(s, r[0], r[1], mask, gid, xs, ys)
			res[p] = s
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st.alloc(groups, dom)
	if st.top != nil {
		for g := range st.top {
			st.top[g] = make([]float64, 0, k)
		}
	}
	for _, s := range res {
		st.merge(s)
	}
	return st, nil
}

// aggValues is what an aggregate reads row by row: its first argument's
// values (after its affine map or CASE), its second's, and the rows it
// reads (the query's selection less a CASE's NULLs). COUNT reads no
// values.
func aggValues(t *Table, a *Agg, mask []bool) (xs, ys []float64, m []bool, err error) {
	if len(a.Args) > 0 && a.Args[0] != "*" {
		xs = t.Cols[a.Args[0]].Num
		if a.Affine != nil && xs != nil {
			// a*x+b: the ingested values are clamped to the column's
			// bounds, so the transformed ones lie in the transformed bounds.
			tx := make([]float64, len(xs))
			for i, x := range xs {
				tx[i] = x*a.Affine.Mul + a.Affine.Add
			}
			xs = tx
		}
	}
	if len(a.Args) > 1 {
		ys = t.Cols[a.Args[1]].Num
	}
	if a.Case != nil {
		if xs, mask, err = caseValues(t, a.Case, xs, mask); err != nil {
			return nil, nil, nil, err
		}
	}
	if a.Func == "count" {
		xs, ys = nil, nil // COUNT(col) counts rows: columns hold no NULLs
	}
	return xs, ys, mask, nil
}

// caseValues evaluates a conditional aggregate's argument row by row over
// the column's values xs (nil for a column that is not numeric, which only
// COUNT reads): the values, and the rows the aggregate reads — the query's
// selection less the rows whose value is NULL.
func caseValues(t *Table, c *AggCase, xs []float64, mask []bool) ([]float64, []bool, error) {
	conds := make([][]bool, len(c.Whens))
	for i, w := range c.Whens {
		m, err := evalWhere(t, w.Cond)
		if err != nil {
			return nil, nil, err
		}
		conds[i] = m
	}
	vals := c.values()
	out := make([]float64, t.Rows)
	sel := make([]bool, t.Rows)
	for row := range t.Rows {
		if mask != nil && !mask[row] {
			continue
		}
		b := len(c.Whens)
		for i, m := range conds {
			if m[row] {
				b = i
				break
			}
		}
		switch v := vals[b]; {
		case v.Value.Null && !v.Column:
			continue
		case v.Column && xs != nil:
			out[row] = xs[row]*v.Affine.Mul + v.Affine.Add
		case !v.Column:
			out[row] = v.Value.Num
		}
		sel[row] = true
	}
	return out, sel, nil
}

// accumulate is the hot loop: one pass over rows [lo, hi).
func accumulate(s *aggState, lo, hi int, mask []bool, gid []uint32, xs, ys []float64) {
	if mask == nil && gid != nil && xs != nil && ys == nil && s.hist == nil && s.min == nil && s.top == nil {
		accumulateSums(s.n, s.sx, s.sxx, gid[lo:hi], xs[lo:hi])
		return
	}
	for i := lo; i < hi; i++ {
		if mask != nil && !mask[i] {
			continue
		}
		g := 0
		if gid != nil {
			g = int(gid[i])
		}
		s.n[g]++
		if xs == nil {
			continue
		}
		x := xs[i]
		switch {
		case s.hist != nil:
			p := s.agg.Params
			if x >= p[0] && x < p[1] {
				b := int((x - p[0]) / (p[1] - p[0]) * p[2])
				s.hist[g][min(b, len(s.hist[g])-1)]++
			}
		case s.min != nil:
			s.min[g] = math.Min(s.min[g], x)
			s.max[g] = math.Max(s.max[g], x)
		default:
			s.sx[g] += x
			s.sxx[g] += x * x
			if s.top != nil {
				s.top[g] = pushTop(s.top[g], x, cap(s.top[g]))
			}
			if ys != nil {
				y := ys[i]
				s.sy[g] += y
				s.syy[g] += y * y
				s.sxy[g] += x * y
			}
		}
	}
}

// accumulateSums is accumulate's common case as a columnar loop: every
// row selected, grouped, one argument, sums only (SUM, AVG, VAR, STDDEV
// without dominance). It adds in the same order as accumulate.
func accumulateSums(n []int64, sx, sxx []float64, gid []uint32, xs []float64) {
	xs = xs[:len(gid)]
	for i, g := range gid {
		x := xs[i]
		n[g]++
		sx[g] += x
		sxx[g] += x * x
	}
}

func keyValue(t *Table, col, v string) any {
	c := t.Cols[col]
	if c.Meta.Type == policies.TypeInt || c.Meta.Type == policies.TypeFloat {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return v
}
