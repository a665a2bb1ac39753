// Command sandboxd runs a node of the data-sandbox consortium: the signed,
// replicated ledger and the HTTP API. "sandboxd dev" runs a whole local
// consortium in one process; "sandboxd run" runs one production node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "sandboxd:", err)
		os.Exit(1)
	}
}

const usage = `sandboxd: a node of the data-sandbox consortium

Usage:
  sandboxd dev --dir DIR [--nodes 3] [--http 127.0.0.1:8080] [--raft 127.0.0.1:9080] [--demo-data]
      A local consortium in one process: genesis, demo account keys under
      DIR/keys, N nodes on 127.0.0.1 (node i serves HTTP on port P+i-1, Raft
      on port R+i-1; R defaults to P+1000). On an existing DIR it resumes
      that consortium (its Raft addresses stay). See docs/configuration.md.
  sandboxd run --config node.toml   (or the same settings as flags)
      One production node. See "sandboxd run --help".

Both run until SIGINT or SIGTERM and then shut down cleanly.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "run":
		return runNode(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
