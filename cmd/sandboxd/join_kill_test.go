//go:build unix

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// A join's executor killed with SIGKILL mid-job, on four "sandboxd run"
// processes (HTTPS, mutual TLS, consortium pseudonyms): agency1's records
// on node1, agency2's on node2, node3 and node4 both eligible executors.
// node2 is stopped (SIGSTOP) before the job, so the executor that claims
// it waits for node2's part; that executor is then killed, node2 resumed;
// after the genesis's 10-second lease the other executor takes the job
// over and completes it. The first executor restarts. The ledger holds
// one job.complete, by the second executor; the result is the records'
// join within the DP noise.
// In mode he the same happens before any share is issued (the first
// executor waits for a part), and the second executor's result is
// re-encrypted by two nodes to the enterprise, which decrypts it.
func TestRunJoinSurvivesExecutorKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four node processes")
	}
	for _, mode := range []string{policies.ModeMasked, policies.ModeHE} {
		t.Run(mode, func(t *testing.T) { joinSurvivesExecutorKill(t, mode) })
	}
}

func joinSurvivesExecutorKill(t *testing.T, mode string) {
	c := startProcClusterWith(t, 4, func(g *policies.Genesis) { g.JoinLeaseSeconds = 10 })
	var cer policies.PseudonymCeremony
	c.mustJSON(0, "admin", "POST", "/v1/pseudonyms/ceremony", api.PseudonymCeremonyRequest{Threshold: 2}, &cer)
	seed := c.keys["enterprise"].Ed25519().Seed()
	if mode == policies.ModeHE {
		var hc policies.HECeremony
		c.mustJSON(0, "admin", "POST", "/v1/he/ceremony", api.CeremonyRequest{Threshold: 2}, &hc)
		pk, err := heparams.RequesterPublicKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		c.mustJSON(2, "enterprise", "POST", "/v1/accounts/hekey", policies.HEKeyDoc{Params: heparams.Name, PublicKey: pk}, nil)
	}

	var ids []string
	for i := range 400 {
		ids = append(ids, fmt.Sprintf("3101011990%08d", i))
	}
	register := func(agency string, node int, name string, schema policies.Schema, header string, row func(i int) string, from, to int, aggs map[string][]string, group []string) {
		var csv bytes.Buffer
		csv.WriteString(header + "\n")
		for i := from; i < to; i++ {
			csv.WriteString(ids[i] + "," + row(i) + "\n")
		}
		sb, _ := json.Marshal(schema)
		var up api.UploadResponse
		if err := c.call(node, agency, "POST", "/v1/uploads?dataset="+name+"&schema="+base64.RawURLEncoding.EncodeToString(sb), "text/csv", csv.Bytes(), &up); err != nil {
			t.Fatal(err)
		}
		c.mustJSON(node, agency, "POST", "/v1/datasets", policies.DatasetDoc{Name: name, Schema: schema, SHA256: up.SHA256, Rows: up.Rows}, nil)
		c.mustJSON(node, agency, "POST", "/v1/policies", map[string]any{"dataset": name, "grantees": []string{"role:enterprise"}, "purpose": "benefit statistics",
			"modes": []string{"masked", "he"}, "aggregates": aggs, "group_by": group, "filter": group, "min_group_size": 10,
			"dp": map[string]any{"epsilon_per_query": 1.0, "epsilon_budget": 5.0}, "approval": map[string]any{"mode": "auto"},
			"expires": "2099-01-01T00:00:00Z", "join": map[string]any{"datasets": []string{"*"}, "lists": false, "max_rows_per_person": 1}}, nil)
	}
	pid := policies.Column{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium}
	register("agency1", 0, "taxk", policies.Schema{Columns: []policies.Column{pid,
		{Name: "income", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 100000}}}},
		"person_id,income", func(i int) string { return fmt.Sprint(1000 * (i % 50)) }, 0, 300,
		map[string][]string{"income": {"sum", "avg", "count"}}, nil)
	register("agency2", 1, "benk", policies.Schema{Columns: []policies.Column{pid,
		{Name: "kind", Type: policies.TypeString, Class: policies.Public}}},
		"person_id,kind", func(i int) string { return fmt.Sprintf("k%d", i%2) }, 100, 400,
		map[string][]string{"*": {"count"}}, []string{"kind"})

	// node2 stops answering (its process is stopped): 3 of 4 nodes keep
	// the ledger going, and no executor can have benk's part.
	stopped := c.cmds[1].Process.Pid
	if err := syscall.Kill(stopped, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// If node2 led, the others elect a new leader first: the job is
	// submitted once the three running nodes agree on one (a submission
	// during the election is answered 503, which sandboxctl retries).
	settle := time.Now().Add(30 * time.Second)
	for {
		leaders := map[string]bool{}
		for _, i := range []int{0, 2, 3} {
			h, err := c.health(i)
			if err != nil {
				leaders["?"] = true
				continue
			}
			leaders[h.Leader] = true
		}
		if len(leaders) == 1 && !leaders[""] && !leaders["node2"] && !leaders["?"] {
			break
		}
		if time.Now().After(settle) {
			t.Fatalf("no leader among the running nodes 30 s after node2 stopped: %v", leaders)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(stopped, syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	defer resume()
	var job api.JobResponse
	c.mustJSON(0, "enterprise", "POST", "/v1/jobs", policies.JobDoc{Mode: mode, Purpose: "benefit statistics",
		Query: "SELECT b.kind, COUNT(*), SUM(t.income) FROM taxk t JOIN benk b ON t.person_id = b.person_id GROUP BY b.kind"}, &job)
	runnerOf := map[string]int{c.keys["node3"].Address().String(): 2, c.keys["node4"].Address().String(): 3}
	deadline := time.Now().Add(60 * time.Second)
	for job.Status != policies.JobRunning {
		if job.Status == policies.JobCompleted || job.Status == policies.JobFailed || time.Now().After(deadline) {
			t.Fatalf("job %s: %s", job.Status, job.Reason)
		}
		time.Sleep(50 * time.Millisecond)
		c.mustJSON(0, "enterprise", "GET", "/v1/jobs/"+job.Job, nil, &job)
	}
	first, ok := runnerOf[job.Runner]
	if !ok {
		t.Fatalf("job run by %s, neither node3 nor node4", job.Runner)
	}
	// The runner waits for node2's part: kill it, then resume node2.
	time.Sleep(500 * time.Millisecond)
	c.kill(first)
	killedAt := time.Now()
	resume()
	second := 5 - first // node3 <-> node4
	deadline = time.Now().Add(120 * time.Second)
	for job.Status != policies.JobCompleted {
		if job.Status == policies.JobFailed || time.Now().After(deadline) {
			t.Fatalf("job %s after the kill: %s", job.Status, job.Reason)
		}
		time.Sleep(200 * time.Millisecond)
		if err := c.call(0, "enterprise", "GET", "/v1/jobs/"+job.Job, "", nil, &job); err != nil {
			t.Logf("job status: %v", err) // the ledger may lack a quorum until node2 is back
		}
	}
	if runnerOf[job.Runner] != second {
		t.Fatalf("completed by %s, not node%d", job.Runner, second+1)
	}
	t.Logf("node%d killed; node%d completed the job %.1f s later (lease 10 s)", first+1, second+1, time.Since(killedAt).Seconds())

	// The killed executor restarts: it finds the job completed by the
	// other and does nothing more with it (its lease is gone; the state
	// machine would refuse its job.complete anyway).
	c.start(first)
	c.waitHealthy(first)
	time.Sleep(3 * time.Second)

	// One job.complete on the ledger, by the second executor.
	completes := 0
	for start := 0; ; {
		var er api.EntriesResponse
		c.mustJSON(0, "auditor", "GET", fmt.Sprintf("/v1/ledger/entries?start=%d", start), nil, &er)
		if len(er.Entries) == 0 {
			break
		}
		for _, ie := range er.Entries {
			raw, err := base64.StdEncoding.DecodeString(ie.Entry)
			if err != nil {
				t.Fatal(err)
			}
			e, err := chain.ParseEntry(raw)
			if err != nil || e.Kind != policies.KindJobComplete {
				continue
			}
			var d policies.JobResultDoc
			if json.Unmarshal(e.Payload, &d) == nil && d.Job == job.Job {
				completes++
				if policies.AddressOf(e.PublicKey) != policies.Address(c.keys[fmt.Sprintf("node%d", second+1)].Address()) {
					t.Fatalf("job.complete signed by %s", policies.AddressOf(e.PublicKey))
				}
			}
		}
		start += len(er.Entries)
	}
	if completes != 1 {
		t.Fatalf("%d job.complete entries for %s", completes, job.Job)
	}
	var res sandbox.Result
	c.mustJSON(0, "enterprise", "GET", "/v1/jobs/"+job.Job+"/result", nil, &res)
	if mode == policies.ModeHE {
		if res.HE == nil || len(res.HE.Active) != 2 {
			t.Fatalf("he result %+v", res.HE)
		}
		if err := sandbox.DecryptHEResult(&res, seed); err != nil {
			t.Fatal(err)
		}
	}
	// epsilon 1 over 2 moments: the count's Laplace scale is 2, the
	// sum's 2e5 (income bounded by 1e5): 10 scales each (in mode he
	// two nodes each add a draw: 7 scales of their sum).
	checkJoinRows(t, "", res.Rows, joinWant(), 2e6)
}
