package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// logOp is one client operation on the ledger, for porcupine: an append
// (with the index it was given, when the answer came back) or a read of
// the number of applied entries.
type logOp struct {
	append bool
	known  bool // the answer came back (else the outcome is unknown)
	value  uint64
}

// ledgerModel is the sequential specification of the ledger as the
// clients see it: an append lands at the next index; a read returns how
// many entries there are. An append whose answer was lost may have landed
// or not (porcupine may place it anywhere after its call).
var ledgerModel = porcupine.Model{
	Init: func() any { return uint64(0) },
	Step: func(state, input, output any) (bool, any) {
		n := state.(uint64)
		op := input.(logOp)
		out := output.(logOp)
		if op.append {
			return !out.known || out.value == n, n + 1
		}
		return out.value == n, n
	},
	DescribeOperation: func(input, output any) string {
		op, out := input.(logOp), output.(logOp)
		if op.append {
			return fmt.Sprintf("append -> %d (known %v)", out.value, out.known)
		}
		return fmt.Sprintf("read -> %d", out.value)
	},
}

// history records timed operations from concurrent clients.
type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) add(client int, call time.Time, in, out logOp, ret time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out,
		Call: call.Sub(h.start).Nanoseconds(), Return: ret.Sub(h.start).Nanoseconds()})
}

// SIGKILL the leader of three "sandboxd run" processes while clients
// append entries, read the ledger, submit jobs; restart it. The history of
// appends and reads is linearizable (porcupine), every acknowledged entry
// and job is on every node exactly once, every acknowledged job completes,
// and the nodes end with the same root.
func TestKillLeaderDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	c := startProcCluster(t)
	// A dataset and a policy, for the job submissions.
	c.registerDemo("tax", "masked", 2000, 3, bytes.Replace(sandbox.DemoPolicy("tax"), []byte(`"epsilon_budget": 5.0`), []byte(`"epsilon_budget": 100000`), 1))

	// Phase 1: appends and reads only (every entry is a client's), for the
	// linearizability check.
	var base api.StateResponse
	c.mustJSON(0, "auditor", "GET", "/v1/ledger/state", nil, &base)
	h := &history{start: time.Now()}
	var nonce atomic.Uint64
	nonce.Store(uint64(time.Now().UnixNano()))
	var ackMu sync.Mutex
	acked := map[[32]byte]bool{} // entries whose append was acknowledged
	var stop atomic.Bool
	var wg sync.WaitGroup
	var errs atomic.Int64
	for client := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(client), 1))
			for !stop.Load() {
				node := r.IntN(3)
				call := time.Now()
				if r.IntN(3) == 0 {
					var st api.StateResponse
					if err := c.call(node, "auditor", "GET", "/v1/ledger/state", "", nil, &st); err != nil {
						errs.Add(1)
						continue // a failed read tells nothing
					}
					h.add(client, call, logOp{}, logOp{known: true, value: st.Applied - base.Applied}, time.Now())
					continue
				}
				raw, err := c.keys["agency1"].NewEntry("note.fault", nonce.Add(1), time.Now(), []byte(`{}`))
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := json.Marshal(map[string]string{"entry": base64.StdEncoding.EncodeToString(raw)})
				var ar api.AppendResponse
				if err := c.call(node, "agency1", "POST", "/v1/ledger/entries", "application/json", body, &ar); err != nil {
					errs.Add(1)
					h.add(client, call, logOp{append: true}, logOp{}, time.Now().Add(time.Hour)) // outcome unknown
					continue
				}
				ackMu.Lock()
				acked[sha256.Sum256(raw)] = true
				ackMu.Unlock()
				h.add(client, call, logOp{append: true}, logOp{known: true, value: ar.Index - base.Applied}, time.Now())
			}
		})
	}
	killed := c.killLeader(1500 * time.Millisecond)
	time.Sleep(time.Second)
	c.start(killed)
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	res := porcupine.CheckOperationsTimeout(ledgerModel, h.ops, 60*time.Second)
	t.Logf("phase 1: %d operations (%d failed during the fault), %d appends acknowledged, node%d killed: %s", len(h.ops), errs.Load(), len(acked), killed+1, res)
	if res == porcupine.Illegal {
		t.Fatal("the history of appends and reads is not linearizable")
	}

	// Phase 2: job submissions and appends while the (new) leader dies.
	stop.Store(false)
	jobs := map[string]bool{}
	for client := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				node := (client + i) % 3
				if client%2 == 0 {
					var j api.JobResponse
					body, _ := json.Marshal(map[string]string{"mode": "masked", "purpose": "credit risk statistics", "query": "SELECT region, COUNT(*) FROM tax GROUP BY region"})
					if err := c.call(node, "enterprise", "POST", "/v1/jobs", "application/json", body, &j); err == nil {
						ackMu.Lock()
						jobs[j.Job] = true
						ackMu.Unlock()
					}
					continue
				}
				raw, _ := c.keys["agency1"].NewEntry("note.fault", nonce.Add(1), time.Now(), []byte(`{}`))
				body, _ := json.Marshal(map[string]string{"entry": base64.StdEncoding.EncodeToString(raw)})
				if err := c.call(node, "agency1", "POST", "/v1/ledger/entries", "application/json", body, nil); err == nil {
					ackMu.Lock()
					acked[sha256.Sum256(raw)] = true
					ackMu.Unlock()
				}
			}
		})
	}
	killed = c.killLeader(time.Second)
	time.Sleep(time.Second)
	c.start(killed)
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	c.waitHealthy(0, 1, 2)
	t.Logf("phase 2: %d jobs acknowledged, node%d killed; %d acknowledged appends in all", len(jobs), killed+1, len(acked))

	// Every acknowledged job completes (the runner resumes after a kill).
	for id := range jobs {
		deadline := time.Now().Add(60 * time.Second)
		for {
			var j api.JobResponse
			if err := c.call(0, "enterprise", "GET", "/v1/jobs/"+id, "", nil, &j); err == nil && j.Status == policies.JobCompleted {
				break
			} else if err == nil && (j.Status == policies.JobFailed || j.Status == policies.JobRejected) {
				t.Fatalf("job %s %s: %s", id, j.Status, j.Reason)
			}
			if time.Now().After(deadline) {
				t.Fatalf("acknowledged job %s did not complete", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Every node holds every acknowledged entry exactly once, and the same
	// log.
	var size uint64
	var logs [3][][32]byte
	for i := range 3 {
		deadline := time.Now().Add(30 * time.Second)
		for {
			logs[i] = c.allEntries(i)
			if i == 0 || len(logs[i]) == len(logs[0]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node%d holds %d entries, node1 %d", i+1, len(logs[i]), len(logs[0]))
			}
			time.Sleep(100 * time.Millisecond)
		}
		seen := map[[32]byte]int{}
		for _, h := range logs[i] {
			seen[h]++
		}
		for h := range acked {
			if seen[h] != 1 {
				t.Fatalf("node%d holds an acknowledged entry %d times", i+1, seen[h])
			}
		}
		if i > 0 {
			for k := range logs[i] {
				if logs[i][k] != logs[0][k] {
					t.Fatalf("node%d differs from node1 at index %d", i+1, k)
				}
			}
		}
		size = uint64(len(logs[i]))
	}
	t.Logf("all 3 nodes hold the same %d entries; every acknowledged one exactly once", size)
}

// killLeader waits d, then SIGKILLs the current leader and returns it.
func (c *procCluster) killLeader(d time.Duration) int {
	c.t.Helper()
	time.Sleep(d)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for i := range c.urls {
			if c.cmds[i] == nil {
				continue
			}
			if h, err := c.health(i); err == nil && h.Leader == h.Node {
				c.kill(i)
				return i
			}
		}
	}
	c.t.Fatal("no leader to kill")
	return -1
}

// allEntries reads node i's whole log (as the auditor) and returns each
// entry's SHA-256.
func (c *procCluster) allEntries(i int) [][32]byte {
	c.t.Helper()
	var out [][32]byte
	for {
		var er api.EntriesResponse
		c.mustJSON(i, "auditor", "GET", fmt.Sprintf("/v1/ledger/entries?start=%d", len(out)), nil, &er)
		if len(er.Entries) == 0 {
			return out
		}
		for _, e := range er.Entries {
			raw, err := base64.StdEncoding.DecodeString(e.Entry)
			if err != nil || e.Index != uint64(len(out)) {
				c.t.Fatalf("node%d entry %d: %v", i+1, e.Index, err)
			}
			out = append(out, sha256.Sum256(raw))
		}
	}
}
