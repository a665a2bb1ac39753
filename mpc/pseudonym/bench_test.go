package pseudonym

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/circl/oprf"
)

// benchBatch is the ids per request in the benchmarks (ingest's size).
const benchBatch = 1024

// onAllCores runs rounds batches of benchBatch ids on GOMAXPROCS workers
// and returns how long they took.
func onAllCores(b *testing.B, rounds int, round func() error) time.Duration {
	b.Helper()
	w := runtime.GOMAXPROCS(0)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, w)
	next := make(chan struct{}, rounds)
	for range rounds {
		next <- struct{}{}
	}
	close(next)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if err := round(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkThresholdVOPRF measures, in one run, whole pseudonym rounds per
// id — blind, t partial evaluations with batched DLEQ proofs, t proof
// checks, Lagrange and unblinding folded, finalise — against circl's
// single-key verifiable OPRF round (blind, evaluate with proof, verify
// and finalise), both on all cores, both in process (no network).
func BenchmarkThresholdVOPRF(b *testing.B) {
	for _, tc := range []struct{ t, n int }{{2, 3}, {3, 5}} {
		b.Run(fmt.Sprintf("t%d-of-%d", tc.t, tc.n), func(b *testing.B) {
			pub, shares := ceremony(b, tc.t, tc.n)
			c := NewClient(pub)
			sk, err := oprf.GenerateKey(oprf.SuiteRistretto255, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			server := oprf.NewVerifiableServer(oprf.SuiteRistretto255, sk)
			single := oprf.NewVerifiableClient(oprf.SuiteRistretto255, sk.Public())
			ids := make([][]byte, benchBatch)
			for i := range ids {
				ids[i] = []byte(fmt.Sprintf("11010119900307%04d", i))
			}
			threshold := func() error {
				bl, req, err := c.Blind(ids)
				if err != nil {
					return err
				}
				var vs []*Verified
				for _, s := range shares[:tc.t] {
					p, err := s.Evaluate(req)
					if err != nil {
						return err
					}
					v, err := c.Verify(req, p)
					if err != nil {
						return err
					}
					vs = append(vs, v)
				}
				_, err = c.Finalize(bl, vs)
				return err
			}
			circl := func() error {
				fin, req, err := single.Blind(ids)
				if err != nil {
					return err
				}
				ev, err := server.Evaluate(req)
				if err != nil {
					return err
				}
				_, err = single.Finalize(fin, ev)
				return err
			}
			// Interleaved, so that other load on the machine hits both alike.
			var dt, ds time.Duration
			rounds := 2 * runtime.GOMAXPROCS(0)
			n := 0
			for b.Loop() {
				for range 3 {
					dt += onAllCores(b, rounds, threshold)
					ds += onAllCores(b, rounds, circl)
					n += rounds * benchBatch
				}
			}
			th, si := float64(n)/dt.Seconds(), float64(n)/ds.Seconds()
			b.ReportMetric(th, "threshold-ids/s")
			b.ReportMetric(si, "single-ids/s")
			b.ReportMetric(si/th, "cost-ratio")
		})
	}
}
