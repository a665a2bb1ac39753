package api_test

import (
	"bytes"
	"strings"
	"testing"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/policies"
)

// A list join is refused before the ledger when the list is malformed, not
// joined by the query, or joined with a dataset no policy lets join lists.
func TestListRefusedBeforeLedger(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil) // tax2025, agency pseudonyms, no join
	var before StateResponse
	f.Must(t, "auditor", 0, "GET", "/v1/ledger/state", nil, &before)
	list := func(name string, size int64, key int) *policies.ListDoc {
		return &policies.ListDoc{Name: name, Size: size, HPKE: bytes.Repeat([]byte{1}, key)}
	}
	join := "SELECT COUNT(*) FROM tax2025 t JOIN applicants a ON t.person_id = a.id"
	for _, c := range []struct {
		name  string
		query string
		list  *policies.ListDoc
		code  int
		want  string
	}{
		{"no join", "SELECT COUNT(*) FROM tax2025", list("applicants", 100, 32), 400, "the query joins nothing"},
		{"another table", join, list("customers", 100, 32), 400, `the query joins no table "customers"`},
		{"list as FROM", "SELECT COUNT(*) FROM applicants a JOIN tax2025 t ON t.person_id = a.id", list("applicants", 100, 32), 400, "is the query's FROM table"},
		{"short key", join, list("applicants", 100, 16), 400, "32 bytes, not 16"},
		{"a dataset's name", "SELECT COUNT(*) FROM applicants a JOIN tax2025 t ON t.person_id = a.id", list("tax2025", 100, 32), 400, "bears the name of a registered dataset"},
		{"policy without lists", join, list("applicants", 100, 32), 422, "no policy of dataset tax2025 allows joining an enterprise's id list (join.lists)"},
		{"he mode", join, list("applicants", 100, 32), 422, "a list join runs in mode masked only (not he)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mode := "masked"
			if c.name == "he mode" {
				mode = "he"
			}
			code, p := f.Do(t, "bank", 0, "POST", "/v1/jobs", policies.JobDoc{Query: c.query, Mode: mode, Purpose: "credit risk statistics", List: c.list}, nil)
			if code != c.code || !strings.Contains(p.Detail, c.want) {
				t.Fatalf("%d %+v, want %d %q", code, p, c.code, c.want)
			}
		})
	}
	var after StateResponse
	f.Must(t, "auditor", 0, "GET", "/v1/ledger/state", nil, &after)
	if after.Applied != before.Applied {
		t.Fatalf("refused lists reached the ledger: %d -> %d entries", before.Applied, after.Applied)
	}
}
