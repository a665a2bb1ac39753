package audit

import (
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
)

// The verifier's check of a join's data flows: exactly what its plan
// needed, to its runner, no more.
func TestJoinFlows(t *testing.T) {
	runner, other := policies.Address{1}, policies.Address{2}
	plan := policies.Plan{Join: []policies.JoinSide{
		{Dataset: "tax2025", Key: "person_id", Columns: []string{"income"}},
		{Dataset: "benefits2025", Key: "person_id", Columns: []string{"kind"}},
	}}
	flow := func(ds string, to policies.Address, cols ...string) policies.JobFlow {
		return policies.JobFlow{Dataset: ds, Columns: cols, To: to, BLAKE3: strings.Repeat("a", 64)}
	}
	both := []policies.JobFlow{flow("tax2025", runner, "income"), flow("benefits2025", runner, "kind")}
	cases := []struct {
		name   string
		job    policies.Job
		reason string
	}{
		{"complete", policies.Job{ID: "j", Status: policies.JobCompleted, Runner: runner, Plan: plan, Flows: both}, ""},
		{"after a takeover", policies.Job{ID: "j", Status: policies.JobCompleted, Runner: runner, Plan: plan,
			Flows: append([]policies.JobFlow{flow("tax2025", other, "income")}, both...)}, ""},
		{"running, half shipped", policies.Job{ID: "j", Status: policies.JobRunning, Runner: runner, Plan: plan, Flows: both[:1]}, ""},
		{"a dataset missing", policies.Job{ID: "j", Status: policies.JobCompleted, Runner: runner, Plan: plan, Flows: both[:1]}, "received dataset benefits2025 0 times"},
		{"shipped twice", policies.Job{ID: "j", Status: policies.JobCompleted, Runner: runner, Plan: plan, Flows: append(both, both[0])}, "received dataset tax2025 2 times"},
		{"a column more", policies.Job{ID: "j", Status: policies.JobCompleted, Runner: runner, Plan: plan,
			Flows: []policies.JobFlow{flow("tax2025", runner, "income", "region"), both[1]}}, "moved columns [income, region] of tax2025"},
		{"a dataset outside the plan", policies.Job{ID: "j", Status: policies.JobRunning, Runner: runner, Plan: plan,
			Flows: []policies.JobFlow{flow("health", runner, "income")}}, "of health, which its plan does not ship"},
		{"a flow without a join", policies.Job{ID: "j", Status: policies.JobCompleted, Runner: runner, Flows: both[:1]}, "joins nothing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := joinFlows(c.job)
			if (c.reason == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.reason)) {
				t.Fatalf("got %v, want %q", err, c.reason)
			}
		})
	}
}
