package sandbox

import "github.com/datasandbox/datasandbox/policies"

// personTops sets, for every SUM or AVG of a join, the dominance rule's
// contributions: the n largest totals of one person in each group (all of
// a person's joined rows in the group summed), not the n largest rows. A
// person with several rows that together dominate a cell suppresses it,
// though no single row does. The joined rows come in person order, so a
// person's rows in a group are contiguous among the group's rows.
func personTops(t *Table, aggs []*aggState, mask []bool, gid []uint32, groups int, person []int32, dom *policies.Dominance) error {
	if dom == nil {
		return nil
	}
	for _, a := range aggs {
		if a.agg.Func != "sum" && a.agg.Func != "avg" {
			continue
		}
		xs, _, m, err := aggValues(t, a.agg, mask)
		if err != nil {
			return err
		}
		a.top = make([][]float64, groups)
		cur := make([]int32, groups)
		acc := make([]float64, groups)
		for g := range groups {
			a.top[g] = make([]float64, 0, dom.N)
			cur[g] = -1
		}
		for i := range t.Rows {
			if m != nil && !m[i] {
				continue
			}
			g := 0
			if gid != nil {
				g = int(gid[i])
			}
			if cur[g] != person[i] {
				if cur[g] >= 0 {
					a.top[g] = pushTop(a.top[g], acc[g], dom.N)
				}
				cur[g], acc[g] = person[i], 0
			}
			acc[g] += xs[i]
		}
		for g := range groups {
			if cur[g] >= 0 {
				a.top[g] = pushTop(a.top[g], acc[g], dom.N)
			}
		}
	}
	return nil
}
