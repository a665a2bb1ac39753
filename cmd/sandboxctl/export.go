package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/policies"
)

// cmdLedgerExport writes the node's ledger, up to its checkpoint, in the
// export format (client.WriteExport), for ledger verify --file.
func cmdLedgerExport(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	out := fs.String("out", "", "file to write (zstd-compressed JSON lines)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("ledger export: --out FILE is required")
	}
	f, err := os.Create(*out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(*out + ".tmp")
	var bar *progress
	st, err := client.WriteExport(ctx, newClient(g), f, func(done, total int64) {
		if bar == nil {
			bar = newProgress(g.stderr, "exporting entries", total, false)
		}
		bar.Add(done - bar.done)
	})
	if bar != nil {
		bar.Done()
	}
	if err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(*out+".tmp", *out); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"file": *out, "entries": st.Entries, "blocks": st.Blocks, "checkpoint_size": st.CheckpointSize})
	}
	fmt.Fprintf(g.stdout, "exported %d entries in %d blocks, up to the checkpoint of size %d, to %s\n", st.Entries, st.Blocks, st.CheckpointSize, *out)
	return nil
}

func cmdAuditAccess(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	dataset := fs.String("dataset", "", "dataset name")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *dataset == "" {
		return errors.New("audit access: --dataset is required")
	}
	var out struct {
		Access []api.JobResponse `json:"access"`
	}
	if err := newClient(g).Do(ctx, "GET", "/v1/audit/access?dataset="+url.QueryEscape(*dataset), nil, &out); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	w := table(g)
	fmt.Fprintln(w, "JOB\tSUBMITTED\tREQUESTER\tPURPOSE\tMODE\tSTATUS\tEPSILON\tRESULT SHA256")
	for _, j := range out.Access {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%g\t%s\n", j.Job, j.Submitted, j.Requester, j.Purpose, j.Mode, j.Status, j.Epsilon, j.ResultSHA256)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// A join's data flows: which columns of which dataset moved to which
	// node, with the digest of what moved.
	for _, j := range out.Access {
		if len(j.Datasets) == 0 {
			continue
		}
		fmt.Fprintf(g.stdout, "%s joins %s, run by %s\n", j.Job, strings.Join(j.Datasets, ", "), j.Runner)
		// In the order the job names its datasets (the owners ship at
		// once, so the ledger's order varies from run to run).
		flows := slices.Clone(j.Flows)
		slices.SortStableFunc(flows, func(a, b policies.JobFlow) int {
			return slices.Index(j.Datasets, a.Dataset) - slices.Index(j.Datasets, b.Dataset)
		})
		for _, f := range flows {
			alg, sum := f.Digest()
			fmt.Fprintf(g.stdout, "  flow: %s [%s] %d rows from %s to %s, %s %s\n", f.Dataset, strings.Join(f.Columns, ", "), f.Rows, f.From, f.To, alg, sum)
		}
	}
	return nil
}
