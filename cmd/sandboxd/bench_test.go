package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// benchRows is the size of the datasets the end-to-end benchmarks query.
const benchRows = 1_000_000

// benchConsortium is a "sandboxd dev" consortium (3 nodes in this process,
// key ceremony done) holding benchRows demo records twice: masked
// (taxm) and encrypted (taxhe). Started once per process; TestMain stops
// it.
var benchConsortium struct {
	dir, url   string
	enterprise *chain.Key
	stop       func()
}

func benchSetup(b *testing.B) {
	b.Helper()
	if benchConsortium.url != "" {
		return
	}
	dir, err := os.MkdirTemp("", "sandboxd-bench-")
	if err != nil {
		b.Fatal(err)
	}
	base := freeBase(b)
	stop := startDev(b, dir, base)
	benchConsortium.stop = func() {
		stop()
		os.RemoveAll(dir)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", base)
	ctx := context.Background()
	agency, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "agency1.key"))
	if err != nil {
		b.Fatal(err)
	}
	ent, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "enterprise.key"))
	if err != nil {
		b.Fatal(err)
	}
	// The benchmark runs many jobs: the admin raises the consortium's
	// budget limit above the default for its policies.
	admin, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "admin.key"))
	if err != nil {
		b.Fatal(err)
	}
	limits, _ := json.Marshal(policies.Limits{MaxEpsilonPerQuery: 1, MaxEpsilonBudget: 1e6, MaxDelta: 1e-5})
	if err := signedCall(ctx, admin, "POST", url+"/v1/limits", "application/json", limits, nil); err != nil {
		b.Fatal(err)
	}
	var data bytes.Buffer
	if err := sandbox.GenerateDemo(&data, benchRows, 1); err != nil {
		b.Fatal(err)
	}
	schema, _ := json.Marshal(sandbox.DemoSchema())
	for _, ds := range []struct{ name, mode string }{{"taxm", "masked"}, {"taxhe", "he"}} {
		var up api.UploadResponse
		if err := signedCall(ctx, agency, "POST", url+"/v1/uploads?mode="+ds.mode+"&schema="+base64.RawURLEncoding.EncodeToString(schema), "text/csv", data.Bytes(), &up); err != nil {
			b.Fatal(err)
		}
		doc, _ := json.Marshal(policies.DatasetDoc{Name: ds.name, Schema: sandbox.DemoSchema(), SHA256: up.SHA256, Rows: up.Rows})
		if err := signedCall(ctx, agency, "POST", url+"/v1/datasets", "application/json", doc, nil); err != nil {
			b.Fatal(err)
		}
		// A large budget: the benchmark runs many jobs.
		pol := strings.Replace(string(sandbox.DemoPolicy(ds.name)), `"epsilon_budget": 5.0`, `"epsilon_budget": 1000000`, 1)
		if err := signedCall(ctx, agency, "POST", url+"/v1/policies", "application/json", []byte(pol), nil); err != nil {
			b.Fatal(err)
		}
	}
	pk, err := heparams.RequesterPublicKey(ent.Ed25519().Seed())
	if err != nil {
		b.Fatal(err)
	}
	doc, _ := json.Marshal(policies.HEKeyDoc{Params: heparams.Name, PublicKey: pk})
	if err := signedCall(ctx, ent, "POST", url+"/v1/accounts/hekey", "application/json", doc, nil); err != nil {
		b.Fatal(err)
	}
	benchConsortium.dir, benchConsortium.url, benchConsortium.enterprise = dir, url, ent
}

// runJob submits a job as the enterprise, waits for it, fetches the result
// and, for he, decrypts it: what "sandboxctl job submit --wait" does.
func runJob(b *testing.B, mode, query string) *sandbox.Result {
	ctx := context.Background()
	c := &benchConsortium
	body, _ := json.Marshal(map[string]string{"mode": mode, "purpose": "credit risk statistics", "query": query})
	var j api.JobResponse
	if err := signedCall(ctx, c.enterprise, "POST", c.url+"/v1/jobs", "application/json", body, &j); err != nil {
		b.Fatal(err)
	}
	for j.Status != policies.JobCompleted {
		if j.Status == policies.JobFailed || j.Status == policies.JobRejected {
			b.Fatalf("job %s %s: %s", j.Job, j.Status, j.Reason)
		}
		if err := signedCall(ctx, c.enterprise, "GET", c.url+"/v1/jobs/"+j.Job+"?wait=30s", "", nil, &j); err != nil {
			b.Fatal(err)
		}
	}
	var res sandbox.Result
	if err := signedCall(ctx, c.enterprise, "GET", c.url+"/v1/jobs/"+j.Job+"/result", "", nil, &res); err != nil {
		b.Fatal(err)
	}
	if res.HE != nil {
		if err := sandbox.DecryptHEResult(&res, c.enterprise.Ed25519().Seed()); err != nil {
			b.Fatal(err)
		}
	}
	return &res
}

// BenchmarkJobEndToEnd runs jobs on the dev consortium as an enterprise
// would: submit (a signed, committed entry), the owner node runs it, for he
// 2 nodes each commit he.share and re-encrypt, the client fetches and (he)
// decrypts. Same query and data in both modes; the he runs also report the
// owner's phases from /metrics and the process's peak RSS (3 nodes).
func BenchmarkJobEndToEnd(b *testing.B) {
	benchSetup(b)
	for _, q := range []struct{ name, sql string }{
		{"groupby16", "SELECT region, COUNT(*), SUM(income), AVG(income), VAR(income) FROM %s GROUP BY region"},
		{"nogroups", "SELECT COUNT(*), SUM(income), AVG(income), VAR(income) FROM %s"},
	} {
		for _, m := range []struct{ mode, ds string }{{"masked", "taxm"}, {"he", "taxhe"}} {
			b.Run(q.name+"/"+m.mode, func(b *testing.B) {
				sql := fmt.Sprintf(q.sql, m.ds)
				runJob(b, m.mode, sql) // warm: table loaded, keys cached
				before := phases(b)
				for b.Loop() {
					res := runJob(b, m.mode, sql)
					if want := map[string]int{"groupby16": 16, "nogroups": 1}[q.name]; len(res.Rows) != want {
						b.Fatalf("%d rows", len(res.Rows))
					}
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/job")
				if m.mode == "he" {
					after := phases(b)
					for _, p := range []string{"evaluate", "shares", "combine"} {
						b.ReportMetric((after[p+"_sum"]-before[p+"_sum"])*1000/max(after[p+"_count"]-before[p+"_count"], 1), p+"-ms")
					}
					b.ReportMetric(peakRSSMiB(b), "peak-RSS-MiB")
				}
			})
		}
	}
}

// phases reads the he phase histograms' sums and counts from node1's
// /metrics.
func phases(b *testing.B) map[string]float64 {
	resp, err := http.Get(benchConsortium.url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, suffix := range []string{"_sum", "_count"} {
			prefix := "datasandbox_he_phase_seconds" + suffix + `{phase="`
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				name, val, _ := strings.Cut(rest, `"} `)
				v, _ := strconv.ParseFloat(val, 64)
				out[name+suffix] = v
			}
		}
	}
	return out
}

// peakRSSMiB is this process's peak resident set (VmHWM).
func peakRSSMiB(b *testing.B) float64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
