package sandbox

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// In an he join an owner ships its encrypted columns as the ciphertexts
// it holds (under the collective key, N rows a ciphertext, in its row
// order): per column, those of its quantities x:c, xx:c, and xy:c,d (with
// each encrypted column d of the part after c) that the plan's aggregates
// read (join_he.go reads them).

// kindHE is a shipped column of ciphertexts.
const kindHE = "he"

// maxShipQuantities bounds the quantities of one shipped column.
const maxShipQuantities = 16

// ShipmentCT is one encrypted quantity of a shipped column.
type ShipmentCT struct {
	Name string   `json:"name"`
	Cts  [][]byte `json:"cts"`
	// parsed is Cts as ParseShipment read them (checkHECol), for HEPart.
	parsed []*rlwe.Ciphertext
}

// shipQuantities are the quantity names a part ships for its encrypted
// column c, given the part's encrypted columns in schema order.
func shipQuantities(c string, enc []string) []string {
	out := []string{"x:" + c, "xx:" + c}
	i := slices.Index(enc, c)
	for _, d := range enc[i+1:] {
		out = append(out, pairName(c, d))
	}
	return out
}

// heSideColumns are the encrypted columns of a join side: the side's
// columns that the schema's he mode holds encrypted, in schema order.
func heSideColumns(side policies.JoinSide, schema *policies.Schema) []string {
	cols, _ := heColumns(schema, false)
	var out []string
	for _, c := range cols {
		if slices.Contains(side.Columns, c.Name) {
			out = append(out, c.Name)
		}
	}
	return out
}

// ShipHE is Ship for a join in mode he: the side's encrypted columns go as
// the ciphertexts of d (the owner's, under the collective key), the others
// as in masked mode.
func ShipHE(job string, t *Table, side policies.JoinSide, kJob []byte, d *heData, aggs []policies.Aggregate) (*Shipment, error) {
	enc := heSideColumns(side, &t.Schema)
	clearSide := side
	clearSide.Columns = nil
	for _, c := range side.Columns {
		if !slices.Contains(enc, c) {
			clearSide.Columns = append(clearSide.Columns, c)
		}
	}
	s, err := Ship(job, t, clearSide, kJob)
	if err != nil {
		return nil, err
	}
	if d.meta.Rows != int64(t.Rows) {
		return nil, fmt.Errorf("%w: dataset %s: %d rows, %d encrypted", ErrBadData, side.Dataset, t.Rows, d.meta.Rows)
	}
	params := heparams.Params()
	byName := map[string]ShipmentCol{}
	for _, c := range s.Columns {
		byName[c.Name] = c
	}
	var cols []ShipmentCol
	for _, name := range side.Columns {
		if !slices.Contains(enc, name) {
			cols = append(cols, byName[name])
			continue
		}
		sc := ShipmentCol{Name: name, Kind: kindHE, Norm: d.meta.Norms[name]}
		for _, qn := range shipQuantities(name, enc) {
			if !planReads(aggs, side.Dataset, qn) {
				continue
			}
			cts := d.cts[qn]
			if cts == nil {
				return nil, fmt.Errorf("%w: dataset %s holds no quantity %s", ErrBadData, side.Dataset, qn)
			}
			ct := ShipmentCT{Name: qn}
			for _, c := range cts {
				ct.Cts = append(ct.Cts, heparams.MarshalCiphertext(params, c))
			}
			sc.HE = append(sc.HE, ct)
		}
		cols = append(cols, sc)
	}
	s.Columns = cols
	return s, nil
}

// marshalHECol appends a ciphertext column's encoding: kind 3 | norm
// (float64) | quantities (u16), each: name (u16) | ciphertexts (u32), each
// u32 length and bytes.
func marshalHECol(b []byte, c ShipmentCol) ([]byte, error) {
	if len(c.HE) > maxShipQuantities {
		return nil, fmt.Errorf("sandbox: column %s ships %d quantities", c.Name, len(c.HE))
	}
	b = append(b, 3)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.Norm))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(c.HE)))
	for _, q := range c.HE {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(q.Name)))
		b = append(b, q.Name...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(q.Cts)))
		for _, ct := range q.Cts {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(ct)))
			b = append(b, ct...)
		}
	}
	return b, nil
}

// decodeHECol reads what marshalHECol wrote after the kind byte.
func decodeHECol(r *shipReader, c *ShipmentCol) error {
	c.Kind = kindHE
	if v := r.next(8); v != nil {
		c.Norm = math.Float64frombits(binary.LittleEndian.Uint64(v))
	}
	nq := r.u16()
	if r.err == nil && nq > maxShipQuantities {
		return fmt.Errorf("column %q: %d quantities", clipVal(c.Name), nq)
	}
	for range nq {
		q := ShipmentCT{Name: string(r.next(r.u16()))}
		n := r.u32()
		if r.err == nil && n > len(r.b)/4 {
			return fmt.Errorf("column %q: %d ciphertexts in %d bytes", clipVal(c.Name), n, len(r.b))
		}
		for range n {
			q.Cts = append(q.Cts, r.next(r.u32()))
		}
		if r.err != nil {
			return r.err
		}
		c.HE = append(c.HE, q)
	}
	return r.err
}

// checkHECol checks a shipped ciphertext column against the schema: an
// encrypted column of the part, its norm, exactly its quantities, each a
// well-formed ciphertext per N rows.
func checkHECol(c ShipmentCol, meta policies.Column, rows int, enc []string) error {
	if !slices.Contains(enc, c.Name) || heEncryptable(meta) != nil {
		return fmt.Errorf("column %q is not an encrypted column of the schema", c.Name)
	}
	if want := absMax(meta.Bounds[0], meta.Bounds[1]); c.Norm != want {
		return fmt.Errorf("column %q is encrypted with norm %g, the schema's bounds give %g", c.Name, c.Norm, want)
	}
	// Some of its quantities, in their order (those the plan reads: a
	// missing one fails the evaluation).
	want := shipQuantities(c.Name, enc)
	params := heparams.Params()
	n := params.N()
	cts := (rows + n - 1) / n
	next := 0
	for k := range c.HE {
		q := &c.HE[k]
		for next < len(want) && want[next] != q.Name {
			next++
		}
		if next == len(want) {
			return fmt.Errorf("column %q: quantity %q is not one of %v in that order", c.Name, clipVal(q.Name), want)
		}
		next++
		if len(q.Cts) != cts {
			return fmt.Errorf("column %q: %s has %d ciphertexts for %d rows", c.Name, q.Name, len(q.Cts), rows)
		}
		q.parsed = make([]*rlwe.Ciphertext, len(q.Cts))
		for j, ct := range q.Cts {
			var err error
			if q.parsed[j], err = heparams.UnmarshalCiphertext(params, ct); err != nil {
				q.parsed = nil
				return fmt.Errorf("column %q: %s: ciphertext %d: %v", c.Name, q.Name, j, err)
			}
		}
	}
	return nil
}

// HEPart turns a parsed he shipment into the executor's he join input.
func (s *Shipment) HEPart(schema *policies.Schema, maxRows int) (HEJoinPart, error) {
	params := heparams.Params()
	d := &heData{meta: heMeta{Params: heparams.Name, Rows: int64(s.Rows), Norms: map[string]float64{}}, cts: map[string][]*rlwe.Ciphertext{}}
	for _, c := range s.Columns {
		if c.Kind != kindHE {
			continue
		}
		d.meta.Columns = append(d.meta.Columns, c.Name)
		d.meta.Norms[c.Name] = c.Norm
		for _, q := range c.HE {
			if len(q.parsed) == len(q.Cts) { // read by ParseShipment
				d.cts[q.Name] = q.parsed
				continue
			}
			cts := make([]*rlwe.Ciphertext, len(q.Cts))
			for i, b := range q.Cts {
				ct, err := heparams.UnmarshalCiphertext(params, b)
				if err != nil {
					return HEJoinPart{}, fmt.Errorf("%w: %s: %v", ErrBadData, q.Name, err)
				}
				cts[i] = ct
			}
			d.cts[q.Name] = cts
		}
	}
	return HEJoinPart{JoinPart: s.Part(schema, maxRows), HE: d}, nil
}

// planReads reports whether an aggregate of the plan reads quantity qn
// (x:c, xx:c, xy:c,d) of dataset ds's encrypted columns (heNeeds says which
// quantities each aggregate reads).
func planReads(aggs []policies.Aggregate, ds, qn string) bool {
	kind, cols, _ := strings.Cut(qn, ":")
	a, b, pair := strings.Cut(cols, ",")
	for _, ag := range aggs {
		var args []string
		for _, c := range ag.Columns {
			if d, name, ok := strings.Cut(c, "."); ok && d == ds {
				args = append(args, name)
			}
		}
		switch {
		case kind == "x" && slices.Contains(args, a) && ag.Func != "count":
			return true
		case kind == "xx" && slices.Contains(args, a) && slices.Contains([]string{"var", "stddev", "corr", "regr_slope", "regr_intercept"}, ag.Func):
			return true
		case kind == "xy" && pair && slices.Contains(args, a) && slices.Contains(args, b):
			return true
		}
	}
	return false
}
