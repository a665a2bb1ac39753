package policies

import "testing"

// OwnsOneOf is the state machine's same-owner rule as readers ask it: the
// owner of a dataset the job reads, or an account of its organisation.
func TestOwnsOneOf(t *testing.T) {
	w := newWorld(t)
	w.withDataset() // tax2025, agency1 of org tax
	single := Job{ID: "job-1", Dataset: "tax2025"}
	join := Job{ID: "job-2", Dataset: "other", Plan: Plan{Join: []JoinSide{{Dataset: "other"}, {Dataset: "tax2025"}}}}
	elsewhere := Job{ID: "job-3", Dataset: "other"}
	for _, c := range []struct {
		who  string
		job  Job
		want bool
	}{
		{"agency1", single, true},     // the owner
		{"agency1b", single, true},    // its organisation
		{"agency2", single, false},    // another organisation
		{"bank", single, false},       // the requester's side
		{"auditor", single, false},    // no organisation
		{"agency1b", join, true},      // one of a join's datasets
		{"agency2", join, false},      // none of them
		{"agency1", elsewhere, false}, // a dataset not registered
	} {
		t.Run(c.who+" "+c.job.ID, func(t *testing.T) {
			if got := w.m.OwnsOneOf(w.addr(c.who), c.job); got != c.want {
				t.Fatalf("OwnsOneOf(%s, %s) = %v, want %v", c.who, c.job.ID, got, c.want)
			}
		})
	}
}
