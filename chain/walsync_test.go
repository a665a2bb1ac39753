package chain

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft-wal/types"
)

// TestWALFileSync: a segment file from walVFS writes, syncs (several times,
// as raft-wal does), reads back, and fails its Sync once closed instead of
// reporting a durability it cannot give. Reopened through OpenWriter (a
// tail segment after a restart) it works the same.
func TestWALFileSync(t *testing.T) {
	dir := t.TempDir()
	v := newWALVFS()
	data := bytes.Repeat([]byte("entry"), 1000)
	for _, tc := range []struct {
		name string
		open func() (types.WritableFile, error)
	}{
		{"create", func() (types.WritableFile, error) { return v.Create(dir, "seg", 1<<20) }},
		{"open-writer", func() (types.WritableFile, error) { return v.OpenWriter(dir, "seg") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := tc.open()
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				if _, err := f.WriteAt(data, int64(i*len(data))); err != nil {
					t.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					t.Fatalf("sync %d: %v", i, err)
				}
			}
			got := make([]byte, len(data))
			if _, err := f.ReadAt(got, int64(4*len(data))); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err == nil {
				t.Fatal("Sync of a closed file succeeded")
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "seg")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Create(dir, "seg", 0); !errors.Is(err, os.ErrExist) {
		t.Fatalf("creating an existing segment: %v, want ErrExist", err)
	}
}
