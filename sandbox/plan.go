package sandbox

import "github.com/datasandbox/datasandbox/policies"

// Plan is what the query reads, as policies check it.
func (q *Query) Plan() policies.Plan {
	var p policies.Plan
	for _, it := range q.Select {
		if it.Agg != nil {
			p.Aggregates = append(p.Aggregates, policies.Aggregate{Func: it.Agg.Func, Columns: append([]string(nil), it.Agg.Args...)})
		}
	}
	p.GroupBy = append(p.GroupBy, q.GroupBy...)
	p.Filter = q.FilterColumns()
	return p
}
