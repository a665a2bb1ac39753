package policies

import (
	"strings"
	"testing"
)

// TestPlanRuleNumericGroup: grouping by a public number that is not
// generalised is refused by the state machine too (every value would be
// its own group), as the engine refuses it.
func TestPlanRuleNumericGroup(t *testing.T) {
	w := newWorld(t)
	schema := Schema{Columns: append(append([]Column(nil), taxSchema.Columns...), Column{Name: "year", Type: TypeInt, Class: Public})}
	w.must("agency1", KindDatasetRegister, DatasetDoc{Name: "tax2025", Schema: schema, SHA256: strings.Repeat("ab", 32), Rows: 1000}, nil)
	p := taxPolicy()
	p["group_by"] = []string{"region", "age", "year"}
	w.must("agency1", KindPolicyPublish, p, nil)
	x := plan("count:*")
	x.Plan.GroupBy = []string{"year"}
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), x)
	if j := w.lastJob(); j.Status != JobRejected || j.Reason != `query: numeric column "year" may not be grouped by (every value would be its own group)` {
		t.Fatalf("job %+v", j)
	}
	x.Plan.GroupBy = []string{"region", "age"}
	w.must("bank", KindJobSubmit, job("q2", "masked", "credit risk statistics"), x)
	if j := w.lastJob(); j.Status != JobAuthorised {
		t.Fatalf("job %+v", j)
	}
}
