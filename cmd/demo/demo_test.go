package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/demo.golden")

// TestDemoGolden runs "make demo" as a newcomer would, in a copy of the
// source tree without any build output (so a missing build or install
// step fails it), and compares its story with testdata/demo.golden, ids,
// digests, keys, numbers, times and paths normalised: a changed step,
// command, message or refusal fails it. go test ./cmd/demo -update
// rewrites the golden file after a deliberate change.
func TestDemoGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("builds everything and runs a 3-node consortium")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on this machine")
	}
	src := t.TempDir()
	if err := copyTree("../..", src); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	// About 3 minutes on a loaded 2-core machine (measured, with the
	// list join step); twice that before it is called stuck.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "demo")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("make demo failed: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	got := normalise(out.String(), regexp.MustCompile(regexp.QuoteMeta(tmp)+`/sandbox-demo-\d+`))
	golden := filepath.Join("testdata", "demo.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("make demo's story differs from %s at line %d:\n got: %s\nwant: %s\n(go test ./cmd/demo -update rewrites it after a deliberate change)", golden, i+1, g, w)
			}
		}
	}
}

// copyTree copies the source tree, leaving out version control and build
// output (what a fresh clone does not have).
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if rel != "." && (name == ".git" || name == "bin") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if !d.Type().IsRegular() || strings.HasSuffix(name, ".test") || strings.HasSuffix(name, ".out") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
}

var normalisers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`leader node\d`), "leader <node>"},
	// What --wait prints first is the job as submitted: a runner may have
	// claimed it already.
	{regexp.MustCompile(`^(\s*job job-\S+): (authorised|running)$`), "$1: authorised"},
	{regexp.MustCompile(`\b[0-9a-f]{16,}\b`), "<hex>"},
	{regexp.MustCompile(`[A-Za-z0-9+/]{40,}={0,2}|[A-Za-z0-9+/]{16,}=+`), "<b64>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "<time>"},
	{regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s)\b`), "<dur>"},
	{regexp.MustCompile(`\b\d{1,3}(,\d{3})+(\.\d+)?\b`), "#"}, // 49,702: as many digits as the noise gives
	{regexp.MustCompile(`\b\d+(\.\d+)?(e[+-]\d+)?\b`), "#"},
	{regexp.MustCompile(`[ \t]+`), " "},
}

// stepLine is a step's title ("3. The tax agency ..."): kept as it is.
var stepLine = regexp.MustCompile(`^\d+\. `)

// normalise replaces what changes between runs (see TestDemoGolden) in
// every line but the steps' titles.
func normalise(s string, dir *regexp.Regexp) string {
	lines := strings.Split(dir.ReplaceAllString(s, "$$DIR"), "\n")
	for i, l := range lines {
		if stepLine.MatchString(l) {
			continue
		}
		for _, n := range normalisers {
			l = n.re.ReplaceAllString(l, n.with)
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// "demo --help" prints what the demo does and its flags, and starts
// nothing.
func TestDemoHelp(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "Usage: demo [--bin DIR]") || !strings.Contains(out.String(), "-keep") {
		t.Fatalf("demo --help: %v %q", err, out.String())
	}
}
