package chain

import (
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// storeGuard wraps the Raft log and stable stores: the first failed write
// (a full disk, an unwritable data directory) stops the node's writes and
// reads and shows in its health (Node.Err) instead of leaving a node that
// silently lags behind while looking fine.
type storeGuard struct {
	raft.LogStore
	stable raft.StableStore
	failed func(error)
}

func (g *storeGuard) check(what string, err error) error {
	if err != nil {
		g.failed(fmt.Errorf("chain: the Raft %s could not be written (disk full or data directory not writable?): %w", what, err))
	}
	return err
}

func (g *storeGuard) StoreLog(l *raft.Log) error { return g.check("log", g.LogStore.StoreLog(l)) }
func (g *storeGuard) StoreLogs(ls []*raft.Log) error {
	return g.check("log", g.LogStore.StoreLogs(ls))
}
func (g *storeGuard) DeleteRange(min, max uint64) error {
	return g.check("log", g.LogStore.DeleteRange(min, max))
}
func (g *storeGuard) Set(k, v []byte) error { return g.check("state", g.stable.Set(k, v)) }
func (g *storeGuard) Get(k []byte) ([]byte, error) {
	return g.stable.Get(k)
}
func (g *storeGuard) SetUint64(k []byte, v uint64) error {
	return g.check("state", g.stable.SetUint64(k, v))
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
