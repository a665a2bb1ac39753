//go:build linux && (amd64 || arm64)

package chain

import (
	"os"
	"testing"
)

// TestWALFileSyncUsesAIO: on Linux the segment files' fsyncs go through
// AIO (unless the kernel refuses it), and a closed file's AIO slot is
// reused by the next file rather than destroyed.
func TestWALFileSyncUsesAIO(t *testing.T) {
	dir := t.TempDir()
	wf, err := newWALVFS().Create(dir, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	f := wf.(*walFile)
	if f.syncer.slot == nil {
		if aioUnsupported.Load() {
			t.Skip("this kernel refuses AIO fsync; files use plain fsync")
		}
		t.Fatal("no AIO slot for a new segment file")
	}
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if f.syncer.slot == nil && !aioUnsupported.Load() {
		t.Fatal("the AIO slot was dropped after a good fsync")
	}
	slot := f.syncer.slot
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := os.Create(dir + "/b")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	s := newAsyncSyncer(g)
	defer s.close()
	if slot != nil && s.slot != slot {
		t.Fatal("a closed file's AIO slot was not reused")
	}
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
}

// TestWALFileSyncFallback: where the kernel refuses AIO, segment files get
// no AIO slot and sync with a plain fsync.
func TestWALFileSyncFallback(t *testing.T) {
	was := aioUnsupported.Load()
	aioUnsupported.Store(true)
	defer aioUnsupported.Store(was)
	wf, err := newWALVFS().Create(t.TempDir(), "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	f := wf.(*walFile)
	if f.syncer.slot != nil {
		t.Fatal("an AIO slot although AIO is refused")
	}
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err == nil {
		t.Fatal("Sync of a closed file succeeded")
	}
}
