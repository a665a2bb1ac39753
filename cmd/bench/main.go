// Command bench runs the project's Go benchmarks several times, takes the
// median of each figure, compares it with its goal (and with a baseline
// where one exists), prints one table and writes bench/results.json.
//
// Its peers, measured in the same run: etcd (Debian's etcd-server, 3
// members on loopback, through etcd's native Go client) against the
// ledger; DuckDB (in process, 2 threads) against the masked engine's
// GROUP BY and its CSV load against our ingest, on the same generated
// CSV, and DuckDB's hash join against the masked join, on the two CSV
// files BenchmarkJoin writes of the data it joins; PostgreSQL (Debian's
// postgresql) against the masked engine. The Makefile's bench target installs the Debian packages when missing. A
// peer that cannot run is printed as skipped, with the reason. The etcd
// and DuckDB clients live in cmd/bench/peers, a module of its own, so
// that they are dependencies of the benchmark only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Figure is one row of results.json.
type Figure struct {
	Figure   string   `json:"figure"`
	Unit     string   `json:"unit"`
	Goal     string   `json:"goal"`
	Measured float64  `json:"measured"`
	Baseline *float64 `json:"baseline"`
	Ratio    *float64 `json:"ratio"`
	Met      *bool    `json:"met"`
	Note     string   `json:"note,omitempty"`
	// NotRun marks a figure this run did not measure (Measured is then 0).
	NotRun bool `json:"not_run,omitempty"`
}

// benchRun names a go test -bench invocation.
type benchRun struct {
	pkg, pattern, benchtime string
	count                   int      // runs (0: --count)
	args                    []string // after -args
}

var runs = []benchRun{
	{"./chain", "^BenchmarkClusterAppend$", "60000x", 0, nil},
	{"./chain", "^BenchmarkBlockReplication$", "120000x", 0, nil},
	{"./chain", "^BenchmarkProofs1M$", "200000x", 0, nil},
	{"./chain", "^BenchmarkVerify", "20000x", 0, nil},
	{"./chain", "^BenchmarkLedgerApply$", "200000x", 0, nil},
	{"./sandbox", "^BenchmarkMaskedGroupBy$", "5x", 0, nil},
	{"./sandbox", "^BenchmarkParseQuery10KB$", "2000x", 0, nil},
	// Ten joins after the warm-up run go test makes, as DuckDB's join is
	// timed after a warm-up.
	{"./sandbox", "^BenchmarkJoin$", "10x", 0, []string{"-join-rows=1000000"}},
	{"./sandbox", "^BenchmarkListJoin$", "1x", 0, []string{"-join-rows=1000000", "-list-ids=100000"}},
	// One run: the 100,000 ids of the list and of the dataset go through
	// the threshold VOPRF.
	{"./cmd/sandboxd", "^BenchmarkDevListJoin$", "1x", 1, []string{"-list-ids=100000"}},
	{"./sandbox", "^BenchmarkHEJoin$", "3x", 0, []string{"-join-rows=1000000"}},
	{"./sandbox", "^BenchmarkIngest$", "2x", 0, nil},
	{"./sandbox", "^BenchmarkHE(Ingest|Encrypt)$", "3x", 0, nil},
	{"./cmd/sandboxd", "^BenchmarkJobEndToEnd$", "10x", 0, nil},
	{"./mpc/pseudonym", "^BenchmarkThresholdVOPRF$", "1x", 0, nil},
	// One run: 1M ids through the threshold OPRF take minutes.
	{"./cmd/sandboxd", "^BenchmarkConsortiumIngest$", "1x", 1, []string{"-consortium-rows=1000000"}},
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	count := fs.Int("count", 5, "runs of each benchmark; the median is reported")
	outFile := fs.String("out", "bench/results.json", "where to write the results")
	etcdRuns := fs.Int("etcd-runs", 3, "runs of the etcd baseline")
	pgRuns := fs.Int("pg-runs", 5, "runs of the PostgreSQL baseline")
	duckRuns := fs.Int("duckdb-runs", 3, "runs of the DuckDB baselines")
	pgOnly := fs.Int("pg-only", 0, "only run the PostgreSQL baseline on this many rows (debugging)")
	peersOnly := fs.Bool("peers-only", false, "only the figures compared with etcd and DuckDB (ledger, masked engine, ingest) and those peers")
	peersDir := fs.String("peers-dir", "cmd/bench/peers", "the peers module (etcd and DuckDB clients)")
	withDuckDB := fs.Bool("duckdb", true, "build the peers with DuckDB (cgo; a large static library)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pgOnly > 0 {
		v, err := postgresBaseline(ctx, *pgOnly, *pgRuns)
		fmt.Fprintf(out, "postgres: %.0f rows/s, err %v\n", v, err)
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	metrics := map[string]map[string][]float64{} // benchmark -> unit -> samples
	for _, r := range runs {
		if *peersOnly && !peerBench[r.pattern] {
			continue
		}
		n := *count
		if r.count > 0 {
			n = r.count
		}
		fmt.Fprintf(os.Stderr, "running %s %s x%d...\n", r.pkg, r.pattern, n)
		args := []string{"test", "-run", "^$", "-bench", r.pattern, "-benchtime", r.benchtime,
			"-count", strconv.Itoa(n), "-timeout", "60m", r.pkg}
		extra := r.args
		if r.pattern == "^BenchmarkJoin$" { // the CSV files of its data, for DuckDB's join
			extra = append(slices.Clone(extra), "-join-csv="+tmp)
		}
		if len(extra) > 0 {
			args = append(append(args, "-args"), extra...)
		}
		cmd := exec.CommandContext(ctx, "go", args...)
		var buf bytes.Buffer
		cmd.Stdout = &buf
		cmd.Stderr = io.Discard
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s: %w\n%s", r.pkg, r.pattern, err, buf.String())
		}
		parse(buf.String(), metrics)
	}
	med := func(b, unit string) float64 { return median(metrics[b][unit]) }

	peers, peersErr := buildPeers(ctx, *peersDir, tmp, *withDuckDB)
	if peersErr != nil {
		fmt.Fprintln(os.Stderr, "bench:", peersErr)
	}
	var ep etcdPeer
	etcd, etcdNote := baseline("etcd (native client)", func() (float64, error) {
		err := runPeer(ctx, peers, &ep, "etcd", "--runs", strconv.Itoa(*etcdRuns))
		return ep.PutsPerSec, err
	})
	var dp duckdbPeer
	duckQuery, duckNote := baseline("DuckDB (10M rows)", func() (float64, error) {
		csv := filepath.Join(tmp, "tax.csv")
		if err := writeBenchCSV(csv, 10_000_000); err != nil {
			return 0, err
		}
		defer os.Remove(csv)
		err := runPeer(ctx, peers, &dp, "duckdb", "--csv", csv, "--runs", strconv.Itoa(*duckRuns), "--threads", "2")
		return dp.QueryRowsPerS, err
	})
	var dj duckdbJoinPeer
	duckJoin, duckJoinNote := baseline("DuckDB hash join (2 x 1M rows)", func() (float64, error) {
		if len(metrics["Join"]) == 0 {
			return 0, fmt.Errorf("BenchmarkJoin did not run")
		}
		err := runPeer(ctx, peers, &dj, "duckdb-join", "--tax", filepath.Join(tmp, "tax2025.csv"),
			"--benefits", filepath.Join(tmp, "benefits2025.csv"), "--runs", strconv.Itoa(*duckRuns), "--threads", "2")
		return dj.RowsPerS, err
	})
	joinFigs := joinFigures(med, duckJoin, &dj, duckJoinNote)
	var duckLoad *float64
	if duckQuery != nil {
		duckLoad = &dp.LoadRowsPerS
	}
	engine := med("MaskedGroupBy", "rows/s")
	ingest := med("Ingest", "rows/s")
	tput := med("ClusterAppend", "entries/s")
	engineFig := goalMin("masked engine: 10M rows, GROUP BY region (16), COUNT, AVG, with DP", "rows/s", engine, 200e6)
	duckFig := ratioFigure("masked engine vs DuckDB, same 10M-row CSV and GROUP BY", engine, duckQuery, 3,
		dp.Note+"; baseline: DuckDB's query in rows/s (median after a warm-up run)", duckNote)
	ingestFig := goalMin("ingest: 8-column CSV, pseudonymise, generalise, compress", "rows/s", ingest, 1e6)
	loadFig := ratioFigure("ingest vs DuckDB's CSV load (rows/s)", ingest, duckLoad, 0.5,
		"ours: BenchmarkIngest (1M rows of the same generator, masked, compressed, fsynced); baseline: DuckDB read_csv of the 10M-row file into an in-memory table", duckNote)
	ledgerFig := ratioFigure("ledger throughput vs etcd 3-member puts", tput, etcd, 3, ep.Note, etcdNote)
	ledgerCPU := Figure{Figure: "  CPU time per committed entry (3 nodes and 256 clients in one process)", Unit: "µs", Goal: "-", Measured: med("ClusterAppend", "cpu-ns/entry") / 1000}
	if *peersOnly {
		figs := []Figure{goalMin("signed entries committed, 3 nodes, durable, verified", "entries/s", tput, 30000), ledgerCPU, ledgerFig,
			engineFig, duckFig, ingestFig, loadFig}
		figs = append(figs, joinFigs...)
		printTable(out, figs, *count)
		return writeFigures(*outFile, figs)
	}

	pg, pgNote := baseline("PostgreSQL (10M rows)", func() (float64, error) { return postgresBaseline(ctx, 10_000_000, *pgRuns) })
	pgFig := ratioFigure("masked engine vs PostgreSQL 15, same data and query", engine, pg, 10,
		"PostgreSQL 15 (Debian) on a Unix socket, parallel workers 2, warm cache, psql \\timing; baseline in rows/s", pgNote)

	p99 := med("ClusterAppend", "p99-ms")
	figs := []Figure{
		goalMin("signed entries committed, 3 nodes, durable, verified", "entries/s", tput, 30000),
		ledgerCPU,
		goalMax("p99 commit latency under that load", "ms", p99, 25),
	}
	figs = append(figs, ledgerFig,
		goalMin("pre-verified block replication (256-entry blocks)", "entries/s", med("BlockReplication", "entries/s"), 200000),
		goalMax("inclusion proof, 1M-entry log", "µs", med("Proofs1M/inclusion", "ns/op")/1000, 10),
		goalMax("consistency proof, 1M-entry log", "µs", med("Proofs1M/consistency", "ns/op")/1000, 10),
		Figure{Figure: "Ed25519 entry verification, one signature", Unit: "µs", Goal: "-", Measured: med("VerifyEd25519", "ns/op") / 1000},
		Figure{Figure: "ML-DSA-65 entry verification, one signature", Unit: "µs", Goal: "-", Measured: med("VerifyMLDSA65", "ns/op") / 1000},
		Figure{Figure: "apply one entry on one node (256-entry blocks, no Raft)", Unit: "µs", Goal: "-", Measured: med("LedgerApply", "ns/entry") / 1000},
		engineFig, duckFig, pgFig,
		goalMax("parse (PostgreSQL's grammar) and check a 10 KB query", "µs", med("ParseQuery10KB", "ns/op")/1000, 1000),
		Figure{Figure: "the same, CPU time of the process per query", Unit: "µs", Goal: "-", Measured: med("ParseQuery10KB", "cpu-ns/op") / 1000},
		ingestFig, loadFig,
		Figure{Figure: "ingest peak heap (1M rows; flat in file size, see TestIngestMemoryFlat)", Unit: "MiB", Goal: "-", Measured: med("Ingest", "peak-heap-MiB")},
	)
	figs = append(figs, heFigures(med)...)
	figs = append(figs, pseudonymFigures(med)...)
	figs = append(figs, joinFigs...)
	figs = append(figs,
		Figure{Figure: "list join, 100,000-id list with a 1M-row dataset, half in it, GROUP BY a list column: tags, encode, check, semi-join, aggregate (in process; the ids' VOPRF not included)", Unit: "s", Goal: "-", Measured: med("ListJoin", "s/op")},
		Figure{Figure: "  bytes the enterprise ships per id of its list (12-byte tag and a dictionary-coded column)", Unit: "bytes", Goal: "-", Measured: med("ListJoin", "ship-bytes/id")},
		Figure{Figure: "list join end to end, 100,000 ids through sandboxctl on a dev consortium (100,000-row dataset, half in the list): submit, VOPRF, key, tags to the runner, semi-join, result", Unit: "s", Goal: "-", Measured: med("DevListJoin", "s/op")},
		Figure{Figure: "  of which the list's pseudonyms through the threshold VOPRF (sandboxctl's own measure)", Unit: "s", Goal: "-", Measured: med("DevListJoin", "voprf-s/op")},
	)
	printTable(out, figs, *count)
	return writeFigures(*outFile, figs)
}

// peerBench are the benchmarks --peers-only runs: those compared with a
// peer.
var peerBench = map[string]bool{"^BenchmarkClusterAppend$": true, "^BenchmarkMaskedGroupBy$": true, "^BenchmarkIngest$": true, "^BenchmarkJoin$": true}

// writeFigures writes the figures as JSON.
func writeFigures(path string, figs []Figure) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep ">=" readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(figs); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// heFigures are the he mode's: jobs end to end on a 3-node dev consortium
// (submit, evaluate on ciphertexts, 2 nodes' shares, combine, fetch,
// decrypt) against the masked engine on the same query and data, the
// owner's phases, encryption and storage.
func heFigures(med func(b, unit string) float64) []Figure {
	job := func(q, mode string) float64 { return med("JobEndToEnd/"+q+"/"+mode, "ms/job") }
	phase := func(p string) Figure {
		return Figure{Figure: "  of which " + p + " (owner node, GROUP BY job)", Unit: "ms", Goal: "-", Measured: med("JobEndToEnd/groupby16/he", p+"-ms")}
	}
	return []Figure{
		goalMax("he job end to end, 1M rows, GROUP BY region (16), COUNT/SUM/AVG/VAR, t=2 of 3", "ms", job("groupby16", "he"), 800),
		phase("evaluate"), phase("shares"), phase("combine"),
		slowdown("he vs masked job end to end, same GROUP BY query and data", job("groupby16", "he"), job("groupby16", "masked")),
		goalMax("he job end to end, 1M rows, COUNT/SUM/AVG/VAR without groups", "ms", job("nogroups", "he"), 300),
		slowdown("he vs masked job end to end, same query without groups", job("nogroups", "he"), job("nogroups", "masked")),
		goalMax("he encryption: 1M sensitive values (stored as x, x², x·y)", "s", med("HEEncrypt", "s/1M-values"), 0.4),
		{Figure: "he ingest as a whole (CSV to fsynced columns and ciphertexts), per 1M values", Unit: "s", Goal: "-", Measured: med("HEIngest", "s/1M-values")},
		goalMax("he stored size per sensitive value", "bytes", med("HEIngest", "stored-B/value"), 50),
		goalMax("peak RSS of the 3-node dev consortium (one process) serving he jobs on 1M rows", "MiB", med("JobEndToEnd/groupby16/he", "peak-RSS-MiB"), 1024),
	}
}

// pseudonymFigures are the consortium pseudonyms': the threshold VOPRF
// round per id against circl's single-key VOPRF round in the same run
// (both in process, all cores), and a 1M-row ingest through a 3-node dev
// consortium.
func pseudonymFigures(med func(b, unit string) float64) []Figure {
	var figs []Figure
	for _, set := range []string{"t2-of-3", "t3-of-5"} {
		b := "ThresholdVOPRF/" + set
		th, si := med(b, "threshold-ids/s"), med(b, "single-ids/s")
		r := si / th
		met := r <= 2.5
		figs = append(figs,
			Figure{Figure: "consortium pseudonyms, threshold VOPRF " + set + ", all cores", Unit: "ids/s", Goal: "-", Measured: th},
			Figure{Figure: "  cost per id vs circl's single-key VOPRF (" + set + ")", Unit: "x", Goal: "<= 2.5", Measured: r, Baseline: &si, Ratio: &r, Met: &met,
				Note: "baseline: circl oprf VerifiableServer/Client, same ids and cores, in ids/s; ratio: how many times the cost per id"})
	}
	ingest := med("ConsortiumIngest", "s/ingest")
	figs = append(figs, Figure{Figure: "1M-row upload with consortium pseudonyms (3-node dev consortium, one process)", Unit: "s", Goal: "-", Measured: ingest})
	return figs
}

// slowdown is a figure without a goal: ours over the baseline's time.
// A figure whose benchmark did not run (--peers-only) says so instead of
// dividing zeros (JSON has no NaN).
func slowdown(name string, ours, base float64) Figure {
	if ours == 0 || base == 0 {
		return Figure{Figure: name, Unit: "x", Goal: "-", Note: "not measured in this run", NotRun: true}
	}
	r := ours / base
	return Figure{Figure: name, Unit: "x", Goal: "-", Measured: r, Baseline: &base, Ratio: &r, Note: "baseline: the masked job's ms; ratio: how many times slower"}
}

// baseline runs a baseline measurement; on failure it returns nil and a
// note saying why it was skipped.
func baseline(name string, run func() (float64, error)) (*float64, string) {
	fmt.Fprintf(os.Stderr, "running the %s baseline...\n", name)
	v, err := run()
	if err != nil {
		note := name + " baseline skipped: " + err.Error()
		fmt.Fprintln(os.Stderr, note)
		return nil, note
	}
	return &v, ""
}

// ratioFigure compares ours with a baseline (nil when skipped).
func ratioFigure(name string, ours float64, base *float64, goal float64, note, skipped string) Figure {
	f := Figure{Figure: name, Unit: "x", Goal: ">= " + fmtNum(goal), Note: skipped}
	if base != nil {
		r := ours / *base
		met := r >= goal
		f.Measured, f.Baseline, f.Ratio, f.Met, f.Note = r, base, &r, &met, note
	}
	return f
}

func goalMin(name, unit string, v, goal float64) Figure {
	met := v >= goal
	return Figure{Figure: name, Unit: unit, Goal: ">= " + fmtNum(goal), Measured: v, Met: &met}
}

func goalMax(name, unit string, v, goal float64) Figure {
	met := v <= goal
	return Figure{Figure: name, Unit: unit, Goal: "<= " + fmtNum(goal), Measured: v, Met: &met}
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// parse collects every "value unit" pair of every benchmark line.
func parse(s string, into map[string]map[string][]float64) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := m[1]
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			if into[name] == nil {
				into[name] = map[string][]float64{}
			}
			into[name][f[i+1]] = append(into[name][f[i+1]], v)
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtNum(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func printTable(w io.Writer, figs []Figure, count int) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\nbenchmarks: median of %d runs, %s/%s, %d CPUs (%s), %s\n\n", count, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), host, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "| %-78s | %-9s | %-10s | %-12s | %-10s | %-6s | %s |\n", "figure", "unit", "goal", "measured", "baseline", "ratio", "met")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 80), strings.Repeat("-", 11), strings.Repeat("-", 12), strings.Repeat("-", 14), strings.Repeat("-", 12), strings.Repeat("-", 8), strings.Repeat("-", 5))
	for _, f := range figs {
		base, ratio, met := "-", "-", "-"
		if f.Baseline != nil {
			base = fmtNum(*f.Baseline)
		}
		if f.Ratio != nil {
			ratio = fmtNum(*f.Ratio)
		}
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		measured := fmtNum(f.Measured)
		if f.NotRun {
			measured = "-"
		}
		fmt.Fprintf(w, "| %-78s | %-9s | %-10s | %-12s | %-10s | %-6s | %-3s |\n", f.Figure, f.Unit, f.Goal, measured, base, ratio, met)
	}
	for _, f := range figs {
		if f.Note != "" {
			fmt.Fprintf(w, "\n%s: %s", f.Figure, f.Note)
		}
	}
	fmt.Fprintln(w)
}
