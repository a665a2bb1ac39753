package sandbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/policies"
)

// PseudonymSize is the length of an identifier's pseudonym.
const PseudonymSize = 16

// MaxLine bounds one CSV line, so a hostile file cannot make a node hold
// gigabytes for a single record.
const MaxLine = 1 << 20

// IngestResult describes an ingested file.
type IngestResult struct {
	SHA256 string // of the file's bytes, as uploaded
	Rows   int64
}

// LineError is a CSV problem at a line (1-based, the header is line 1).
type LineError struct {
	Line   int
	Column string
	Msg    string
}

func (e *LineError) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("line %d, column %q: %s", e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}
func (e *LineError) Unwrap() error { return ErrBadData }

// Ingest reads a CSV (RFC 4180, UTF-8, header row) typed by the schema and
// writes the masked columnar dataset into dir, streaming: memory does not
// grow with the file. At ingest identifiers are pseudonymised with a keyed
// one-way function (HMAC-SHA256 under pseudoKey, the agency's key, so one
// person has one pseudonym across the agency's datasets), quasi-identifiers
// are generalised as the schema says, and sensitive numbers are clamped to
// their bounds. On any error nothing is left behind.
func Ingest(ctx context.Context, r io.Reader, schema *policies.Schema, pseudoKey []byte, dir string) (res *IngestResult, err error) {
	return ingest(ctx, r, schema, pseudoKey, dir, nil, nil)
}

// IngestEncrypted ingests like Ingest, except that the sensitive columns
// are encrypted under the consortium's collective CKKS public key (see
// he.go) as they stream in and are never written in the clear: the stored
// dataset holds the masked public and quasi-identifying columns and the
// ciphertexts.
func IngestEncrypted(ctx context.Context, r io.Reader, schema *policies.Schema, pseudoKey []byte, dir string, pk *rlwe.PublicKey) (res *IngestResult, err error) {
	if pk == nil {
		return nil, errors.New("sandbox: no collective HE key yet: the key ceremony has not run")
	}
	cols, err := heColumns(schema, true)
	if err != nil {
		return nil, err
	}
	enc, err := newHEIngest(cols, pk)
	if err != nil {
		return nil, err
	}
	return ingest(ctx, r, schema, pseudoKey, dir, enc, nil)
}

// IngestConsortium ingests like Ingest (or IngestEncrypted when pk is
// set), and pseudonymises the identifier columns that ask for consortium
// pseudonyms through cons, in pipelined batches as the file streams.
func IngestConsortium(ctx context.Context, r io.Reader, schema *policies.Schema, pseudoKey []byte, dir string, pk *rlwe.PublicKey, cons Pseudonymiser) (res *IngestResult, err error) {
	var enc *heIngest
	if pk != nil {
		cols, err := heColumns(schema, true)
		if err != nil {
			return nil, err
		}
		if enc, err = newHEIngest(cols, pk); err != nil {
			return nil, err
		}
	}
	return ingest(ctx, r, schema, pseudoKey, dir, enc, cons)
}

func ingest(ctx context.Context, r io.Reader, schema *policies.Schema, pseudoKey []byte, dir string, enc *heIngest, cons Pseudonymiser) (res *IngestResult, err error) {
	if err := schema.Validate(); err != nil {
		return nil, err
	}
	if consortiumColumns(schema) && cons == nil {
		return nil, ErrNoConsortium
	}
	if len(pseudoKey) < 32 {
		return nil, errors.New("sandbox: pseudonym key must be at least 32 bytes")
	}
	tmp := dir + ".ingest"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	h := sha256.New()
	lr := &lineLimit{r: io.TeeReader(r, h), max: MaxLine}
	cr := csv.NewReader(lr)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, csvError(err, lr, 1)
	}
	cr.FieldsPerRecord = len(header)
	pos := make([]int, len(schema.Columns)) // schema column -> CSV field
	seen := map[string]int{}
	for i, name := range header {
		if i == 0 {
			name = trimBOM(name)
		}
		seen[lowerTrim(name)] = i
	}
	if len(seen) != len(schema.Columns) {
		return nil, &LineError{Line: 1, Msg: fmt.Sprintf("header has %d columns, the schema %d", len(header), len(schema.Columns))}
	}
	writers := make([]*colWriter, len(schema.Columns))
	defer func() {
		for _, w := range writers {
			if w != nil && err != nil {
				w.close()
			}
		}
	}()
	for i, c := range schema.Columns {
		p, ok := seen[c.Name]
		if !ok {
			return nil, &LineError{Line: 1, Msg: fmt.Sprintf("the header lacks schema column %q", c.Name)}
		}
		pos[i] = p
		if enc != nil && enc.col(c.Name) >= 0 {
			writers[i] = &colWriter{kind: kindNum, sink: &enc.vals[enc.col(c.Name)]}
			continue
		}
		if writers[i], err = newColWriter(filepath.Join(tmp, c.Name+".col"), columnKind(c)); err != nil {
			return nil, err
		}
	}
	if enc != nil {
		if err := enc.open(filepath.Join(tmp, heDir)); err != nil {
			return nil, err
		}
		defer enc.abort()
	}
	pipes := make([]*consortiumPipe, len(schema.Columns))
	for i, c := range schema.Columns {
		if c.Class == policies.Identifier && c.Pseudonym == policies.PseudonymConsortium {
			pipes[i] = newConsortiumPipe(ctx, c.Name, writers[i], cons)
		}
	}
	defer func() {
		for _, p := range pipes {
			if p != nil && err != nil {
				p.abort()
			}
		}
	}()
	mac := hmac.New(sha256.New, pseudoKey)
	var rows int64
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(err, lr, lr.line+1)
		}
		line, _ := cr.FieldPos(0)
		if rows%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		for i, c := range schema.Columns {
			if p := pipes[i]; p != nil {
				if err := p.add(rec[pos[i]]); err != nil {
					if errors.Is(err, errPipe) {
						pipes[i] = nil
						return nil, p.stop()
					}
					return nil, &LineError{Line: line, Column: c.Name, Msg: err.Error()}
				}
				continue
			}
			if err := ingestField(writers[i], c, rec[pos[i]], mac); err != nil {
				return nil, &LineError{Line: line, Column: c.Name, Msg: err.Error()}
			}
		}
		rows++
		if enc != nil {
			if rows > HEMaxRows {
				return nil, &LineError{Line: line, Msg: fmt.Sprintf("an encrypted dataset holds at most %d rows", HEMaxRows)}
			}
			if enc.full() {
				if err := enc.flush(ctx, false); err != nil {
					return nil, err
				}
			}
		}
	}
	if rows == 0 {
		// A header alone registers nothing anyone could query; most
		// likely the wrong file.
		return nil, &LineError{Line: 2, Msg: "no data rows: the file holds only a header"}
	}
	if enc != nil {
		if err := enc.flush(ctx, true); err != nil {
			return nil, err
		}
		if err := enc.finish(rows); err != nil {
			return nil, err
		}
	}
	for i, p := range pipes {
		if p != nil {
			pipes[i] = nil // finished: not aborted on a later error
			if err := p.finish(); err != nil {
				return nil, err
			}
		}
	}
	meta := tableMeta{Schema: *schema, Rows: rows, SHA256: hex.EncodeToString(h.Sum(nil))}
	for i, c := range schema.Columns {
		w := writers[i]
		if err := w.close(); err != nil {
			return nil, err
		}
		if w.sink != nil {
			meta.Encrypted = append(meta.Encrypted, c.Name)
			continue
		}
		cm := colMeta{Name: c.Name, Kind: w.kind}
		if w.kind == kindDict {
			cm.Dict = w.keys
		}
		meta.Columns = append(meta.Columns, cm)
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o600); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return &IngestResult{SHA256: meta.SHA256, Rows: rows}, nil
}

func ingestField(w *colWriter, c policies.Column, v string, mac hash.Hash) error {
	if !utf8.ValidString(v) {
		return errors.New("not valid UTF-8")
	}
	if v == "" {
		return errors.New("empty value")
	}
	switch c.Class {
	case policies.Identifier:
		mac.Reset()
		mac.Write([]byte(v))
		var sum [sha256.Size]byte
		return w.raw(mac.Sum(sum[:0])[:PseudonymSize])
	}
	switch c.Type {
	case policies.TypeInt, policies.TypeFloat:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a number", clipVal(v))
		}
		if c.Type == policies.TypeInt && f != math.Trunc(f) {
			return fmt.Errorf("%q is not a whole number", clipVal(v))
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
		d, err := time.Parse("2006-01-02", v)
		if err != nil {
			return fmt.Errorf("%q is not a date (YYYY-MM-DD)", clipVal(v))
		}
		s := d.Format("2006-01-02")
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
		if n := utf8.RuneCountInString(v); n > g.Prefix {
			r := []rune(v)
			v = string(r[:g.Prefix])
		}
	}
	return w.str(v)
}

func clipVal(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

func trimBOM(s string) string {
	if len(s) >= 3 && s[:3] == "\xef\xbb\xbf" {
		return s[3:]
	}
	return s
}

func csvError(err error, lr *lineLimit, line int) error {
	var pe *csv.ParseError
	switch {
	case errors.Is(err, errLongLine):
		return &LineError{Line: lr.line, Msg: fmt.Sprintf("line longer than %d bytes", MaxLine)}
	case errors.As(err, &pe):
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return &LineError{Line: pe.Line, Msg: "wrong number of columns"}
		}
		return &LineError{Line: pe.Line, Msg: pe.Err.Error()}
	case errors.Is(err, io.EOF):
		return &LineError{Line: line, Msg: "empty file: a header row is required"}
	}
	return err
}

var errLongLine = errors.New("line too long")

// lineLimit fails a read once a line exceeds max bytes, and counts lines.
type lineLimit struct {
	r    io.Reader
	max  int
	cur  int
	line int
}

func (l *lineLimit) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	rest := p[:n]
	off := 0
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.cur += len(rest)
			if l.cur > l.max {
				l.line++
				return off, errLongLine
			}
			return n, err
		}
		if l.cur+i > l.max {
			l.line++
			return off, errLongLine
		}
		l.cur = 0
		l.line++
		off += i + 1
		rest = rest[i+1:]
	}
}
