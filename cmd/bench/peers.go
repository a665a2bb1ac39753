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

// duckdbJoinPeer is "peers duckdb-join": DuckDB's hash join and GROUP BY
// of BenchmarkJoin's two CSV files.
type duckdbJoinPeer struct {
	Version    string  `json:"version"`
	Rows       int64   `json:"rows"`
	RowsPerS   float64 `json:"rows_per_s"`
	CPUNsPerOp float64 `json:"cpu_ns_per_op"`
	Note       string  `json:"note"`
}

// joinFigures are the masked join's: end to end (both owners at once tag,
// encode and hash their parts, the executor checks and parses them at
// once, joins, aggregates with output control; in process, the
// node-to-node hop not timed) against DuckDB's
// hash join of the same two tables in process (nil when skipped), in rows
// of both tables per second and in the process's CPU time per join (the
// ratio that holds up on a loaded machine), and the bytes shipped per row.
func joinFigures(med func(b, unit string) float64, duck *float64, dj *duckdbJoinPeer, skipped string) []Figure {
	ours := med("Join", "rows/s")
	figs := []Figure{
		{Figure: "masked join, 2 datasets of 1M rows, 50% overlap, GROUP BY 16: owners tag, encode, hash; executor checks, joins, aggregates (in process)", Unit: "rows/s", Goal: "-", Measured: ours},
		ratioFigure("  masked join end to end vs DuckDB's hash join of the same two tables (rows/s)", ours, duck, 1,
			dj.Note+"; ours: BenchmarkJoin, 10 joins after a warm-up join, median of the runs; baseline: DuckDB's rows of both tables per second", skipped),
	}
	cpu := med("Join", "cpu-ns/op")
	// For information: the goal is the speed above. Ours does more work
	// than a plaintext join (AES tags, two BLAKE3 passes over every part)
	// on the same two cores.
	f := Figure{Figure: "  CPU time per join: ours over DuckDB's, same run", Unit: "x", Goal: "-", Note: skipped}
	if duck != nil && dj.CPUNsPerOp > 0 {
		r := cpu / dj.CPUNsPerOp
		base := dj.CPUNsPerOp / 1e6
		f.Measured, f.Baseline, f.Ratio, f.Note = r, &base, &r, "for information (the goal is the rows/s above); baseline: DuckDB's process CPU ms per join; ratio: how many times ours"
	}
	figs = append(figs, f,
		Figure{Figure: "    of which the owners: tag (AES-128 per row), encode and hash, CPU", Unit: "ms", Goal: "-", Measured: med("Join", "owners-cpu-ms/op")},
		Figure{Figure: "    of which the executor: digest, parse, join, aggregate, CPU", Unit: "ms", Goal: "-", Measured: med("Join", "executor-cpu-ms/op")},
		Figure{Figure: "  bytes shipped to the executor per row (12-byte tag and the plan's columns, binary)", Unit: "bytes", Goal: "-", Measured: med("Join", "ship-bytes/row")})
	// The he join against the masked join, same run (BenchmarkHEJoin): in
	// process, without the threshold release every he job has.
	he, masked := med("HEJoin", "he-ms/op"), med("HEJoin", "masked-ms/op")
	f = slowdown("he join vs masked join, 2 x 1M rows, in process, without the threshold release", he, masked)
	f.Goal = "<= 5"
	if f.Ratio != nil { // else not run (--peers-only): slowdown says so
		met := *f.Ratio <= 5
		f.Met = &met
		f.Note = "BenchmarkHEJoin: owners build and encode their parts (he: the stored ciphertexts), the executor checks, parses, joins on tags, evaluates; the t nodes' decryption shares of an he result are not in it (BenchmarkJobEndToEnd's shares and combine phases); baseline: the masked join in ms"
	}
	hb := Figure{Figure: "  bytes shipped to the executor per row in he mode (tags, clear columns, ciphertexts)", Unit: "bytes", Goal: "-", Measured: med("HEJoin", "he-ship-bytes/row")}
	if f.Ratio == nil {
		hb.Note, hb.NotRun = "not measured in this run", true
	}
	figs = append(figs, f, hb)
	return figs
}
