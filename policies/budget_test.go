package policies

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// spendAll submits jobs as the account until one is refused for its budget
// and returns the epsilon authorised.
func (w *world) spendAll(who, dataset string) float64 {
	w.t.Helper()
	total := 0.0
	for i := 0; i < 100; i++ {
		x := plan("sum:income")
		x.Dataset = dataset
		w.must(who, KindJobSubmit, job(fmt.Sprint(who, dataset, i), "masked", "credit risk statistics"), x)
		j := w.lastJob()
		if j.Status != JobAuthorised {
			if !strings.Contains(j.Reason, "privacy budget exhausted") {
				w.t.Fatalf("job %s refused for another reason: %s", j.ID, j.Reason)
			}
			return total
		}
		total += j.Epsilon
	}
	w.t.Fatal("the budget never ran out")
	return 0
}

func (w *world) register(name, sha string) {
	w.t.Helper()
	w.must("agency1", KindDatasetRegister, DatasetDoc{Name: name, Schema: taxSchema, SHA256: sha, Rows: 1000}, nil)
}

func policyFor(dataset string, edit func(p map[string]any)) map[string]any {
	p := taxPolicy()
	p["dataset"] = dataset
	if edit != nil {
		edit(p)
	}
	return p
}

// TestBudgetCannotBeMultiplied: every way found to get a fresh budget on
// the same people draws on the one budget of 5 (0.5 per query).
func TestBudgetCannotBeMultiplied(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	cases := []struct {
		name  string
		setup func(w *world) // registers what the second spender uses
		who   string
		ds    string
	}{
		{"second account of the same organisation", func(w *world) {
			w.keys["bank2"] = pub(77)
			w.must("admin", KindAccountGrant, GrantDoc{Address: w.addr("bank2").String(), Role: "enterprise", Org: "bank"}, nil)
		}, "bank2", "tax2025"},
		{"the same file under another name", func(w *world) {
			w.register("tax2025copy", sha)
			w.must("agency1", KindPolicyPublish, policyFor("tax2025copy", nil), nil)
		}, "bank", "tax2025copy"},
		{"the demo's twins: the same records registered for he", func(w *world) {
			w.register("tax2025he", sha)
			w.must("agency1", KindPolicyPublish, policyFor("tax2025he", nil), nil)
		}, "bank", "tax2025he"},
		{"another table of the same people, linked by its policy", func(w *world) {
			w.register("tax2025b", strings.Repeat("cd", 32))
			w.must("agency1", KindPolicyPublish, policyFor("tax2025b", func(p map[string]any) {
				p["dp"].(map[string]any)["shares_budget_with"] = []string{"tax2025"}
			}), nil)
		}, "bank", "tax2025b"},
		{"another agency account of the same org publishing a second policy", func(w *world) {
			w.must("agency1b", KindPolicyPublish, policyFor("tax2025", func(p map[string]any) {
				p["purpose"] = "other statistics"
			}), nil)
		}, "bank", "tax2025"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.withDataset()
			w.must("agency1", KindPolicyPublish, taxPolicy(), nil)
			if got := w.spendAll("bank", "tax2025"); got != 5 {
				t.Fatalf("first spender got %v", got)
			}
			c.setup(w)
			if got := w.spendAll(c.who, c.ds); got != 0 {
				t.Fatalf("%s on %s got %v more epsilon on the same people", c.who, c.ds, got)
			}
			if s := w.m.Spent(w.addr(c.who), c.ds); s != 5 {
				t.Fatalf("spent %v on %s", s, c.ds)
			}
		})
	}
}

// TestBudgetMergeAddsSpending: linking two tables that were each spent on
// adds their spending (conservative), and refunds still credit the right
// budget after the merge.
func TestBudgetMergeAddsSpending(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil)
	w.register("tax2025b", strings.Repeat("cd", 32))
	w.must("agency1", KindPolicyPublish, policyFor("tax2025b", nil), nil)
	for _, ds := range []string{"tax2025", "tax2025b"} {
		x := plan("sum:income")
		x.Dataset = ds
		for i := 0; i < 3; i++ {
			w.must("bank", KindJobSubmit, job(ds+fmt.Sprint(i), "masked", "credit risk statistics"), x)
		}
	}
	pending := w.lastJob().ID
	if a, b := w.m.Spent(w.addr("bank"), "tax2025"), w.m.Spent(w.addr("bank"), "tax2025b"); a != 1.5 || b != 1.5 {
		t.Fatalf("spent %v and %v before the link", a, b)
	}
	w.must("agency1", KindPolicyPublish, policyFor("tax2025b", func(p map[string]any) {
		p["purpose"] = "linked"
		p["dp"].(map[string]any)["shares_budget_with"] = []string{"tax2025"}
	}), nil)
	for _, ds := range []string{"tax2025", "tax2025b"} {
		if s := w.m.Spent(w.addr("bank"), ds); s != 3 {
			t.Fatalf("spent %v on %s after the link, want 3", s, ds)
		}
	}
	w.must("node1", KindJobFail, JobResultDoc{Job: pending, Reason: "disk"}, nil)
	if j, _ := w.m.Job(pending); !j.Refunded || w.m.Spent(w.addr("bank"), "tax2025") != 2.5 {
		t.Fatalf("refund after the merge: %+v, spent %v", j, w.m.Spent(w.addr("bank"), "tax2025"))
	}
	lines := w.m.Budgets()
	if len(lines) != 1 || lines[0].Holder != "org:bank" || strings.Join(lines[0].Datasets, ",") != "tax2025,tax2025b" {
		t.Fatalf("budgets %+v", lines)
	}
}

func TestSharesBudgetWithRules(t *testing.T) {
	cases := []struct {
		name, with, want string
	}{
		{"unknown dataset", "nope", `dp.shares_budget_with names dataset "nope", which is not registered`},
		{"another agency's", "health2025", `dataset "health2025" of another agency`},
		{"itself", "tax2025", `names the policy's own dataset`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.withDataset()
			w.node = w.addr("node2") // the health agency's node
			w.must("agency2", KindDatasetRegister, DatasetDoc{Name: "health2025", Schema: taxSchema, SHA256: strings.Repeat("ef", 32), Rows: 10}, nil)
			w.node = w.addr("node1")
			err := w.act("agency1", KindPolicyPublish, policyFor("tax2025", func(p map[string]any) {
				p["dp"].(map[string]any)["shares_budget_with"] = []string{c.with}
			}), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// TestLimits: policies beyond the consortium's limits are refused with the
// rule; genesis may set them, an admin may change them, others may not;
// a job under a policy published before the limits were lowered is
// refused at authorisation.
func TestLimits(t *testing.T) {
	dp := func(eps, budget, delta float64) func(p map[string]any) {
		return func(p map[string]any) {
			p["dp"] = map[string]any{"epsilon_per_query": eps, "epsilon_budget": budget, "delta": delta}
		}
	}
	cases := []struct {
		name string
		edit func(p map[string]any)
		want string
	}{
		{"epsilon 1000", dp(1000, 1000, 1e-6), "dp.epsilon_per_query 1000 exceeds the consortium's limit of 1 per query (limits.max_epsilon_per_query)"},
		{"epsilon 1e308", dp(1e308, 1e308, 1e-6), "dp.epsilon_per_query 1e+308 exceeds the consortium's limit of 1"},
		{"budget 11", dp(1, 11, 1e-6), "dp.epsilon_budget 11 exceeds the consortium's limit of 10 in total"},
		{"delta 0.01", dp(1, 10, 0.01), "dp.delta 0.01 exceeds the consortium's ceiling of 1e-05"},
		{"at the limits", dp(1, 10, 1e-5), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.withDataset()
			err := w.act("agency1", KindPolicyPublish, policyFor("tax2025", c.edit), nil)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	t.Run("admin changes them", func(t *testing.T) {
		w := newWorld(t)
		w.withDataset()
		w.must("agency1", KindPolicyPublish, policyFor("tax2025", dp(1, 10, 1e-6)), nil)
		if err := w.act("agency1", KindLimitsSet, Limits{MaxEpsilonPerQuery: 5, MaxEpsilonBudget: 50}, nil); err == nil {
			t.Fatal("an agency changed the limits")
		}
		if err := w.act("admin", KindLimitsSet, Limits{MaxEpsilonPerQuery: 0, MaxEpsilonBudget: 50}, nil); err == nil {
			t.Fatal("limits of 0 accepted")
		}
		w.must("admin", KindLimitsSet, Limits{MaxEpsilonPerQuery: 0.25, MaxEpsilonBudget: 2}, nil)
		if l := w.m.Limits(); l.MaxEpsilonPerQuery != 0.25 || l.MaxEpsilonBudget != 2 {
			t.Fatalf("limits %+v", l)
		}
		w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("sum:income"))
		if j := w.lastJob(); j.Status != JobRejected || !strings.Contains(j.Reason, "epsilon_per_query 1 exceeds the consortium's limit of 0.25") {
			t.Fatalf("job under a policy beyond the new limits: %+v", j)
		}
		if w.m.Spent(w.addr("bank"), "tax2025") != 0 {
			t.Fatal("a refused job spent budget")
		}
	})
	t.Run("genesis sets them", func(t *testing.T) {
		w := newWorldLimits(t, &Limits{MaxEpsilonPerQuery: 0.1, MaxEpsilonBudget: 1, MaxDelta: 1e-7})
		w.withDataset()
		err := w.act("agency1", KindPolicyPublish, taxPolicy(), nil)
		if err == nil || !strings.Contains(err.Error(), "exceeds the consortium's limit of 0.1 per query") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("genesis with bad limits", func(t *testing.T) {
		if _, err := genesisWorld(t, &Limits{MaxEpsilonPerQuery: 0, MaxEpsilonBudget: 1}); err == nil || !strings.Contains(err.Error(), "max_epsilon_per_query must be a number > 0") {
			t.Fatalf("genesis with a zero epsilon limit: %v", err)
		}
	})
	t.Run("genesis without them gets the defaults", func(t *testing.T) {
		w := newWorld(t)
		if w.m.Limits() != DefaultLimits() {
			t.Fatalf("limits %+v", w.m.Limits())
		}
	})
}

func FuzzParseLimits(f *testing.F) {
	f.Add([]byte(`{"max_epsilon_per_query": 1, "max_epsilon_budget": 10, "max_delta": 1e-5}`))
	f.Add([]byte(`{"max_epsilon_per_query": 1e308, "max_epsilon_budget": 1e309}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLimits(b)
		if err != nil {
			return
		}
		if !(l.MaxEpsilonPerQuery > 0) || l.MaxEpsilonBudget < l.MaxEpsilonPerQuery || math.IsInf(l.MaxEpsilonBudget, 0) || !(l.MaxDelta >= 0 && l.MaxDelta < 1) {
			t.Fatalf("invalid limits accepted: %+v", l)
		}
		// A policy within them passes CheckPolicy.
		p := &Policy{DP: DP{EpsilonPerQuery: l.MaxEpsilonPerQuery, EpsilonBudget: l.MaxEpsilonBudget, Delta: l.MaxDelta}}
		if err := l.CheckPolicy(p); err != nil {
			t.Fatalf("a policy at the limits refused: %v", err)
		}
	})
}
