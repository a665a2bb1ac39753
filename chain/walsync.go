package chain

import (
	"os"
	"sync/atomic"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// A goroutine blocked in fsync holds one of the runtime's GOMAXPROCS
// scheduler slots (a P) for nearly the whole call: in a trace of
// BenchmarkClusterAppend on the 2-core machine, goroutines in system calls
// held 0.6 of the 2 on average, three quarters of that time in the Raft
// log's fsyncs, and the runtime took the slot back from hardly any, while
// the rest of the nodes waited to run. walVFS is raft-wal's own file
// system with one change, where the platform allows it (walsync_linux.go):
// a segment file's Sync hands the fsync to the kernel asynchronously and
// parks the goroutine on an event until the kernel reports it done, so the
// slot stays free meanwhile. The guarantee is unchanged: Sync returns
// after a complete fsync of the file (and, for a new file, of its
// directory), or with its error.
type walVFS struct {
	types.VFS // fs.FS: listing, reading, deleting
}

func newWALVFS() *walVFS { return &walVFS{VFS: fs.New()} }

func (v *walVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	wf, err := v.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	f, ok := wf.(*fs.File)
	if !ok {
		return wf, nil
	}
	// fs.File syncs the directory at its first Sync, so that a crash does
	// not lose the new file's name; walFile keeps that.
	return newWALFile(&f.File, dir, true), nil
}

func (v *walVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	wf, err := v.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	f, ok := wf.(*os.File)
	if !ok {
		return wf, nil
	}
	return newWALFile(f, dir, false), nil
}

// walFile is a segment file whose Sync does not hold a scheduler slot
// (asyncSyncer) where the platform allows it.
type walFile struct {
	*os.File
	dir     string
	dirSync atomic.Bool // the directory still needs its fsync
	syncer  *asyncSyncer
}

func newWALFile(f *os.File, dir string, created bool) *walFile {
	w := &walFile{File: f, dir: dir, syncer: newAsyncSyncer(f)}
	w.dirSync.Store(created)
	return w
}

func (w *walFile) Sync() error {
	if err := w.syncer.sync(); err != nil {
		return err
	}
	if w.dirSync.Load() {
		d, err := os.Open(w.dir)
		if err != nil {
			return err
		}
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		w.dirSync.Store(false)
	}
	return nil
}

func (w *walFile) Close() error {
	w.syncer.close()
	return w.File.Close()
}
