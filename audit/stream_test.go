package audit

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// synthSource makes a valid ledger on the fly: genesis, then notes signed
// by the admin, 256 per block, block times advancing a minute per block.
type synthSource struct {
	admin  *chain.Key
	total  uint64
	next   uint64
	height uint64
	prev   chain.Hash
	fr     chain.Frontier
	t0     time.Time
}

func (s *synthSource) Next(context.Context) (*chain.Block, [][]byte, error) {
	if s.next >= s.total {
		return nil, nil, io.EOF
	}
	bt := s.t0.Add(time.Duration(s.height) * time.Minute) // replay keys expire after 20 min of block time
	var entries [][]byte
	if s.next == 0 {
		g, _ := json.Marshal(policies.Genesis{Table: policies.DefaultTable(), Accounts: []policies.GenesisAccount{{PublicKey: s.admin.PublicKey(), Algorithm: "ed25519", Roles: []string{"admin"}}}})
		raw, _ := s.admin.NewEntry(policies.KindGenesis, 0, bt, g)
		entries = append(entries, raw)
	} else {
		for i := 0; i < 256 && s.next+uint64(i) < s.total; i++ {
			raw, _ := s.admin.NewEntry("note.x", s.next+uint64(i), bt, []byte(`{}`))
			entries = append(entries, raw)
		}
	}
	first := s.next
	for _, e := range entries {
		s.fr.Append(chain.LeafHash(e))
	}
	s.next += uint64(len(entries))
	s.height++
	b := &chain.Block{Height: s.height, Prev: s.prev, FirstIndex: first, Count: uint32(len(entries)), Root: s.fr.Root(), Time: bt}
	s.prev = b.Hash()
	return b, entries, nil
}

func streamPeak(t *testing.T, n uint64) uint64 {
	t.Helper()
	admin, _ := chain.NewKeyFromSeed(chain.Ed25519, make([]byte, 32))
	// The checkpoint's root: a first pass of the same generator.
	pre := &synthSource{admin: admin, total: n, t0: time.Unix(1_800_000_000, 0)}
	for {
		if _, _, err := pre.Next(context.Background()); err != nil {
			break
		}
	}
	cp := &chain.Checkpoint{Size: n, Root: pre.fr.Root()}
	src := &synthSource{admin: admin, total: n, t0: time.Unix(1_800_000_000, 0)}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	done := make(chan struct{})
	peakc := make(chan uint64)
	go func() {
		peak := base
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-done:
				peakc <- peak
				return
			case <-tk.C:
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	}()
	rep, _, err := Verify(context.Background(), src, cp)
	close(done)
	peak := <-peakc - base
	if err != nil || !rep.OK || rep.Entries != n {
		t.Fatalf("verify %d entries: %+v %v", n, rep.FirstFailure, err)
	}
	return peak
}

// Verification streams: 4x the entries, about the same memory.
func TestVerifyMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("signs and verifies up to 250,000 entries")
	}
	n := uint64(50_000)
	if raceEnabled {
		n = 10_000 // the race detector makes signing 20x slower
	}
	if v, err := strconv.ParseUint(os.Getenv("AUDIT_STREAM_ENTRIES"), 10, 64); err == nil && v > 0 {
		n = v / 4 // e.g. AUDIT_STREAM_ENTRIES=1000000 compares 250k with 1M
	}
	small, large := streamPeak(t, n), streamPeak(t, 4*n)
	t.Logf("peak heap growth: %d KiB for %d entries, %d KiB for %d", small>>10, n, large>>10, 4*n)
	if large > 2*small+(8<<20) {
		t.Fatalf("verification memory grows with the ledger: %d KiB vs %d KiB", small>>10, large>>10)
	}
}
