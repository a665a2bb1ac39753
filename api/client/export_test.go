package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/chain"
)

// exportSeed is a small well-formed export's lines: a checkpoint and one
// block of two entries.
func exportSeed() []byte {
	blk := &chain.Block{Height: 1, FirstIndex: 0, Count: 2, Proposer: "node1", Time: time.Date(2026, 5, 1, 10, 0, 0, 123, time.UTC)}
	blk.Root = chain.Hash{7}
	br := BlockResponse(blk)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.Encode(exportLine{Checkpoint: &api.CheckpointResponse{Size: 2, Root: b64(blk.Root[:]), Note: "datasandbox\n2\n\n"}})
	enc.Encode(exportLine{Block: &br, Entries: []string{b64([]byte("entry one")), b64([]byte("entry two"))}})
	return b.Bytes()
}

// encoder compresses test exports (one, reused: fuzzing calls it often).
var encoder, _ = zstd.NewWriter(nil)

func compress(_ testing.TB, b []byte) []byte { return encoder.EncodeAll(b, nil) }

// An export's lines are untrusted: whatever they hold, reading them either
// fails or yields blocks whose headers hash as they claim, and a header
// read back is the one written (BlockOf and BlockResponse round-trip).
func FuzzReadExport(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzReadExport (a well-formed export's lines,
	// a block line without a header).
	f.Fuzz(func(t *testing.T, lines []byte) {
		ex, err := ReadExport(bytes.NewReader(compress(t, lines)))
		if err != nil {
			return
		}
		defer ex.Close()
		for range 64 {
			blk, entries, err := ex.Next(context.Background())
			if err != nil {
				return
			}
			if len(entries) > 1<<20 {
				t.Fatalf("%d entries", len(entries))
			}
			again, err := BlockOf(BlockResponse(blk))
			if err != nil || again.Hash() != blk.Hash() || !again.Time.Equal(blk.Time) {
				t.Fatalf("block %+v read back as %+v (%v)", blk, again, err)
			}
		}
	})
}

func TestReadExport(t *testing.T) {
	ex, err := ReadExport(bytes.NewReader(compress(t, exportSeed())))
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	if cp := ex.Checkpoint(); cp.Size != 2 {
		t.Fatalf("checkpoint %+v", cp)
	}
	blk, entries, err := ex.Next(context.Background())
	if err != nil || blk.Height != 1 || len(entries) != 2 || string(entries[1]) != "entry two" {
		t.Fatalf("block %+v %q %v", blk, entries, err)
	}
	if _, _, err := ex.Next(context.Background()); err != io.EOF {
		t.Fatalf("after the last block: %v", err)
	}
	for _, tc := range []struct{ name, lines string }{
		{"no checkpoint first", `{"block":{"height":1}}`},
		{"not JSON", "ledger"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadExport(bytes.NewReader(compress(t, []byte(tc.lines)))); err == nil {
				t.Fatal("read")
			}
		})
	}
	if _, err := ReadExport(bytes.NewReader([]byte("not zstd"))); err == nil {
		t.Fatal("read a file that is not zstd")
	}
}
