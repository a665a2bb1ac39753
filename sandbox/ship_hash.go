package sandbox

import (
	"hash"
	"sync"
)

// hashStep is how many bytes an encoder writes between two hash updates
// (or a decoder reads): little enough to be hashed from cache.
const hashStep = 64 << 10

// hasher hashes the pieces of a buffer it is given, in order, on a
// goroutine of its own: a shipment's SHA-256 runs beside its encoding (on
// the owner) or its decoding (on the executor) on a second core, each
// piece hashed soon after it was written or before it is read again. The
// pieces must not change once given (the buffers are written once).
type hasher struct {
	h    hash.Hash
	work chan []byte
	done chan struct{}
	stop sync.Once
}

func newHasher(h hash.Hash) *hasher {
	x := &hasher{h: h, work: make(chan []byte, 8), done: make(chan struct{})}
	go func() {
		defer close(x.done)
		for p := range x.work {
			x.h.Write(p)
		}
	}()
	return x
}

func (x *hasher) write(p []byte) {
	if len(p) > 0 {
		x.work <- p
	}
}

// close waits for what was given to be hashed (safe to call again).
func (x *hasher) close() {
	x.stop.Do(func() { close(x.work) })
	<-x.done
}

// sum is the digest of all that was given.
func (x *hasher) sum() []byte {
	x.close()
	return x.h.Sum(nil)
}
