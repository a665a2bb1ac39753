package audit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
)

func TestCheckPlan(t *testing.T) {
	// A stand-in for sandbox.DerivePlan (audit may not import the sandbox):
	// every query reads tax and sums income grouped by region.
	derive := func(q string) (string, policies.Plan, error) {
		if q == "bad" {
			return "", policies.Plan{}, errors.New("sql: column 1: syntax error")
		}
		return "tax", policies.Plan{Aggregates: []policies.Aggregate{{Func: "sum", Columns: []string{"income"}}}, GroupBy: []string{"region"}}, nil
	}
	doc := func(q string) []byte {
		b, _ := json.Marshal(policies.JobDoc{Query: q, Mode: "masked", Purpose: "p"})
		return b
	}
	extra := func(ds string, p policies.Plan) []byte {
		b, _ := json.Marshal(policies.JobExtra{Dataset: ds, Plan: p})
		return b
	}
	_, good, _ := derive("q")
	cases := []struct {
		name       string
		doc, extra []byte
		want       string
	}{
		{"the query's plan", doc("q"), extra("tax", good), ""},
		{"another dataset", doc("q"), extra("benefits", good), "the relayed plan is not its query's"},
		{"a narrower plan", doc("q"), extra("tax", policies.Plan{Aggregates: good.Aggregates}), "the relayed plan is not its query's"},
		{"a plan hiding a column", doc("q"), extra("tax", policies.Plan{Aggregates: []policies.Aggregate{{Func: "count", Columns: []string{"*"}}}, GroupBy: []string{"region"}}), "not its query's"},
		{"no plan", doc("q"), nil, "without its plan"},
		{"a query that does not parse", doc("bad"), extra("tax", good), "does not derive a plan"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkPlan(derive, c.doc, c.extra)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, policies.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// A node that relays a job with a plan other than its query's is refused
// by every state machine that derives plans (nodes and auditors alike),
// and the state does not move.
func TestRelayedPlanIsTheQuerys(t *testing.T) {
	w := newRelayWorld(t)
	// Stand-in for sandbox.DerivePlan: jobJSON's query counts the rows of t.
	w.sm.Plan = func(q string) (string, policies.Plan, error) {
		if q != "SELECT COUNT(*) FROM t" {
			return "", policies.Plan{}, errors.New("unexpected query")
		}
		return "t", policies.Plan{Aggregates: []policies.Aggregate{{Func: "count", Columns: []string{"*"}}}}, nil
	}
	body := []byte(jobJSON)
	url := "http://node1.example:8080/v1/jobs"
	bank := w.bank.Address().String()
	r := signed(t, w.bank, "POST", url, body)
	if err := w.apply(w.relayEntry(w.node, policies.KindJobSubmit, bank, r, body, jobExtra)); err != nil {
		t.Fatalf("honest relay: %v", err)
	}
	for name, extra := range map[string]string{
		"a plan of other columns": `{"dataset":"t","plan":{"aggregates":[{"func":"count","columns":["*"]}],"group_by":["person_id"]}}`,
		"another dataset":         `{"dataset":"u","plan":{"aggregates":[{"func":"count","columns":["*"]}]}}`,
		"no plan":                 `{"dataset":"t"}`,
	} {
		t.Run(name, func(t *testing.T) {
			before := w.sm.M.StateHash()
			r := signed(t, w.bank, "POST", url, body)
			err := w.apply(w.relayEntry(w.node, policies.KindJobSubmit, bank, r, body, extra))
			if !errors.Is(err, policies.ErrInvalid) || !strings.Contains(err.Error(), "not its query's") {
				t.Fatalf("got %v", err)
			}
			if w.sm.M.StateHash() != before {
				t.Fatal("a refused entry changed the state")
			}
		})
	}
}
