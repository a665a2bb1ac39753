//go:build duckdb

package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
)

// duckdbResult is what "peers duckdb" prints.
type duckdbResult struct {
	Version       string  `json:"version"`
	Rows          int64   `json:"rows"`
	Threads       int     `json:"threads"`
	LoadRowsPerS  float64 `json:"load_rows_per_s"`
	QueryRowsPerS float64 `json:"query_rows_per_s"`
	Runs          int     `json:"runs"`
	Note          string  `json:"note"`
}

// duckdbQuery is the masked engine's benchmark query, as DuckDB runs it.
const duckdbQuery = "SELECT region, COUNT(*), AVG(income) FROM tax GROUP BY region"

// duckdbPeer loads the CSV into an in-memory DuckDB table (DuckDB's own
// parallel CSV reader) and runs the masked engine's GROUP BY on it, with
// the given number of threads: the load's rate (median of runs, each a
// fresh table) and the query's (median of runs after one warm-up run).
func duckdbPeer(ctx context.Context, csvFile string, runs, threads int) (any, error) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one connection: the settings below hold for every statement
	if _, err := db.ExecContext(ctx, fmt.Sprintf("SET threads = %d", threads)); err != nil {
		return nil, err
	}
	var version string
	if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
		return nil, err
	}
	path := strings.ReplaceAll(csvFile, "'", "''")
	var loads []float64
	var rows int64
	for r := 0; r < runs; r++ {
		if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS tax"); err != nil {
			return nil, err
		}
		start := time.Now()
		if _, err := db.ExecContext(ctx, "CREATE TABLE tax AS SELECT * FROM read_csv('"+path+"', header = true)"); err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		d := time.Since(start)
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tax").Scan(&rows); err != nil {
			return nil, err
		}
		loads = append(loads, float64(rows)/d.Seconds())
	}
	var queries []float64
	for r := 0; r <= runs; r++ { // the first run warms up
		start := time.Now()
		n, err := readGroups(ctx, db, duckdbQuery)
		if err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		d := time.Since(start)
		if n == 0 {
			return nil, fmt.Errorf("query returned no groups")
		}
		if r > 0 {
			queries = append(queries, float64(rows)/d.Seconds())
		}
	}
	return &duckdbResult{Version: version, Rows: rows, Threads: threads, LoadRowsPerS: median(loads), QueryRowsPerS: median(queries), Runs: runs,
		Note: fmt.Sprintf("DuckDB %s in process, %d threads, in-memory table loaded with read_csv from the same CSV file", version, threads)}, nil
}

// readGroups runs query, which returns (region, count, average) rows, reads
// every row (so the timing includes producing them) and returns how many
// there were.
func readGroups(ctx context.Context, db *sql.DB, query string) (int, error) {
	qr, err := db.QueryContext(ctx, query)
	if err != nil {
		return 0, err
	}
	n := 0
	for qr.Next() {
		var region string
		var count int64
		var avg float64
		if err := qr.Scan(&region, &count, &avg); err != nil {
			qr.Close()
			return 0, err
		}
		n++
	}
	if err := qr.Close(); err != nil {
		return 0, err
	}
	return n, nil
}
