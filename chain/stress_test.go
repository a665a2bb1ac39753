package chain_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/chain/chaintest"
)

// TestPipelineStress hammers both write paths (the leader's blocks and a
// follower's forwarding) with concurrent appends, a fifth of them wrongly
// signed and a quarter abandoned by their callers (context cancelled
// mid-flight), while leadership moves every few hundred milliseconds and,
// half-way, one node shuts down under load. Every append and every Close
// (mid-flight and at the end) must return; a wrongly signed entry never commits; and afterwards every
// surviving node still commits a fresh entry (no slot or waiter was left
// behind). On a hang it dumps every goroutine and fails.
func TestPipelineStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	c := chaintest.NewCluster(t, 3, func(cfg *chain.Config) {
		cfg.MaxBlockEntries = 64 // blocks fill up: exercises carry-over between blocks
		cfg.ApplyTimeout = 5 * time.Second
	})
	c.WaitLeader()
	nodes := append([]*chain.Node(nil), c.Nodes...)
	var stopped [3]atomic.Bool

	const clients, run = 48, 6 * time.Second
	var appends, good, bad, cancelled atomic.Int64
	var mu sync.Mutex
	var badCommitted [][]byte
	var unexpected []error

	done := make(chan struct{})
	var wg sync.WaitGroup
	end := time.Now().Add(run)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _ := chain.GenerateKey(chain.Ed25519)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for nonce := uint64(1); time.Now().Before(end); nonce++ {
				raw := note(t, k, nonce)
				isBad := rng.IntN(5) == 0
				if isBad {
					raw[len(raw)-1] ^= 1
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				abandon := rng.IntN(4) == 0
				if abandon {
					d := time.Duration(rng.IntN(3000)) * time.Microsecond
					time.AfterFunc(d, cancel)
				}
				_, err := nodes[rng.IntN(3)].Append(ctx, raw)
				cancel()
				appends.Add(1)
				switch {
				case err == nil && isBad:
					mu.Lock()
					badCommitted = append(badCommitted, raw)
					mu.Unlock()
				case err == nil:
					good.Add(1)
				case errors.Is(err, chain.ErrBadSignature) && isBad:
					bad.Add(1)
				case errors.Is(err, context.Canceled) && abandon,
					errors.Is(err, chain.ErrStopped), errors.Is(err, chain.ErrNoLeader):
					cancelled.Add(1)
				default:
					mu.Lock()
					unexpected = append(unexpected, err)
					mu.Unlock()
				}
			}
		}()
	}
	// Leadership moves while blocks are in flight; half-way one node stops.
	wg.Add(1)
	go func() {
		defer wg.Done()
		killed := false
		for i := 0; time.Now().Before(end); i++ {
			time.Sleep(300 * time.Millisecond)
			for j, n := range nodes {
				if !stopped[j].Load() && n.IsLeader() {
					_ = chain.TransferLeadershipForTest(n)
					break
				}
			}
			if !killed && time.Now().After(end.Add(-run/2)) {
				killed = true
				victim := i % 3
				stopped[victim].Store(true)
				_ = nodes[victim].Close()
			}
		}
	}()
	go func() { wg.Wait(); close(done) }()
	waitOrDump(t, done, 40*time.Second, "appends")

	// Every node still running still commits.
	after := make(chan struct{})
	var afterErr []error
	go func() {
		defer close(after)
		k, _ := chain.GenerateKey(chain.Ed25519)
		for j, n := range nodes {
			if stopped[j].Load() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, err := n.Append(ctx, note(t, k, uint64(j+1)))
			cancel()
			if err != nil {
				afterErr = append(afterErr, err)
			}
		}
	}()
	waitOrDump(t, after, 20*time.Second, "appends after the chaos")
	if len(afterErr) > 0 {
		t.Fatalf("appends after the chaos failed: %v", afterErr)
	}
	if len(badCommitted) > 0 {
		t.Fatalf("%d wrongly signed entries committed", len(badCommitted))
	}
	if len(unexpected) > 0 {
		t.Errorf("%d unexpected errors, first: %v", len(unexpected), unexpected[0])
	}
	if good.Load() == 0 || bad.Load() == 0 {
		t.Fatalf("no mix: %d committed, %d refused", good.Load(), bad.Load())
	}
	// Shutdown too must return (the cluster's cleanup would hang unwatched).
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for _, n := range nodes {
			_ = n.Close()
		}
	}()
	waitOrDump(t, closed, 30*time.Second, "node shutdowns")
	t.Logf("%d appends: %d committed, %d bad signatures, %d abandoned/stopped/no leader", appends.Load(), good.Load(), bad.Load(), cancelled.Load())
}

// waitOrDump waits for done; past limit it dumps every goroutine and fails.
func waitOrDump(t *testing.T, done <-chan struct{}, limit time.Duration, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(limit):
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
		t.Fatalf("%s did not all return within %v; goroutines:\n%s", what, limit, buf.String())
	}
}
