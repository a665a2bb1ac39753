//go:build duckdb

package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// duckdbJoinResult is what "peers duckdb-join" prints.
type duckdbJoinResult struct {
	Version string `json:"version"`
	Rows    int64  `json:"rows"` // of both tables
	Threads int    `json:"threads"`
	// RowsPerS is both tables' rows over the query's wall time (median);
	// CPUNsPerOp the process's CPU time per query (median).
	RowsPerS   float64 `json:"rows_per_s"`
	CPUNsPerOp float64 `json:"cpu_ns_per_op"`
	Runs       int     `json:"runs"`
	Note       string  `json:"note"`
}

// duckdbJoinQuery is sandbox's BenchmarkJoin query, as DuckDB runs it on
// the raw ids.
const duckdbJoinQuery = "SELECT t.region, COUNT(*), AVG(b.benefit) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id GROUP BY t.region"

// duckdbJoinPeer loads the two CSV files BenchmarkJoin wrote into
// in-memory tables (not timed) and runs the same join and GROUP BY with
// DuckDB's hash join, with the given number of threads: one warm-up run,
// then the median of runs.
func duckdbJoinPeer(ctx context.Context, taxCSV, benCSV string, runs, threads int) (any, error) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, fmt.Sprintf("SET threads = %d", threads)); err != nil {
		return nil, err
	}
	var version string
	if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
		return nil, err
	}
	var rows int64
	for table, file := range map[string]string{"tax2025": taxCSV, "benefits2025": benCSV} {
		path := strings.ReplaceAll(file, "'", "''")
		if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" AS SELECT * FROM read_csv('"+path+"', header = true)"); err != nil {
			return nil, fmt.Errorf("load %s: %w", file, err)
		}
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			return nil, err
		}
		rows += n
	}
	var rates, cpus []float64
	for r := 0; r <= runs; r++ { // the first run warms up
		cpu0 := processCPU()
		start := time.Now()
		n, err := readGroups(ctx, db, duckdbJoinQuery)
		if err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
		d := time.Since(start)
		if n != 16 {
			return nil, fmt.Errorf("the join returned %d groups, not 16", n)
		}
		if r > 0 {
			rates = append(rates, float64(rows)/d.Seconds())
			cpus = append(cpus, float64(processCPU()-cpu0))
		}
	}
	return &duckdbJoinResult{Version: version, Rows: rows, Threads: threads, RowsPerS: median(rates), CPUNsPerOp: median(cpus), Runs: runs,
		Note: fmt.Sprintf("DuckDB %s in process, %d threads, hash join of the in-memory tables loaded with read_csv from BenchmarkJoin's two CSV files (ids as text), median of %d runs after a warm-up", version, threads, runs)}, nil
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
