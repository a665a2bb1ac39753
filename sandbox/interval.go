package sandbox

import (
	"math"
	"sync"

	"github.com/google/differential-privacy/go/v3/noise"
)

// Noise statements on released values.
//
// Every released statistic is computed from noisy sums (the count, Σx,
// Σx², Σxy of its cell); each sum gets independent noise of the policy's
// mechanism with a known scale (the column's bound over the sum's share of
// epsilon). From the mechanism and the bounds alone — never from the data —
// follow:
//
//   - count, SUM and each HISTOGRAM bin: the exact 95% interval of the
//     value's noise around the released value, intersected with what the
//     bounds allow (a count is ≥ 0, a sum of values in [lo, hi] over at
//     most the dataset's rows lies in [rows·min(0,lo), rows·max(0,hi)]);
//   - AVG, VAR, STDDEV, CORR, REGR_*: each noisy sum the value is computed
//     from is given a Bonferroni share of the 5% (97.5% each for AVG's two
//     sums, 1−0.05/6 each for CORR's six), and the value's interval is the
//     set of values those sums' intervals allow (interval arithmetic),
//     intersected with what the bounds allow (an average lies in [lo, hi], a
//     variance in [0, (hi−lo)²/4], a correlation in [−1, 1]). These
//     intervals are conservative: they cover the truth at least 95% of the
//     time.
//
// A released value is the noisy value clamped the same way, so it always
// lies inside its interval. He results are decoded by the requester: their
// noise is the sum of one draw per decrypting node (Noise.Draws); the
// smudging noise of the threshold decryption (σ = 2^26 at scale 2^36, about
// 0.001 of a column's bound) is left out.

// Noise describes the noise on one released value.
type Noise struct {
	Mechanism string `json:"mechanism"` // laplace or gaussian
	// Scale is the noise's scale parameter per draw on each noisy sum the
	// value comes from (Laplace b, or Gaussian σ), in the sum's units:
	// "count", "sum" (Σx), "sum_sq" (Σx²), "sum_y", "sum_sq_y", "sum_xy".
	Scale map[string]float64 `json:"scale"`
	// Draws is how many independent draws each sum got (he mode: one per
	// decrypting node; masked mode: 1).
	Draws int `json:"draws"`
	// CI95 is the 95% interval [low, high]; absent when the noise leaves
	// the value unbounded (a slope whose x variance may be 0).
	CI95 *[2]float64 `json:"ci95,omitempty"`
	// CI95Bins is a HISTOGRAM's interval per bin.
	CI95Bins [][2]float64 `json:"ci95_bins,omitempty"`
	// TooNoisy: the policy's max_interval_ratio suppressed the value.
	TooNoisy bool `json:"too_noisy,omitempty"`
}

// noiseModel is the noise each released sum gets.
type noiseModel struct {
	mech       string  // laplace or gaussian
	eps, delta float64 // per sum
	draws      int     // independent draws per sum
}

// scale is the mechanism's scale parameter for a sum of that sensitivity.
func (m noiseModel) scale(sens float64) float64 {
	if m.mech == "gaussian" {
		return noise.SigmaForGaussian(1, sens, m.eps, m.delta)
	}
	return sens / m.eps
}

// halfWidth is the two-sided quantile at level (e.g. 0.975) of the noise on
// a sum of that sensitivity: P(|noise| > halfWidth) = 1 − level.
func (m noiseModel) halfWidth(sens, level float64) float64 {
	if sens == 0 {
		return 0
	}
	s := m.scale(sens)
	d := max(m.draws, 1)
	if m.mech == "gaussian" {
		return s * math.Sqrt(float64(d)) * math.Sqrt2 * math.Erfinv(level)
	}
	return s * laplaceSumQuantile(d, 1-level)
}

// laplaceSumQuantile returns x with P(|S| > x) = alpha for S the sum of n
// independent Laplace(1) variables. S = G1 − G2 with G1, G2 ~ Gamma(n, 1),
// which gives the closed form
//
//	P(S > x) = e^(−x) Σ_{i<n} Σ_{m≤i} x^(i−m) (n−1+m)! / ((n−1)! m! (i−m)! 2^(n+m))
//
// (n = 1: e^(−x)/2; n = 2: (2+x) e^(−x)/4), solved by bisection. Results
// are kept: a result uses a handful of (n, alpha) pairs.
func laplaceSumQuantile(n int, alpha float64) float64 {
	k := quantileKey{n, alpha}
	if v, ok := quantiles.Load(k); ok {
		return v.(float64)
	}
	v := solveLaplaceSum(n, alpha)
	quantiles.Store(k, v)
	return v
}

type quantileKey struct {
	n     int
	alpha float64
}

var quantiles sync.Map // quantileKey -> float64

func solveLaplaceSum(n int, alpha float64) float64 {
	tail := func(x float64) float64 {
		sum := 0.0
		for i := 0; i < n; i++ {
			for m := 0; m <= i; m++ {
				lg := lgamma(n+m) - lgamma(n) - lgamma(m+1) - lgamma(i-m+1) - float64(n+m)*math.Ln2
				sum += math.Exp(lg) * math.Pow(x, float64(i-m))
			}
		}
		return 2 * math.Exp(-x) * sum
	}
	lo, hi := 0.0, 1.0
	for tail(hi) > alpha {
		hi *= 2
	}
	for range 100 {
		mid := (lo + hi) / 2
		if tail(mid) > alpha {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// lgamma is log((k−1)!).
func lgamma(k int) float64 {
	v, _ := math.Lgamma(float64(k))
	return v
}

// span is a closed interval.
type span struct{ lo, hi float64 }

func around(v, h float64) span { return span{v - h, v + h} }

// clamp intersects the interval with [lo, hi]. When the noise put it wholly
// outside (an unlucky draw, within the 5%), it keeps its width from the
// nearest end instead of shrinking to a point that would look exact.
func (a span) clamp(lo, hi float64) span {
	w := a.hi - a.lo
	switch {
	case a.hi < lo:
		return span{lo, math.Min(lo+w, hi)}
	case a.lo > hi:
		return span{math.Max(hi-w, lo), hi}
	}
	return span{math.Max(a.lo, lo), math.Min(a.hi, hi)}
}

// div is a / b for b > 0 throughout; ok is false when b may be ≤ 0.
func (a span) div(b span) (span, bool) {
	if b.lo <= 0 {
		return span{}, false
	}
	c := []float64{a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi}
	return span{slicesMin(c), slicesMax(c)}, true
}

func (a span) mul(b span) span {
	c := []float64{a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi}
	return span{slicesMin(c), slicesMax(c)}
}

func (a span) sq() span {
	if a.lo <= 0 && a.hi >= 0 {
		return span{0, math.Max(a.lo*a.lo, a.hi*a.hi)}
	}
	return span{math.Min(a.lo*a.lo, a.hi*a.hi), math.Max(a.lo*a.lo, a.hi*a.hi)}
}

func (a span) sub(b span) span { return span{a.lo - b.hi, a.hi - b.lo} }

func slicesMin(c []float64) float64 {
	m := c[0]
	for _, v := range c[1:] {
		m = math.Min(m, v)
	}
	return m
}

func slicesMax(c []float64) float64 {
	m := c[0]
	for _, v := range c[1:] {
		m = math.Max(m, v)
	}
	return m
}

// cellBounds is what the schema and the policy say about a cell, public
// knowledge that clamps values and intervals.
type cellBounds struct {
	xlo, xhi, ylo, yhi float64
	rows               float64 // the dataset's rows: no cell has more
	minN               float64 // a released cell has at least this many rows
}

// sensitivities of the sums of a cell: count, Σa, Σb, Σa², Σb², Σab.
func (b cellBounds) sens() cellSums {
	ax, ay := absMax(b.xlo, b.xhi), absMax(b.ylo, b.yhi)
	return cellSums{n: 1, sa: ax, sb: ay, saa: ax * ax, sbb: ay * ay, sab: ax * ay}
}

// sumsUsed is how many noisy sums an aggregate's value comes from.
// Every aggregate other than moments' multi-sum ones comes from one.
func sumsUsed(fn string) int {
	return max(1, moments(&Agg{Func: fn}))
}

// scales names the scale of each sum an aggregate uses.
func (m noiseModel) scales(fn string, b cellBounds) map[string]float64 {
	s := b.sens()
	out := map[string]float64{}
	put := func(name string, sens float64) { out[name] = round(m.scale(sens)) }
	switch fn {
	case "count", "histogram":
		put("count", 1)
	case "sum":
		put("sum", s.sa)
	case "avg":
		put("count", 1)
		put("sum", s.sa)
	case "var", "stddev":
		put("count", 1)
		put("sum", s.sa)
		put("sum_sq", s.saa)
	default:
		put("count", 1)
		put("sum", s.sa)
		put("sum_y", s.sb)
		put("sum_sq", s.saa)
		put("sum_sq_y", s.sbb)
		put("sum_xy", s.sab)
	}
	return out
}

// release finishes an aggregate's value from its cell's noisy sums,
// clamped into what the bounds allow, with its noise statement.
func release(fn string, s cellSums, m noiseModel, b cellBounds, noiseOff bool) (any, *Noise) {
	v := finishCell(fn, s, b)
	if noiseOff {
		return v, nil
	}
	nz := &Noise{Mechanism: m.mech, Scale: m.scales(fn, b), Draws: max(m.draws, 1)}
	if nz.Mechanism == "" {
		nz.Mechanism = "laplace"
	}
	level := 1 - 0.05/float64(sumsUsed(fn))
	sens := b.sens()
	h := cellSums{n: m.halfWidth(sens.n, level), sa: m.halfWidth(sens.sa, level), sb: m.halfWidth(sens.sb, level),
		saa: m.halfWidth(sens.saa, level), sbb: m.halfWidth(sens.sbb, level), sab: m.halfWidth(sens.sab, level)}
	// The cell's true count is at least minN (smaller cells are
	// suppressed) and at most the dataset's rows.
	n := around(s.n, h.n)
	n.lo = math.Max(n.lo, math.Max(b.minN, 1))
	if b.rows > 0 {
		n.hi = math.Min(n.hi, b.rows)
	}
	n.hi = math.Max(n.hi, n.lo)
	var ci span
	ok := true
	switch fn {
	case "count":
		ci = around(s.n, h.n).clamp(0, math.Inf(1))
		if b.rows > 0 {
			ci = ci.clamp(0, b.rows)
		}
	case "sum":
		ci = around(s.sa, h.sa).clamp(sumRange(b))
	case "avg":
		ci, ok = around(s.sa, h.sa).div(n)
		if !ok {
			ci, ok = span{b.xlo, b.xhi}, true
		}
		ci = ci.clamp(b.xlo, b.xhi)
	case "var", "stddev":
		mean, ok1 := around(s.sa, h.sa).div(n)
		e2, ok2 := around(s.saa, h.saa).div(n)
		maxVar := (b.xhi - b.xlo) * (b.xhi - b.xlo) / 4
		if ok1 && ok2 {
			mean = mean.clamp(b.xlo, b.xhi)
			e2 = e2.clamp(0, math.Max(b.xlo*b.xlo, b.xhi*b.xhi))
			ci = e2.sub(mean.sq()).clamp(0, maxVar)
		} else {
			ci = span{0, maxVar}
		}
		if fn == "stddev" {
			ci = span{math.Sqrt(ci.lo), math.Sqrt(ci.hi)}
		}
	default: // corr, regr_slope, regr_intercept (y = a, x = b)
		ma, ok1 := around(s.sa, h.sa).div(n)
		mb, ok2 := around(s.sb, h.sb).div(n)
		eaa, ok3 := around(s.saa, h.saa).div(n)
		ebb, ok4 := around(s.sbb, h.sbb).div(n)
		eab, ok5 := around(s.sab, h.sab).div(n)
		ok = ok1 && ok2 && ok3 && ok4 && ok5
		if !ok {
			break
		}
		ma, mb = ma.clamp(b.xlo, b.xhi), mb.clamp(b.ylo, b.yhi)
		va := eaa.sub(ma.sq()).clamp(0, (b.xhi-b.xlo)*(b.xhi-b.xlo)/4)
		vb := ebb.sub(mb.sq()).clamp(0, (b.yhi-b.ylo)*(b.yhi-b.ylo)/4)
		cov := eab.sub(ma.mul(mb))
		switch fn {
		case "corr":
			ci = span{-1, 1}
			if r, okr := cov.div(span{math.Sqrt(va.lo * vb.lo), math.Sqrt(va.hi * vb.hi)}); okr {
				ci = r.clamp(-1, 1)
			}
		case "regr_slope":
			ci, ok = cov.div(vb)
		case "regr_intercept":
			var slope span
			if slope, ok = cov.div(vb); ok {
				ci = ma.sub(slope.mul(mb))
			}
		}
	}
	if ok {
		ci = span{round(ci.lo), round(ci.hi)}
		nz.CI95 = &[2]float64{ci.lo, ci.hi}
	}
	return v, nz
}

// sumRange is where a sum of values in [xlo, xhi] over at most rows rows
// lies (unbounded on a side when the rows are not known).
func sumRange(b cellBounds) (float64, float64) {
	lo, hi := math.Inf(-1), math.Inf(1)
	if b.xlo >= 0 {
		lo = 0
	}
	if b.xhi <= 0 {
		hi = 0
	}
	if b.rows > 0 {
		lo, hi = b.rows*math.Min(0, b.xlo), b.rows*math.Max(0, b.xhi)
	}
	return lo, hi
}

// histogramNoise is the statement of a histogram's bins: each bin is a
// count with its own 95% interval.
func histogramNoise(bins []float64, raw []float64, m noiseModel, b cellBounds) *Noise {
	nz := &Noise{Mechanism: m.mech, Scale: m.scales("histogram", b), Draws: max(m.draws, 1)}
	if nz.Mechanism == "" {
		nz.Mechanism = "laplace"
	}
	h := m.halfWidth(1, 0.95)
	for i := range bins {
		ci := around(raw[i], h).clamp(0, math.Inf(1))
		nz.CI95Bins = append(nz.CI95Bins, [2]float64{round(ci.lo), round(ci.hi)})
	}
	return nz
}

// tooNoisy reports whether a value's interval is wider than ratio times
// its magnitude (the policy's max_interval_ratio; 0: never).
func tooNoisy(v any, nz *Noise, ratio float64) bool {
	if ratio <= 0 || nz == nil {
		return false
	}
	x, ok := v.(float64)
	if !ok {
		return nz.CI95 == nil && nz.CI95Bins == nil
	}
	if nz.CI95 == nil {
		return true
	}
	return nz.CI95[1]-nz.CI95[0] > ratio*math.Abs(x)
}

// derivedNoise states the noise of an output column computed from exactly
// one released aggregate (and constants or group keys): SUM(x) * 2,
// ROUND(AVG(x), 1), SQRT(VAR(x)), 100 - AVG(x). Its interval is the image
// of the aggregate's 95% interval under the expression, so it holds the
// expression of the true value whenever the aggregate's interval holds the
// true value: at least 95% of the time. The functions allowed over
// released values are monotone, or change direction only at 0 (ABS,
// POWER), so the image is found from the interval's ends, 0 when inside,
// and interior points; expressions that are not (modulo, CASE,
// comparisons) or that leave their domain inside the interval (a division
// by an interval holding 0) get no statement. So does a column computed
// from several aggregates: how their noises combine is not stated.
func derivedNoise(e Scalar, stmts []*Noise, aggs, keys []any) *Noise {
	ref := -1
	if !singleAgg(e, &ref) || ref < 0 || ref >= len(stmts) || stmts[ref] == nil || stmts[ref].CI95 == nil {
		return nil
	}
	lo, hi := stmts[ref].CI95[0], stmts[ref].CI95[1]
	if math.IsInf(lo, 0) || math.IsInf(hi, 0) || math.IsNaN(lo) || math.IsNaN(hi) || hi < lo {
		return nil
	}
	probe := append([]any(nil), aggs...)
	r := &outRow{aggs: probe, keys: keys}
	at := func(x float64) (float64, bool) {
		probe[ref] = x
		v, ok := e.eval(r).(float64)
		return v, ok && !math.IsNaN(v) && !math.IsInf(v, 0)
	}
	points := []float64{lo, hi}
	if lo < 0 && hi > 0 {
		points = append(points, 0)
	}
	const steps = 32
	for k := 1; k < steps; k++ {
		points = append(points, lo+(hi-lo)*float64(k)/steps)
	}
	first := true
	var min, max float64
	for _, x := range points {
		v, ok := at(x)
		if !ok {
			return nil
		}
		if first || v < min {
			min = v
		}
		if first || v > max {
			max = v
		}
		first = false
	}
	st := *stmts[ref]
	st.CI95 = &[2]float64{min, max}
	st.CI95Bins = nil
	st.TooNoisy = false
	return &st
}

// singleAgg reports whether e is built from at most one aggregate (kept in
// *ref), constants, group keys, arithmetic and the allowed functions whose
// image is found from a few points (see derivedNoise).
func singleAgg(e Scalar, ref *int) bool {
	switch x := e.(type) {
	case Lit, KeyRef:
		return true
	case AggRef:
		if *ref >= 0 && *ref != x.I {
			return false
		}
		*ref = x.I
		return true
	case Op:
		switch x.Op {
		case "+", "-", "*", "/", "^", "neg":
		default:
			return false
		}
		for _, a := range x.Args {
			if !singleAgg(a, ref) {
				return false
			}
		}
		return true
	case Call:
		for _, a := range x.Args {
			if !singleAgg(a, ref) {
				return false
			}
		}
		return true
	}
	return false
}
