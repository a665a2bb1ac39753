package sandbox

import (
	"strconv"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// GROUP BY keys and ORDER BY.

// groupKey reads one GROUP BY entry: a column, an output position, an
// output alias, or a CASE over columns.
func (w *walker) groupKey(n *pg.Node) error {
	pos := locOr(n, 0)
	if gs := n.GetGroupingSet(); gs != nil {
		return w.refuse(int(gs.Location), RuleUnsupported, "grouping sets (ROLLUP, CUBE, GROUPING SETS) are not supported; send one query per grouping")
	}
	if c, ok := w.constant(n); ok && !c.IsStr && !c.Null {
		i := int(c.Num)
		if float64(i) != c.Num || i < 1 || i > len(w.targets) {
			return w.refuse(pos, RuleGroupBy, "GROUP BY position %s is not in the select list (1 to %d)", num(c.Num), len(w.targets))
		}
		t := w.targets[i-1].Val
		if w.hasAggregate(t) {
			return w.refuse(pos, RuleGroupBy, "GROUP BY %d refers to an aggregate", i)
		}
		n = t
	} else if c := n.GetColumnRef(); c != nil && len(c.Fields) == 1 && c.Fields[0].GetString_() != nil {
		// An output alias (unless it is the column's own name): its
		// expression. PostgreSQL would prefer a dataset column of that
		// name; the parse cannot know the schema (auditors derive the plan
		// from the text alone), so Check refuses the query when the dataset
		// has such a column.
		name := c.Fields[0].GetString_().Sval
		for _, t := range w.targets {
			if t.Name != name {
				continue
			}
			if tc := t.Val.GetColumnRef(); tc != nil && opName(tc.Fields) == name {
				break // the alias is the column itself
			}
			if t.Val.GetCaseExpr() == nil && t.Val.GetColumnRef() == nil {
				return w.refuse(pos, RuleGroupBy, "GROUP BY %s: the output column %s is not a column or a CASE", name, name)
			}
			k, err := w.key(t.Val)
			if err != nil {
				return err
			}
			k.Alias, k.Pos = name, pos
			w.addKey(k)
			return nil
		}
	}
	k, err := w.key(n)
	if err != nil {
		return err
	}
	w.addKey(k)
	return nil
}

func (w *walker) addKey(k Key) {
	for _, have := range w.q.Keys {
		if have.String() == k.String() {
			return // grouping twice by the same key changes nothing
		}
	}
	w.q.Keys = append(w.q.Keys, k)
}

// hasAggregate tells whether an expression calls an aggregate.
func (w *walker) hasAggregate(n *pg.Node) bool {
	found := false
	var visit func(m *pg.Node, depth int)
	visit = func(m *pg.Node, depth int) {
		if m == nil || found || depth > maxDepth {
			return
		}
		if f := m.GetFuncCall(); f != nil {
			if _, ok := aggArity[funcName(f)]; ok {
				found = true
				return
			}
			for _, a := range f.Args {
				visit(a, depth+1)
			}
			return
		}
		if e := m.GetAExpr(); e != nil {
			visit(e.Lexpr, depth+1)
			visit(e.Rexpr, depth+1)
		}
		if l := m.GetList(); l != nil {
			for _, a := range l.Items {
				visit(a, depth+1)
			}
		}
		if c := m.GetCoalesceExpr(); c != nil {
			for _, a := range c.Args {
				visit(a, depth+1)
			}
		}
		if c := m.GetMinMaxExpr(); c != nil {
			for _, a := range c.Args {
				visit(a, depth+1)
			}
		}
	}
	visit(n, 0)
	return found
}

// key reads a GROUP BY key: a column or a CASE over columns.
func (w *walker) key(n *pg.Node) (Key, error) {
	pos := locOr(n, 0)
	switch x := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		name, err := w.column(x.ColumnRef)
		if err != nil {
			return Key{}, err
		}
		w.q.refs = append(w.q.refs, colRef{Name: name, Use: "group", Pos: pos})
		return Key{Column: name, Pos: pos}, nil
	case *pg.Node_CaseExpr:
		kc, err := w.keyCase(x.CaseExpr)
		if err != nil {
			return Key{}, err
		}
		return Key{Case: kc, Pos: pos}, nil
	}
	return Key{}, w.refuse(pos, RuleGroupBy, "GROUP BY takes columns, CASE expressions over columns, and select-list positions")
}

func (w *walker) keyCase(c *pg.CaseExpr) (*KeyCase, error) {
	if err := w.enter(nil); err != nil {
		return nil, err
	}
	defer w.leave()
	result := func(n *pg.Node) (KeyResult, error) {
		if n == nil {
			return KeyResult{Value: Value{Null: true}}, nil
		}
		if cr := n.GetColumnRef(); cr != nil {
			name, err := w.column(cr)
			if err != nil {
				return KeyResult{}, err
			}
			w.q.refs = append(w.q.refs, colRef{Name: name, Use: "group", Pos: int(cr.Location)})
			return KeyResult{Column: name}, nil
		}
		if v, ok := w.constant(n); ok {
			return KeyResult{Value: v}, nil
		}
		return KeyResult{}, w.refuse(locOr(n, int(c.Location)), RuleGroupBy, "a grouping CASE's results are columns or constants")
	}
	kc := &KeyCase{}
	for _, wn := range c.Args {
		cw := wn.GetCaseWhen()
		e, err := w.pred(caseCond(c, cw), "case")
		if err != nil {
			return nil, err
		}
		r, err := result(cw.Result)
		if err != nil {
			return nil, err
		}
		kc.Whens = append(kc.Whens, KeyWhen{Cond: e, Then: r})
	}
	r, err := result(c.Defresult)
	if err != nil {
		return nil, err
	}
	kc.Else = r
	return kc, nil
}

// orderBy resolves an ORDER BY key to an output column: a position, an
// output alias or column, or an expression the select list computes.
func (w *walker) orderBy(n *pg.Node) (Order, error) {
	sb := n.GetSortBy()
	if sb == nil {
		return Order{}, w.refuse(locOr(n, 0), RuleOrderBy, "unexpected ORDER BY entry")
	}
	pos := locOr(sb.Node, int(sb.Location))
	if sb.SortbyDir == pg.SortByDir_SORTBY_USING || sb.SortbyNulls != pg.SortByNulls_SORTBY_NULLS_DEFAULT {
		return Order{}, w.refuse(pos, RuleOrderBy, "ORDER BY takes ASC or DESC only")
	}
	o := Order{Desc: sb.SortbyDir == pg.SortByDir_SORTBY_DESC}
	if c, ok := w.constant(sb.Node); ok && !c.IsStr && !c.Null {
		i := int(c.Num)
		if float64(i) != c.Num || i < 1 || i > len(w.q.Select) {
			return Order{}, w.refuse(pos, RuleOrderBy, "ORDER BY position %s is not in the select list (1 to %d)", num(c.Num), len(w.q.Select))
		}
		o.Key = strconv.Itoa(i)
		return o, nil
	}
	if c := sb.Node.GetColumnRef(); c != nil && len(c.Fields) == 1 && c.Fields[0].GetString_() != nil {
		name := c.Fields[0].GetString_().Sval
		for i, it := range w.q.Select {
			if it.Alias == name {
				o.Key = strconv.Itoa(i + 1)
				return o, nil
			}
		}
	}
	// An expression the select list computes sorts by that output column;
	// another one over keys, aggregates and constants by its value,
	// computed for each row as HAVING is (an aggregate only ORDER BY reads
	// is released, noised, like the others).
	s, err := w.scalar(sb.Node)
	if err != nil {
		return Order{}, err
	}
	for i, it := range w.q.Select {
		if it.Expr.String() == s.String() {
			o.Key = strconv.Itoa(i + 1)
			return o, nil
		}
	}
	if r, ok := s.(AggRef); ok && r.A.Func == "histogram" {
		return Order{}, w.refuse(pos, RuleOrderBy, "HISTOGRAM returns bins; it cannot be sorted by")
	}
	o.Expr = s
	return o, nil
}
