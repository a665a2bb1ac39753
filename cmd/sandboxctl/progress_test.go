package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

// The bar is drawn only on a terminal; it counts, shows a percentage and
// is erased by Done.
func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	g := &globals{stderr: &buf}
	p := newProgress(g.stderr, "verifying entries", 200, false)
	p.Add(100)
	p.Done()
	if buf.Len() != 0 {
		t.Fatalf("drew on a non-terminal: %q", buf.String())
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if isTerminal(f) || isTerminal(io.Discard) {
		t.Fatal("a file is not a terminal")
	}
	p = &progress{w: &buf, label: "uploading", total: 2e6, bytes: true, start: p.start}
	p.Add(1e6)
	if s := buf.String(); !strings.Contains(s, "uploading [===============               ]  50% 1.0/2.0 MB") {
		t.Fatalf("bar %q", s)
	}
	p.Add(1e6) // the last update is always drawn
	if !strings.Contains(buf.String(), "100% 2.0/2.0 MB") {
		t.Fatalf("bar %q", buf.String())
	}
	p.Done()
	if !strings.HasSuffix(buf.String(), "\r\033[K") {
		t.Fatalf("not erased: %q", buf.String())
	}
}
