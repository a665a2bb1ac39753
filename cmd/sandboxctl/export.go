package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/chain"
)

// An export is a zstd-compressed stream of JSON lines: the signed
// checkpoint first, then each block with its entries, in order, up to the
// checkpoint. It can be verified offline with ledger verify --file.
type exportLine struct {
	Checkpoint *api.CheckpointResponse `json:"checkpoint,omitempty"`
	Block      *api.BlockResponse      `json:"block,omitempty"`
	Entries    []string                `json:"entries,omitempty"`
}

const maxExportLine = 256 << 20

func cmdLedgerExport(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	out := fs.String("out", "", "file to write (zstd-compressed JSON lines)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("ledger export: --out FILE is required")
	}
	c := newClient(g)
	var cp api.CheckpointResponse
	if err := c.do(ctx, "GET", "/v1/ledger/checkpoint", nil, &cp); err != nil {
		return err
	}
	f, err := os.Create(*out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(*out + ".tmp")
	z, err := zstd.NewWriter(f)
	if err != nil {
		f.Close()
		return err
	}
	enc := json.NewEncoder(z)
	if err := enc.Encode(exportLine{Checkpoint: &cp}); err != nil {
		f.Close()
		return err
	}
	src := newHTTPSource(ctx, c)
	var n uint64
	blocks := 0
	bar := newProgress(g.stderr, "exporting entries", int64(cp.Size), false)
	defer bar.Done()
	for n < cp.Size {
		blk, entries, err := src.Next(ctx)
		if err != nil {
			f.Close()
			return fmt.Errorf("ledger export: %w", err)
		}
		h := blk.Hash()
		br := api.BlockResponse{Height: blk.Height, Prev: b64(blk.Prev[:]), FirstIndex: blk.FirstIndex, Count: blk.Count,
			Root: b64(blk.Root[:]), Time: blk.Time.Format("2006-01-02T15:04:05.999999999Z07:00"), Proposer: blk.Proposer, Hash: b64(h[:])}
		line := exportLine{Block: &br}
		for _, e := range entries {
			line.Entries = append(line.Entries, b64(e))
		}
		if err := enc.Encode(line); err != nil {
			f.Close()
			return err
		}
		n += uint64(blk.Count)
		blocks++
		bar.Add(int64(blk.Count))
	}
	bar.Done()
	if err := z.Close(); err != nil {
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
		return printJSON(g.stdout, map[string]any{"file": *out, "entries": n, "blocks": blocks, "checkpoint_size": cp.Size})
	}
	fmt.Fprintf(g.stdout, "exported %d entries in %d blocks, up to the checkpoint of size %d, to %s\n", n, blocks, cp.Size, *out)
	return nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// export reads an export file as an audit.Source.
type export struct {
	f          *os.File
	z          *zstd.Decoder
	sc         *bufio.Scanner
	checkpoint api.CheckpointResponse
}

func openExport(path string) (*export, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	z, err := zstd.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a ledger export: %w", path, err)
	}
	sc := bufio.NewScanner(z)
	sc.Buffer(make([]byte, 1<<16), maxExportLine)
	ex := &export{f: f, z: z, sc: sc}
	var first exportLine
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &first) != nil || first.Checkpoint == nil {
		ex.Close()
		return nil, fmt.Errorf("%s: not a ledger export (no checkpoint first)", path)
	}
	ex.checkpoint = *first.Checkpoint
	return ex, nil
}

func (e *export) Close() error {
	e.z.Close()
	return e.f.Close()
}

func (e *export) Next(ctx context.Context) (*chain.Block, [][]byte, error) {
	if !e.sc.Scan() {
		if err := e.sc.Err(); err != nil {
			return nil, nil, err
		}
		return nil, nil, io.EOF
	}
	var line exportLine
	if err := json.Unmarshal(e.sc.Bytes(), &line); err != nil || line.Block == nil {
		return nil, nil, fmt.Errorf("export: malformed block line")
	}
	blk, err := blockOf(*line.Block)
	if err != nil {
		return nil, nil, fmt.Errorf("block %d: %w", line.Block.Height, err)
	}
	entries := make([][]byte, len(line.Entries))
	for i, s := range line.Entries {
		if entries[i], err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, nil, fmt.Errorf("block %d: entry %d is not base64", blk.Height, i)
		}
	}
	return blk, entries, nil
}

// exportRoot recomputes the root of the first size entries of an export.
func exportRoot(path string, size uint64) (chain.Hash, error) {
	ex, err := openExport(path)
	if err != nil {
		return chain.Hash{}, err
	}
	defer ex.Close()
	var fr chain.Frontier
	for fr.Size() < size {
		_, entries, err := ex.Next(context.Background())
		if err != nil {
			return chain.Hash{}, err
		}
		for _, e := range entries {
			if fr.Size() < size {
				fr.Append(chain.LeafHash(e))
			}
		}
	}
	return fr.Root(), nil
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
	if err := newClient(g).do(ctx, "GET", "/v1/audit/access?dataset="+url.QueryEscape(*dataset), nil, &out); err != nil {
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
		for _, f := range j.Flows {
			fmt.Fprintf(g.stdout, "  flow: %s [%s] %d rows from %s to %s, sha256 %s\n", f.Dataset, strings.Join(f.Columns, ", "), f.Rows, f.From, f.To, f.SHA256)
		}
	}
	return nil
}
