//go:build !duckdb

package main

import (
	"context"
	"errors"
)

// duckdbPeer is not compiled in without the build tag duckdb: DuckDB's cgo
// bindings link a large static library.
func duckdbPeer(context.Context, string, int, int) (any, error) {
	return nil, errors.New("built without DuckDB: build with -tags duckdb (make bench does)")
}

// duckdbJoinPeer is not compiled in without the build tag duckdb.
func duckdbJoinPeer(context.Context, string, string, int, int) (any, error) {
	return nil, errors.New("built without DuckDB: build with -tags duckdb (make bench does)")
}
