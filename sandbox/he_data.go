package sandbox

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// heDir is the folder of a dataset's ciphertexts.
const heDir = "he"

// A quantity is one encrypted per-row value: x/B ("x:c"), (x/B)² ("xx:c")
// or x/Bx·y/By ("xy:a,b") for sensitive columns c, a, b. Sums of these are
// all the engine needs for COUNT..REGR_INTERCEPT without ever multiplying
// ciphertexts.
type quantity struct {
	Name string
	A    int // index into the sensitive columns
	B    int // second factor (xx: A again, x: -1)
}

func heQuantities(cols []string) []quantity {
	var qs []quantity
	for i, c := range cols {
		qs = append(qs, quantity{Name: "x:" + c, A: i, B: -1}, quantity{Name: "xx:" + c, A: i, B: i})
	}
	for i := range cols {
		for j := i + 1; j < len(cols); j++ {
			qs = append(qs, quantity{Name: "xy:" + cols[i] + "," + cols[j], A: i, B: j})
		}
	}
	return qs
}

// heMeta is he/meta.json.
type heMeta struct {
	Params     string             `json:"params"`
	Rows       int64              `json:"rows"`
	Columns    []string           `json:"columns"`
	Norms      map[string]float64 `json:"norms"` // B of each column: max |bound|
	Quantities []heFile           `json:"quantities"`
}

type heFile struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	Count  int    `json:"ciphertexts"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// heIngest encrypts the sensitive columns of an ingest, one ciphertext
// (N rows) at a time per quantity, on all cores.
type heIngest struct {
	cols  []string
	norms []float64
	qs    []quantity
	pk    *rlwe.PublicKey
	vals  [][]float64 // rows of the current batch, per sensitive column
	dir   string
	files []*os.File
	bufs  []*bufio.Writer
	hs    []hash.Hash
	cts   []int
	bytes []int64
	encs  []*encryptor
	done  bool
	// pending is the batch being encrypted while the next one is read
	// (one at a time, so ciphertexts are written in order); spare is the
	// previous batch's buffers, for reuse.
	pending chan error
	spare   [][]float64
	// batchRows is how many rows are encrypted together.
	batchRows int
}

// heEncryptable says why a sensitive column cannot be encrypted (nil if
// it can: a number with non-zero bounds B, stored as x/B).
func heEncryptable(c policies.Column) error {
	switch {
	case c.Type != policies.TypeInt && c.Type != policies.TypeFloat:
		return fmt.Errorf("%w: sensitive column %q is a %s; an encrypted dataset encrypts numbers only", ErrBadData, c.Name, c.Type)
	case len(c.Bounds) != 2:
		return fmt.Errorf("%w: sensitive column %q needs bounds to be encrypted", ErrBadData, c.Name)
	case !(absMax(c.Bounds[0], c.Bounds[1]) > 0):
		return fmt.Errorf("%w: sensitive column %q has bounds [0, 0]", ErrBadData, c.Name)
	}
	return nil
}

// heColumns are the sensitive columns of a schema that he mode holds
// encrypted; strict: every sensitive column must be (an encrypted ingest
// keeps no clear copy of any).
func heColumns(schema *policies.Schema, strict bool) ([]policies.Column, error) {
	var out []policies.Column
	for _, c := range schema.Columns {
		if c.Class != policies.Sensitive {
			continue
		}
		if err := heEncryptable(c); err != nil {
			if strict {
				return nil, err
			}
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// newHEIngest prepares the encryption of cols (from heColumns).
func newHEIngest(cols []policies.Column, pk *rlwe.PublicKey) (*heIngest, error) {
	e := &heIngest{pk: pk}
	for _, c := range cols {
		e.cols = append(e.cols, c.Name)
		e.norms = append(e.norms, absMax(c.Bounds[0], c.Bounds[1]))
	}
	if len(e.cols) == 0 {
		return nil, fmt.Errorf("%w: the schema has no sensitive column to encrypt", ErrBadData)
	}
	if len(e.cols) > 8 {
		return nil, fmt.Errorf("%w: at most 8 sensitive columns can be encrypted, the schema has %d", ErrBadData, len(e.cols))
	}
	e.qs = heQuantities(e.cols)
	e.vals = make([][]float64, len(e.cols))
	return e, nil
}

func (e *heIngest) col(name string) int {
	for i, c := range e.cols {
		if c == name {
			return i
		}
	}
	return -1
}

// full reports whether the buffered rows fill two ciphertexts per worker,
// the batch encrypted together.
func (e *heIngest) full() bool { return len(e.vals[0]) >= e.batchRows }

func (e *heIngest) open(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	e.dir = dir
	for i := range e.qs {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("q%02d.cts", i)))
		if err != nil {
			return err
		}
		h := sha256.New()
		e.files = append(e.files, f)
		e.bufs = append(e.bufs, bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20))
		e.hs = append(e.hs, h)
	}
	e.cts = make([]int, len(e.qs))
	e.bytes = make([]int64, len(e.qs))
	for range runtime.GOMAXPROCS(0) {
		enc, err := newEncryptor(e.pk)
		if err != nil {
			return err
		}
		e.encs = append(e.encs, enc)
	}
	e.batchRows = 2 * heparams.Params().N() * len(e.encs)
	return nil
}

// flush hands the buffered whole ciphertexts' rows to a background
// encryption (or, for the last batch, encrypts everything, waiting) while
// the ingest reads on.
func (e *heIngest) flush(ctx context.Context, last bool) error {
	if err := e.wait(); err != nil {
		return err
	}
	n := heparams.Params().N()
	rows := len(e.vals[0])
	chunks := rows / n
	if last && rows%n != 0 {
		chunks++
	}
	if chunks == 0 {
		return nil
	}
	used := min(chunks*n, rows)
	batch := make([][]float64, len(e.vals))
	for i := range e.vals {
		var next []float64
		if e.spare != nil {
			next = e.spare[i][:0]
		}
		batch[i] = e.vals[i][:used]
		e.vals[i] = append(next, e.vals[i][used:]...)
	}
	e.spare = nil
	if last {
		return e.encryptBatch(ctx, batch, chunks)
	}
	e.pending = make(chan error, 1)
	go func() {
		err := e.encryptBatch(ctx, batch, chunks)
		e.spare = batch
		e.pending <- err
	}()
	return nil
}

// wait waits for the batch being encrypted, if any.
func (e *heIngest) wait() error {
	if e.pending == nil {
		return nil
	}
	err := <-e.pending
	e.pending = nil
	return err
}

// encryptBatch encrypts chunks ciphertexts' worth of rows on all cores and
// appends them to the quantities' files.
func (e *heIngest) encryptBatch(ctx context.Context, batch [][]float64, chunks int) error {
	n := heparams.Params().N()
	rows := len(batch[0])
	out := make([][][]byte, chunks) // chunk -> quantity -> ciphertext
	errs := make([]error, chunks)
	var wg sync.WaitGroup
	var next atomic.Int64
	for _, enc := range e.encs {
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks || ctx.Err() != nil {
					return
				}
				res, err := e.encryptChunk(enc, batch, c*n, min((c+1)*n, rows))
				if err != nil {
					errs[c] = err
					return
				}
				out[c] = res
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return err
	}
	for _, res := range out {
		for qi, b := range res {
			if _, err := e.bufs[qi].Write(b); err != nil {
				return err
			}
			e.cts[qi]++
			e.bytes[qi] += int64(len(b))
		}
	}
	return nil
}

// encryptChunk encrypts rows [lo, hi) of the batch: one ciphertext per
// quantity, row r at coefficient r-lo.
func (e *heIngest) encryptChunk(enc *encryptor, vals [][]float64, lo, hi int) ([][]byte, error) {
	params := heparams.Params()
	out := make([][]byte, len(e.qs))
	ct := rlwe.NewCiphertext(params, 1, 0)
	err := e.encryptRows(enc, vals, lo, hi, func(qi int) *rlwe.Ciphertext { return ct }, func(qi int) {
		out[qi] = heparams.MarshalCiphertext(params, ct)
	})
	return out, err
}

// encryptRows encrypts rows [lo, hi) of vals, one ciphertext per quantity
// (into into(qi), then done(qi)), row r at coefficient r-lo.
func (e *heIngest) encryptRows(enc *encryptor, vals [][]float64, lo, hi int, into func(qi int) *rlwe.Ciphertext, done func(qi int)) error {
	q := heparams.Params().RingQ().SubRings[0].Modulus
	m := make([]uint64, hi-lo)
	for qi, qu := range e.qs {
		a := vals[qu.A][lo:hi]
		na := e.norms[qu.A]
		for i, x := range a {
			v := x / na
			if qu.B >= 0 {
				v *= vals[qu.B][lo+i] / e.norms[qu.B]
			}
			m[i] = encodeCoeff(v, q)
		}
		if err := enc.encrypt(m, into(qi)); err != nil {
			return err
		}
		done(qi)
	}
	return nil
}

// encryptTable encrypts a masked dataset's sensitive columns in memory
// under pk, as an encrypted ingest would have stored them: for he jobs on
// a dataset registered in masked mode (the owner holds its clear columns
// anyway; the result still reaches only the requester).
func encryptTable(ctx context.Context, t *Table, pk *rlwe.PublicKey) (*heData, error) {
	// Only the sensitive columns that can be encrypted; he queries on the
	// others are refused (CheckHE).
	cols, _ := heColumns(&t.Schema, false)
	e, err := newHEIngest(cols, pk)
	if err != nil {
		return nil, err
	}
	vals := make([][]float64, len(e.cols))
	for i, c := range e.cols {
		col, ok := t.Cols[c]
		if !ok || len(col.Num) != t.Rows {
			return nil, fmt.Errorf("%w: sensitive column %q is not held as numbers", ErrBadData, c)
		}
		vals[i] = col.Num
	}
	if t.Rows > HEMaxRows {
		return nil, fmt.Errorf("%w: an encrypted dataset holds at most %d rows, this one %d", ErrLimit, HEMaxRows, t.Rows)
	}
	params := heparams.Params()
	n := params.N()
	chunks := max((t.Rows+n-1)/n, 1)
	d := &heData{meta: heMeta{Params: heparams.Name, Rows: int64(t.Rows), Columns: e.cols, Norms: map[string]float64{}}, cts: map[string][]*rlwe.Ciphertext{}}
	for i, c := range e.cols {
		d.meta.Norms[c] = e.norms[i]
	}
	for _, q := range e.qs {
		d.cts[q.Name] = make([]*rlwe.Ciphertext, chunks)
		d.meta.Quantities = append(d.meta.Quantities, heFile{Name: q.Name, Count: chunks})
	}
	errs := make([]error, chunks)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range runtime.GOMAXPROCS(0) {
		enc, err := newEncryptor(pk)
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks || ctx.Err() != nil {
					return
				}
				into := func(qi int) *rlwe.Ciphertext {
					ct := rlwe.NewCiphertext(params, 1, 0)
					d.cts[e.qs[qi].Name][c] = ct
					return ct
				}
				if err := e.encryptRows(enc, vals, c*n, min((c+1)*n, t.Rows), into, func(int) {}); err != nil {
					errs[c] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, err
	}
	return d, nil
}

// encodeCoeff maps a real value to round(v·2^36) mod q.
func encodeCoeff(v float64, q uint64) uint64 {
	x := math.Round(v * heScale)
	if x >= 0 {
		return uint64(x) % q
	}
	return q - uint64(-x)%q
}

// decodeCoeff maps a coefficient back to a real value (centred lift).
func decodeCoeff(c, q uint64) float64 {
	if c > q/2 {
		return -float64(q-c) / heScale
	}
	return float64(c) / heScale
}

func (e *heIngest) finish(rows int64) error {
	m := heMeta{Params: heparams.Name, Rows: rows, Columns: e.cols, Norms: map[string]float64{}}
	for i, c := range e.cols {
		m.Norms[c] = e.norms[i]
	}
	for i, q := range e.qs {
		if err := e.bufs[i].Flush(); err != nil {
			return err
		}
		if err := e.files[i].Sync(); err != nil {
			return err
		}
		m.Quantities = append(m.Quantities, heFile{Name: q.Name, File: filepath.Base(e.files[i].Name()), Count: e.cts[i], Bytes: e.bytes[i], SHA256: hex.EncodeToString(e.hs[i].Sum(nil))})
		if err := e.files[i].Close(); err != nil {
			return err
		}
	}
	e.done = true
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.dir, "meta.json"), b, 0o600)
}

func (e *heIngest) abort() {
	if e.done {
		return
	}
	_ = e.wait() // the batch in flight writes to the files
	for _, f := range e.files {
		f.Close()
	}
}

// heData is an encrypted dataset's ciphertexts in memory.
type heData struct {
	meta  heMeta
	cts   map[string][]*rlwe.Ciphertext
	bytes int64
}

// loadHE reads and checks a dataset's ciphertexts: every file's digest,
// then every ciphertext's framing.
func loadHE(dir string) (*heData, error) {
	b, err := os.ReadFile(filepath.Join(dir, heDir, "meta.json"))
	if err != nil {
		return nil, err
	}
	var m heMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", dir, err)
	}
	if m.Params != heparams.Name {
		return nil, fmt.Errorf("sandbox: dataset encrypted with %q, this node runs %q", m.Params, heparams.Name)
	}
	params := heparams.Params()
	d := &heData{meta: m, cts: map[string][]*rlwe.Ciphertext{}}
	want := (m.Rows + int64(params.N()) - 1) / int64(params.N())
	for _, q := range m.Quantities {
		raw, err := os.ReadFile(filepath.Join(dir, heDir, filepath.Base(q.File)))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(raw)
		if hex.EncodeToString(sum[:]) != q.SHA256 {
			return nil, fmt.Errorf("%w: %s: digest mismatch (the file was altered)", heparams.ErrBadCiphertext, q.Name)
		}
		if int64(q.Count) != want || q.Count == 0 || len(raw)%q.Count != 0 {
			return nil, fmt.Errorf("%w: %s: %d ciphertexts in %d bytes for %d rows", heparams.ErrBadCiphertext, q.Name, q.Count, len(raw), m.Rows)
		}
		size := len(raw) / q.Count
		cts := make([]*rlwe.Ciphertext, q.Count)
		for i := range cts {
			if cts[i], err = heparams.UnmarshalCiphertext(params, raw[i*size:(i+1)*size]); err != nil {
				return nil, fmt.Errorf("%s: ciphertext %d: %w", q.Name, i, err)
			}
		}
		d.cts[q.Name] = cts
		d.bytes += int64(len(raw))
	}
	return d, nil
}
