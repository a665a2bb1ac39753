package sandbox

import (
	"slices"
	"strings"

	"github.com/datasandbox/datasandbox/policies"
)

// Plan is what the query reads, as policies check it and the ledger
// records it: derived from the parse tree, so anyone can derive it again
// from the query's text (DerivePlan).
func (q *Query) Plan() policies.Plan {
	var p policies.Plan
	for _, a := range q.Aggs {
		p.Aggregates = append(p.Aggregates, policies.Aggregate{Func: a.Func, Columns: append([]string(nil), a.Args...)})
	}
	p.GroupBy = append(p.GroupBy, q.GroupBy...)
	p.Filter = q.FilterColumns()
	if c := q.uses("case"); len(c) > 0 {
		p.Case = slices.Sorted(slices.Values(dedupe(c)))
	}
	for _, d := range q.datasets() {
		if len(q.Joins) == 0 {
			break
		}
		side := policies.JoinSide{Dataset: d, Key: q.joinKey[d], Columns: []string{}}
		seen := map[string]bool{}
		for _, r := range q.refs {
			if col, ok := strings.CutPrefix(r.Name, d+"."); ok && r.Use != "join" && !seen[col] {
				seen[col] = true
				side.Columns = append(side.Columns, col)
			}
		}
		slices.Sort(side.Columns)
		p.Join = append(p.Join, side)
	}
	return p
}

// DerivePlan parses a job's query and returns the dataset it reads and its
// plan: what the relaying node must have put on the ledger beside it. It
// is the audit.PlanFunc the verifier and the nodes' state machines use.
func DerivePlan(query string) (string, policies.Plan, error) {
	q, err := ParseQuery(query)
	if err != nil {
		return "", policies.Plan{}, err
	}
	return q.From, q.Plan(), nil
}
