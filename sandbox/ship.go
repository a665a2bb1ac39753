package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/zeebo/blake3"
)

// MaxShipRows bounds the rows of one shipment the executor accepts.
const MaxShipRows = 1 << 28

// Shipment is what an owner sends the executor for one join job: the
// per-job tag of each row (never a pseudonym or an id) and the plan's
// columns of its dataset, as stored (masked: generalised, clamped to
// bounds, dictionary-coded). Its canonical encoding (Marshal) is what the
// owner's job.flow entry commits the BLAKE3 digest of.
type Shipment struct {
	Job     string        `json:"job"`
	Dataset string        `json:"dataset"`
	Rows    int           `json:"rows"`
	Tags    []byte        `json:"tags"` // Rows × TagSize bytes
	Columns []ShipmentCol `json:"columns"`
	// untagged, when set, computes Tags as Marshal writes them.
	untagged *untagged
	// counts is the partitions' counts of Tags, per range of rows, as
	// ParseShipment read them (partition).
	counts [][]int32
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
	s, err := shipUntagged(job, t, side, kJob)
	if err != nil {
		return nil, err
	}
	s.Tags = make([]byte, t.Rows*TagSize)
	var wg sync.WaitGroup
	for _, r := range chunks(t.Rows) { // tagged in parallel ranges
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.untagged.tg.tags(s.Tags[r[0]*TagSize:r[1]*TagSize], s.untagged.pseudo[r[0]*PseudonymSize:r[1]*PseudonymSize])
		}()
	}
	wg.Wait()
	s.untagged = nil
	return s, nil
}

// untagged is what a shipment's tags are computed from, when Marshal
// computes them.
type untagged struct {
	tg     tagger
	pseudo []byte // PseudonymSize bytes per row
}

// encode computes the tags into dst, the end of e.b, and hashes them as
// they come: a goroutine tags blocks a few ahead of the hashing, so the
// two run at once on two cores and each block is hashed while in cache.
func (u *untagged) encode(e *encoder, dst []byte) {
	step := hashStep / TagSize * TagSize
	done := make(chan int, 4) // blocks tagged, not yet hashed
	go func() {
		defer close(done)
		for off := 0; off < len(dst); off += step {
			end := min(off+step, len(dst))
			u.tg.tags(dst[off:end], u.pseudo[off/TagSize*PseudonymSize:end/TagSize*PseudonymSize])
			done <- end
		}
	}()
	base := len(e.b) - len(dst)
	for end := range done {
		e.hashTo(base + end)
	}
}

// shipUntagged is Ship without its tags: s.untagged computes them.
func shipUntagged(job string, t *Table, side policies.JoinSide, kJob []byte) (*Shipment, error) {
	key, ok := t.Cols[side.Key]
	if !ok || key.Kind != kindPseudo || key.Meta.Pseudonym != policies.PseudonymConsortium {
		return nil, fmt.Errorf("%w: dataset %s: %q is not a column of consortium pseudonyms", ErrRefused, side.Dataset, side.Key)
	}
	if len(key.Pseudo) != PseudonymSize*t.Rows {
		return nil, fmt.Errorf("%w: dataset %s: column %s holds %d bytes for %d rows", ErrBadData, side.Dataset, side.Key, len(key.Pseudo), t.Rows)
	}
	s := &Shipment{Job: job, Dataset: side.Dataset, Rows: t.Rows, Columns: []ShipmentCol{}}
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
	tg, err := newTagger(kJob)
	if err != nil {
		return nil, err
	}
	s.untagged = &untagged{tg: tg, pseudo: key.Pseudo}
	return s, nil
}

// shipMagic starts an encoded shipment (version 2: 12-byte tags,
// dictionary codes as narrow as the dictionary allows).
var shipMagic = []byte("DSJ2")

// Marshal is the shipment's canonical encoding: binary, little-endian,
// lengths before contents. magic | job (u16 length) | dataset (u16) |
// rows (u32) | rows × TagSize-byte tags | columns (u16), each: name (u16)
// | kind (u8: 1 num, 2 dict, 3 ciphertexts) | num: rows × float64 | dict:
// entries (u32), each u32 length and bytes, then the codes' width in bytes
// (u8: codeWidth of the entries, so one encoding per shipment) and rows
// codes of that width.
func (s *Shipment) Marshal() ([]byte, error) {
	e, err := s.marshal(nil)
	if err != nil {
		return nil, err
	}
	return e.b, nil
}

// MarshalDigest is Marshal and ShipmentDigest of its bytes, hashed as
// they are written (while they are in cache).
func (s *Shipment) MarshalDigest() ([]byte, string, error) {
	e, err := s.marshal(blake3.New())
	if err != nil {
		return nil, "", err
	}
	return e.b, hex.EncodeToString(e.h.Sum(nil)), nil
}

func (s *Shipment) marshal(h hash.Hash) (*encoder, error) {
	tagBytes := len(s.Tags)
	if s.untagged != nil && s.Tags == nil && len(s.untagged.pseudo) == s.Rows*PseudonymSize {
		tagBytes = s.Rows * TagSize
	}
	if s.Rows < 0 || s.Rows > MaxShipRows || tagBytes != s.Rows*TagSize || len(s.Job) > math.MaxUint16 || len(s.Dataset) > math.MaxUint16 || len(s.Columns) > math.MaxUint16 {
		return nil, fmt.Errorf("sandbox: shipment out of shape")
	}
	// The encoding's exact size, so that it is written without a copy.
	size := len(shipMagic) + 2 + len(s.Job) + 2 + len(s.Dataset) + 4 + tagBytes + 2
	for _, c := range s.Columns {
		size += 2 + len(c.Name) + 1
		switch c.Kind {
		case kindNum:
			size += 8 * len(c.Num)
		case kindDict:
			size += 4 + 1 + codeWidth(len(c.Dict))*len(c.Codes)
			for _, d := range c.Dict {
				size += 4 + len(d)
			}
		case kindHE:
			size += 8 + 2
			for _, q := range c.HE {
				size += 2 + len(q.Name) + 4
				for _, ct := range q.Cts {
					size += 4 + len(ct)
				}
			}
		}
	}
	e := &encoder{b: make([]byte, 0, size), h: h}
	e.b = append(e.b, shipMagic...)
	str16 := func(v string) {
		e.b = binary.LittleEndian.AppendUint16(e.b, uint16(len(v)))
		e.b = append(e.b, v...)
	}
	str16(s.Job)
	str16(s.Dataset)
	e.b = binary.LittleEndian.AppendUint32(e.b, uint32(s.Rows))
	if s.Tags != nil {
		for off := 0; off < tagBytes; off += hashStep {
			e.b = append(e.b, s.Tags[off:min(off+hashStep, tagBytes)]...)
			e.flush()
		}
	} else {
		e.b = e.b[:len(e.b)+tagBytes]
		s.untagged.encode(e, e.b[len(e.b)-tagBytes:])
	}
	e.b = binary.LittleEndian.AppendUint16(e.b, uint16(len(s.Columns)))
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
			appendNumCol(e, c)
		case kindDict:
			if len(c.Codes) != s.Rows {
				return nil, fmt.Errorf("sandbox: column %s has %d codes for %d rows", c.Name, len(c.Codes), s.Rows)
			}
			if w := codeWidth(len(c.Dict)); w < 4 && slices.ContainsFunc(c.Codes, func(v uint32) bool { return v>>(8*w) != 0 }) {
				return nil, fmt.Errorf("sandbox: column %s has a code wider than its dictionary", c.Name)
			}
			appendDictCol(e, c)
		case kindHE:
			var err error
			if e.b, err = marshalHECol(e.b, c); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("sandbox: column %s of kind %s is never shipped", c.Name, c.Kind)
		}
	}
	e.flushAll()
	return e, nil
}

// hashStep is how many bytes an encoder writes between two hash updates
// (or a decoder reads): little enough to be hashed from cache.
const hashStep = 64 << 10

// encoder appends a shipment's encoding to b, and, when h is not nil,
// hashes it as it goes.
type encoder struct {
	b    []byte
	h    hash.Hash
	done int // bytes hashed
}

// flush hashes what was written since the last hash update, once that is
// hashStep bytes.
func (e *encoder) flush() {
	if len(e.b)-e.done >= hashStep {
		e.flushAll()
	}
}

// hashTo hashes e.b up to byte end.
func (e *encoder) hashTo(end int) {
	if e.h != nil {
		e.h.Write(e.b[e.done:end])
	}
	e.done = end
}

func (e *encoder) flushAll() {
	if e.h != nil {
		e.h.Write(e.b[e.done:])
	}
	e.done = len(e.b)
}

// appendNumCol appends a numeric column's body, unchecked: Marshal checks
// its shape first.
func appendNumCol(e *encoder, c ShipmentCol) {
	e.b = append(e.b, 1)
	for vs := c.Num; len(vs) > 0; { // a hashing step at a time
		n := min(len(vs), hashStep/8)
		out := e.grow(8 * n)
		for i, v := range vs[:n] {
			binary.LittleEndian.PutUint64(out[8*i:8*i+8], math.Float64bits(v))
		}
		vs = vs[n:]
		e.flush()
	}
}

// grow appends n bytes to e.b (within its capacity when Marshal sized it)
// and returns them, to be written.
func (e *encoder) grow(n int) []byte {
	at := len(e.b)
	e.b = slices.Grow(e.b, n)[:at+n]
	return e.b[at:]
}

// appendDictCol appends a dictionary column's body, unchecked: Marshal
// checks its shape first.
func appendDictCol(e *encoder, c ShipmentCol) {
	e.b = append(e.b, 2)
	e.b = binary.LittleEndian.AppendUint32(e.b, uint32(len(c.Dict)))
	for _, d := range c.Dict {
		e.b = binary.LittleEndian.AppendUint32(e.b, uint32(len(d)))
		e.b = append(e.b, d...)
	}
	w := codeWidth(len(c.Dict))
	e.b = append(e.b, byte(w))
	for cs := c.Codes; len(cs) > 0; { // a hashing step at a time
		n := min(len(cs), hashStep/w)
		out := e.grow(w * n)
		switch w {
		case 1:
			for i, code := range cs[:n] {
				out[i] = byte(code)
			}
		case 2:
			for i, code := range cs[:n] {
				binary.LittleEndian.PutUint16(out[2*i:2*i+2], uint16(code))
			}
		default:
			for i, code := range cs[:n] {
				binary.LittleEndian.PutUint32(out[4*i:4*i+4], code)
			}
		}
		cs = cs[n:]
		e.flush()
	}
}

// codeWidth is the bytes a code of a dictionary of n entries takes in a
// shipment.
func codeWidth(n int) int {
	switch {
	case n <= 1<<8:
		return 1
	case n <= 1<<16:
		return 2
	}
	return 4
}

// shipReader reads an encoded shipment; the first short read sticks.
// With h set, it hashes what it reads: blocks hashes each piece just
// before it is converted (while it is in cache), hashTo the rest.
type shipReader struct {
	b      []byte // what is left
	err    error
	all    []byte
	h      hash.Hash
	hashed int // bytes of all hashed
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

// blocks reads n bytes and hands them to f in pieces of about hashStep
// bytes, each a whole number of units, with the index of its first unit.
func (r *shipReader) blocks(n, unit int, f func(piece []byte, first int)) []byte {
	r.hashTo(len(r.all) - len(r.b))
	raw := r.next(n)
	if raw == nil {
		return nil
	}
	step := max(unit, hashStep/unit*unit)
	for off := 0; off < len(raw); off += step {
		p := raw[off:min(off+step, len(raw))]
		if r.h != nil {
			r.h.Write(p)
		}
		f(p, off/unit)
	}
	r.hashed += len(raw)
	return raw
}

// hashTo hashes all up to byte end.
func (r *shipReader) hashTo(end int) {
	if r.h != nil && end > r.hashed {
		r.h.Write(r.all[r.hashed:end])
	}
	r.hashed = max(r.hashed, end)
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
	return decodeHashed(&shipReader{b: b, all: b})
}

// decodeHashed is decodeShipment of r's bytes; all of them are hashed
// when it returns (with r.h set).
func decodeHashed(r *shipReader) (*Shipment, error) {
	defer r.hashTo(len(r.all))
	b := r.all
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
	// The tags are hashed block by block, and counted by partition while
	// in cache (Part partitions them).
	if r.err == nil {
		s.counts = newTagCounts(s.Rows, partitionBits(s.Rows))
	}
	size, shift := 1, 64-partitionBits(s.Rows)
	if rg := chunks(s.Rows); len(rg) > 0 {
		size = rg[0][1] - rg[0][0]
	}
	s.Tags = r.blocks(s.Rows*TagSize, TagSize, func(p []byte, first int) {
		tags := tagView(p)
		for len(tags) > 0 { // the block's rows, range by range
			r := first / size
			n := min(len(tags), (r+1)*size-first)
			countTags(s.counts[r], tags[:n], shift)
			tags, first = tags[n:], first+n
		}
	})
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
			if r.err != nil || 8*s.Rows > len(r.b) {
				r.next(8 * s.Rows) // truncated
				break
			}
			c.Num = make([]float64, s.Rows)
			r.blocks(8*s.Rows, 8, func(p []byte, first int) {
				for i := range len(p) / 8 {
					c.Num[first+i] = math.Float64frombits(binary.LittleEndian.Uint64(p[8*i:]))
				}
			})
		case 2:
			c.Kind = kindDict
			n := r.u32()
			if r.err == nil && n > len(r.b)/4 {
				return nil, fmt.Errorf("column %q: %d dictionary entries in %d bytes", clipVal(c.Name), n, len(r.b))
			}
			for range n {
				c.Dict = append(c.Dict, string(r.next(r.u32())))
			}
			w := r.next(1)
			if r.err != nil {
				break
			}
			if int(w[0]) != codeWidth(n) {
				return nil, fmt.Errorf("column %q: codes of %d bytes for %d dictionary entries", clipVal(c.Name), w[0], n)
			}
			width := int(w[0])
			if width*s.Rows > len(r.b) {
				r.next(width * s.Rows) // truncated
				break
			}
			c.Codes = make([]uint32, s.Rows)
			r.blocks(width*s.Rows, width, func(p []byte, first int) {
				codes := c.Codes[first : first+len(p)/width]
				switch width {
				case 1:
					for i := range codes {
						codes[i] = uint32(p[i])
					}
				case 2:
					for i := range codes {
						codes[i] = uint32(binary.LittleEndian.Uint16(p[2*i:]))
					}
				default:
					for i := range codes {
						codes[i] = binary.LittleEndian.Uint32(p[4*i:])
					}
				}
			})
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

// ShipmentDigest is the hex BLAKE3 (256 bits) of an encoded shipment:
// what job.flow and job.list commit. A join ships tens of megabytes that
// the shipper and then the runner hash on the join's critical path, and
// BLAKE3 (AVX2/AVX-512) hashes them about twice as fast as SHA-256 with
// SHA-NI on one core, at the same 128-bit collision resistance.
func ShipmentDigest(b []byte) string {
	sum := blake3.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// legacyDigest prefixes, in what ParseShipment checks against, the
// SHA-256 of a flow committed before shipments were hashed with BLAKE3.
const legacyDigest = "sha256:"

// FlowDigest is what ParseShipment (and ParseList) check a shipment of
// flow f against: its BLAKE3, or legacyDigest and its SHA-256 for a flow
// committed before BLAKE3 (a job running across the upgrade).
func FlowDigest(f policies.JobFlow) string {
	if alg, sum := f.Digest(); alg == "sha256" {
		return legacyDigest + sum
	}
	return f.BLAKE3
}

// digestOf is b's digest as want (a FlowDigest) spells one, and the
// hash's name.
func digestOf(b []byte, want string) (alg, sum string) {
	if strings.HasPrefix(want, legacyDigest) {
		s := sha256.Sum256(b)
		return "sha256", legacyDigest + hex.EncodeToString(s[:])
	}
	return "blake3", ShipmentDigest(b)
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
	// Decoded and hashed in one pass (the digest is checked before anything
	// decoded is used, and before a decoding error is reported).
	r := &shipReader{b: b, all: b, h: blake3.New()}
	alg, prefix := "blake3", ""
	if strings.HasPrefix(digest, legacyDigest) {
		r.h, alg, prefix = sha256.New(), "sha256", legacyDigest
	}
	s, err := decodeHashed(r)
	if got := prefix + hex.EncodeToString(r.h.Sum(nil)); got != digest {
		return nil, bad("%s %s is not the %s committed on the ledger", alg, strings.TrimPrefix(got, prefix), strings.TrimPrefix(digest, prefix))
	}
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
// dataset's schema and its policy's bound on rows per person, its rows
// partitioned for the join.
func (s *Shipment) Part(schema *policies.Schema, maxRows int) JoinPart {
	t := &Table{Rows: s.Rows, Schema: *schema, Cols: map[string]*Column{}}
	for _, c := range s.Columns {
		if c.Kind == kindHE {
			continue // HEPart holds its ciphertexts
		}
		meta, _ := schema.Column(c.Name)
		t.Cols[c.Name] = &Column{Meta: meta, Kind: c.Kind, Num: c.Num, Codes: c.Codes, Dict: slices.Clone(c.Dict)}
	}
	tags := tagView(s.Tags[:s.Rows*TagSize])
	return JoinPart{Dataset: s.Dataset, Tags: tags, Table: t, MaxRows: maxRows, parted: partition(tags, partitionBits(len(tags)), s.counts)}
}

// tagView is b's tags as arrays, without a copy: they are the bulk of a
// shipment, and the executor reads them where they arrived (b must not
// change while the view is used). [TagSize]byte has the alignment of a
// byte, so any byte of b can start one.
func tagView(b []byte) [][TagSize]byte {
	if len(b) == 0 {
		return [][TagSize]byte{}
	}
	return unsafe.Slice((*[TagSize]byte)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/TagSize)
}
