package api_test

import (
	"testing"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/policies"
)

// Who sees which budget: an organisation its own; an agency every
// organisation's budget on the data subjects of its datasets (so it can
// see what a requester has left before approving); no one else's.
func TestBudgetsVisibleToTheDataOwner(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	var j JobResponse
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT region, COUNT(*) FROM tax2025 GROUP BY region"), &j)
	if j = waitJob(t, f, "bank", 0, j.Job); j.Status != policies.JobCompleted {
		t.Fatalf("job %+v", j)
	}
	for _, tc := range []struct {
		who      string
		seesBank bool
	}{
		{"bank", true},     // its own
		{"agency1", true},  // tax2025 is its
		{"agency1b", true}, // and its organisation's
		{"agency2", false}, // another agency's data
		{"shop", false},    // another requester
		{"auditor", true},  // reads everything
	} {
		t.Run(tc.who, func(t *testing.T) {
			var out struct {
				Budgets []BudgetResponse `json:"budgets"`
			}
			f.Must(t, tc.who, 1, "GET", "/v1/budgets", nil, &out)
			sees := false
			for _, b := range out.Budgets {
				if b.Holder == "org:bank" {
					sees = true
					if b.Spent <= 0 || b.Budget <= 0 {
						t.Fatalf("bank's budget line %+v", b)
					}
				} else if tc.who != "auditor" && b.Holder != "org:"+tc.who {
					t.Fatalf("%s sees %+v", tc.who, b)
				}
			}
			if sees != tc.seesBank {
				t.Fatalf("%s sees bank's budget: %v, want %v (%+v)", tc.who, sees, tc.seesBank, out.Budgets)
			}
		})
	}
}
