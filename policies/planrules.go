package policies

import (
	"fmt"
	"strings"
)

// planRule returns the first rule of the engine that a job's plan breaks
// whatever any policy says ("" if none): an unknown column, an identifier
// anywhere, MIN/MAX of a non-public column, an aggregate of an unbounded
// column, grouping by a sensitive column. Nodes refuse such queries before
// the ledger (sandbox.Check, with the position in the query); the state
// machine refuses them too, so that a node that skipped the check cannot
// get them authorised.
func planRule(ds *Dataset, plan Plan) string {
	col := func(name, use string) (Column, string) {
		c, ok := ds.Schema.Column(name)
		if !ok {
			return c, fmt.Sprintf("query: unknown column %q in %s of dataset %q", clip(name), use, ds.Name)
		}
		if c.Class == Identifier {
			return c, fmt.Sprintf("query: identifier column %q may not be used in %s (it would single out a person)", name, use)
		}
		return c, ""
	}
	for _, a := range plan.Aggregates {
		fn := lower(a.Func)
		for _, name := range a.Columns {
			if name == "*" {
				continue
			}
			c, r := col(name, "an aggregate")
			if r != "" {
				return r
			}
			if (fn == "min" || fn == "max") && c.Class != Public {
				return fmt.Sprintf("query: %s of %s column %q would return an individual's value", strings.ToUpper(fn), c.Class, name)
			}
			if fn != "count" && fn != "min" && fn != "max" && len(c.Bounds) != 2 {
				return fmt.Sprintf("query: %s(%s): column %q has no bounds, so no one's contribution is bounded", strings.ToUpper(fn), name, name)
			}
		}
	}
	for _, name := range plan.GroupBy {
		c, r := col(name, "GROUP BY")
		if r != "" {
			return r
		}
		if c.Class == Sensitive {
			return fmt.Sprintf("query: sensitive column %q may not be grouped by", name)
		}
		if c.Type != TypeString && c.Type != TypeDate && c.Class != QuasiIdentifier {
			// Stored as numbers (sandbox's columnKind): every value its own group.
			return fmt.Sprintf("query: numeric column %q may not be grouped by (every value would be its own group)", name)
		}
	}
	for _, name := range plan.Filter {
		if _, r := col(name, "WHERE"); r != "" {
			return r
		}
	}
	return ""
}
