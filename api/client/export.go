package client

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
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

// Export reads an export file as an audit.Source.
type Export struct {
	f          *os.File
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
	z, err := zstd.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a ledger export: %w", path, err)
	}
	sc := bufio.NewScanner(z)
	sc.Buffer(make([]byte, 1<<16), maxExportLine)
	ex := &Export{f: f, z: z, sc: sc}
	var first exportLine
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &first) != nil || first.Checkpoint == nil {
		ex.Close()
		return nil, fmt.Errorf("%s: not a ledger export (no checkpoint first)", path)
	}
	ex.checkpoint = *first.Checkpoint
	return ex, nil
}

// Checkpoint is the export's checkpoint, as the node served it.
func (e *Export) Checkpoint() api.CheckpointResponse { return e.checkpoint }

// Close closes the file.
func (e *Export) Close() error {
	e.z.Close()
	return e.f.Close()
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
