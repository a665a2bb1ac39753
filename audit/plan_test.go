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
