package client

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
)

// The export format (sandboxctl ledger export) is a zstd-compressed stream
// of JSON lines: the signed checkpoint first, then each block with its
// entries (base64 of the exact leaf bytes), in order, up to the
// checkpoint. Its lines use the API's own JSON, so an export is what the
// node served, verified offline later (VerifyExport) as it would be
// online.
type exportLine struct {
	Checkpoint *api.CheckpointResponse `json:"checkpoint,omitempty"`
	Block      *api.BlockResponse      `json:"block,omitempty"`
	Entries    []string                `json:"entries,omitempty"`
}

// maxExportLine bounds one line (a block and its entries) when reading.
const maxExportLine = 256 << 20

// ExportStats is what WriteExport wrote.
type ExportStats struct {
	Entries        uint64
	Blocks         int
	CheckpointSize uint64
}

// WriteExport writes the ledger of c's node, up to its current checkpoint,
// to w in the export format. progress, when not nil, is called with the
// entries written so far and the checkpoint's size.
func WriteExport(ctx context.Context, c *Client, w io.Writer, progress func(done, total int64)) (ExportStats, error) {
	var st ExportStats
	if progress == nil {
		progress = func(int64, int64) {}
	}
	var cp api.CheckpointResponse
	if err := c.Do(ctx, "GET", "/v1/ledger/checkpoint", nil, &cp); err != nil {
		return st, err
	}
	st.CheckpointSize = cp.Size
	z, err := zstd.NewWriter(w)
	if err != nil {
		return st, err
	}
	enc := json.NewEncoder(z)
	if err := enc.Encode(exportLine{Checkpoint: &cp}); err != nil {
		return st, err
	}
	src := NewSource(c)
	for st.Entries < cp.Size {
		blk, entries, err := src.Next(ctx)
		if err != nil {
			return st, fmt.Errorf("ledger export: %w", err)
		}
		br := BlockResponse(blk)
		line := exportLine{Block: &br}
		for _, e := range entries {
			line.Entries = append(line.Entries, b64(e))
		}
		if err := enc.Encode(line); err != nil {
			return st, err
		}
		st.Entries += uint64(blk.Count)
		st.Blocks++
		progress(int64(st.Entries), int64(cp.Size))
	}
	return st, z.Close()
}

// Export reads an export as an audit.Source. Everything in it is
// untrusted until verified: Next checks each block's hash against its
// header, and the verification does the rest.
type Export struct {
	f          io.Closer // the file, for OpenExport
	z          *zstd.Decoder
	sc         *bufio.Scanner
	checkpoint api.CheckpointResponse
}

var _ audit.Source = (*Export)(nil)

// OpenExport opens an export file and reads its checkpoint (not checked
// yet: see CheckCheckpoint).
func OpenExport(path string) (*Export, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	ex, err := ReadExport(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ex.f = f
	return ex, nil
}

// ReadExport reads an export from r and its checkpoint (not checked yet:
// see CheckCheckpoint). Close releases its decoder, not r.
func ReadExport(r io.Reader) (*Export, error) {
	z, err := zstd.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a ledger export: %w", err)
	}
	sc := bufio.NewScanner(z)
	sc.Buffer(make([]byte, 1<<16), maxExportLine)
	ex := &Export{z: z, sc: sc}
	var first exportLine
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &first) != nil || first.Checkpoint == nil {
		ex.Close()
		return nil, errors.New("not a ledger export (no checkpoint first)")
	}
	ex.checkpoint = *first.Checkpoint
	return ex, nil
}

// Checkpoint is the export's checkpoint, as the node served it.
func (e *Export) Checkpoint() api.CheckpointResponse { return e.checkpoint }

// Close closes the export (and its file, for OpenExport).
func (e *Export) Close() error {
	e.z.Close()
	if e.f != nil {
		return e.f.Close()
	}
	return nil
}

// Next returns the next block, with its hash checked against its header,
// and its entries; io.EOF after the last.
func (e *Export) Next(ctx context.Context) (*chain.Block, [][]byte, error) {
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
	blk, err := BlockOf(*line.Block)
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

// ExportRoot recomputes the Merkle root of the first size entries of an
// export.
func ExportRoot(path string, size uint64) (chain.Hash, error) {
	ex, err := OpenExport(path)
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
