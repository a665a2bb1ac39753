package sandbox

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"io"
)

// csvReader splits a CSV into records exactly as encoding/csv's Reader
// does with ingest's settings (comma ',', no comments, no lazy quotes, no
// trimming, a fixed number of fields once the header is read): \r\n is
// read as \n, empty lines are skipped, quoted fields may hold commas,
// doubled quotes and line breaks, and the errors are the same
// *csv.ParseError values at the same lines (FuzzCSVReader compares the
// two). It is faster for the common case, a line without quotes, which it
// splits at its commas directly; and it reads records in batches whose
// fields lie back to back in one buffer, which the ingest's column
// workers read concurrently.
type csvReader struct {
	r    io.Reader
	buf  []byte
	pos  int   // start of the unread bytes in buf
	scan int   // buf[pos:scan] holds no '\n'
	end  int   // end of the bytes read into buf
	rerr error // the reader's error, once it returned one
	// numLine is the number of lines read, as encoding/csv counts them.
	numLine int
	// fields is the number of fields per record, 0 until the header sets it.
	fields int
}

func newCSVReader(r io.Reader) *csvReader {
	return &csvReader{r: r, buf: make([]byte, 256<<10)}
}

// csvBatch is a run of records: their fields' bytes back to back in text.
type csvBatch struct {
	text []byte
	// bounds are each field's start and end in text, record after record.
	bounds []int
	lines  []int // the line each record starts on
	n      int   // records
	nf     int   // fields per record
	ascii  bool  // text is all ASCII (so every field is valid UTF-8)
	// err ends the batch, after its n records: io.EOF at the end of the
	// file, else the CSV's error (nil if the batch is only full).
	err error
}

// Batch bounds: rows, and bytes of field text (lines may be long).
const (
	batchRows = 2048
	batchText = 2 << 20
)

// field returns field f of record rec.
func (b *csvBatch) field(rec, f int) []byte {
	k := 2 * (rec*b.nf + f)
	return b.text[b.bounds[k]:b.bounds[k+1]]
}

// addField ends the field that started at start in text.
func (b *csvBatch) addField(start int) {
	b.bounds = append(b.bounds, start, len(b.text))
}

func (b *csvBatch) reset(nf int) {
	if nf > 0 && cap(b.bounds) < 2*nf*batchRows { // a batch's full size, once: not grown by doubling
		b.text, b.bounds, b.lines = make([]byte, 0, batchText+batchText/8), make([]int, 0, 2*nf*batchRows), make([]int, 0, batchRows)
	}
	b.text, b.bounds, b.lines = b.text[:0], b.bounds[:0], b.lines[:0]
	b.n, b.nf, b.err, b.ascii = 0, nf, nil, false
}

// header reads the first record and fixes the number of fields to its
// length.
func (r *csvReader) header() ([]string, error) {
	var b csvBatch
	b.reset(0)
	if _, err := r.readRecord(&b); err != nil {
		return nil, err
	}
	out := make([]string, len(b.bounds)/2)
	for i := range out {
		out[i] = string(b.text[b.bounds[2*i]:b.bounds[2*i+1]])
	}
	r.fields = len(out)
	return out, nil
}

// readBatch fills b with the next records, up to the batch bounds, and
// sets b.err when the file ends or a record is bad.
func (r *csvReader) readBatch(b *csvBatch) {
	b.reset(r.fields)
	for b.n < batchRows && len(b.text) < batchText {
		line, err := r.readRecord(b)
		if err != nil {
			b.err = err
			break
		}
		b.lines = append(b.lines, line)
		b.n++
	}
	b.ascii = isASCII(b.text)
}

// isASCII reports whether b holds only ASCII bytes, 8 at a time.
func isASCII(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// fill reads more bytes into buf, keeping the unread ones.
func (r *csvReader) fill() {
	if r.pos > 0 {
		n := copy(r.buf, r.buf[r.pos:r.end])
		r.scan -= r.pos
		r.end, r.pos = n, 0
	}
	if r.end == len(r.buf) {
		r.buf = append(r.buf, make([]byte, len(r.buf))...)
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	if err != nil {
		r.rerr = err
	}
}

// readLine is encoding/csv's: the next line with its '\n' (\r\n read as
// \n; a last line without one, with a trailing \r dropped), valid until
// the next call.
func (r *csvReader) readLine() ([]byte, error) {
	var line []byte
	var err error
	for {
		if i := bytes.IndexByte(r.buf[r.scan:r.end], '\n'); i >= 0 {
			line = r.buf[r.pos : r.scan+i+1]
			r.pos = r.scan + i + 1
			r.scan = r.pos
			break
		}
		r.scan = r.end
		if r.rerr != nil {
			line, err = r.buf[r.pos:r.end], r.rerr
			r.pos = r.end
			if len(line) > 0 && err == io.EOF {
				err = nil
				if line[len(line)-1] == '\r' {
					line = line[:len(line)-1]
				}
			}
			break
		}
		r.fill()
	}
	r.numLine++
	if n := len(line); n >= 2 && line[n-2] == '\r' && line[n-1] == '\n' {
		line[n-2] = '\n'
		line = line[:n-1]
	}
	return line, err
}

func lengthNL(b []byte) int {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return 1
	}
	return 0
}

// readRecord appends the next record's fields to b and returns the line it
// starts on. On an error b is left as it was (io.EOF: no more records).
func (r *csvReader) readRecord(b *csvBatch) (int, error) {
	// Skip empty lines.
	var line []byte
	var errRead error
	for errRead == nil {
		line, errRead = r.readLine()
		if errRead == nil && len(line) == lengthNL(line) {
			line = nil
			continue
		}
		break
	}
	if errRead == io.EOF {
		return 0, errRead
	}
	textLen, boundsLen := len(b.text), len(b.bounds)
	recLine := r.numLine
	var err error
	if errRead == nil && bytes.IndexByte(line, '"') < 0 {
		// The common case: no quotes, so the fields are what lies
		// between the commas.
		body := line[:len(line)-lengthNL(line)]
		base := len(b.text)
		b.text = append(b.text, body...)
		start := base
		for i, c := range body {
			if c == ',' {
				b.bounds = append(b.bounds, start, base+i)
				start = base + i + 1
			}
		}
		b.bounds = append(b.bounds, start, len(b.text))
	} else {
		err = r.parseQuoted(b, line, errRead, recLine)
	}
	if nf := (len(b.bounds) - boundsLen) / 2; err == nil && r.fields > 0 && nf != r.fields {
		err = &csv.ParseError{StartLine: recLine, Line: recLine, Column: 1, Err: csv.ErrFieldCount}
	}
	if err != nil {
		b.text, b.bounds = b.text[:textLen], b.bounds[:boundsLen]
		return 0, err
	}
	return recLine, nil
}

// parseQuoted parses a record that holds quotes (or ends with the
// reader's error), as encoding/csv's readRecord does.
func (r *csvReader) parseQuoted(b *csvBatch, line []byte, errRead error, recLine int) error {
	type position struct{ line, col int }
	pos := position{line: r.numLine, col: 1}
parseField:
	for {
		if len(line) == 0 || line[0] != '"' {
			// An unquoted field.
			i := bytes.IndexByte(line, ',')
			field := line
			if i >= 0 {
				field = field[:i]
			} else {
				field = field[:len(field)-lengthNL(field)]
			}
			if j := bytes.IndexByte(field, '"'); j >= 0 {
				return &csv.ParseError{StartLine: recLine, Line: r.numLine, Column: pos.col + j, Err: csv.ErrBareQuote}
			}
			start := len(b.text)
			b.text = append(b.text, field...)
			b.addField(start)
			if i >= 0 {
				line = line[i+1:]
				pos.col += i + 1
				continue parseField
			}
			return errRead
		}
		// A quoted field.
		start := len(b.text)
		line = line[1:]
		pos.col++
		for {
			i := bytes.IndexByte(line, '"')
			switch {
			case i >= 0:
				b.text = append(b.text, line[:i]...)
				line = line[i+1:]
				pos.col += i + 1
				switch {
				case len(line) > 0 && line[0] == '"':
					// "" is a quote.
					b.text = append(b.text, '"')
					line = line[1:]
					pos.col++
				case len(line) > 0 && line[0] == ',':
					// ", ends the field.
					line = line[1:]
					pos.col++
					b.addField(start)
					continue parseField
				case lengthNL(line) == len(line):
					// "\n (or the end of the file) ends the record.
					b.addField(start)
					return errRead
				default:
					return &csv.ParseError{StartLine: recLine, Line: r.numLine, Column: pos.col - 1, Err: csv.ErrQuote}
				}
			case len(line) > 0:
				// The line ends inside the quotes: the field goes on on
				// the next line.
				b.text = append(b.text, line...)
				if errRead != nil {
					return errRead
				}
				pos.col += len(line)
				line, errRead = r.readLine()
				if len(line) > 0 {
					pos.line++
					pos.col = 1
				}
				if errRead == io.EOF {
					errRead = nil
				}
			default:
				// The file ends inside the quotes.
				if errRead == nil {
					return &csv.ParseError{StartLine: recLine, Line: pos.line, Column: pos.col, Err: csv.ErrQuote}
				}
				b.addField(start)
				return errRead
			}
		}
	}
}
