package sandbox

// Output control: what a masked query may release of its aggregates
// (minimum cell size, dominance, differential privacy noise and its
// statement) and how the released values become the result's rows. It is
// privacy-critical, so it lives apart from the aggregation kernels
// (agg.go), which only compute the per-group sums it starts from.

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/google/differential-privacy/go/v3/noise"

	"github.com/datasandbox/datasandbox/policies"
)

// moments is how many noisy quantities an aggregate releases per cell.
func moments(a *Agg) int {
	switch a.Func {
	case "count", "sum", "histogram":
		return 1
	case "avg":
		return 2
	case "var", "stddev":
		return 3
	case "corr", "regr_slope", "regr_intercept":
		return 6
	}
	return 0
}

func absMax(lo, hi float64) float64 { return math.Max(math.Abs(lo), math.Abs(hi)) }

// noiser adds the policy's noise with the per-quantity budget.
type noiser struct {
	mech       noise.Noise
	name       string // laplace or gaussian
	eps, delta float64
	off        bool
}

// model describes the noise the noiser adds (interval.go).
func (n noiser) model() noiseModel {
	return noiseModel{mech: n.name, eps: n.eps, delta: n.delta, draws: 1}
}

func (n noiser) add(x, sensitivity float64) (float64, error) {
	if n.off || sensitivity == 0 {
		return x, nil
	}
	return n.mech.AddNoiseFloat64(x, 1, sensitivity, n.eps, n.delta)
}

func label(it Item) string {
	switch {
	case it.Alias != "":
		return it.Alias
	case it.Column != "":
		// A joined dataset's column is labelled by its name, as
		// PostgreSQL does (dataset names hold no dot).
		_, name, ok := strings.Cut(it.Column, ".")
		if ok {
			return name
		}
		return it.Column
	case it.Agg != nil && it.Agg.Affine == nil && it.Agg.Case == nil:
		return it.Agg.Func + "(" + strings.Join(it.Agg.Args, ", ") + ")"
	case it.Agg != nil:
		return it.Agg.String()
	}
	return it.Expr.String()
}

// finish applies output control — threshold, dominance, DP noise — and
// builds the result rows from the released values (the select list and
// HAVING are post-processing of them).
// rows is the dataset's row count (public: on the ledger), which bounds
// every cell's count and sums.
func finish(q *Query, ctl Control, keys [][]any, counts []int64, aggs []*aggState, rows int) (*Result, error) {
	k := 0
	for _, a := range aggs {
		if !(a.public && (a.agg.Func == "min" || a.agg.Func == "max")) {
			k += moments(a.agg)
		}
	}
	if ctl.NoisyThreshold {
		k++ // the threshold's own draw
	}
	nz := noiser{off: ctl.NoNoise || k == 0}
	if !nz.off {
		if !(ctl.Epsilon > 0) {
			return nil, refuse("no privacy budget for this query")
		}
		nz.eps = ctl.Epsilon / float64(k)
		switch ctl.Mechanism {
		case "gaussian":
			nz.mech, nz.name, nz.delta = noise.Gaussian(), "gaussian", ctl.Delta/float64(k)
		default:
			nz.mech, nz.name = noise.Laplace(), "laplace"
		}
	}
	res := &Result{}
	for _, it := range q.Select {
		res.Columns = append(res.Columns, label(it))
	}
	if k > 0 {
		res.EpsilonSpent = ctl.Epsilon
	}
	vals := make([]any, len(aggs))
	stmts := make([]*Noise, len(aggs))
	for g, n := range counts {
		if n == 0 {
			continue
		}
		people := float64(n)
		if ctl.NoisyThreshold {
			// One person is in at most one cell once: sensitivity 1.
			v, err := nz.add(people, 1)
			if err != nil {
				return nil, err
			}
			people = v
		}
		if people < float64(ctl.MinGroupSize) {
			res.Suppressed++
			continue
		}
		if dominated(aggs, g, ctl.Dominance) {
			res.Suppressed++
			continue
		}
		for i, a := range aggs {
			v, st, err := cell(a, g, nz, cellBounds{xlo: a.xlo, xhi: a.xhi, ylo: a.ylo, yhi: a.yhi,
				rows: float64(rows), minN: float64(ctl.MinGroupSize)})
			if err != nil {
				return nil, err
			}
			vals[i], stmts[i] = v, st
		}
		if row, keep := q.outputRow(vals, keys[g]); keep {
			res.TooNoisy += q.withNoise(&row, stmts, ctl.MaxIntervalRatio, vals, keys[g])
			res.Rows = append(res.Rows, row)
		}
	}
	if err := order(res, q); err != nil {
		return nil, err
	}
	splitNoise(res, !nz.off)
	res.Rows = q.window(res.Rows)
	if ctl.NoisyThreshold {
		res.Suppressed = 0
	}
	return res, nil
}

// withNoise appends to an output row, as a last hidden column that rides
// along while the rows are sorted (splitNoise takes it off), the noise
// statement of each output column that is one aggregate, or a function of
// one aggregate (derivedNoise; columns computed from several aggregates
// get none), and withholds the values the policy finds too noisy. It
// returns how many it withheld. aggs and keys are the row's released
// aggregates and group keys.
func (q *Query) withNoise(row *[]any, stmts []*Noise, ratio float64, aggs, keys []any) int {
	out := make([]*Noise, len(q.Select))
	withheld := 0
	for i, it := range q.Select {
		ref, ok := it.Expr.(AggRef)
		if !ok || it.Agg == nil {
			if st := derivedNoise(it.Expr, stmts, aggs, keys); st != nil {
				out[i] = st
			}
			continue
		}
		if ref.I >= len(stmts) || stmts[ref.I] == nil {
			continue
		}
		st := *stmts[ref.I] // a copy: the same aggregate may be several columns
		if tooNoisy((*row)[i], &st, ratio) {
			(*row)[i], st.TooNoisy = nil, true
			withheld++
		}
		out[i] = &st
	}
	*row = append(*row, out)
	return withheld
}

// window drops the sort values ORDER BY added, and applies OFFSET and
// LIMIT.
func (q *Query) window(rows [][]any) [][]any {
	for i, r := range rows {
		rows[i] = r[:len(q.Select):len(q.Select)]
	}
	if q.Offset > 0 {
		rows = rows[min(q.Offset, len(rows)):]
	}
	if q.Limit > 0 && len(rows) > q.Limit {
		rows = rows[:q.Limit]
	}
	if rows == nil {
		rows = [][]any{}
	}
	return rows
}

// dominated applies the (n, k) rule to every SUM or AVG of the row: the n
// largest contributions may not exceed k of the total.
func dominated(aggs []*aggState, g int, d *policies.Dominance) bool {
	if d == nil {
		return false
	}
	for _, a := range aggs {
		if a == nil || a.top == nil {
			continue
		}
		top := 0.0
		for _, v := range a.top[g] {
			top += v
		}
		if total := a.sx[g]; total > 0 && top > d.K*total {
			return true
		}
	}
	return false
}

func round(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// cellSums are the (noisy) sums an aggregate releases for one cell: the
// count, and Σa, Σb, Σa², Σb², Σab of its first (a) and second (b)
// argument. Masked and he mode both finish a cell from these.
type cellSums struct{ n, sa, sb, saa, sbb, sab float64 }

// finishCell computes an aggregate's value from its cell's sums, clamped
// into what the bounds allow (interval.go): a count ≥ 0, a sum within
// sumRange, an average within the first argument's bounds, a variance
// within [0, (hi−lo)²/4], a correlation within [−1, 1].
func finishCell(fn string, s cellSums, b cellBounds) any {
	n := math.Max(s.n, 1)
	lo, hi := b.xlo, b.xhi
	switch fn {
	case "count":
		c := math.Max(0, math.Round(s.n))
		if b.rows > 0 {
			c = math.Min(c, b.rows)
		}
		return c
	case "sum":
		l, h := sumRange(b)
		return round(math.Min(math.Max(s.sa, l), h))
	case "avg":
		return round(math.Min(math.Max(s.sa/n, lo), hi))
	case "var", "stddev":
		m := math.Min(math.Max(s.sa/n, lo), hi)
		v := math.Min(math.Max(0, s.saa/n-m*m), (hi-lo)*(hi-lo)/4)
		if fn == "stddev" {
			v = math.Sqrt(v)
		}
		return round(v)
	}
	// corr(a, b); regr_slope(y=a, x=b), regr_intercept(y=a, x=b), as in SQL.
	m1, m2 := s.sa/n, s.sb/n
	v1 := math.Max(s.saa/n-m1*m1, 0)
	v2 := math.Max(s.sbb/n-m2*m2, 0)
	cov := s.sab/n - m1*m2
	switch {
	case fn == "corr" && v1 > 0 && v2 > 0:
		return round(math.Max(-1, math.Min(1, cov/math.Sqrt(v1*v2))))
	case fn == "regr_slope" && v2 > 0:
		return round(cov / v2)
	case fn == "regr_intercept" && v2 > 0:
		return round(m1 - cov/v2*m2)
	}
	return nil
}

// cell releases one aggregate of cell g: its value, clamped into what the
// bounds allow, and the statement of its noise (nil without noise).
func cell(a *aggState, g int, nz noiser, b cellBounds) (any, *Noise, error) {
	// The noisy sums each aggregate releases, with their sensitivities.
	at := func(xs []float64) float64 { // sums an aggregate does not keep are empty
		if g < len(xs) {
			return xs[g]
		}
		return 0
	}
	raw := []float64{float64(a.n[g]), at(a.sx), at(a.sy), at(a.sxx), at(a.syy), at(a.sxy)}
	sens := []float64{1, absMax(a.xlo, a.xhi), absMax(a.ylo, a.yhi), math.Max(a.xlo*a.xlo, a.xhi*a.xhi), math.Max(a.ylo*a.ylo, a.yhi*a.yhi), absMax(a.xlo, a.xhi) * absMax(a.ylo, a.yhi)}
	var need []int
	switch a.agg.Func {
	case "count":
		need = []int{0}
	case "sum":
		need = []int{1}
	case "avg":
		need = []int{0, 1}
	case "var", "stddev":
		need = []int{0, 1, 3}
	case "corr", "regr_slope", "regr_intercept":
		need = []int{0, 1, 2, 3, 4, 5}
	}
	if need != nil {
		vals := make([]float64, 6)
		for _, i := range need {
			v, err := nz.add(raw[i], sens[i])
			if err != nil {
				return nil, nil, err
			}
			vals[i] = v
		}
		v, st := release(a.agg.Func, cellSums{vals[0], vals[1], vals[2], vals[3], vals[4], vals[5]}, nz.model(), b, nz.off)
		return v, st, nil
	}
	switch a.agg.Func {
	case "histogram":
		out := make([]float64, len(a.hist[g]))
		noisy := make([]float64, len(a.hist[g]))
		for i, c := range a.hist[g] {
			v, err := nz.add(float64(c), 1)
			if err != nil {
				return nil, nil, err
			}
			noisy[i], out[i] = v, math.Max(0, math.Round(v))
		}
		if nz.off {
			return out, nil, nil
		}
		return out, histogramNoise(out, noisy, nz.model(), b), nil
	case "min":
		return a.min[g], nil, nil
	case "max":
		return a.max[g], nil, nil
	}
	return nil, nil, fmt.Errorf("sandbox: unknown aggregate %s", a.agg.Func)
}

// order sorts rows by ORDER BY keys: an output label, a grouping column or
// a 1-based position.
func order(res *Result, q *Query) error {
	if len(q.OrderBy) == 0 {
		return nil
	}
	idx := make([]int, len(q.OrderBy))
	hidden := len(q.Select)
	for i, o := range q.OrderBy {
		idx[i] = -1
		if o.Expr != nil {
			idx[i] = hidden // outputRow put its value after the output columns
			hidden++
			continue
		}
		if n, err := strconv.Atoi(o.Key); err == nil {
			if n < 1 || n > len(res.Columns) {
				return refuse("ORDER BY %d: there are %d output columns", n, len(res.Columns))
			}
			idx[i] = n - 1
			continue
		}
		for c, name := range res.Columns {
			if name == o.Key {
				idx[i] = c
			}
		}
		if idx[i] < 0 {
			return refuse("ORDER BY %s: not an output column", o.Key)
		}
	}
	sort.SliceStable(res.Rows, func(a, b int) bool {
		for i, c := range idx {
			x, y := res.Rows[a][c], res.Rows[b][c]
			cmp := compareAny(x, y)
			if cmp == 0 {
				continue
			}
			if q.OrderBy[i].Desc {
				return cmp > 0
			}
			return cmp < 0
		}
		return false
	})
	return nil
}

func compareAny(x, y any) int {
	fx, okx := x.(float64)
	fy, oky := y.(float64)
	switch {
	case okx && oky:
		switch {
		case fx < fy:
			return -1
		case fx > fy:
			return 1
		}
		return 0
	case okx:
		return -1
	case oky:
		return 1
	}
	return strings.Compare(fmt.Sprint(x), fmt.Sprint(y))
}

// splitNoise moves the noise statements from the rows' hidden last column
// to Result.Noise (kept only when noise was added).
func splitNoise(res *Result, keep bool) {
	for i, row := range res.Rows {
		last := len(row) - 1
		if keep {
			stmts, _ := row[last].([]*Noise)
			res.Noise = append(res.Noise, stmts)
		}
		res.Rows[i] = row[:last]
	}
}
