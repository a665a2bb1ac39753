package sandbox

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/datasandbox/datasandbox/policies"
)

// A shipment travels in chunks: one node-to-node message is at most 64
// MiB (chain), a shipment of many rows is more. The executor asks for the
// bytes from an offset; the owner answers with the encoded shipment's
// length and the next chunk from that offset. Chunks carry no digest of
// their own: the executor checks the concatenation against the digest the
// owner committed in job.flow, so job.flow names one shipment however it
// travelled.

// DefaultShipChunk is the largest chunk an owner sends by default.
const DefaultShipChunk = 32 << 20

// chunkHeader is the length of a chunk's header: the shipment's total
// length (u64) and the chunk's offset in it (u64), little-endian.
const chunkHeader = 16

// shipChunk is the answer to a request for the bytes of shipment b from
// offset off: the header, then at most size bytes.
func shipChunk(b []byte, off int64, size int) ([]byte, error) {
	if off < 0 || off > int64(len(b)) {
		return nil, fmt.Errorf("%w: offset %d of a shipment of %d bytes", ErrRefused, off, len(b))
	}
	if size < 1 {
		size = DefaultShipChunk
	}
	end := min(int64(len(b)), off+int64(size))
	out := make([]byte, chunkHeader, chunkHeader+end-off)
	binary.LittleEndian.PutUint64(out, uint64(len(b)))
	binary.LittleEndian.PutUint64(out[8:], uint64(off))
	return append(out, b[off:end]...), nil
}

// gatherChunks reassembles a shipment by asking get for the bytes from
// each offset until the whole has arrived; limit bounds the total a peer
// may announce (nothing is allocated from what it announces beyond that).
// It reports how many chunks it took.
func gatherChunks(get func(off int64) ([]byte, error), limit int64) ([]byte, int, error) {
	var out []byte
	total := int64(-1)
	chunks := 0
	for total < 0 || int64(len(out)) < total {
		c, err := get(int64(len(out)))
		if err != nil {
			return nil, chunks, err
		}
		chunks++
		if len(c) < chunkHeader {
			return nil, chunks, fmt.Errorf("%w: a shipment's chunk of %d bytes has no header", ErrBadData, len(c))
		}
		n, off := int64(binary.LittleEndian.Uint64(c)), int64(binary.LittleEndian.Uint64(c[8:]))
		data := c[chunkHeader:]
		switch {
		case n > limit || n < 0:
			return nil, chunks, fmt.Errorf("%w: a shipment of %d bytes (limit %d)", ErrBadData, n, limit)
		case total >= 0 && n != total:
			return nil, chunks, fmt.Errorf("%w: a shipment's chunks announce %d and %d bytes", ErrBadData, total, n)
		case off != int64(len(out)):
			return nil, chunks, fmt.Errorf("%w: chunk at offset %d, asked for %d", ErrBadData, off, len(out))
		case int64(len(out)+len(data)) > n:
			return nil, chunks, fmt.Errorf("%w: chunks of more than the %d bytes announced", ErrBadData, n)
		case len(data) == 0 && int64(len(out)) < n:
			return nil, chunks, fmt.Errorf("%w: an empty chunk at offset %d of %d", ErrBadData, len(out), n)
		}
		if total < 0 {
			total, out = n, make([]byte, 0, n)
		}
		out = append(out, data...)
	}
	return out, chunks, nil
}

// sending is a shipment an owner is sending in chunks: its encoding, its
// digest and its rows.
type sending struct {
	b    []byte
	sum  string
	rows int
}

// buildShipment tags and encodes this owner's part of job j.
func (jn *Joiner) buildShipment(ctx context.Context, j policies.Job, side policies.JoinSide) (sending, error) {
	k, err := jn.jobKey(j)
	if err != nil {
		return sending{}, err
	}
	t, err := jn.store.Table(side.Dataset)
	if err != nil {
		return sending{}, err
	}
	s, err := jn.shipmentFor(ctx, j, t, side, k)
	if err != nil {
		return sending{}, err
	}
	b, sum, err := s.MarshalDigest()
	if err != nil {
		return sending{}, err
	}
	return sending{b: b, sum: sum, rows: s.Rows}, nil
}

// takeSending returns (and forgets) the shipment kept under key.
func (jn *Joiner) takeSending(key string) (sending, bool) {
	jn.mu.Lock()
	defer jn.mu.Unlock()
	s, ok := jn.sending[key]
	delete(jn.sending, key)
	return s, ok
}

// keepSending keeps a shipment whose next chunks are still to be asked for.
func (jn *Joiner) keepSending(key string, s sending) {
	jn.mu.Lock()
	defer jn.mu.Unlock()
	if jn.sending == nil {
		jn.sending = map[string]sending{}
	}
	jn.sending[key] = s
}

// forgetSending drops the shipments of jobs that are no longer running.
func (jn *Joiner) forgetSending() {
	jn.mu.Lock()
	defer jn.mu.Unlock()
	for key := range jn.sending {
		id, _, _ := strings.Cut(key, "/")
		if j, ok := jn.state.Job(id); !ok || j.Status != policies.JobRunning {
			delete(jn.sending, key)
		}
	}
}
