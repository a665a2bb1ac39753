// Command peers measures the benchmark's peers, for cmd/bench: etcd (a
// 3-member cluster of Debian's etcd-server on loopback, loaded through
// etcd's native Go client) and DuckDB (in process, on the CSV file the
// masked engine's benchmark generates). It prints one JSON document.
//
// It is a module of its own so that the peers' clients (etcd's gRPC
// client, DuckDB's cgo bindings) are dependencies of the benchmark only:
// nothing of the product imports them, and "go test ./..." at the
// repository's root never builds them. DuckDB is compiled in only with
// the build tag duckdb (make bench sets it).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: peers etcd [--runs N] | peers duckdb --csv FILE [--runs N] [--threads 2] | peers duckdb-join --tax FILE --benefits FILE [--runs N] [--threads 2]")
	}
	fs := flag.NewFlagSet("peers "+args[0], flag.ContinueOnError)
	runs := fs.Int("runs", 3, "measured runs; the median is reported")
	csvFile := fs.String("csv", "", "duckdb: the CSV file (header row) to load and query")
	taxCSV := fs.String("tax", "", "duckdb-join: the tax2025 CSV file")
	benCSV := fs.String("benefits", "", "duckdb-join: the benefits2025 CSV file")
	threads := fs.Int("threads", 2, "duckdb: worker threads")
	total := fs.Int("puts", 40000, "etcd: puts per run")
	clients := fs.Int("clients", 256, "etcd: concurrent clients")
	at := fs.String("at", "leader", "etcd: where the clients write: leader (as the ledger's benchmark does) or all (one client per member; followers forward)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var out any
	var err error
	switch args[0] {
	case "etcd":
		if *at != "leader" && *at != "all" {
			return fmt.Errorf("etcd: --at %q: want leader or all", *at)
		}
		out, err = etcdPeer(ctx, *runs, *total, *clients, *at == "leader")
	case "duckdb":
		if *csvFile == "" {
			return errors.New("duckdb: --csv is required")
		}
		out, err = duckdbPeer(ctx, *csvFile, *runs, *threads)
	case "duckdb-join":
		if *taxCSV == "" || *benCSV == "" {
			return errors.New("duckdb-join: --tax and --benefits are required")
		}
		out, err = duckdbJoinPeer(ctx, *taxCSV, *benCSV, *runs, *threads)
	default:
		return fmt.Errorf("unknown peer %q", args[0])
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(out)
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
