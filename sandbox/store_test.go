package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stagedFiles lists what the store's staging area holds.
func stagedFiles(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.dir, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// failingReader gives n bytes of r, then fails as a dropped connection does.
type failingReader struct {
	r io.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("connection reset by peer")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}

// No upload leaves anything staged when it fails: a bad row, a header
// alone, a connection dropped halfway, a cancelled request.
func TestFailedUploadsLeaveNothingStaged(t *testing.T) {
	schema := DemoSchema()
	data := demoCSV(t, 2000)
	header, _, _ := bytes.Cut(data, []byte("\n"))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		r    io.Reader
		want string
	}{
		{"bad row", context.Background(), strings.NewReader(string(data[:len(data)/2]) + "\nnot,a,row\n"), "line"},
		{"header only", context.Background(), bytes.NewReader(append(header, '\n')), "no data rows: the file holds only a header"},
		{"dropped connection", context.Background(), &failingReader{r: bytes.NewReader(data), n: len(data) / 2}, "connection reset"},
		{"cancelled", cancelled, bytes.NewReader(data), "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Upload(tc.ctx, tc.r, &schema, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("upload: %v, want %q", err, tc.want)
			}
			if left := stagedFiles(t, s); len(left) != 0 {
				t.Fatalf("left staged: %v", left)
			}
		})
	}
}

// A node starting again sweeps what was staged before: an upload that was
// never registered, and an ingest cut off by a crash.
func TestOpenStoreSweepsStagedUploads(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	schema := DemoSchema()
	res, err := s.Upload(context.Background(), bytes.NewReader(demoCSV(t, 500)), &schema, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Staged(res.SHA256); !ok {
		t.Fatal("upload not staged")
	}
	// What a crash mid-ingest leaves.
	if err := os.MkdirAll(filepath.Join(dir, "uploads", "tmp-0123456789abcdef.ingest"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A registered dataset stays.
	if err := s.Bind(res.SHA256, "kept"); err != nil {
		t.Fatal(err)
	}
	res2, err := s.Upload(context.Background(), bytes.NewReader(demoCSV(t, 300)), &schema, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(stagedFiles(t, s)); n != 2 {
		t.Fatalf("%d staged before the restart, want 2", n)
	}
	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if left := stagedFiles(t, s); len(left) != 0 {
		t.Fatalf("left staged after a restart: %v", left)
	}
	if _, _, ok := s.Staged(res2.SHA256); ok {
		t.Fatal("an unregistered upload survived the restart")
	}
	if !s.Has("kept") {
		t.Fatal("the sweep removed a registered dataset")
	}
}
