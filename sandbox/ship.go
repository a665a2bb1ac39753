package sandbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"

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
	s := &Shipment{Job: job, Dataset: side.Dataset, Rows: t.Rows, Tags: make([]byte, 0, t.Rows*TagSize), Columns: []ShipmentCol{}}
	mac := hmac.New(sha256.New, kJob)
	for i := 0; i < t.Rows; i++ {
		tag := tagWith(mac, key.Pseudo[i*ps:(i+1)*ps])
		s.Tags = append(s.Tags, tag[:]...)
	}
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

// Marshal is the shipment's canonical encoding.
func (s *Shipment) Marshal() ([]byte, error) { return json.Marshal(s) }

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
	var s Shipment
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, bad("%v", err)
	}
	if dec.More() {
		return nil, bad("trailing data")
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
	for i, c := range s.Columns {
		if c.Name != side.Columns[i] {
			return nil, bad("column %d is %q, the plan ships %q", i, clipVal(c.Name), side.Columns[i])
		}
		meta, ok := schema.Column(c.Name)
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
	return &s, nil
}

// Part turns a parsed shipment into the executor's join input, under the
// dataset's schema and its policy's bound on rows per person.
func (s *Shipment) Part(schema *policies.Schema, maxRows int) JoinPart {
	t := &Table{Rows: s.Rows, Schema: *schema, Cols: map[string]*Column{}}
	for _, c := range s.Columns {
		meta, _ := schema.Column(c.Name)
		t.Cols[c.Name] = &Column{Meta: meta, Kind: c.Kind, Num: c.Num, Codes: c.Codes, Dict: slices.Clone(c.Dict)}
	}
	tags := make([][TagSize]byte, s.Rows)
	for i := range tags {
		copy(tags[i][:], s.Tags[i*TagSize:])
	}
	return JoinPart{Dataset: s.Dataset, Tags: tags, Table: t, MaxRows: maxRows}
}
