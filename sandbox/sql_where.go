package sandbox

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Row predicates: WHERE, and the conditions of a grouping CASE.

// pred reads a row predicate (WHERE, CASE conditions in GROUP BY):
// comparisons of a column with constants, IN, BETWEEN, AND, OR, NOT.
func (w *walker) pred(n *pg.Node, use string) (Expr, error) {
	if err := w.enter(n); err != nil {
		return nil, err
	}
	defer w.leave()
	where := map[string]string{"filter": "WHERE", "case": "CASE WHEN"}[use]
	switch x := n.GetNode().(type) {
	case *pg.Node_BoolExpr:
		b := x.BoolExpr
		op := map[pg.BoolExprType]string{pg.BoolExprType_AND_EXPR: "and", pg.BoolExprType_OR_EXPR: "or", pg.BoolExprType_NOT_EXPR: "not"}[b.Boolop]
		var out Expr
		for _, a := range b.Args {
			e, err := w.pred(a, use)
			if err != nil {
				return nil, err
			}
			switch {
			case op == "not":
				return &Logic{Op: "not", L: e}, nil
			case out == nil:
				out = e
			default:
				out = &Logic{Op: op, L: out, R: e}
			}
		}
		return out, nil
	case *pg.Node_AExpr:
		return w.comparison(x.AExpr, use, where)
	case *pg.Node_SubLink:
		return nil, w.refuse(int(x.SubLink.Location), RuleSubquery, "subqueries are not supported")
	case *pg.Node_FuncCall:
		name := funcName(x.FuncCall)
		if _, ok := aggArity[name]; ok {
			return nil, w.refuse(int(x.FuncCall.Location), RuleUnsupported, "aggregates are not allowed in %s (conditions on aggregates go in HAVING)", where)
		}
		return nil, w.refuse(int(x.FuncCall.Location), RuleFunction, "%s compares columns with constants; function %s is not supported there", where, strings.ToUpper(name))
	case *pg.Node_NullTest:
		return nil, w.refuse(int(x.NullTest.Location), RuleUnsupported, "IS [NOT] NULL is not supported (datasets hold no NULLs)")
	}
	return nil, w.refuse(locOr(n, 0), RuleUnsupported, "%s takes comparisons of a column with constants (= <> < <= > >= IN BETWEEN) joined by AND, OR, NOT", where)
}

var flip = map[string]string{"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

func (w *walker) comparison(e *pg.A_Expr, use, where string) (Expr, error) {
	pos := int(e.Location)
	col := func(n *pg.Node) (string, error) {
		c := n.GetColumnRef()
		if f := n.GetFuncCall(); f != nil {
			_, err := w.pred(n, use) // names the aggregate or function
			return "", err
		}
		if c == nil {
			return "", w.refuse(locOr(n, pos), RuleUnsupported, "%s compares a column with constants", where)
		}
		name, err := w.column(c)
		if err != nil {
			return "", err
		}
		w.q.refs = append(w.q.refs, colRef{Name: name, Use: use, Pos: int(c.Location)})
		return name, nil
	}
	val := func(n *pg.Node) (Value, error) {
		if n.GetColumnRef() != nil {
			return Value{}, w.refuse(locOr(n, pos), RuleUnsupported, "%s compares a column with constants, not with another column", where)
		}
		if n.GetSubLink() != nil {
			return Value{}, w.refuse(locOr(n, pos), RuleSubquery, "subqueries are not supported")
		}
		if n.GetParamRef() != nil {
			return Value{}, w.refuse(locOr(n, pos), RuleUnsupported, "parameters ($1) are not supported; write the value")
		}
		if f := n.GetAConst().GetFval(); f != nil {
			if _, err := strconv.ParseFloat(f.Fval, 64); err != nil {
				return Value{}, w.refuse(locOr(n, pos), RuleUnsupported, "the number %.20s is out of range", f.Fval)
			}
		}
		v, ok := w.constant(n)
		if !ok || v.Null {
			return Value{}, w.refuse(locOr(n, pos), RuleUnsupported, "expected a number or a 'string'")
		}
		return v, nil
	}
	list := func(n *pg.Node) ([]Value, error) {
		l := n.GetList()
		if l == nil {
			if n.GetSubLink() != nil {
				return nil, w.refuse(locOr(n, pos), RuleSubquery, "subqueries are not supported")
			}
			return nil, w.refuse(locOr(n, pos), RuleUnsupported, "expected a list of constants")
		}
		var out []Value
		for _, it := range l.Items {
			v, err := val(it)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		op := opName(e.Name)
		if _, ok := flip[op]; !ok || e.Lexpr == nil {
			return nil, w.refuse(pos, RuleUnsupported, "operator %s is not supported in %s (= <> < <= > >= IN BETWEEN)", op, where)
		}
		if e.Lexpr.GetColumnRef() == nil && e.Rexpr.GetColumnRef() != nil {
			// constant op column: turn it round.
			v, err := val(e.Lexpr)
			if err != nil {
				return nil, err
			}
			c, err := col(e.Rexpr)
			if err != nil {
				return nil, err
			}
			return &Compare{Column: c, Op: flip[op], Value: v, Pos: pos}, nil
		}
		c, err := col(e.Lexpr)
		if err != nil {
			return nil, err
		}
		v, err := val(e.Rexpr)
		if err != nil {
			return nil, err
		}
		return &Compare{Column: c, Op: op, Value: v, Pos: pos}, nil
	case pg.A_Expr_Kind_AEXPR_IN:
		c, err := col(e.Lexpr)
		if err != nil {
			return nil, err
		}
		vs, err := list(e.Rexpr)
		if err != nil {
			return nil, err
		}
		return &In{Column: c, Not: opName(e.Name) == "<>", Values: vs, Pos: pos}, nil
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		c, err := col(e.Lexpr)
		if err != nil {
			return nil, err
		}
		vs, err := list(e.Rexpr)
		if err != nil {
			return nil, err
		}
		if len(vs) != 2 {
			return nil, w.refuse(pos, RuleUnsupported, "BETWEEN takes two bounds")
		}
		return &Between{Column: c, Not: e.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN, Lo: vs[0], Hi: vs[1], Pos: pos}, nil
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE, pg.A_Expr_Kind_AEXPR_SIMILAR:
		return nil, w.refuse(pos, RuleUnsupported, "pattern matching (LIKE, ILIKE, SIMILAR TO) is not supported in %s", where)
	}
	return nil, w.refuse(pos, RuleUnsupported, "this comparison is not supported in %s (= <> < <= > >= IN BETWEEN)", where)
}
