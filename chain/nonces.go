package chain

import (
	"sync/atomic"
	"time"
)

// Nonces hands out unique, growing nonces for the entries one key signs
// from several places in one process (the API's relays, the job runner).
type Nonces struct{ n atomic.Uint64 }

// NewNonces starts from the current time in nanoseconds, so that nonces
// keep growing across restarts.
func NewNonces() *Nonces {
	ns := &Nonces{}
	ns.n.Store(uint64(time.Now().UnixNano()))
	return ns
}

// Next returns a nonce never returned before by this source.
func (ns *Nonces) Next() uint64 { return ns.n.Add(1) }
