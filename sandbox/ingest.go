package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/chain"
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

// ingest is Ingest, IngestEncrypted and IngestConsortium: the caller's
// goroutine reads the file (hashing it and bounding its lines) into a
// pipe; maskColumns parses and masks it on the others; then the dataset
// is committed. Only this goroutine reads r, so none does once ingest has
// returned.
func ingest(ctx context.Context, r io.Reader, schema *policies.Schema, pseudoKey []byte, dir string, enc *heIngest, cons Pseudonymiser) (res *IngestResult, err error) {
	if err := checkIngest(schema, pseudoKey, cons); err != nil {
		return nil, err
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
	pr, pw := io.Pipe()
	type masked struct {
		meta *tableMeta
		err  error
	}
	done := make(chan masked, 1)
	go func() {
		meta, err := maskColumns(ctx, pr, schema, pseudoKey, tmp, enc, cons)
		pr.CloseWithError(errIngestStopped) // stops the copy below
		done <- masked{meta, err}
	}()
	_, cerr := io.CopyBuffer(pw, lr, make([]byte, 256<<10))
	pw.CloseWithError(cerr) // nil: the file ended
	m := <-done
	if m.err != nil {
		return nil, csvError(m.err, lr, 1)
	}
	m.meta.SHA256 = hex.EncodeToString(h.Sum(nil))
	if err := commitDataset(m.meta, tmp, dir); err != nil {
		return nil, err
	}
	return &IngestResult{SHA256: m.meta.SHA256, Rows: m.meta.Rows}, nil
}

// errIngestStopped ends the file's copy when the masking stopped first.
var errIngestStopped = errors.New("sandbox: ingest stopped")

// checkIngest checks what can be checked before reading the file.
func checkIngest(schema *policies.Schema, pseudoKey []byte, cons Pseudonymiser) error {
	if err := schema.Validate(); err != nil {
		return err
	}
	if consortiumColumns(schema) && cons == nil {
		return ErrNoConsortium
	}
	if len(pseudoKey) < 32 {
		return errors.New("sandbox: pseudonym key must be at least 32 bytes")
	}
	return nil
}

// maskColumns reads the CSV from the pipe r and writes its masked columns into tmp:
// the header, then the records in batches, then the columns' ends. It
// returns the dataset's meta without the file's digest.
func maskColumns(ctx context.Context, r *io.PipeReader, schema *policies.Schema, pseudoKey []byte, tmp string, enc *heIngest, cons Pseudonymiser) (meta *tableMeta, err error) {
	cr := newCSVReader(r)
	header, err := cr.header()
	if err != nil {
		return nil, err
	}
	fields, err := headerFields(header, schema)
	if err != nil {
		return nil, err
	}
	cols, err := openColumns(ctx, schema, fields, pseudoKey, tmp, enc, cons)
	defer func() {
		if err != nil {
			closeColumns(cols)
		}
	}()
	if err != nil {
		return nil, err
	}
	if enc != nil {
		if err := enc.open(filepath.Join(tmp, heDir)); err != nil {
			return nil, err
		}
		defer enc.abort()
	}
	rows, err := maskRows(ctx, cr, func() { r.CloseWithError(errIngestStopped) }, cols, enc)
	if err != nil {
		return nil, err
	}
	if rows == 0 {
		// A header alone registers nothing anyone could query; most
		// likely the wrong file.
		return nil, &LineError{Line: 2, Msg: "no data rows: the file holds only a header"}
	}
	return finishColumns(ctx, schema, cols, enc, rows)
}

// headerFields maps each schema column to its field in the header (names
// compared trimmed and lower-cased, a leading BOM ignored).
func headerFields(header []string, schema *policies.Schema) ([]int, error) {
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
	fields := make([]int, len(schema.Columns))
	for i, c := range schema.Columns {
		p, ok := seen[c.Name]
		if !ok {
			return nil, &LineError{Line: 1, Msg: fmt.Sprintf("the header lacks schema column %q", c.Name)}
		}
		fields[i] = p
	}
	return fields, nil
}

// openColumns creates each schema column's writer (a compressed file in
// tmp, or the encryptor's buffer for a sensitive column of an encrypted
// dataset) and, for consortium identifiers, its pseudonym pipeline. On an
// error the columns returned so far are for closeColumns.
func openColumns(ctx context.Context, schema *policies.Schema, fields []int, pseudoKey []byte, tmp string, enc *heIngest, cons Pseudonymiser) ([]*colIngest, error) {
	cols := make([]*colIngest, 0, len(schema.Columns))
	for i, c := range schema.Columns {
		var w *colWriter
		if enc != nil && enc.col(c.Name) >= 0 {
			w = &colWriter{kind: kindNum, sink: &enc.vals[enc.col(c.Name)]}
		} else {
			var err error
			if w, err = newColWriter(filepath.Join(tmp, c.Name+".col"), columnKind(c)); err != nil {
				return cols, err
			}
		}
		ci := newColIngest(c, fields[i], w, pseudoKey)
		if w.sink != nil {
			ci.he = enc.col(c.Name)
		}
		if c.Class == policies.Identifier && c.Pseudonym == policies.PseudonymConsortium {
			ci.pipe = newConsortiumPipe(ctx, c.Name, w, cons)
		}
		cols = append(cols, ci)
	}
	return cols, nil
}

// closeColumns stops the columns of a failed ingest.
func closeColumns(cols []*colIngest) {
	for _, ci := range cols {
		if ci.pipe != nil {
			ci.pipe.abort()
			ci.pipe = nil
		}
		ci.w.close()
	}
}

// maskRows masks the records: one goroutine reads them in batches, one
// goroutine per column masks its values batch after batch, each at its own
// pace (a column may run a few batches ahead of another), and this one
// accounts for the batches in the file's order once every column is done
// with them: the rows, an encrypted dataset's values, and the first
// problem in the order a row-by-row reading meets them (a row's columns in
// schema order, then the row count's limit, then the next record's CSV
// error). stop makes a blocked read of the file return. It returns how
// many rows it masked; on return no goroutine of it runs.
func maskRows(ctx context.Context, cr *csvReader, stop func(), cols []*colIngest, enc *heIngest) (int64, error) {
	// inflight is how many batches are being read, masked or accounted
	// for. The columns' paces differ (the identifier's HMAC is the
	// slowest); with 4 a fast column waited on the slow one and the cores
	// idled: BenchmarkIngest went from ~2.26M to ~2.76M rows/s with 16,
	// for ~18 MiB more peak heap (still the same whatever the file's size).
	const inflight = 16
	free := make(chan *maskBatch, inflight)
	for range inflight {
		free <- newMaskBatch(len(cols))
	}
	full := make(chan *maskBatch, inflight)
	done := make(chan *maskBatch, inflight)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { readBatches(cr, free, full, quit) })
	ins := make([]chan *maskBatch, len(cols))
	for i, ci := range cols {
		ins[i] = make(chan *maskBatch, inflight)
		wg.Go(func() { runColumn(i, ci, ins[i], done, quit) })
	}
	var once sync.Once
	shutdown := func(failed bool) {
		once.Do(func() {
			if failed {
				for _, ci := range cols {
					if ci.pipe != nil {
						ci.pipe.cancel() // a column blocked on its pipeline returns
					}
				}
			}
			close(quit)
			stop()
			wg.Wait()
		})
	}
	defer shutdown(true)
	var rows int64
	next := 0 // the next batch to account for
	ready := map[int]*maskBatch{}
	for fullc := full; ; {
		select {
		case b, ok := <-fullc:
			if !ok {
				fullc = nil
				continue
			}
			if err := ctx.Err(); err != nil {
				return rows, err
			}
			b.left.Store(int32(len(cols)))
			for _, in := range ins {
				in <- b // never blocks: at most inflight batches exist
			}
		case b := <-done:
			ready[b.seq] = b
			for b := ready[next]; b != nil; b = ready[next] {
				delete(ready, next)
				next++
				if col, err := batchError(b, cols, rows, enc); col >= 0 || err != nil {
					shutdown(true)
					if col >= 0 {
						// The column's pseudonym pipeline failed: its cause.
						p := cols[col].pipe
						cols[col].pipe = nil // stopped, not aborted
						return rows, p.stop()
					}
					return rows, err
				}
				rows += int64(b.csv.n)
				if enc != nil {
					for i, ci := range cols {
						if ci.he >= 0 {
							enc.vals[ci.he] = append(enc.vals[ci.he], b.sinks[i]...)
						}
					}
					if enc.full() {
						if err := enc.flush(ctx, false); err != nil {
							return rows, err
						}
					}
				}
				if b.csv.err == io.EOF {
					shutdown(false)
					return rows, nil
				}
				free <- b
			}
		}
	}
}

// maskBatch is a batch of records on its way through the columns.
type maskBatch struct {
	csv   csvBatch
	seq   int          // its place in the file
	at    []int        // per column: the record it refused, or csv.n
	errs  []error      // per column: why
	sinks [][]float64  // per column: an encrypted dataset's sensitive values
	left  atomic.Int32 // columns not done with it
}

func newMaskBatch(cols int) *maskBatch {
	return &maskBatch{at: make([]int, cols), errs: make([]error, cols), sinks: make([][]float64, cols)}
}

// readBatches reads batches into free ones and sends them on, in order,
// until the file ends, a record is bad, or quit.
func readBatches(cr *csvReader, free <-chan *maskBatch, full chan<- *maskBatch, quit <-chan struct{}) {
	defer close(full)
	for seq := 0; ; seq++ {
		var b *maskBatch
		select {
		case b = <-free:
		case <-quit:
			return
		}
		cr.readBatch(&b.csv)
		b.seq = seq
		select {
		case full <- b:
		case <-quit:
			return
		}
		if b.csv.err != nil {
			return
		}
	}
}

// runColumn masks column i of each batch it is given, in order, and
// hands a batch on once the last column is done with it. After a refused
// value it only hands the batches on: the ingest stops at that batch.
func runColumn(i int, ci *colIngest, in <-chan *maskBatch, done chan<- *maskBatch, quit <-chan struct{}) {
	failed := false
	for {
		var b *maskBatch
		select {
		case b = <-in:
		case <-quit:
			return
		}
		if failed {
			b.at[i], b.errs[i] = b.csv.n, nil
		} else {
			if ci.he >= 0 {
				b.sinks[i] = b.sinks[i][:0]
				ci.w.sink = &b.sinks[i]
			}
			b.at[i], b.errs[i] = ci.batch(&b.csv)
			failed = b.errs[i] != nil
		}
		if b.left.Add(-1) == 0 {
			done <- b // never blocks: at most inflight batches exist
		}
	}
}

// batchError returns the first problem of a masked batch: the first
// refused value (the lowest row, then the first column), unless an
// encrypted dataset's row limit comes before it, else the CSV's error
// after the batch. A column whose pseudonym pipeline failed is returned
// as col (its error is the pipeline's); otherwise col is -1.
func batchError(mb *maskBatch, cols []*colIngest, rows int64, enc *heIngest) (col int, err error) {
	b := &mb.csv
	bad, col := b.n, -1
	for i, err := range mb.errs {
		if err != nil && mb.at[i] < bad {
			bad, col = mb.at[i], i
		}
	}
	limit := b.n // the row past the limit, if in this batch
	if enc != nil && rows+int64(b.n) > HEMaxRows {
		limit = int(HEMaxRows - rows)
	}
	switch {
	case col >= 0 && bad <= limit:
		ci := cols[col]
		if ci.pipe != nil && errors.Is(mb.errs[col], errPipe) {
			return col, nil
		}
		return -1, &LineError{Line: b.lines[bad], Column: ci.col.Name, Msg: mb.errs[col].Error()}
	case limit < b.n:
		return -1, &LineError{Line: b.lines[limit], Msg: fmt.Sprintf("an encrypted dataset holds at most %d rows", HEMaxRows)}
	case b.err != nil && b.err != io.EOF:
		return -1, b.err
	}
	return -1, nil
}

// finishColumns completes the encryption and the pseudonym pipelines,
// closes the columns and returns the dataset's meta.
func finishColumns(ctx context.Context, schema *policies.Schema, cols []*colIngest, enc *heIngest, rows int64) (*tableMeta, error) {
	if enc != nil {
		if err := enc.flush(ctx, true); err != nil {
			return nil, err
		}
		if err := enc.finish(rows); err != nil {
			return nil, err
		}
	}
	for _, ci := range cols {
		if p := ci.pipe; p != nil {
			ci.pipe = nil // finished: not aborted on a later error
			if err := p.finish(); err != nil {
				return nil, err
			}
		}
	}
	meta := &tableMeta{Schema: *schema, Rows: rows}
	for _, ci := range cols {
		w := ci.w
		if err := w.close(); err != nil {
			return nil, err
		}
		if w.sink != nil {
			meta.Encrypted = append(meta.Encrypted, ci.col.Name)
			continue
		}
		cm := colMeta{Name: ci.col.Name, Kind: w.kind}
		if w.kind == kindDict {
			cm.Dict = w.keys
		}
		meta.Columns = append(meta.Columns, cm)
	}
	return meta, nil
}

// commitDataset writes meta.json into tmp and moves tmp to dir.
func commitDataset(meta *tableMeta, tmp, dir string) error {
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o600); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// clipVal quotes a value of the data (or of a shipment) in an error.
func clipVal(s string) string { return chain.Clip(s, 32) }

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
