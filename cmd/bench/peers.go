package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/datasandbox/datasandbox/sandbox"
)

// The peers (etcd through its native Go client, DuckDB in process) are
// measured by cmd/bench/peers, a module of its own, so that their clients
// are dependencies of the benchmark alone. buildPeers compiles it once.
func buildPeers(ctx context.Context, dir, tmp string, duckdb bool) (string, error) {
	bin := filepath.Join(tmp, "peers")
	args := []string{"build", "-o", bin}
	if duckdb {
		args = append(args, "-tags", "duckdb")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v: %s", dir, err, lastLines(out, 5))
	}
	return bin, nil
}

// runPeer runs one peer measurement and decodes its JSON into out.
func runPeer(ctx context.Context, bin string, out any, args ...string) error {
	if bin == "" {
		return errors.New("the peers program did not build")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, lastLines(stderr.Bytes(), 3))
	}
	return json.Unmarshal(stdout.Bytes(), out)
}

// etcdPeer is "peers etcd": put throughput of a 3-member etcd cluster.
type etcdPeer struct {
	Version    string  `json:"version"`
	PutsPerSec float64 `json:"puts_per_s"`
	Note       string  `json:"note"`
}

// duckdbPeer is "peers duckdb": DuckDB's CSV load and the masked engine's
// GROUP BY on the same file.
type duckdbPeer struct {
	Version       string  `json:"version"`
	Rows          int64   `json:"rows"`
	LoadRowsPerS  float64 `json:"load_rows_per_s"`
	QueryRowsPerS float64 `json:"query_rows_per_s"`
	Note          string  `json:"note"`
}

// writeBenchCSV writes the masked engine benchmark's data (the demo
// generator, seed 1, as BenchmarkMaskedGroupBy and the PostgreSQL baseline
// use it) to a CSV file.
func writeBenchCSV(path string, rows int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := sandbox.GenerateDemo(w, rows, 1); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}
