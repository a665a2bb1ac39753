package api_test

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/datasandbox/datasandbox/api/apitest"
)

// The api does not re-check who owns a dataset, whether it exists or
// whether a job is pending: the state machine refuses, and its typed
// refusal gives the status, with its message as the detail. A refusal
// changes no state.
func TestDomainRefusalsFromTheStateMachine(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, func(p map[string]any) { p["approval"] = map[string]any{"mode": "manual", "approvers": 1} })
	var job struct {
		Job string `json:"job"`
	}
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT region, AVG(income) FROM tax2025 GROUP BY region"), &job)
	f.Must(t, "agency1", 0, "POST", "/v1/jobs/"+job.Job+"/approve", nil, nil)
	nowhere := apitest.TaxPolicy()
	nowhere["dataset"] = "nope"
	// The runner moves the job on meanwhile; the refused acts would have
	// added a policy or an approval.
	policiesBefore := len(f.SMs[0].M.Policies())
	for _, c := range []struct {
		name, who, path string
		body            any
		status          int
		detail          string // a regular expression
	}{
		{"another agency's dataset", "agency2", "/v1/policies", apitest.TaxPolicy(), http.StatusForbidden, `^dataset "tax2025" belongs to another agency$`},
		{"no such dataset", "agency1", "/v1/policies", nowhere, http.StatusNotFound, `^dataset "nope" is not registered$`},
		{"another agency's job", "agency2", "/v1/jobs/" + job.Job + "/approve", nil, http.StatusForbidden, "^job " + job.Job + ` uses dataset "tax2025" of another agency$`},
		{"not pending", "agency1b", "/v1/jobs/" + job.Job + "/reject", map[string]string{"reason": "no"}, http.StatusConflict, "^job " + job.Job + " is (authorised|running|completed), not pending$"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for node := range 3 {
				code, p := f.Do(t, c.who, node, "POST", c.path, c.body, nil)
				if code != c.status || !regexp.MustCompile(c.detail).MatchString(p.Detail) {
					t.Fatalf("at node%d: %d %q, want %d %q", node+1, code, p.Detail, c.status, c.detail)
				}
			}
		})
	}
	j, _ := f.SMs[0].M.Job(job.Job)
	if len(f.SMs[0].M.Policies()) != policiesBefore || len(j.Approvals) != 1 {
		t.Fatalf("a refusal changed the state: %d policies, approvals %v", len(f.SMs[0].M.Policies()), j.Approvals)
	}
}
