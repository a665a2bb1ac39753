package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/datasandbox/datasandbox/policies"
)

// MaxShipRows bounds the rows of one shipment the executor accepts.
const MaxShipRows = 1 << 28

// Shipment is what an owner sends the executor for one join job: the
// per-job tag of each row (never a pseudonym or an id) and the plan's
// columns of its dataset, as stored (masked: generalised, clamped to
// bounds, dictionary-coded). Its canonical encoding (Marshal) is what the
// owner's job.flow entry commits the SHA-256 of.
type Shipment struct {
	Job     string        `json:"job"`
	Dataset string        `json:"dataset"`
	Rows    int           `json:"rows"`
	Tags    []byte        `json:"tags"` // Rows × TagSize bytes
	Columns []ShipmentCol `json:"columns"`
}

// ShipmentCol is one shipped column.
type ShipmentCol struct {
	Name  string    `json:"name"`
	Kind  string    `json:"kind"`
	Num   []float64 `json:"num,omitempty"`
	Codes []uint32  `json:"codes,omitempty"`
	Dict  []string  `json:"dict,omitempty"`
	// Norm and HE: a column shipped as ciphertexts (he joins, ship_he.go).
	Norm float64      `json:"norm,omitempty"`
	HE   []ShipmentCT `json:"he,omitempty"`
}

// Ship builds the owner's shipment of table t for the join side: the tags
// of the rows' consortium pseudonyms under kJob, and exactly the side's
// columns.
func Ship(job string, t *Table, side policies.JoinSide, kJob []byte) (*Shipment, error) {
	key, ok := t.Cols[side.Key]
	if !ok || key.Kind != kindPseudo || key.Meta.Pseudonym != policies.PseudonymConsortium {
		return nil, fmt.Errorf("%w: dataset %s: %q is not a column of consortium pseudonyms", ErrRefused, side.Dataset, side.Key)
	}
	ps := len(key.Pseudo) / t.Rows
	if t.Rows == 0 {
		ps = 0
	}
	if t.Rows > 0 && (ps == 0 || len(key.Pseudo) != ps*t.Rows) {
		return nil, fmt.Errorf("%w: dataset %s: column %s holds %d bytes for %d rows", ErrBadData, side.Dataset, side.Key, len(key.Pseudo), t.Rows)
	}
	s := &Shipment{Job: job, Dataset: side.Dataset, Rows: t.Rows, Tags: make([]byte, t.Rows*TagSize), Columns: []ShipmentCol{}}
	var wg sync.WaitGroup
	for _, r := range chunks(t.Rows) { // tagged in parallel ranges
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := hmac.New(sha256.New, kJob)
			for i := r[0]; i < r[1]; i++ {
				tag := tagWith(mac, key.Pseudo[i*ps:(i+1)*ps])
				copy(s.Tags[i*TagSize:], tag[:])
			}
		}()
	}
	wg.Wait()
	for _, name := range side.Columns {
		c, ok := t.Cols[name]
		if !ok {
			return nil, fmt.Errorf("%w: dataset %s has no column %q", ErrRefused, side.Dataset, name)
		}
		if c.Meta.Class == policies.Identifier {
			return nil, fmt.Errorf("%w: identifier column %s.%s is never shipped", ErrRefused, side.Dataset, name)
		}
		s.Columns = append(s.Columns, ShipmentCol{Name: name, Kind: c.Kind, Num: c.Num, Codes: c.Codes, Dict: c.Dict})
	}
	return s, nil
}

// shipMagic starts an encoded shipment (version 1).
var shipMagic = []byte("DSJ1")

// Marshal is the shipment's canonical encoding: binary, little-endian,
// lengths before contents. magic | job (u16 length) | dataset (u16) |
// rows (u32) | rows × 16-byte tags | columns (u16), each: name (u16) |
// kind (u8: 1 num, 2 dict) | num: rows × float64 | dict: entries (u32),
// each u32 length and bytes, then rows × u32 codes.
func (s *Shipment) Marshal() ([]byte, error) {
	if s.Rows < 0 || s.Rows > MaxShipRows || len(s.Tags) != s.Rows*TagSize || len(s.Job) > math.MaxUint16 || len(s.Dataset) > math.MaxUint16 || len(s.Columns) > math.MaxUint16 {
		return nil, fmt.Errorf("sandbox: shipment out of shape")
	}
	size := len(shipMagic) + 8 + len(s.Job) + len(s.Dataset) + len(s.Tags)
	for _, c := range s.Columns {
		size += 3 + len(c.Name) + 8*len(c.Num) + 4*len(c.Codes) + 4
		for _, q := range c.HE {
			for _, ct := range q.Cts {
				size += 4 + len(ct)
			}
		}
		for _, d := range c.Dict {
			size += 4 + len(d)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, shipMagic...)
	str16 := func(v string) {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	str16(s.Job)
	str16(s.Dataset)
	b = binary.LittleEndian.AppendUint32(b, uint32(s.Rows))
	b = append(b, s.Tags...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s.Columns)))
	for _, c := range s.Columns {
		if len(c.Name) > math.MaxUint16 {
			return nil, fmt.Errorf("sandbox: shipment column name too long")
		}
		str16(c.Name)
		switch c.Kind {
		case kindNum:
			if len(c.Num) != s.Rows {
				return nil, fmt.Errorf("sandbox: column %s has %d values for %d rows", c.Name, len(c.Num), s.Rows)
			}
			b = appendNumCol(b, c)
		case kindDict:
			if len(c.Codes) != s.Rows {
				return nil, fmt.Errorf("sandbox: column %s has %d codes for %d rows", c.Name, len(c.Codes), s.Rows)
			}
			b = appendDictCol(b, c)
		case kindHE:
			var err error
			if b, err = marshalHECol(b, c); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("sandbox: column %s of kind %s is never shipped", c.Name, c.Kind)
		}
	}
	return b, nil
}

// appendNumCol appends a numeric column's body, unchecked: Marshal checks
// its shape first.
func appendNumCol(b []byte, c ShipmentCol) []byte {
	b = append(b, 1)
	for _, v := range c.Num {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// appendDictCol appends a dictionary column's body, unchecked: Marshal
// checks its shape first.
func appendDictCol(b []byte, c ShipmentCol) []byte {
	b = append(b, 2)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.Dict)))
	for _, d := range c.Dict {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(d)))
		b = append(b, d...)
	}
	for _, code := range c.Codes {
		b = binary.LittleEndian.AppendUint32(b, code)
	}
	return b
}

// shipReader reads an encoded shipment; the first short read sticks.
type shipReader struct {
	b   []byte
	err error
}

func (r *shipReader) next(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		if r.err == nil {
			r.err = fmt.Errorf("truncated")
		}
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *shipReader) u16() int {
	if v := r.next(2); v != nil {
		return int(binary.LittleEndian.Uint16(v))
	}
	return 0
}

func (r *shipReader) u32() int {
	if v := r.next(4); v != nil {
		return int(binary.LittleEndian.Uint32(v))
	}
	return 0
}

// decodeShipment reads the encoding Marshal writes, refusing anything
// else (sizes are checked against what is left before allocating).
func decodeShipment(b []byte) (*Shipment, error) {
	r := &shipReader{b: b}
	if m := r.next(len(shipMagic)); r.err != nil || !bytes.Equal(m, shipMagic) {
		return nil, fmt.Errorf("not a shipment (bad magic)")
	}
	s := &Shipment{}
	s.Job = string(r.next(r.u16()))
	s.Dataset = string(r.next(r.u16()))
	s.Rows = r.u32()
	if r.err == nil && (s.Rows > MaxShipRows || s.Rows*TagSize > len(r.b)) {
		return nil, fmt.Errorf("%d rows in %d bytes", s.Rows, len(b))
	}
	s.Tags = r.next(s.Rows * TagSize)
	ncols := r.u16()
	for range ncols {
		if r.err != nil {
			break
		}
		c := ShipmentCol{Name: string(r.next(r.u16()))}
		kind := r.next(1)
		if r.err != nil {
			break
		}
		switch kind[0] {
		case 1:
			c.Kind = kindNum
			raw := r.next(8 * s.Rows)
			if r.err != nil {
				break
			}
			c.Num = make([]float64, s.Rows)
			for i := range c.Num {
				c.Num[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
			}
		case 2:
			c.Kind = kindDict
			n := r.u32()
			if r.err == nil && n > len(r.b)/4 {
				return nil, fmt.Errorf("column %q: %d dictionary entries in %d bytes", clipVal(c.Name), n, len(r.b))
			}
			for range n {
				c.Dict = append(c.Dict, string(r.next(r.u32())))
			}
			raw := r.next(4 * s.Rows)
			if r.err != nil {
				break
			}
			c.Codes = make([]uint32, s.Rows)
			for i := range c.Codes {
				c.Codes[i] = binary.LittleEndian.Uint32(raw[4*i:])
			}
		case 3:
			if err := decodeHECol(r, &c); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("column %q: unknown kind %d", clipVal(c.Name), kind[0])
		}
		s.Columns = append(s.Columns, c)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if s.Columns == nil {
		s.Columns = []ShipmentCol{}
	}
	return s, nil
}

// ShipmentDigest is the hex SHA-256 of an encoded shipment.
func ShipmentDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ParseShipment reads a shipment from untrusted bytes for the join side
// of job, against the dataset's schema: the bytes must hash to digest
// (what the owner committed in job.flow), name the job and dataset, hold
// a tag per row and exactly the side's columns, each of its schema's kind,
// with codes inside their dictionary and numbers inside the column's
// bounds.
func ParseShipment(b []byte, digest, job string, side policies.JoinSide, schema *policies.Schema) (*Shipment, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: shipment of %s for %s: %s", ErrBadData, side.Dataset, job, fmt.Sprintf(format, a...))
	}
	if got := ShipmentDigest(b); got != digest {
		return nil, bad("sha256 %s is not the %s committed on the ledger", got, digest)
	}
	s, err := decodeShipment(b)
	if err != nil {
		return nil, bad("%v", err)
	}
	switch {
	case s.Job != job || s.Dataset != side.Dataset:
		return nil, bad("it names job %q, dataset %q", clipVal(s.Job), clipVal(s.Dataset))
	case s.Rows < 0 || s.Rows > MaxShipRows:
		return nil, bad("%d rows (limit %d)", s.Rows, MaxShipRows)
	case len(s.Tags) != s.Rows*TagSize:
		return nil, bad("%d tag bytes for %d rows", len(s.Tags), s.Rows)
	case len(s.Columns) != len(side.Columns):
		return nil, bad("%d columns, the plan ships %d", len(s.Columns), len(side.Columns))
	}
	enc := heSideColumns(side, schema)
	for i, c := range s.Columns {
		if c.Name != side.Columns[i] {
			return nil, bad("column %d is %q, the plan ships %q", i, clipVal(c.Name), side.Columns[i])
		}
		meta, ok := schema.Column(c.Name)
		if ok && c.Kind == kindHE {
			if err := checkHECol(c, meta, s.Rows, enc); err != nil {
				return nil, bad("%v", err)
			}
			continue
		}
		if !ok || meta.Class == policies.Identifier || columnKind(meta) != c.Kind {
			return nil, bad("column %q is not a shippable %s column of the schema", c.Name, clipVal(c.Kind))
		}
		switch c.Kind {
		case kindNum:
			if len(c.Num) != s.Rows || len(c.Codes) != 0 {
				return nil, bad("column %q holds %d numbers for %d rows", c.Name, len(c.Num), s.Rows)
			}
			for _, v := range c.Num {
				if math.IsNaN(v) || math.IsInf(v, 0) || (len(meta.Bounds) == 2 && (v < meta.Bounds[0] || v > meta.Bounds[1])) {
					return nil, bad("column %q holds a value outside its bounds", c.Name)
				}
			}
		case kindDict:
			if len(c.Codes) != s.Rows || len(c.Num) != 0 || len(c.Dict) > s.Rows+1 {
				return nil, bad("column %q holds %d codes for %d rows", c.Name, len(c.Codes), s.Rows)
			}
			for _, code := range c.Codes {
				if int(code) >= len(c.Dict) {
					return nil, bad("column %q holds a code outside its dictionary", c.Name)
				}
			}
		}
	}
	return s, nil
}

// Part turns a parsed shipment into the executor's join input, under the
// dataset's schema and its policy's bound on rows per person.
func (s *Shipment) Part(schema *policies.Schema, maxRows int) JoinPart {
	t := &Table{Rows: s.Rows, Schema: *schema, Cols: map[string]*Column{}}
	for _, c := range s.Columns {
		if c.Kind == kindHE {
			continue // HEPart holds its ciphertexts
		}
		meta, _ := schema.Column(c.Name)
		t.Cols[c.Name] = &Column{Meta: meta, Kind: c.Kind, Num: c.Num, Codes: c.Codes, Dict: slices.Clone(c.Dict)}
	}
	tags := make([][TagSize]byte, s.Rows)
	for i := range tags {
		copy(tags[i][:], s.Tags[i*TagSize:])
	}
	return JoinPart{Dataset: s.Dataset, Tags: tags, Table: t, MaxRows: maxRows}
}
