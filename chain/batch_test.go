package chain_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/chain/chaintest"
)

// TestConcurrentAppendsShareBlocks: concurrent appends, on the leader and
// through a follower, with one block in flight at a time, each get an
// answer of their own: a valid entry a receipt for exactly its bytes at an
// index no other entry has, a wrongly signed one ErrBadSignature (and
// nothing in the log); and entries that waited for the block in flight
// went out together, in fewer blocks than entries.
func TestConcurrentAppendsShareBlocks(t *testing.T) {
	c := chaintest.NewCluster(t, 3, func(cfg *chain.Config) { cfg.MaxInflight = 1 })
	leader := c.WaitLeader()
	via := []struct {
		name string
		node int
	}{{"leader", leader}, {"follower", (leader + 1) % 3}}
	const clients, per = 32, 8
	total := 0
	for _, v := range via {
		t.Run(v.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			keys := make([]*chain.Key, clients)
			for i := range keys {
				keys[i], _ = chain.GenerateKey(chain.Ed25519)
			}
			type answer struct {
				raw []byte
				bad bool
				r   chain.Receipt
				err error
			}
			answers := make([][]answer, clients)
			for w := range answers {
				for i := range per {
					a := answer{raw: note(t, keys[w], uint64(i+1)), bad: (w+i)%7 == 3}
					if a.bad {
						a.raw[len(a.raw)-1] ^= 1
					}
					answers[w] = append(answers[w], a)
				}
			}
			var wg sync.WaitGroup
			for w := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range answers[w] {
						a := &answers[w][i]
						a.r, a.err = c.Nodes[v.node].Append(ctx, a.raw)
					}
				}()
			}
			wg.Wait()
			ledger := c.Nodes[leader].Ledger()
			seen := map[uint64]bool{}
			good := 0
			for _, as := range answers {
				for _, a := range as {
					if a.bad {
						if !errors.Is(a.err, chain.ErrBadSignature) {
							t.Fatalf("wrongly signed entry: %v, want ErrBadSignature", a.err)
						}
						if _, ok := ledger.LeafIndex(chain.LeafHash(a.raw)); ok {
							t.Fatal("a wrongly signed entry is in the log")
						}
						continue
					}
					if a.err != nil {
						t.Fatalf("append: %v", a.err)
					}
					good++
					if seen[a.r.Index] {
						t.Fatalf("index %d given twice", a.r.Index)
					}
					seen[a.r.Index] = true
					if a.r.LeafHash != chain.LeafHash(a.raw) || a.r.Duplicate {
						t.Fatalf("receipt %+v is not for these bytes", a.r)
					}
					if err := c.Nodes[v.node].WaitApplied(ctx, a.r.Index); err != nil {
						t.Fatal(err)
					}
					got, err := c.Nodes[v.node].Ledger().Entry(a.r.Index)
					if err != nil || string(got) != string(a.raw) {
						t.Fatalf("entry %d is not the appended bytes (%v)", a.r.Index, err)
					}
				}
			}
			total += good
			if h := ledger.Height(); h >= uint64(total) {
				t.Fatalf("%d entries in %d blocks: appends that waited were not batched", total, h)
			}
		})
	}
	if n := c.WaitConverged(uint64(total)); n != uint64(total) {
		t.Fatalf("log has %d entries, want %d", n, total)
	}
}

// TestAppendAfterRefusedBatch: a batch whose every entry fails its
// signature check leaves the pipeline ready for the next lone append (it
// once waited for a block's worth of entries instead).
func TestAppendAfterRefusedBatch(t *testing.T) {
	c := chaintest.NewCluster(t, 3, nil)
	leader := c.WaitLeader()
	k, _ := chain.GenerateKey(chain.Ed25519)
	for i, node := range []int{leader, (leader + 1) % 3} {
		bad := note(t, k, uint64(2*i+1))
		bad[len(bad)-1] ^= 1
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		if _, err := c.Nodes[node].Append(ctx, bad); !errors.Is(err, chain.ErrBadSignature) {
			t.Fatalf("node %d: bad signature: %v", node, err)
		}
		if _, err := c.Nodes[node].Append(ctx, note(t, k, uint64(2*i+2))); err != nil {
			t.Fatalf("node %d: the append after a refused one: %v", node, err)
		}
		cancel()
	}
}
