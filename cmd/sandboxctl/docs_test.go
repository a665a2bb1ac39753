package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The documentation is the repository's own: it cites no document that is
// not in the repository, and its relative links lead to files that exist.
// Neither do the README or any command's --help.
func TestDocsSelfContained(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(files) < 6 {
		t.Fatalf("docs/*.md: %v %v", files, err)
	}
	files = append(files, "../../README.md")
	link := regexp.MustCompile(`\]\(([^)#:]+)(#[^)]*)?\)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, outside := range []string{"DESIGN.md", "CONTRACT.md"} {
			if bytes.Contains(b, []byte(outside)) {
				t.Errorf("%s cites %s, which is not in the repository", f, outside)
			}
		}
		for _, m := range link.FindAllSubmatch(b, -1) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), string(m[1]))); err != nil {
				t.Errorf("%s links to %s: %v", f, m[1], err)
			}
		}
	}
	for _, c := range commands() {
		var stderr bytes.Buffer
		_ = run(context.Background(), append(strings.Fields(c.name), "--help"), io.Discard, &stderr)
		if h := stderr.String(); !strings.Contains(h, "Usage: sandboxctl "+c.name) || strings.Contains(h, "DESIGN.md") || strings.Contains(h, "CONTRACT.md") {
			t.Errorf("%s --help: %q", c.name, h)
		}
	}
}
