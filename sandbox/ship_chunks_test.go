package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/policies"
)

// A shipment larger than one message travels in chunks: with a chunk
// limit of 500 bytes the owners' shipments (about 8 KB and 20 KB) take
// many messages, and the join completes with one job.flow per dataset
// whose digest covers the reassembled shipment.
func TestJoinerShipsInChunks(t *testing.T) {
	c := newJoinClusterStopped(t, 5*time.Second)
	for _, n := range c.nodes {
		n.j.cfg.ShipChunk = 500
	}
	var mu sync.Mutex
	calls := map[string]int{}
	c.call = func(peer string, b []byte, err error) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil && len(b) > chunkHeader+500 {
			t.Errorf("a chunk of %d bytes from %s", len(b), peer)
		}
		calls[peer]++
		return b, err
	}
	c.start()
	id := c.submit(joinerSQL)
	j := c.await(id, 20*time.Second)
	if j.Status != policies.JobCompleted || len(j.Flows) != 2 {
		t.Fatalf("%s (%d flows): %s", j.Status, len(j.Flows), j.Reason)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range j.Flows {
		owner := map[string]string{"tax2025": "node1", "benefits2025": "node2"}[f.Dataset]
		// rows × (a 12-byte tag and a 1-byte code at least).
		if min := int(f.Rows) * 13 / 500; calls[owner] < min {
			t.Fatalf("%s shipped %d rows in %d messages", owner, f.Rows, calls[owner])
		}
	}
	logMu.Lock()
	logs := c.nodes["node3"].logs.String()
	logMu.Unlock()
	got := regexp.MustCompile(`"join part received" .* chunks=(\d+)`).FindAllStringSubmatch(logs, -1)
	if len(got) != 2 {
		t.Fatalf("the executor's log shows %d parts received:\n%s", len(got), logs)
	}
	for _, m := range got {
		if n, _ := strconv.Atoi(m[1]); n < 10 {
			t.Fatalf("a part in %d chunks", n)
		}
	}
}

// The executor reassembles chunks only as announced: every malformed
// sequence is refused as bad data, and a shipment above the limit is
// refused before anything of its size is allocated.
func TestGatherChunks(t *testing.T) {
	ship := bytes.Repeat([]byte("0123456789"), 25) // 250 bytes
	chunk := func(total, off uint64, data []byte) []byte {
		h := make([]byte, chunkHeader)
		binary.LittleEndian.PutUint64(h, total)
		binary.LittleEndian.PutUint64(h[8:], off)
		return append(h, data...)
	}
	honest := func(off int64) ([]byte, error) { return shipChunk(ship, off, 100) }
	cases := []struct {
		name  string
		get   func(off int64) ([]byte, error)
		limit int64
		want  string // "" succeeds
	}{
		{"honest", honest, 1000, ""},
		{"over the limit", honest, 200, "a shipment of 250 bytes (limit 200)"},
		{"no header", func(int64) ([]byte, error) { return []byte{1, 2}, nil }, 1000, "has no header"},
		{"total changes", func(off int64) ([]byte, error) {
			if off > 0 {
				return chunk(300, uint64(off), ship[off:off+10]), nil
			}
			return honest(off)
		}, 1000, "announce 250 and 300 bytes"},
		{"wrong offset", func(off int64) ([]byte, error) { return chunk(250, uint64(off)+1, ship[:10]), nil }, 1000, "chunk at offset 1, asked for 0"},
		{"more than announced", func(int64) ([]byte, error) { return chunk(5, 0, ship[:10]), nil }, 1000, "more than the 5 bytes"},
		{"empty chunk", func(int64) ([]byte, error) { return chunk(250, 0, nil), nil }, 1000, "an empty chunk"},
		{"huge total", func(int64) ([]byte, error) { return chunk(1<<62, 0, ship), nil }, 1 << 30, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, n, err := gatherChunks(c.get, c.limit)
			if c.want == "" {
				if err != nil || !bytes.Equal(got, ship) || n != 3 {
					t.Fatalf("%d chunks, %v", n, err)
				}
				return
			}
			if !errors.Is(err, ErrBadData) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	if _, err := shipChunk(ship, 251, 100); !errors.Is(err, ErrRefused) {
		t.Fatalf("offset past the end: %v", err)
	}
}

// FuzzGatherChunks: an honest owner's chunks of any shipment, in chunks
// of any size, reassemble to it; any byte stream an owner might answer
// with instead is reassembled to what it announced, within the limit, or
// refused as bad data, never a panic.
func FuzzGatherChunks(f *testing.F) {
	f.Add([]byte("DSJ2 a shipment"), uint16(4))
	f.Add([]byte{16, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c'}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, size uint16) {
		got, _, err := gatherChunks(func(off int64) ([]byte, error) { return shipChunk(data, off, int(size%64)+1) }, 1<<20)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("honest chunks of %d bytes: %v", len(data), err)
		}
		// data as an owner's answers: a u16 length, then that many bytes,
		// again and again.
		rest := data
		const limit = 1 << 12
		got, _, err = gatherChunks(func(int64) ([]byte, error) {
			if len(rest) < 2 {
				return nil, errors.New("no more answers")
			}
			n := min(int(binary.LittleEndian.Uint16(rest)), len(rest)-2)
			c := rest[2 : 2+n]
			rest = rest[2+n:]
			return c, nil
		}, limit)
		if err == nil && len(got) > limit {
			t.Fatalf("%d bytes reassembled past the limit", len(got))
		}
	})
}
