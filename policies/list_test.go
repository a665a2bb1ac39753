package policies

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// listPlan: tax2025 joined with the enterprise's list "applicants",
// grouped by the list's branch column.
func listPlan() JobExtra {
	return JobExtra{Dataset: "tax2025", Plan: Plan{
		Aggregates: []Aggregate{{Func: "count", Columns: []string{"*"}}, {Func: "avg", Columns: []string{"tax2025.income"}}},
		GroupBy:    []string{"applicants.branch"},
		Join: []JoinSide{
			{Dataset: "tax2025", Key: "person_id", Columns: []string{"income"}},
			{Dataset: "applicants", Key: "id", Columns: []string{"branch"}},
		},
	}}
}

func listJob(size int64) JobDoc {
	d := job("q", "masked", "benefit statistics")
	d.List = &ListDoc{Name: "applicants", Size: size, HPKE: bytes.Repeat([]byte{5}, 32)}
	return d
}

func (w *world) publishListPolicy(lists bool, maxIDs int64) {
	w.t.Helper()
	p := joinPolicy("tax2025", []string{"benefits2025"}, map[string][]string{"income": {"count", "avg"}}, auto)
	j := map[string]any{"datasets": []string{"benefits2025"}, "lists": lists, "max_rows_per_person": 1}
	if maxIDs > 0 {
		j["max_list_ids"] = maxIDs
	}
	p["join"] = j
	w.must("agency1", KindPolicyPublish, p, nil)
}

func TestListJoinAuthorisation(t *testing.T) {
	cases := []struct {
		name   string
		lists  bool
		maxIDs int64
		doc    func() JobDoc
		edit   func(x *JobExtra)
		status string
		reason string
	}{
		{"allowed", true, 0, func() JobDoc { return listJob(500) }, nil, JobAuthorised, ""},
		{"policy without lists", false, 0, func() JobDoc { return listJob(500) }, nil, JobRejected, "does not allow joining dataset \"tax2025\" with an enterprise's id list (join.lists)"},
		{"fewer ids than the minimum group", true, 0, func() JobDoc { return listJob(9) }, nil, JobRejected, "list applicants has 9 distinct ids, fewer than policy"},
		{"one id", true, 0, func() JobDoc { return listJob(1) }, nil, JobRejected, "has 1 distinct ids, fewer than"},
		{"beyond max_list_ids", true, 1000, func() JobDoc { return listJob(1001) }, nil, JobRejected, "allows lists of up to 1000 (join.max_list_ids)"},
		{"undeclared list", true, 0, func() JobDoc { return job("q", "masked", "benefit statistics") }, nil, JobRejected, `with "applicants" (join.datasets: benefits2025)`},
		{"list named as a dataset", true, 0, func() JobDoc {
			d := listJob(500)
			d.List.Name = "benefits2025"
			return d
		}, func(x *JobExtra) {
			x.Plan.Join[1].Dataset = "benefits2025"
			x.Plan.GroupBy = []string{"benefits2025.branch"}
		}, JobRejected, "bears the name of a registered dataset"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := joinWorld(t, 3)
			w.publishListPolicy(c.lists, c.maxIDs)
			x := listPlan()
			if c.edit != nil {
				c.edit(&x)
			}
			w.must("bank", KindJobSubmit, c.doc(), x)
			j := w.lastJob()
			if j.Status != c.status || !strings.Contains(j.Reason, c.reason) {
				t.Fatalf("status %s (%s), want %s (%q)", j.Status, j.Reason, c.status, c.reason)
			}
			if c.status == JobAuthorised {
				if j.List == nil || j.List.Size != 500 || j.List.Key != "id" || len(j.List.Columns) != 1 || len(j.Parts) != 1 || j.Charge == nil {
					t.Fatalf("job %+v", j)
				}
			}
		})
	}
}

func TestListJoinMalformed(t *testing.T) {
	cases := []struct {
		name string
		edit func(d *ListDoc, x *JobExtra)
		want string
	}{
		{"list not in the query", func(d *ListDoc, _ *JobExtra) { d.Name = "customers" }, `the query joins no table "customers"`},
		{"list as FROM", func(d *ListDoc, _ *JobExtra) { d.Name = "tax2025" }, "is the query's FROM table"},
		{"no ids", func(d *ListDoc, _ *JobExtra) { d.Size = 0 }, "size 0 is not a count"},
		{"short key", func(d *ListDoc, _ *JobExtra) { d.HPKE = d.HPKE[:31] }, "32 bytes, not 31"},
		{"bad name", func(d *ListDoc, _ *JobExtra) { d.Name = "Applicants!" }, "is not a table name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := joinWorld(t, 3)
			w.publishListPolicy(true, 0)
			d, x := listJob(500), listPlan()
			c.edit(d.List, &x)
			if err := w.act("bank", KindJobSubmit, d, x); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestListJoinKeyAndFlow(t *testing.T) {
	w := joinWorld(t, 3)
	w.publishListPolicy(true, 0)
	w.must("bank", KindJobSubmit, listJob(500), listPlan())
	id := w.lastJob().ID
	// node1 holds tax2025, the only dataset: it draws the key, seals it to
	// no other node and to the list.
	if err := w.act("node1", KindJobKey, JobKeyDoc{Job: id, Sealed: map[string][]byte{}}, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "sealed to list applicants is 0 bytes") {
		t.Fatalf("key not sealed to the list: %v", err)
	}
	w.must("node1", KindJobKey, JobKeyDoc{Job: id, Sealed: map[string][]byte{}, List: []byte("sealed")}, nil)
	if j := w.lastJob(); !bytes.Equal(j.List.Sealed, []byte("sealed")) {
		t.Fatalf("list's sealed key %q", j.List.Sealed)
	}
	list := func(to string, rows int64) JobListDoc {
		return JobListDoc{Job: id, To: w.addr(to), Rows: rows, BLAKE3: strings.Repeat("a", 64)}
	}
	if err := w.act("bank", KindJobList, list("node3", 500), nil); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "only to its runner") {
		t.Fatalf("list before the job runs: %v", err)
	}
	w.must("node3", KindJobStart, JobResultDoc{Job: id}, nil)
	w.must("node1", KindJobFlow, JobFlowDoc{Job: id, Dataset: "tax2025", Columns: []string{"income"}, BLAKE3: strings.Repeat("e", 64), Rows: 10, To: w.addr("node3")}, nil)
	done := JobResultDoc{Job: id, ResultHash: strings.Repeat("b", 64)}
	if err := w.act("node3", KindJobComplete, done, nil); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "applicants") {
		t.Fatalf("completed without the list: %v", err)
	}
	for _, c := range []struct {
		name string
		by   string
		doc  JobListDoc
		want error
		msg  string
	}{
		{"not the requester", "shop", list("node3", 500), ErrForbidden, "by its requester"},
		{"not the runner", "bank", list("node2", 500), ErrForbidden, "only to its runner"},
		{"count is not the list's", "bank", list("node3", 499), ErrForbidden, "500 distinct ids on the ledger"},
		{"no digest", "bank", JobListDoc{Job: id, To: w.addr("node3"), Rows: 500}, ErrInvalid, "blake3"},
		{"both digests", "bank", JobListDoc{Job: id, To: w.addr("node3"), Rows: 500, BLAKE3: strings.Repeat("a", 64), SHA256: strings.Repeat("a", 64)}, ErrInvalid, "not both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := w.act(c.by, KindJobList, c.doc, nil); !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v %q", err, c.want, c.msg)
			}
		})
	}
	w.must("bank", KindJobList, list("node3", 500), nil)
	if err := w.act("bank", KindJobList, list("node3", 500), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("list shipped twice: %v", err)
	}
	w.must("node3", KindJobComplete, done, nil)
	j := w.lastJob()
	if j.Status != JobCompleted || len(j.Flows) != 2 || j.Flows[1].Dataset != "applicants" || j.Flows[1].From != w.addr("bank") || j.Flows[1].Rows != 500 {
		t.Fatalf("job %s, flows %+v", j.Status, j.Flows)
	}
}

func TestJoinKeyNotSealedToListOfOtherJobs(t *testing.T) {
	w := joinWorld(t, 3)
	w.publishJoin([]string{"*"}, auto, auto)
	w.must("bank", KindJobSubmit, job("q", "masked", "benefit statistics"), joinPlan())
	id := w.lastJob().ID
	holder, other := "node1", "node2"
	if w.addr("node2").String() < w.addr("node1").String() {
		holder, other = other, holder
	}
	doc := JobKeyDoc{Job: id, Sealed: map[string][]byte{w.addr(other).String(): []byte("k")}, List: []byte("x")}
	if err := w.act(holder, KindJobKey, doc, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "joins no list") {
		t.Fatalf("got %v", err)
	}
}

// An enterprise pseudonymises at most its list's size for a list job.
func TestListJoinPseudonymBatches(t *testing.T) {
	w := joinWorld(t, 3)
	w.approveCeremonies()
	w.must("node1", KindPseudonymCeremony, pseudonymDoc(w, 2, "node1", "node2"), nil)
	w.publishListPolicy(true, 0)
	w.must("bank", KindJobSubmit, listJob(500), listPlan())
	id := w.lastJob().ID
	w.must("bank", KindPseudonymBatch, batch(300, PurposeJob, "", id), nil)
	if err := w.act("bank", KindPseudonymBatch, batch(201, PurposeJob, "", id), nil); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "list has 500 distinct ids: 300 pseudonymised, this batch asks 201") {
		t.Fatalf("a batch beyond the list's size: %v", err)
	}
	w.must("bank", KindPseudonymBatch, batch(200, PurposeJob, "", id), nil)
}

// Repeated lists drain the budget like any query: the same list joined
// again costs the policy's ε again, and once the budget is spent the next
// list job is refused for it (epsilon_budget 1.0 at 0.5 a query: two).
func TestRepeatedListsDrainTheBudget(t *testing.T) {
	w := joinWorld(t, 3)
	w.publishListPolicy(true, 0)
	for i, want := range []string{JobAuthorised, JobAuthorised, JobRejected} {
		w.must("bank", KindJobSubmit, listJob(500), listPlan())
		j := w.lastJob()
		if j.Status != want {
			t.Fatalf("list job %d: %s (%s), want %s", i+1, j.Status, j.Reason, want)
		}
		if want == JobRejected && !strings.Contains(strings.ToLower(j.Reason), "budget") {
			t.Fatalf("list job %d refused for %q, want the budget", i+1, j.Reason)
		}
	}
}
