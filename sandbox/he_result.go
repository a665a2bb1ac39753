package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// The requester's side of an he job: decrypt, read the released sums,
// finish the table exactly as masked mode does (finishCell).

// DecryptHEResult opens an he result with the requester's key-file seed
// and fills its rows.
func DecryptHEResult(res *Result, seed []byte) error {
	if res.HE == nil || res.HE.Layout == nil {
		return errors.New("sandbox: not an he result")
	}
	sk, err := heparams.RequesterSecretKey(seed)
	if err != nil {
		return err
	}
	params := heparams.Params()
	ct, err := heparams.UnmarshalCiphertext(params, res.HE.Ciphertext)
	if err != nil {
		return err
	}
	pt := rlwe.NewDecryptor(params, sk).DecryptNew(ct)
	ringQ := params.RingQ().AtLevel(pt.Level())
	if pt.IsNTT {
		ringQ.INTT(pt.Value, pt.Value)
	}
	out, err := decodeHE(res.HE.Layout, pt.Value.Coeffs[0], ringQ.SubRings[0].Modulus, len(res.HE.Active))
	if err != nil {
		return err
	}
	res.Columns, res.Rows, res.Noise, res.TooNoisy = out.Columns, out.Rows, out.Noise, out.TooNoisy
	return nil
}

// DecodeHEResult reads the released quantities from a decrypted result
// polynomial's coefficients and finishes the table.
func DecodeHEResult(lay *HELayout, coeffs []uint64, q uint64) (columns []string, rows [][]any, err error) {
	res, err := decodeHE(lay, coeffs, q, 1)
	if err != nil {
		return nil, nil, err
	}
	return res.Columns, res.Rows, nil
}

// decodeHE is DecodeHEResult with the noise statements: draws is how many
// nodes each added their draw of noise (the result's Active).
func decodeHE(lay *HELayout, coeffs []uint64, q uint64, draws int) (*Result, error) {
	pq, err := ParseQuery(lay.Query)
	if err != nil {
		return nil, err
	}
	if lay.Spacing <= 0 || len(lay.Keys)*len(lay.PerCell)*lay.Spacing > len(coeffs) {
		return nil, fmt.Errorf("sandbox: result layout does not fit the ciphertext")
	}
	var model noiseModel
	var ln HENoise
	if lay.Noise != nil {
		ln = *lay.Noise
		per := float64(max(len(lay.PerCell), 1))
		model = noiseModel{mech: ln.Mechanism, eps: ln.Epsilon / per, delta: ln.Delta / per, draws: draws}
		if model.mech == "" {
			model.mech = "laplace"
		}
		if !(model.eps > 0) {
			return nil, fmt.Errorf("sandbox: he result layout states no epsilon")
		}
	}
	// val is a released quantity of cell g in the data's units (0 when
	// the layout does not carry it).
	val := func(g int, name string) float64 {
		j := slices.Index(lay.PerCell, name)
		if j < 0 && strings.HasPrefix(name, "xy:") {
			a, b, _ := strings.Cut(name[3:], ",")
			j = slices.Index(lay.PerCell, pairName(b, a))
		}
		if j < 0 {
			return 0
		}
		v := decodeCoeff(coeffs[(g*len(lay.PerCell)+j)*lay.Spacing], q)
		kind, cols, _ := strings.Cut(name, ":")
		switch kind {
		case "x":
			return v * lay.Norms[cols]
		case "xx":
			return v * lay.Norms[cols] * lay.Norms[cols]
		case "xy":
			a, b, _ := strings.Cut(cols, ",")
			return v * lay.Norms[a] * lay.Norms[b]
		}
		return v // count
	}
	res := &Result{}
	for _, it := range pq.Select {
		res.Columns = append(res.Columns, label(it))
	}
	vals := make([]any, len(pq.Aggs))
	stmts := make([]*Noise, len(pq.Aggs))
	for g, key := range lay.Keys {
		if len(key) != len(pq.Keys) {
			return nil, fmt.Errorf("sandbox: result layout has %d keys per cell, the query %d", len(key), len(pq.Keys))
		}
		for i, a := range pq.Aggs {
			sums := cellSums{n: val(g, "count")}
			if x := a.Args[0]; x != "*" {
				sums.sa, sums.saa = val(g, "x:"+x), val(g, "xx:"+x)
				if len(a.Args) > 1 {
					y := a.Args[1]
					sums.sb, sums.sbb, sums.sab = val(g, "x:"+y), val(g, "xx:"+y), val(g, pairName(x, y))
				}
			}
			if m := a.Affine; m != nil {
				// Σ(mx+c) = mΣx + cn; Σ(mx+c)² = m²Σx² + 2mcΣx + c²n.
				sums.sa, sums.saa = m.Mul*sums.sa+m.Add*sums.n, m.Mul*m.Mul*sums.saa+2*m.Mul*m.Add*sums.sa+m.Add*m.Add*sums.n
			}
			b := lay.Bounds[a.Args[0]]
			cb := cellBounds{rows: float64(ln.Rows), minN: float64(ln.MinGroupSize)}
			cb.xlo, cb.xhi = a.bounds(b[0], b[1])
			if len(a.Args) > 1 {
				by := lay.Bounds[a.Args[1]]
				cb.ylo, cb.yhi = by[0], by[1]
			}
			// An affine aggregate's sums mix the noise of Σx and of the
			// count in a way release does not model: no statement for it.
			vals[i], stmts[i] = release(a.Func, sums, model, cb, lay.Noise == nil || a.Affine != nil)
		}
		if row, keep := pq.outputRow(vals, key); keep {
			res.TooNoisy += pq.withNoise(&row, stmts, ln.MaxIntervalRatio, vals, key)
			res.Rows = append(res.Rows, row)
		}
	}
	if err := order(res, pq); err != nil {
		return nil, err
	}
	splitNoise(res, lay.Noise != nil)
	res.Rows = pq.window(res.Rows)
	return res, nil
}
