package sandbox

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
)

var consortiumSchema = &policies.Schema{Columns: []policies.Column{
	{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
	{Name: "household", Type: policies.TypeString, Class: policies.Identifier},
	{Name: "region", Type: policies.TypeString, Class: policies.Public},
}}

func consortiumCSV(rows int) []byte {
	var b bytes.Buffer
	b.WriteString("person_id,household,region\n")
	for i := range rows {
		fmt.Fprintf(&b, "P%07d,H%d,r%d\n", i, i/3, i%5)
	}
	return b.Bytes()
}

// fakePRF stands in for the threshold OPRF: ids in, 64-byte outputs out,
// counting batches and the batches in flight at once.
type fakePRF struct {
	calls, inflight, peak atomic.Int64
	failAt                int64 // fail the n-th call (0: never)
	mu                    sync.Mutex
	seen                  []string // ids it was given (the test checks none is missing)
}

func (f *fakePRF) fn(ctx context.Context, col string, ids [][]byte) ([][]byte, error) {
	n := f.calls.Add(1)
	cur := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		p := f.peak.Load()
		if cur <= p || f.peak.CompareAndSwap(p, cur) {
			break
		}
	}
	if n == f.failAt {
		return nil, errors.New("node2: connection refused")
	}
	out := make([][]byte, len(ids))
	for i, id := range ids {
		s := sha512.Sum512(append([]byte(col+"|"), id...))
		out[i] = s[:]
	}
	f.mu.Lock()
	for _, id := range ids {
		f.seen = append(f.seen, string(id))
	}
	f.mu.Unlock()
	return out, nil
}

func TestIngestConsortiumPseudonyms(t *testing.T) {
	const rows = 3*ConsortiumBatch + 17
	key := bytes.Repeat([]byte{1}, 32)
	dir := filepath.Join(t.TempDir(), "ds")
	f := &fakePRF{}
	res, err := IngestConsortium(context.Background(), bytes.NewReader(consortiumCSV(rows)), consortiumSchema, key, dir, nil, f.fn)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != rows || f.calls.Load() != 4 {
		t.Fatalf("%d rows in %d batches, want %d in 4", res.Rows, f.calls.Load(), rows)
	}
	tab, err := LoadTable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps := tab.Cols["person_id"].Pseudo
	if len(ps) != rows*PseudonymSize {
		t.Fatalf("%d pseudonym bytes for %d rows", len(ps), rows)
	}
	for _, i := range []int{0, 1, ConsortiumBatch - 1, ConsortiumBatch, 2*ConsortiumBatch + 5, rows - 1} {
		want := sha512.Sum512([]byte(fmt.Sprintf("person_id|P%07d", i)))
		if !bytes.Equal(ps[i*PseudonymSize:(i+1)*PseudonymSize], want[:PseudonymSize]) {
			t.Fatalf("row %d: pseudonym out of order", i)
		}
	}
	// The agency-pseudonymised column is untouched by the pipeline.
	if len(tab.Cols["household"].Pseudo) != rows*PseudonymSize || len(f.seen) != rows || strings.HasPrefix(f.seen[0], "H") {
		t.Fatal("the pipeline saw the wrong column")
	}
}

func TestIngestConsortiumFailures(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	ctx := context.Background()
	t.Run("no pseudonym service", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ds")
		if _, err := Ingest(ctx, bytes.NewReader(consortiumCSV(10)), consortiumSchema, key, dir); !errors.Is(err, ErrNoConsortium) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a batch fails", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ds")
		f := &fakePRF{failAt: 2}
		_, err := IngestConsortium(ctx, bytes.NewReader(consortiumCSV(5*ConsortiumBatch)), consortiumSchema, key, dir, nil, f.fn)
		if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "person_id") {
			t.Fatalf("got %v", err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatal("a failed ingest left its dataset")
		}
		if _, err := os.Stat(dir + ".ingest"); !os.IsNotExist(err) {
			t.Fatal("a failed ingest left its temporary directory")
		}
	})
	t.Run("bad line", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ds")
		data := append(consortiumCSV(10), []byte(",H1,r1\n")...)
		_, err := IngestConsortium(ctx, bytes.NewReader(data), consortiumSchema, key, dir, nil, (&fakePRF{}).fn)
		var le *LineError
		if !errors.As(err, &le) || le.Line != 12 || le.Column != "person_id" {
			t.Fatalf("got %v", err)
		}
	})
}
