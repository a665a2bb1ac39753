package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/api/apitest"
)

// The pseudonym commands against a 3-node consortium: the admin's
// ceremony, its status (checked against the commitments), an agency's
// dataset with a consortium column, and the enterprise's list for its
// pending job, whose pseudonyms are the agency's.
func TestPseudonymCommands(t *testing.T) {
	e := newEnvWith(t, apitest.Options{Pseudonyms: true})
	if _, err := e.ctl(t, "agency1", "pseudonym", "ceremony"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("an agency ran the ceremony: %v", err)
	}
	out, err := e.ctl(t, "admin", "pseudonym", "ceremony", "--threshold", "2")
	if err != nil || !strings.Contains(out, "any 2 of node1, node2, node3 evaluate together, none alone") {
		t.Fatalf("ceremony: %s %v", out, err)
	}
	out, err = e.ctl(t, "auditor", "pseudonym", "status")
	if err != nil || !strings.Contains(out, "keys follow from the dealers' commitments: yes") || strings.Count(out, "\n") != 7 {
		t.Fatalf("status: %s %v", out, err)
	}
	schema := `{"columns": [
  {"name": "person_id", "type": "string", "class": "identifier", "pseudonym": "consortium"},
  {"name": "age", "type": "int", "class": "quasi_identifier", "generalize": {"band": 10}},
  {"name": "region", "type": "string", "class": "public"},
  {"name": "income", "type": "float", "class": "sensitive", "bounds": [0, 1000000]}]}`
	if out, err := e.ctl(t, "agency1", "dataset", "register", "--name", "census", "--schema", e.file(t, "s.json", schema), "--file", e.file(t, "d.csv", string(apitest.TaxCSV(50)))); err != nil {
		t.Fatalf("%s %v", out, err)
	}
	p := apitest.TaxPolicy()
	p["dataset"] = "census"
	p["approval"] = map[string]any{"mode": "manual", "approvers": 1}
	p["join"] = map[string]any{"lists": true, "max_rows_per_person": 1}
	b, _ := json.Marshal(p)
	if out, err := e.ctl(t, "agency1", "policy", "publish", e.file(t, "p.json", string(b))); err != nil {
		t.Fatalf("%s %v", out, err)
	}
	out, err = e.ctl(t, "bank", "--json", "job", "submit", "--mode", "masked", "--purpose", "credit risk statistics", "--query", "SELECT COUNT(*) FROM census")
	if err != nil {
		t.Fatalf("%s %v", out, err)
	}
	var j struct{ Job, Status string }
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.Status != "pending" {
		t.Fatalf("job %s: %v", out, err)
	}
	ids := e.file(t, "ids.txt", "P000003\n\nP000042\nP000003\n")
	out, err = e.ctl(t, "bank", "--json", "pseudonym", "ids", "--file", ids, "--job", j.Job)
	if err != nil {
		t.Fatalf("%s %v", out, err)
	}
	var r struct {
		Pseudonyms []string `json:"pseudonyms"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Pseudonyms) != 3 || r.Pseudonyms[0] != r.Pseudonyms[2] || r.Pseudonyms[0] == r.Pseudonyms[1] || len(r.Pseudonyms[0]) != 128 {
		t.Fatalf("pseudonyms %s: %v", out, err)
	}
	if _, err := e.ctl(t, "shop", "pseudonym", "ids", "--file", ids, "--job", j.Job); err == nil || !strings.Contains(err.Error(), "is not") {
		t.Fatalf("another enterprise's job: %v", err)
	}
}
