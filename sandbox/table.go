package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/datasandbox/datasandbox/policies"
)

// Errors of the dataset store and the engine.
var (
	// ErrBadData: a CSV that does not fit its schema.
	ErrBadData = errors.New("sandbox: bad data")
	// ErrRefused: a query that output control or the engine refuses.
	ErrRefused = errors.New("sandbox: refused")
	// ErrNoData: this node does not hold the dataset.
	ErrNoData = errors.New("sandbox: dataset not held here")
	// ErrLimit: the job would exceed its memory or time limits.
	ErrLimit = errors.New("sandbox: limit exceeded")
)

// Column kinds in the store.
const (
	kindNum    = "num"    // float64 values (ints, floats, banded numbers)
	kindDict   = "dict"   // uint32 codes into a dictionary of strings
	kindPseudo = "pseudo" // 16-byte keyed pseudonyms, one per row
)

// tableMeta is meta.json of a stored dataset.
type tableMeta struct {
	Schema  policies.Schema `json:"schema"`
	Rows    int64           `json:"rows"`
	SHA256  string          `json:"sha256"`
	Columns []colMeta       `json:"columns"`
	// Encrypted lists the sensitive columns held only as CKKS ciphertexts
	// (he/ beside the columns).
	Encrypted []string `json:"encrypted,omitempty"`
}

type colMeta struct {
	Name string   `json:"name"`
	Kind string   `json:"kind"`
	Dict []string `json:"dict,omitempty"`
}

// Column is one column in memory.
type Column struct {
	Meta  policies.Column
	Kind  string
	Num   []float64
	Codes []uint32
	Dict  []string
	// Pseudo holds 16-byte pseudonyms back to back (identifier columns).
	Pseudo []byte
}

// Table is a dataset loaded for execution.
type Table struct {
	Rows   int
	Schema policies.Schema
	Cols   map[string]*Column
}

// colWriter streams one column to its zstd file.
type colWriter struct {
	f    *os.File
	z    *zstd.Encoder
	pend []byte // encoded values not yet handed to z
	dict map[string]uint32
	nums map[float64]uint32 // numeric values of a dictionary column
	keys []string
	kind string
	// sink, when set, receives the numbers instead of a file: sensitive
	// columns of an encrypted dataset, which never reach the disk in clear.
	sink *[]float64
}

// maxDict bounds a dictionary column's distinct values: high-cardinality
// strings should be identifiers (pseudonymised) instead.
const maxDict = 1 << 20

func newColWriter(path, kind string) (*colWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	// A 1 MiB window per column keeps ingest's memory small and
	// independent of the file's size. The column's own goroutine encodes
	// its blocks (the ingest runs the columns concurrently).
	z, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	if err != nil {
		f.Close()
		return nil, err
	}
	return &colWriter{f: f, z: z, pend: make([]byte, 0, pendSize+PseudonymSize), kind: kind, dict: map[string]uint32{}, nums: map[float64]uint32{}}, nil
}

// pendSize is how many encoded bytes a column collects before compressing.
const pendSize = 1 << 16

// put hands the collected bytes to the compressor once there are enough.
func (c *colWriter) put() error {
	if len(c.pend) < pendSize {
		return nil
	}
	_, err := c.z.Write(c.pend)
	c.pend = c.pend[:0]
	return err
}

func (c *colWriter) num(v float64) error {
	if c.sink != nil {
		*c.sink = append(*c.sink, v)
		return nil
	}
	c.pend = binary.LittleEndian.AppendUint64(c.pend, math.Float64bits(v))
	return c.put()
}

func (c *colWriter) str(s string) error {
	code, ok := c.dict[s]
	if !ok {
		if len(c.keys) >= maxDict {
			return fmt.Errorf("more than %d distinct values (classify it as an identifier)", maxDict)
		}
		code = uint32(len(c.keys))
		c.dict[s] = code
		c.keys = append(c.keys, s)
	}
	return c.code(code)
}

func (c *colWriter) code(code uint32) error {
	c.pend = binary.LittleEndian.AppendUint32(c.pend, code)
	return c.put()
}

// numCode writes a number to a dictionary column, formatting it only the
// first time it is seen.
func (c *colWriter) numCode(f float64) error {
	if code, ok := c.nums[f]; ok {
		return c.code(code)
	}
	before := len(c.keys)
	if err := c.str(strconv.FormatFloat(f, 'f', -1, 64)); err != nil {
		return err
	}
	if len(c.keys) > before {
		c.nums[f] = uint32(before)
	}
	return nil
}

func (c *colWriter) raw(b []byte) error {
	c.pend = append(c.pend, b...)
	return c.put()
}

func (c *colWriter) close() error {
	if c.sink != nil {
		return nil
	}
	_, err := c.z.Write(c.pend)
	c.pend = c.pend[:0]
	return errors.Join(err, c.z.Close(), c.f.Sync(), c.f.Close())
}

// LoadTable reads a stored dataset's columns (only those named, or all).
func LoadTable(dir string, only map[string]bool) (*Table, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	var m tableMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", dir, err)
	}
	t := &Table{Rows: int(m.Rows), Schema: m.Schema, Cols: map[string]*Column{}}
	for _, cm := range m.Columns {
		if only != nil && !only[cm.Name] {
			continue
		}
		col, _ := m.Schema.Column(cm.Name)
		c := &Column{Meta: col, Kind: cm.Kind, Dict: cm.Dict}
		f, err := os.Open(filepath.Join(dir, cm.Name+".col"))
		if err != nil {
			return nil, err
		}
		z, err := zstd.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		raw, err := io.ReadAll(z)
		z.Close()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("sandbox: column %s: %w", cm.Name, err)
		}
		switch cm.Kind {
		case kindNum:
			if len(raw) != 8*t.Rows {
				return nil, fmt.Errorf("sandbox: column %s: %d bytes for %d rows", cm.Name, len(raw), t.Rows)
			}
			c.Num = make([]float64, t.Rows)
			for i := range c.Num {
				c.Num[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
			}
		case kindDict:
			if len(raw) != 4*t.Rows {
				return nil, fmt.Errorf("sandbox: column %s: %d bytes for %d rows", cm.Name, len(raw), t.Rows)
			}
			c.Codes = make([]uint32, t.Rows)
			for i := range c.Codes {
				c.Codes[i] = binary.LittleEndian.Uint32(raw[4*i:])
				if int(c.Codes[i]) >= len(c.Dict) {
					return nil, fmt.Errorf("sandbox: column %s: code out of range", cm.Name)
				}
			}
		case kindPseudo:
			if len(raw) != PseudonymSize*t.Rows {
				return nil, fmt.Errorf("sandbox: column %s: %d bytes for %d rows", cm.Name, len(raw), t.Rows)
			}
			c.Pseudo = raw
		default:
			return nil, fmt.Errorf("sandbox: column %s: unknown kind %q", cm.Name, cm.Kind)
		}
		t.Cols[cm.Name] = c
	}
	return t, nil
}

// columnKind is how a schema column is stored. Quasi-identifiers are
// generalised to few distinct values, so they are dictionary-coded even
// when numeric: they are grouped and filtered on, never summed.
func columnKind(c policies.Column) string {
	switch {
	case c.Class == policies.Identifier:
		return kindPseudo
	case c.Type == policies.TypeString || c.Type == policies.TypeDate || c.Class == policies.QuasiIdentifier:
		return kindDict
	}
	return kindNum
}

func lowerTrim(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
