package chain_test

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/chain/chaintest"
)

// signEntries makes n signed 64-byte-payload entries from `authors` keys,
// nonces growing per author.
func signEntries(b *testing.B, n, authors int) [][]byte {
	b.Helper()
	keys := make([]*chain.Key, authors)
	for i := range keys {
		keys[i], _ = chain.GenerateKey(chain.Ed25519)
	}
	out := make([][]byte, n)
	payload := make([]byte, 64)
	var wg sync.WaitGroup
	per := (n + 1) / 2
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			now := time.Now()
			for i := w * per; i < n && i < (w+1)*per; i++ {
				out[i], _ = keys[i%authors].NewEntry(chaintest.KindNote, uint64(i+1), now, payload)
			}
		}(w)
	}
	wg.Wait()
	return out
}

func quietCluster(b *testing.B) *chaintest.Cluster {
	return chaintest.NewCluster(b, 3, func(c *chain.Config) {
		c.HeartbeatTimeout, c.ElectionTimeout = 500*time.Millisecond, 500*time.Millisecond
	})
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkClusterAppend: signed entries committed per second on a 3-node
// loopback cluster with durable stores (raft-wal, ledger files), signature
// verification included, 256 concurrent clients writing to the leader.
// cpu-ns/entry is the CPU time of the whole process (three nodes and the
// clients) per committed entry: steadier than entries/s on a shared
// machine.
func BenchmarkClusterAppend(b *testing.B) {
	const clients = 256
	entries := signEntries(b, b.N, 1024)
	c := quietCluster(b)
	leader := c.Nodes[c.WaitLeader()]
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := leader.Append(ctx, entries[i])
				cancel()
				lat[i] = time.Since(t0)
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d appends failed", f)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/entry")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(leader.Ledger().Height()), "blocks")
}

// BenchmarkBlockReplication: pre-verified blocks of 256 entries proposed
// straight to Raft, up to 8 in flight; entries/s once committed and applied
// (stored, Merkle-appended) on the leader.
func BenchmarkBlockReplication(b *testing.B) {
	const block = 256
	blocks := (b.N + block - 1) / block
	entries := signEntries(b, blocks*block, 1024)
	c := quietCluster(b)
	leader := c.Nodes[c.WaitLeader()]
	lat := make([]time.Duration, blocks)
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < blocks; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			if err := chain.ProposeVerifiedForTest(leader, entries[i*block:(i+1)*block]); err != nil {
				failed.Add(1)
			}
			lat[i] = time.Since(t0)
		}(i)
	}
	wg.Wait()
	el, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d blocks failed", failed.Load())
	}
	b.ReportMetric(float64(blocks*block)/el.Seconds(), "entries/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(blocks*block), "cpu-ns/entry")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-block-ms")
}

// BenchmarkVerifyEd25519 is the cost of checking one entry's signature.
func BenchmarkVerifyEd25519(b *testing.B) {
	raw := signEntries(b, 1, 1)[0]
	b.ResetTimer()
	for b.Loop() {
		if _, err := chain.ParseAndVerify(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyMLDSA65 is the same for a post-quantum account.
func BenchmarkVerifyMLDSA65(b *testing.B) {
	k, _ := chain.GenerateKey(chain.MLDSA65)
	raw, _ := k.NewEntry(chaintest.KindNote, 1, time.Now(), make([]byte, 64))
	for b.Loop() {
		if _, err := chain.ParseAndVerify(raw); err != nil {
			b.Fatal(err)
		}
	}
}
