package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
)

// The documentation's example files (docs/examples) on a dev consortium,
// as they are: agency1 uploads the CSV with the schema to its node and
// registers it, publishes the policy, and an enterprise's query runs to a
// result. (The CLI's examples script does the same through sandboxctl on
// the in-process test consortium.)
func TestDocsExamplesOnDevConsortium(t *testing.T) {
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	csv, schema, policy := read("benefits.csv"), read("benefits.schema.json"), read("benefits.policy.json")
	dir := filepath.Join(t.TempDir(), "dev")
	base := freeBase(t)
	stop := startDev(t, dir, base)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	key := func(name string) *chain.Key {
		t.Helper()
		k, err := chain.LoadKeyFile(filepath.Join(dir, "keys", name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	agency, enterprise := key("agency1"), key("enterprise")
	node1 := fmt.Sprintf("http://127.0.0.1:%d", base)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var up struct {
		SHA256 string `json:"sha256"`
		Rows   int64  `json:"rows"`
	}
	if err := signedCall(ctx, agency, "POST", node1+"/v1/uploads?dataset=benefits2025&schema="+base64.RawURLEncoding.EncodeToString(schema), "text/csv", csv, &up); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if up.Rows != 160 {
		t.Fatalf("uploaded %d rows, want 160", up.Rows)
	}
	reg, _ := json.Marshal(map[string]any{"name": "benefits2025", "schema": json.RawMessage(schema), "sha256": up.SHA256, "rows": up.Rows})
	if err := signedCall(ctx, agency, "POST", node1+"/v1/datasets", "application/json", reg, nil); err != nil {
		t.Fatalf("register: %v", err)
	}
	if err := signedCall(ctx, agency, "POST", node1+"/v1/policies", "application/json", policy, nil); err != nil {
		t.Fatalf("policy publish: %v", err)
	}
	job, _ := json.Marshal(map[string]string{"mode": "masked", "purpose": "social policy statistics",
		"query": "SELECT region, COUNT(*) AS people, AVG(benefit) FROM benefits2025 GROUP BY region ORDER BY region"})
	var j struct {
		Job    string `json:"job"`
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if err := signedCall(ctx, enterprise, "POST", node1+"/v1/jobs", "application/json", job, &j); err != nil {
		t.Fatalf("job submit: %v", err)
	}
	for j.Status != "completed" {
		if j.Status == "rejected" || j.Status == "failed" {
			t.Fatalf("job %s %s: %s", j.Job, j.Status, j.Reason)
		}
		if err := signedCall(ctx, enterprise, "GET", node1+"/v1/jobs/"+url.PathEscape(j.Job)+"?wait=30s", "", nil, &j); err != nil {
			t.Fatalf("job status: %v", err)
		}
	}
	var res struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	}
	if err := signedCall(ctx, enterprise, "GET", node1+"/v1/jobs/"+url.PathEscape(j.Job)+"/result", "", nil, &res); err != nil {
		t.Fatalf("job result: %v", err)
	}
	if len(res.Rows) != 4 || len(res.Columns) != 3 || res.Columns[1] != "people" {
		t.Fatalf("result: %v %v", res.Columns, res.Rows)
	}
}
