package chain

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// failingStore fails every write, as a full disk does.
type failingStore struct{ raft.LogStore }

func (failingStore) StoreLogs([]*raft.Log) error { return errors.New("no space left on device") }
func (failingStore) IsMonotonic() bool           { return true }

// The guard keeps raft-wal's monotonic-log promise visible to Raft (it
// changes how snapshots are installed), and its first failed write is
// recorded once.
func TestStoreGuard(t *testing.T) {
	var got []error
	g := &storeGuard{LogStore: failingStore{raft.NewInmemStore()}, failed: func(err error) { got = append(got, err) }}
	var ls raft.LogStore = g
	if m, ok := ls.(raft.MonotonicLogStore); !ok || !m.IsMonotonic() {
		t.Fatal("the guard hides IsMonotonic")
	}
	if err := g.StoreLogs(nil); err == nil || len(got) != 1 {
		t.Fatalf("write error %v, reported %v", err, got)
	}
	var f storeFailure
	if !f.set(errors.New("a")) || f.set(errors.New("b")) || f.get().Error() != "a" {
		t.Fatal("storeFailure keeps the first error only")
	}
}
