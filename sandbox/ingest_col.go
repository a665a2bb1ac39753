package sandbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/datasandbox/datasandbox/policies"
)

// colIngest masks one schema column of an upload, batch after batch: the
// ingest runs the columns of a batch concurrently, each on its own
// colIngest, and each column's batches in the file's order.
type colIngest struct {
	col   policies.Column
	field int        // the column's field in the CSV's records
	w     *colWriter // where its values go
	pipe  *consortiumPipe
	he    int       // its index among an encrypted dataset's sensitive columns, or -1
	mac   hash.Hash // the agency's pseudonyms (HMAC-SHA256 under its key)
	sum   [sha256.Size]byte
}

func newColIngest(c policies.Column, field int, w *colWriter, pseudoKey []byte) *colIngest {
	ci := &colIngest{col: c, field: field, w: w, he: -1}
	if c.Class == policies.Identifier {
		ci.mac = hmac.New(sha256.New, pseudoKey)
	}
	return ci
}

// batch masks the column's values of b's records. It returns the index
// of the record whose value it refused, with why, or b.n and nil.
func (ci *colIngest) batch(b *csvBatch) (int, error) {
	for r := range b.n {
		v := b.field(r, ci.field)
		var err error
		if ci.pipe != nil {
			err = ci.pipe.add(string(v))
		} else {
			err = ci.value(v, !b.ascii)
		}
		if err != nil {
			return r, err
		}
	}
	return b.n, nil
}

// value masks one value and writes it: an identifier's keyed pseudonym, a
// number banded and clamped to its bounds, a date or string generalised.
// checkUTF8 is false when the value is known to be ASCII.
func (ci *colIngest) value(v []byte, checkUTF8 bool) error {
	if checkUTF8 && !utf8.Valid(v) {
		return errors.New("not valid UTF-8")
	}
	if len(v) == 0 {
		return errors.New("empty value")
	}
	c, w := &ci.col, ci.w
	if c.Class == policies.Identifier {
		ci.mac.Reset()
		ci.mac.Write(v)
		return w.raw(ci.mac.Sum(ci.sum[:0])[:PseudonymSize])
	}
	switch c.Type {
	case policies.TypeInt, policies.TypeFloat:
		f, err := parseNumber(v)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a number", clipVal(string(v)))
		}
		if c.Type == policies.TypeInt && f != math.Trunc(f) {
			return fmt.Errorf("%q is not a whole number", clipVal(string(v)))
		}
		if g := c.Generalize; g != nil && g.Band > 0 {
			f = math.Floor(f/g.Band) * g.Band
		}
		if len(c.Bounds) == 2 {
			f = math.Min(math.Max(f, c.Bounds[0]), c.Bounds[1])
		}
		if w.kind == kindDict {
			return w.numCode(f)
		}
		return w.num(f)
	case policies.TypeDate:
		s := string(v)
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return fmt.Errorf("%q is not a date (YYYY-MM-DD)", clipVal(s))
		}
		s = d.Format("2006-01-02")
		if g := c.Generalize; g != nil {
			switch g.Truncate {
			case "year":
				s = d.Format("2006")
			case "month":
				s = d.Format("2006-01")
			}
		}
		return w.str(s)
	}
	if g := c.Generalize; g != nil && g.Prefix > 0 {
		v = runePrefix(v, g.Prefix)
	}
	return w.strBytes(v)
}

// runePrefix returns the first n characters of valid UTF-8 v.
func runePrefix(v []byte, n int) []byte {
	off := 0
	for range n {
		if off >= len(v) {
			return v
		}
		_, size := utf8.DecodeRune(v[off:])
		off += size
	}
	return v[:off]
}

// strBytes is str for a value in a reused buffer: it is copied only the
// first time it is seen.
func (c *colWriter) strBytes(b []byte) error {
	if code, ok := c.dict[string(b)]; ok {
		return c.code(code)
	}
	return c.str(string(b))
}

// pow10 are the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseNumber is strconv.ParseFloat(string(b), 64), the same value for the
// same input, with a fast path for the common plain decimal (an optional
// minus, at most 15 digits, at most one point): its digits are an integer
// m < 2^53 and its value m / 10^k with k ≤ 15, both exact in a float64,
// so one correctly rounded division gives the correctly rounded value, as
// strconv's own exact path computes it. Anything else goes to strconv
// (FuzzParseNumber compares the two).
func parseNumber(b []byte) (float64, error) {
	if f, ok := parseDecimal(b); ok {
		return f, nil
	}
	return strconv.ParseFloat(string(b), 64)
}

func parseDecimal(b []byte) (float64, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	var m uint64
	digits, frac, dot := 0, 0, false
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c >= '0' && c <= '9':
			if digits == 15 {
				return 0, false
			}
			m = m*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	f := float64(m)
	if neg {
		f = -f
	}
	if frac > 0 {
		f /= pow10[frac]
	}
	return f, true
}
