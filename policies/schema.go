package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Column classes (DESIGN.md).
const (
	Identifier      = "identifier"
	QuasiIdentifier = "quasi_identifier"
	Sensitive       = "sensitive"
	Public          = "public"
)

// Column types.
const (
	TypeString = "string"
	TypeInt    = "int"
	TypeFloat  = "float"
	TypeDate   = "date"
)

// Generalize says how a quasi-identifier is coarsened at ingest.
type Generalize struct {
	Band     float64 `json:"band,omitempty"`     // numeric bands of this width
	Prefix   int     `json:"prefix,omitempty"`   // keep this many leading characters
	Truncate string  `json:"truncate,omitempty"` // date truncation: year or month
}

// Column is one column of a dataset schema.
type Column struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Class      string      `json:"class"`
	Generalize *Generalize `json:"generalize,omitempty"`
	Bounds     []float64   `json:"bounds,omitempty"` // [lo, hi] for sensitive numbers
	// Pseudonym (identifiers only) is agency (the default: the agency's
	// own key, not joinable) or consortium (the threshold OPRF: joinable).
	Pseudonym string `json:"pseudonym,omitempty"`
}

// Pseudonym kinds of an identifier column.
const (
	PseudonymAgency     = "agency"
	PseudonymConsortium = "consortium"
)

// JoinKey returns the schema's first identifier column with consortium
// pseudonyms: the column joins match on; "" when it has none.
func JoinKey(s *Schema) string {
	for _, c := range s.Columns {
		if c.Class == Identifier && c.Pseudonym == PseudonymConsortium {
			return c.Name
		}
	}
	return ""
}

// Schema is a dataset's schema (CONTRACT.md).
type Schema struct {
	Columns []Column `json:"columns"`
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CheckDatasetName says why a dataset name would be refused, or nil: the
// rule the ledger applies to dataset.register, for checks made before.
func CheckDatasetName(name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%w: dataset name %q must match [a-z_][a-z0-9_]* (at most 63 characters)", ErrInvalid, clip(name))
	}
	return nil
}

// ParseSchema reads and validates a schema from untrusted JSON.
func ParseSchema(b []byte) (*Schema, error) {
	var s Schema
	if err := strictUnmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: schema: %v", ErrInvalid, err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks the schema, naming the first bad column.
func (s *Schema) Validate() error {
	if len(s.Columns) == 0 {
		return fmt.Errorf("%w: schema has no columns", ErrInvalid)
	}
	if len(s.Columns) > 1024 {
		return fmt.Errorf("%w: schema has %d columns, limit 1024", ErrInvalid, len(s.Columns))
	}
	seen := map[string]bool{}
	for _, c := range s.Columns {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: column %q: %s", ErrInvalid, c.Name, fmt.Sprintf(format, a...))
		}
		if !identRE.MatchString(c.Name) {
			return fmt.Errorf("%w: column name %q must match [a-z_][a-z0-9_]*", ErrInvalid, clip(c.Name))
		}
		if seen[c.Name] {
			return bad("duplicate column")
		}
		seen[c.Name] = true
		switch c.Type {
		case TypeString, TypeInt, TypeFloat, TypeDate:
		default:
			return bad("unknown type %q (string, int, float or date)", clip(c.Type))
		}
		switch c.Class {
		case Identifier, QuasiIdentifier, Sensitive, Public:
		default:
			return bad("unknown class %q (identifier, quasi_identifier, sensitive or public)", clip(c.Class))
		}
		switch c.Pseudonym {
		case "", PseudonymAgency:
		case PseudonymConsortium:
			if c.Class != Identifier {
				return bad("only identifier columns take a consortium pseudonym")
			}
		default:
			return bad("pseudonym must be agency or consortium, not %q", clip(c.Pseudonym))
		}
		if c.Generalize != nil {
			if c.Class != QuasiIdentifier {
				return bad("only quasi_identifier columns are generalised")
			}
			g := c.Generalize
			switch {
			case g.Band > 0 && (c.Type == TypeInt || c.Type == TypeFloat) && g.Prefix == 0 && g.Truncate == "":
			case g.Prefix > 0 && c.Type == TypeString && g.Band == 0 && g.Truncate == "":
			case (g.Truncate == "year" || g.Truncate == "month") && c.Type == TypeDate && g.Band == 0 && g.Prefix == 0:
			default:
				return bad("generalize must be one of band (int, float), prefix (string) or truncate year|month (date)")
			}
		} else if c.Class == QuasiIdentifier && c.Type != TypeString {
			return bad("a quasi_identifier needs a generalize rule")
		}
		if c.Bounds != nil {
			if c.Class != Sensitive || (c.Type != TypeInt && c.Type != TypeFloat) {
				return bad("bounds apply to numeric sensitive columns")
			}
			if len(c.Bounds) != 2 || !(c.Bounds[0] < c.Bounds[1]) {
				return bad("bounds must be [lo, hi] with lo < hi")
			}
		} else if c.Class == Sensitive && (c.Type == TypeInt || c.Type == TypeFloat) {
			return bad("a numeric sensitive column needs bounds [lo, hi] (they bound each person's contribution)")
		}
	}
	return nil
}

// Column returns the named column.
func (s *Schema) Column(name string) (Column, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Aggregate functions of the SQL subset.
var aggregates = []string{"count", "sum", "avg", "var", "stddev", "corr", "regr_slope", "regr_intercept", "histogram"}

// allowedAggregates lists what each class permits: identifiers are never
// aggregated (only counted as rows), quasi-identifiers and public columns
// only counted or bucketed unless numeric and public.
func allowedAggregates(c Column) []string {
	numeric := c.Type == TypeInt || c.Type == TypeFloat
	switch c.Class {
	case Sensitive:
		if numeric {
			return aggregates
		}
		return []string{"count"}
	case Public:
		if numeric {
			return aggregates
		}
		return []string{"count"}
	case QuasiIdentifier:
		return []string{"count", "histogram"}
	}
	return nil
}

// DecodeStrict decodes one JSON value, refusing unknown fields and
// trailing data: how every document from outside is read.
func DecodeStrict(b []byte, v any) error { return strictUnmarshal(b, v) }

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

func clip(s string) string { return clipN(s, 64) }

// clipN is chain.Clip, copied byte for byte: policies may import nothing
// of the module (audit/layering_test.go), and clipped reasons are part of
// the replicated state, so both must keep exactly this rule.
func clipN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func lower(s string) string { return strings.ToLower(s) }
