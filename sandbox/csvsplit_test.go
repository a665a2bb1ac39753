package sandbox

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// csvRecords is what a CSV reader made of a file: the header, each
// record with its first line, and the error that ended it.
type csvRecords struct {
	header []string
	recs   []string // "line: fields"
	err    string
}

// stdRecords reads data with encoding/csv as ingest used to.
func stdRecords(data []byte) csvRecords {
	var out csvRecords
	cr := csv.NewReader(bytes.NewReader(data))
	cr.ReuseRecord = true
	h, err := cr.Read()
	if err != nil {
		out.err = errString(err)
		return out
	}
	out.header = append([]string(nil), h...)
	cr.FieldsPerRecord = len(h)
	for {
		rec, err := cr.Read()
		if err != nil {
			out.err = errString(err)
			return out
		}
		line, _ := cr.FieldPos(0)
		out.recs = append(out.recs, fmt.Sprintf("%d: %q", line, rec))
	}
}

// splitRecords reads the same with csvReader.
func splitRecords(r io.Reader) csvRecords {
	var out csvRecords
	cr := newCSVReader(r)
	h, err := cr.header()
	if err != nil {
		out.err = errString(err)
		return out
	}
	out.header = h
	var b csvBatch
	for {
		cr.readBatch(&b)
		for i := range b.n {
			rec := make([]string, b.nf)
			for f := range rec {
				rec[f] = string(b.field(i, f))
			}
			out.recs = append(out.recs, fmt.Sprintf("%d: %q", b.lines[i], rec))
		}
		if b.err != nil {
			out.err = errString(b.err)
			return out
		}
	}
}

func errString(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("parse error: start %d, line %d, column %d: %v", pe.StartLine, pe.Line, pe.Column, pe.Err)
	}
	return err.Error()
}

func sameRecords(t *testing.T, want, got csvRecords) {
	t.Helper()
	if fmt.Sprint(want.header) != fmt.Sprint(got.header) || want.err != got.err || len(want.recs) != len(got.recs) {
		t.Fatalf("encoding/csv: header %q, %d records, %s\ncsvReader:    header %q, %d records, %s", want.header, len(want.recs), want.err, got.header, len(got.recs), got.err)
	}
	for i := range want.recs {
		if want.recs[i] != got.recs[i] {
			t.Fatalf("record %d: encoding/csv %s, csvReader %s", i, want.recs[i], got.recs[i])
		}
	}
}

var csvCases = []struct{ name, data string }{
	{"plain", "a,b,c\n1,2,3\n4,5,6\n"},
	{"no final newline", "a,b\n1,2"},
	{"crlf", "a,b\r\n1,2\r\n3,4\r\n"},
	{"trailing cr at eof", "a,b\n1,2\r"},
	{"lone cr kept", "a,b\n1\r2,3\n"},
	{"empty lines skipped", "a,b\n\n1,2\n\r\n\n3,4\n"},
	{"quoted comma and quote", "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n"},
	{"quoted newline", "a,b\n\"line1\nline2\",2\n3,4\n"},
	{"quoted crlf", "a,b\n\"l1\r\nl2\",2\r\n"},
	{"empty quoted", "a,b\n\"\",\"\"\n"},
	{"bare quote", "a,b\n1,x\"y\n"},
	{"quote after quoted field", "a,b\n\"x\"y,2\n"},
	{"unterminated quote", "a,b\n\"open,2\n3,4\n"},
	{"unterminated at eof", "a,b\n1,\"open"},
	{"field count", "a,b\n1,2,3\n"},
	{"too few fields", "a,b,c\n1,2\n"},
	{"empty file", ""},
	{"only newlines", "\n\n"},
	{"header only", "a,b\n"},
	{"empty fields", "a,b,c\n,,\n"},
	{"quoted header", "\"a\",\"b\"\n1,2\n"},
	{"bom", "\xef\xbb\xbfa,b\n1,2\n"},
	{"error after good rows", "a,b\n1,2\n3,4\n5\n"},
	{"quote at end of line", "a,b\n1,\"2\"\n"},
	{"quote at eof", "a,b\n1,\"2\""},
}

// csvReader reads what encoding/csv reads, record for record and error
// for error, whatever sizes its reads return.
func TestCSVReaderMatchesEncodingCSV(t *testing.T) {
	long := "a,b\n" + strings.Repeat("xxxxxxxxxx,yyyyyyyyyy\n", 50_000) + "\"q\nq\",1\n"
	cases := append(csvCases, struct{ name, data string }{"longer than a buffer", long})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := stdRecords([]byte(c.data))
			sameRecords(t, want, splitRecords(strings.NewReader(c.data)))
			sameRecords(t, want, splitRecords(iotest.OneByteReader(strings.NewReader(c.data))))
		})
	}
}

// Batches end at their bounds and the next goes on where they ended.
func TestCSVReaderBatches(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("n,s\n")
	rows := 2*batchRows + 10
	for i := range rows {
		fmt.Fprintf(&sb, "%d,v%d\n", i, i)
	}
	cr := newCSVReader(strings.NewReader(sb.String()))
	if _, err := cr.header(); err != nil {
		t.Fatal(err)
	}
	var b csvBatch
	next := 0
	for b.err == nil {
		cr.readBatch(&b)
		if b.n > batchRows {
			t.Fatalf("a batch of %d records", b.n)
		}
		for i := range b.n {
			if got := string(b.field(i, 0)); got != fmt.Sprint(next) || b.lines[i] != next+2 {
				t.Fatalf("record %d: %q at line %d", next, got, b.lines[i])
			}
			next++
		}
	}
	if b.err != io.EOF || next != rows {
		t.Fatalf("%d records, then %v", next, b.err)
	}
}

func FuzzCSVReader(f *testing.F) {
	for _, c := range csvCases {
		f.Add([]byte(c.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := stdRecords(data)
		sameRecords(t, want, splitRecords(bytes.NewReader(data)))
		sameRecords(t, want, splitRecords(iotest.HalfReader(bytes.NewReader(data))))
	})
}
