package chain

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// storeGuard wraps the Raft log and stable stores: the first failed write
// (a full disk, an unwritable data directory) stops the node's writes and
// reads and shows in its health (Node.Err) instead of leaving a node that
// silently lags behind while looking fine.
//
// It also closes the stores' door before the node closes them: Raft's
// shutdown does not wait for a heartbeat its transport is still handling,
// and that heartbeat may persist a new term. A write that comes after
// close never returns (rather than failing, which Raft answers with a
// panic, or pretending to succeed, which would let Raft acknowledge a term
// it never stored); the goroutine is abandoned with the closing node.
type storeGuard struct {
	raft.LogStore
	stable raft.StableStore
	failed func(error)

	mu     sync.RWMutex // held for reading by every write in progress
	closed bool
}

// write runs one write to the stores unless they are closed.
func (g *storeGuard) write(what string, f func() error) error {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		select {} // see the type's doc
	}
	defer g.mu.RUnlock()
	err := f()
	if err != nil {
		g.failed(fmt.Errorf("chain: the Raft %s could not be written (disk full or data directory not writable?): %w", what, err))
	}
	return err
}

// close waits for the writes in progress and shuts the door on later ones.
func (g *storeGuard) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func (g *storeGuard) StoreLog(l *raft.Log) error {
	return g.write("log", func() error { return g.LogStore.StoreLog(l) })
}
func (g *storeGuard) StoreLogs(ls []*raft.Log) error {
	return g.write("log", func() error { return g.LogStore.StoreLogs(ls) })
}
func (g *storeGuard) DeleteRange(min, max uint64) error {
	return g.write("log", func() error { return g.LogStore.DeleteRange(min, max) })
}
func (g *storeGuard) Set(k, v []byte) error {
	return g.write("state", func() error { return g.stable.Set(k, v) })
}
func (g *storeGuard) Get(k []byte) ([]byte, error) {
	return g.stable.Get(k)
}
func (g *storeGuard) SetUint64(k []byte, v uint64) error {
	return g.write("state", func() error { return g.stable.SetUint64(k, v) })
}
func (g *storeGuard) GetUint64(k []byte) (uint64, error) { return g.stable.GetUint64(k) }

// IsMonotonic passes raft-wal's raft.MonotonicLogStore through (as Raft's
// own LogCache does): after installing a snapshot Raft must then drop the
// whole log rather than leave a gap, which raft-wal cannot hold.
func (g *storeGuard) IsMonotonic() bool {
	m, ok := g.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// storeFailure holds the first store failure of a node.
type storeFailure struct{ err atomic.Pointer[error] }

func (f *storeFailure) set(err error) bool { return f.err.CompareAndSwap(nil, &err) }
func (f *storeFailure) get() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}
