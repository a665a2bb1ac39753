package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// A join across two agencies on a 3-node dev consortium, over the API:
// agency1's tax records on node1 and agency2's benefit records on node2
// (consortium pseudonyms), an enterprise's join query, run by node3 (which
// holds neither); the result is fetched through node1; the ledger shows
// the flows; node3's disk holds no id of either dataset.
func TestDevJoin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	base := freeBase(t)
	stop := startDev(t, dir, base)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	url := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", base+i) }
	load := func(name string) *chain.Key {
		k, err := chain.LoadKeyFile(filepath.Join(dir, "keys", name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	enterprise, auditor := load("enterprise"), load("auditor")
	var ids []string
	for i := range 400 {
		ids = append(ids, fmt.Sprintf("3101011990%08d", i))
	}
	register := func(agency *chain.Key, node int, name string, schema policies.Schema, rows func(i int, id string) string, from, to int, policy map[string]any) {
		var csv bytes.Buffer
		csv.WriteString(rows(-1, "") + "\n")
		for i := from; i < to; i++ {
			csv.WriteString(rows(i, ids[i]) + "\n")
		}
		sb, _ := json.Marshal(schema)
		var up api.UploadResponse
		if err := signedCall(ctx, agency, "POST", url(node)+"/v1/uploads?dataset="+name+"&schema="+base64.RawURLEncoding.EncodeToString(sb), "text/csv", csv.Bytes(), &up); err != nil {
			t.Fatal(err)
		}
		reg, _ := json.Marshal(policies.DatasetDoc{Name: name, Schema: schema, SHA256: up.SHA256, Rows: up.Rows})
		if err := signedCall(ctx, agency, "POST", url(node)+"/v1/datasets", "application/json", reg, nil); err != nil {
			t.Fatal(err)
		}
		pb, _ := json.Marshal(policy)
		if err := signedCall(ctx, agency, "POST", url(node)+"/v1/policies", "application/json", pb, nil); err != nil {
			t.Fatal(err)
		}
	}
	policy := func(ds string, aggs map[string][]string, group []string) map[string]any {
		return map[string]any{"dataset": ds, "grantees": []string{"role:enterprise"}, "purpose": "benefit statistics", "modes": []string{"masked"},
			"aggregates": aggs, "group_by": group, "filter": group, "min_group_size": 10,
			"dp": map[string]any{"epsilon_per_query": 1.0, "epsilon_budget": 5.0}, "approval": map[string]any{"mode": "auto"},
			"expires": "2099-01-01T00:00:00Z", "join": map[string]any{"datasets": []string{"*"}, "lists": false, "max_rows_per_person": 1}}
	}
	register(load("agency1"), 0, "taxj", policies.Schema{Columns: []policies.Column{
		{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
		{Name: "income", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 100000}}}},
		func(i int, id string) string {
			if i < 0 {
				return "person_id,income"
			}
			return fmt.Sprintf("%s,%d", id, 1000*(i%50))
		}, 0, 300, policy("taxj", map[string][]string{"income": {"sum", "avg", "count"}}, nil))
	register(load("agency2"), 1, "benj", policies.Schema{Columns: []policies.Column{
		{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
		{Name: "kind", Type: policies.TypeString, Class: policies.Public}}},
		func(i int, id string) string {
			if i < 0 {
				return "person_id,kind"
			}
			return fmt.Sprintf("%s,k%d", id, i%2)
		}, 100, 400, policy("benj", map[string][]string{"*": {"count"}}, []string{"kind"}))
	// Expected: people 100..299 in both; kind k(i%2), income 1000*(i%50).
	want := joinWant()
	sql := "SELECT b.kind, COUNT(*), SUM(t.income) FROM taxj t JOIN benj b ON t.person_id = b.person_id GROUP BY b.kind"
	jb, _ := json.Marshal(policies.JobDoc{Query: sql, Mode: "masked", Purpose: "benefit statistics"})
	var job api.JobResponse
	if err := signedCall(ctx, enterprise, "POST", url(0)+"/v1/jobs", "application/json", jb, &job); err != nil {
		t.Fatal(err)
	}
	for job.Status != policies.JobCompleted {
		if job.Status == policies.JobFailed || job.Status == policies.JobRejected {
			t.Fatalf("job %s: %s", job.Status, job.Reason)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job still %s", job.Status)
		case <-time.After(200 * time.Millisecond):
		}
		if err := signedCall(ctx, enterprise, "GET", url(0)+"/v1/jobs/"+job.Job, "", nil, &job); err != nil {
			t.Fatal(err)
		}
	}
	var res sandbox.Result
	if err := signedCall(ctx, enterprise, "GET", url(0)+"/v1/jobs/"+job.Job+"/result", "", nil, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 {
		t.Fatalf("rows %v", res.Rows)
	}
	for _, r := range res.Rows {
		w := want[r[0].(string)]
		// epsilon 1 over 2 moments: the count's noise has scale 2.
		if d := r[1].(float64) - w[0]; d > 20 || d < -20 {
			t.Fatalf("row %v, want %v", r, w)
		}
	}
	var access struct {
		Access []api.JobResponse `json:"access"`
	}
	if err := signedCall(ctx, auditor, "GET", url(2)+"/v1/audit/access?dataset=benj", "", nil, &access); err != nil {
		t.Fatal(err)
	}
	n3, err := chain.LoadKeyFile(filepath.Join(dir, "nodes", "node3", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	if len(access.Access) != 1 || len(access.Access[0].Flows) != 2 || access.Access[0].Runner != n3.Address().String() {
		t.Fatalf("access %+v", access.Access)
	}
	// No raw id of a dataset on any node but its owner's: none on the
	// executor, none of the benefit-only people on node1, none of the
	// tax-only people on node2.
	for node, bad := range map[string][]string{"node3": ids, "node1": ids[300:], "node2": ids[:100]} {
		err = filepath.WalkDir(filepath.Join(dir, "nodes", node), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, id := range bad {
				if bytes.Contains(b, []byte(id)) {
					return fmt.Errorf("%s holds id %s", path, id)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// The same join in mode he: both agencies publish policies that allow
	// it; the owners ship their incomes as ciphertexts under the
	// consortium's collective key, node3 evaluates, two nodes re-encrypt
	// the result to the enterprise's CKKS key; it decrypts.
	policyHE := func(ds string, aggs map[string][]string, group []string) map[string]any {
		p := policy(ds, aggs, group)
		p["modes"] = []string{"masked", "he"}
		return p
	}
	for _, p := range []struct {
		agency string
		node   int
		doc    map[string]any
	}{{"agency1", 0, policyHE("taxj", map[string][]string{"income": {"sum", "avg", "count"}}, nil)}, {"agency2", 1, policyHE("benj", map[string][]string{"*": {"count"}}, []string{"kind"})}} {
		pb, _ := json.Marshal(p.doc)
		if err := signedCall(ctx, load(p.agency), "POST", url(p.node)+"/v1/policies", "application/json", pb, nil); err != nil {
			t.Fatal(err)
		}
	}
	seed := enterprise.Ed25519().Seed()
	pk, err := heparams.RequesterPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := json.Marshal(policies.HEKeyDoc{Params: heparams.Name, PublicKey: pk})
	if err := signedCall(ctx, enterprise, "POST", url(1)+"/v1/accounts/hekey", "application/json", kb, nil); err != nil {
		t.Fatal(err)
	}
	jb, _ = json.Marshal(policies.JobDoc{Query: sql, Mode: policies.ModeHE, Purpose: "benefit statistics"})
	if err := signedCall(ctx, enterprise, "POST", url(0)+"/v1/jobs", "application/json", jb, &job); err != nil {
		t.Fatal(err)
	}
	for job.Status != policies.JobCompleted {
		if job.Status == policies.JobFailed || job.Status == policies.JobRejected {
			t.Fatalf("he job %s: %s", job.Status, job.Reason)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("he job still %s", job.Status)
		case <-time.After(200 * time.Millisecond):
		}
		if err := signedCall(ctx, enterprise, "GET", url(0)+"/v1/jobs/"+job.Job, "", nil, &job); err != nil {
			t.Fatal(err)
		}
	}
	var hres sandbox.Result
	if err := signedCall(ctx, enterprise, "GET", url(0)+"/v1/jobs/"+job.Job+"/result", "", nil, &hres); err != nil {
		t.Fatal(err)
	}
	if hres.HE == nil || len(hres.HE.Active) != 2 {
		t.Fatalf("he result %+v", hres.HE)
	}
	if err := sandbox.DecryptHEResult(&hres, seed); err != nil {
		t.Fatal(err)
	}
	// epsilon 1 over 2 quantities, a draw from each of 2 nodes: the
	// count's Laplace scale is 2 per draw; the sum's 2e5 (income
	// bounded by 1e5): 20 and 4e6 are about 7 and 14 scales of the sum
	// of the two draws.
	checkJoinRows(t, "he ", hres.Rows, want, 4e6)
	t.Logf("he join: %v (records %v), decrypted by the enterprise after shares of %v", hres.Rows, want, hres.HE.Active)
}

// joinWant is the exact (kind -> count, income sum) of the join the join
// tests run: people 100..299 are in both tables, kind k(i%2), income
// 1000*(i%50).
func joinWant() map[string][2]float64 {
	want := map[string][2]float64{}
	for i := 100; i < 300; i++ {
		k := fmt.Sprintf("k%d", i%2)
		w := want[k]
		want[k] = [2]float64{w[0] + 1, w[1] + float64(1000*(i%50))}
	}
	return want
}

// checkJoinRows fails t unless rows are the two kinds of joinWant, each
// count within 20 and each sum within sumTol of want (what prefixes the
// failure).
func checkJoinRows(t *testing.T, what string, rows [][]any, want map[string][2]float64, sumTol float64) {
	t.Helper()
	if len(rows) != 2 {
		t.Fatalf("%srows %v", what, rows)
	}
	for _, r := range rows {
		w := want[r[0].(string)]
		if math.Abs(r[1].(float64)-w[0]) > 20 || math.Abs(r[2].(float64)-w[1]) > sumTol {
			t.Fatalf("%srow %v, want %v", what, r, w)
		}
	}
}
