package sandbox

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The select list and HAVING: expressions over released aggregates,
// keys and constants; aggregates and what they may read.

// item reads one select-list entry.
func (w *walker) item(rt *pg.ResTarget) (Item, error) {
	if len(rt.Indirection) > 0 {
		return Item{}, w.refuse(int(rt.Location), RuleUnsupported, "subscripts and field selections are not supported")
	}
	it := Item{Alias: rt.Name, Pos: int(rt.Location)}
	s, err := w.scalar(rt.Val)
	if err != nil {
		return Item{}, err
	}
	if _, ok := s.(Op); ok && isPredicate(s) {
		return Item{}, w.refuse(int(rt.Location), RuleUnsupported, "conditions are not output columns (use CASE WHEN ... THEN 1 ELSE 0 END)")
	}
	it.Expr = s
	switch x := s.(type) {
	case AggRef:
		it.Agg = x.A
	case KeyRef:
		it.Column = x.K.Column
	}
	return it, nil
}

func isPredicate(s Scalar) bool {
	o, ok := s.(Op)
	if !ok {
		return false
	}
	switch o.Op {
	case "=", "<>", "<", "<=", ">", ">=", "and", "or", "not", "in", "not in", "between", "not between":
		return true
	}
	return false
}

// scalar reads an expression over an output row: aggregates, GROUP BY
// keys, constants, arithmetic and the functions on the list.
func (w *walker) scalar(n *pg.Node) (Scalar, error) {
	if err := w.enter(n); err != nil {
		return nil, err
	}
	defer w.leave()
	pos := locOr(n, 0)
	switch x := n.GetNode().(type) {
	case *pg.Node_AConst:
		v, ok := w.constant(n)
		if !ok {
			return nil, w.refuse(pos, RuleUnsupported, "constants are numbers, 'strings' or NULL")
		}
		return Lit{V: v}, nil
	case *pg.Node_ColumnRef:
		name, err := w.column(x.ColumnRef)
		if err != nil {
			return nil, err
		}
		for i, k := range w.q.Keys {
			if k.Case == nil && k.Column == name {
				return KeyRef{I: i, K: k}, nil
			}
		}
		for _, t := range w.targets {
			if t.Name == name && len(x.ColumnRef.Fields) == 1 {
				return nil, w.refuse(pos, RuleUnsupported, "%s is an output alias: as in PostgreSQL, expressions cannot refer to it (repeat its expression)", name)
			}
		}
		return nil, w.refuse(pos, RuleRowLevel, "column %q is outside GROUP BY and would return row-level values", name)
	case *pg.Node_FuncCall:
		return w.call(x.FuncCall)
	case *pg.Node_AExpr:
		return w.operator(x.AExpr)
	case *pg.Node_BoolExpr:
		op := map[pg.BoolExprType]string{pg.BoolExprType_AND_EXPR: "and", pg.BoolExprType_OR_EXPR: "or", pg.BoolExprType_NOT_EXPR: "not"}[x.BoolExpr.Boolop]
		o := Op{Op: op}
		for _, a := range x.BoolExpr.Args {
			s, err := w.scalar(a)
			if err != nil {
				return nil, err
			}
			o.Args = append(o.Args, s)
		}
		return o, nil
	case *pg.Node_CaseExpr:
		return w.scalarCase(n, x.CaseExpr)
	case *pg.Node_CoalesceExpr:
		return w.callArgs("coalesce", x.CoalesceExpr.Args, pos)
	case *pg.Node_MinMaxExpr:
		name := "greatest"
		if x.MinMaxExpr.Op == pg.MinMaxOp_IS_LEAST {
			name = "least"
		}
		return w.callArgs(name, x.MinMaxExpr.Args, pos)
	case *pg.Node_SubLink:
		return nil, w.refuse(pos, RuleSubquery, "subqueries are not supported")
	case *pg.Node_TypeCast:
		return nil, w.refuse(pos, RuleUnsupported, "type casts are not supported (use ROUND for whole numbers)")
	case *pg.Node_NullTest:
		return nil, w.refuse(pos, RuleUnsupported, "IS [NOT] NULL is not supported")
	case *pg.Node_ParamRef:
		return nil, w.refuse(pos, RuleUnsupported, "parameters ($1) are not supported; write the value")
	}
	return nil, w.refuse(pos, RuleUnsupported, "this expression is not supported here")
}

// scalarCase reads a CASE in the select list or HAVING: the same CASE as
// a GROUP BY key is that key; otherwise its conditions and results are
// over keys, aggregates and constants.
// caseCond is a CASE branch's condition: the WHEN expression itself, or
// x = v for CASE x WHEN v THEN ....
func caseCond(c *pg.CaseExpr, cw *pg.CaseWhen) *pg.Node {
	if c.Arg == nil {
		return cw.Expr
	}
	return &pg.Node{Node: &pg.Node_AExpr{AExpr: &pg.A_Expr{Kind: pg.A_Expr_Kind_AEXPR_OP, Name: []*pg.Node{pg.MakeStrNode("=")}, Lexpr: c.Arg, Rexpr: cw.Expr, Location: cw.Location}}}
}

func (w *walker) scalarCase(n *pg.Node, c *pg.CaseExpr) (Scalar, error) {
	if len(w.q.Keys) > 0 {
		refs := len(w.q.refs)
		k, err := w.key(n)
		w.q.refs = w.q.refs[:refs]
		if err == nil {
			for i, have := range w.q.Keys {
				if have.String() == k.String() {
					return KeyRef{I: i, K: have}, nil
				}
			}
		}
	}
	out := Case{}
	for _, wn := range c.Args {
		cw := wn.GetCaseWhen()
		cs, err := w.scalar(caseCond(c, cw))
		if err != nil {
			return nil, err
		}
		rs, err := w.scalar(cw.Result)
		if err != nil {
			return nil, err
		}
		out.Whens = append(out.Whens, [2]Scalar{cs, rs})
	}
	if c.Defresult != nil {
		e, err := w.scalar(c.Defresult)
		if err != nil {
			return nil, err
		}
		out.Else = e
	}
	return out, nil
}

var arith = map[string]bool{"+": true, "-": true, "*": true, "/": true, "%": true, "^": true}

func (w *walker) operator(e *pg.A_Expr) (Scalar, error) {
	pos := int(e.Location)
	op := opName(e.Name)
	args := func(ns ...*pg.Node) ([]Scalar, error) {
		var out []Scalar
		for _, n := range ns {
			if l := n.GetList(); l != nil {
				for _, it := range l.Items {
					s, err := w.scalar(it)
					if err != nil {
						return nil, err
					}
					out = append(out, s)
				}
				continue
			}
			s, err := w.scalar(n)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		if e.Lexpr == nil {
			if op != "-" && op != "+" {
				return nil, w.refuse(pos, RuleUnsupported, "prefix operator %s is not supported", op)
			}
			a, err := args(e.Rexpr)
			if err != nil {
				return nil, err
			}
			if op == "+" {
				return a[0], nil
			}
			return Op{Op: "neg", Args: a}, nil
		}
		if _, cmp := flip[op]; !cmp && !arith[op] {
			return nil, w.refuse(pos, RuleUnsupported, "operator %s is not supported (+ - * / %% ^ = <> < <= > >=)", op)
		}
		a, err := args(e.Lexpr, e.Rexpr)
		if err != nil {
			return nil, err
		}
		for i, s := range a {
			if r, ok := s.(AggRef); ok && r.A.Func == "histogram" {
				return nil, w.refuse(locOr([]*pg.Node{e.Lexpr, e.Rexpr}[i], pos), RuleUnsupported, "HISTOGRAM returns bins; it cannot be computed on")
			}
		}
		return Op{Op: op, Args: a}, nil
	case pg.A_Expr_Kind_AEXPR_IN:
		a, err := args(e.Lexpr, e.Rexpr)
		if err != nil {
			return nil, err
		}
		o := "in"
		if op == "<>" {
			o = "not in"
		}
		return Op{Op: o, Args: a}, nil
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		a, err := args(e.Lexpr, e.Rexpr)
		if err != nil {
			return nil, err
		}
		if len(a) != 3 {
			return nil, w.refuse(pos, RuleUnsupported, "BETWEEN takes two bounds")
		}
		o := "between"
		if e.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN {
			o = "not between"
		}
		return Op{Op: o, Args: a}, nil
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE, pg.A_Expr_Kind_AEXPR_SIMILAR:
		return nil, w.refuse(pos, RuleUnsupported, "pattern matching (LIKE, ILIKE, SIMILAR TO) is not supported")
	}
	return nil, w.refuse(pos, RuleUnsupported, "this operator is not supported")
}

// call reads a function call: an aggregate, or a scalar function over
// released values.
func (w *walker) call(f *pg.FuncCall) (Scalar, error) {
	pos := int(f.Location)
	name := funcName(f)
	if len(f.Funcname) > 1 && strings.ToLower(f.Funcname[0].GetString_().GetSval()) != "pg_catalog" {
		return nil, w.refuse(pos, RuleFunction, "function %s is not on the list", strings.ToUpper(name))
	}
	if f.Over != nil {
		return nil, w.refuse(pos, RuleWindow, "window functions (OVER) would return per-row values")
	}
	if _, ok := aggArity[name]; ok {
		return w.aggregate(f, name)
	}
	if f.AggStar || f.AggDistinct || len(f.AggOrder) > 0 || f.AggFilter != nil || f.AggWithinGroup || f.FuncVariadic {
		return nil, w.refuse(pos, RuleUnsupported, "%s takes plain arguments", strings.ToUpper(name))
	}
	return w.callArgs(name, f.Args, pos)
}

func (w *walker) callArgs(name string, args []*pg.Node, pos int) (Scalar, error) {
	ar, ok := scalarFuncs[name]
	if !ok {
		return nil, w.refuse(pos, RuleFunction, "function %s is not on the list (aggregates COUNT SUM AVG VAR STDDEV MIN MAX CORR REGR_SLOPE REGR_INTERCEPT HISTOGRAM; over their results ROUND ABS POWER SQRT LN EXP LEAST GREATEST COALESCE FLOOR CEIL SIGN LOG10)", strings.ToUpper(name))
	}
	if len(args) < ar[0] || (ar[1] >= 0 && len(args) > ar[1]) {
		return nil, w.refuse(pos, RuleFunction, "%s takes %s arguments", strings.ToUpper(name), arity(ar))
	}
	c := Call{Func: name}
	if name == "pow" {
		c.Func = "power"
	}
	if name == "ceiling" {
		c.Func = "ceil"
	}
	for _, a := range args {
		s, err := w.scalar(a)
		if err != nil {
			return nil, err
		}
		if r, ok := s.(AggRef); ok && r.A.Func == "histogram" {
			return nil, w.refuse(locOr(a, pos), RuleUnsupported, "HISTOGRAM returns bins; it cannot be computed on")
		}
		c.Args = append(c.Args, s)
	}
	return c, nil
}

func arity(a [2]int) string {
	switch {
	case a[1] < 0:
		return fmt.Sprintf("%d or more", a[0])
	case a[0] == a[1]:
		return strconv.Itoa(a[0])
	}
	return fmt.Sprintf("%d to %d", a[0], a[1])
}

// aggregate reads an aggregate call into q.Aggs and returns its reference.
func (w *walker) aggregate(f *pg.FuncCall, name string) (Scalar, error) {
	pos := int(f.Location)
	if w.inAgg {
		return nil, w.refuse(pos, RuleNestedAgg, "aggregate %s inside another aggregate", strings.ToUpper(name))
	}
	switch {
	case f.AggDistinct:
		return nil, w.refuse(pos, RuleUnsupported, "%s(DISTINCT ...) is not supported", strings.ToUpper(name))
	case len(f.AggOrder) > 0 || f.AggWithinGroup:
		return nil, w.refuse(pos, RuleUnsupported, "ordered aggregates are not supported")
	case f.AggFilter != nil:
		return nil, w.refuse(pos, RuleUnsupported, "FILTER (WHERE ...) is not supported; use WHERE or GROUP BY a CASE")
	case f.FuncVariadic:
		return nil, w.refuse(pos, RuleUnsupported, "VARIADIC is not supported")
	}
	w.inAgg = true
	defer func() { w.inAgg = false }()
	a := &Agg{Func: name, Pos: pos}
	arity := aggArity[name]
	switch {
	case f.AggStar:
		if name != "count" {
			return nil, w.refuse(pos, RuleAggregate, "%s(*) is not an aggregate; only COUNT(*)", strings.ToUpper(name))
		}
		a.Args = []string{"*"}
	case name == "histogram":
		if len(f.Args) != 4 {
			return nil, w.refuse(pos, RuleAggregate, "HISTOGRAM takes (column, lo, hi, bins)")
		}
		if err := w.aggArg(a, f.Args[0]); err != nil {
			return nil, err
		}
		for _, p := range f.Args[1:] {
			v, ok := w.constant(p)
			if !ok || v.IsStr || v.Null {
				return nil, w.refuse(locOr(p, pos), RuleAggregate, "HISTOGRAM's lo, hi and bins are numbers")
			}
			a.Params = append(a.Params, v.Num)
		}
		if !(a.Params[0] < a.Params[1]) || a.Params[2] < 1 || a.Params[2] != math.Trunc(a.Params[2]) {
			return nil, w.refuse(pos, RuleAggregate, "HISTOGRAM needs lo < hi and a whole number of bins >= 1")
		}
	case name == "count" && len(f.Args) == 1 && f.Args[0].GetAConst() != nil:
		// COUNT(1) counts rows, as COUNT(*).
		if v, ok := w.constant(f.Args[0]); !ok || v.Null {
			return nil, w.refuse(pos, RuleAggregate, "COUNT(NULL) counts nothing")
		}
		a.Args = []string{"*"}
	case len(f.Args) == 1 && f.Args[0].GetCaseExpr() != nil:
		if err := w.aggCase(a, f.Args[0].GetCaseExpr()); err != nil {
			return nil, err
		}
	default:
		if len(f.Args) != arity {
			return nil, w.refuse(pos, RuleAggregate, "%s takes %d column(s), got %d", strings.ToUpper(name), arity, len(f.Args))
		}
		for _, arg := range f.Args {
			if err := w.aggArg(a, arg); err != nil {
				return nil, err
			}
		}
		if a.Affine != nil && arity > 1 {
			return nil, w.refuse(pos, RuleUnbounded, "%s takes plain columns", strings.ToUpper(name))
		}
		if name == "count" {
			a.Affine = nil // COUNT(x*2) counts the rows of x
		}
	}
	key := a.String()
	if i, ok := w.aggs[key]; ok {
		return AggRef{I: i, A: w.q.Aggs[i]}, nil
	}
	w.aggs[key] = len(w.q.Aggs)
	w.q.Aggs = append(w.q.Aggs, a)
	return AggRef{I: len(w.q.Aggs) - 1, A: a}, nil
}

// aggArg reads an aggregate's column argument: a column, or a column with
// + - * / by constants (its bounds follow from the column's).
func (w *walker) aggArg(a *Agg, n *pg.Node) error {
	col, af, err := w.affine(n)
	if err != nil {
		return err
	}
	if af != (Affine{Mul: 1}) {
		// On a second column the caller refuses it: two-column aggregates
		// take plain columns.
		a.Affine = &af
	}
	a.Args = append(a.Args, col)
	return nil
}

// aggCase reads a conditional aggregate's argument: CASE WHEN <row
// predicate> THEN <value> ... [ELSE <value>] END, each value the same
// column with + - * / by constants, a number, or NULL (the row is left
// out). Its bounds are those of its values; its conditions filter rows,
// as WHERE does.
func (w *walker) aggCase(a *Agg, c *pg.CaseExpr) error {
	pos := int(c.Location)
	switch a.Func {
	case "count", "sum", "avg", "var", "stddev":
	default:
		return w.refuse(pos, RuleUnbounded, "CASE inside %s is not supported (COUNT, SUM, AVG, VAR, STDDEV take one)", strings.ToUpper(a.Func))
	}
	col := ""
	value := func(n *pg.Node) (AggValue, error) {
		if n == nil {
			return AggValue{Value: Value{Null: true}}, nil
		}
		if v, ok := w.constant(n); ok {
			if v.IsStr {
				return AggValue{}, w.refuse(locOr(n, pos), RuleAggregate, "%s of a string", strings.ToUpper(a.Func))
			}
			return AggValue{Value: v}, nil
		}
		name, af, err := w.affine(n)
		if err != nil {
			return AggValue{}, err
		}
		if col != "" && name != col {
			return AggValue{}, w.refuse(locOr(n, pos), RuleUnbounded, "a CASE inside an aggregate reads one column (%s and %s)", col, name)
		}
		col = name
		return AggValue{Column: true, Affine: af}, nil
	}
	ac := &AggCase{}
	for _, wn := range c.Args {
		cw := wn.GetCaseWhen()
		e, err := w.pred(caseCond(c, cw), "case")
		if err != nil {
			return err
		}
		v, err := value(cw.Result)
		if err != nil {
			return err
		}
		ac.Whens = append(ac.Whens, AggWhen{Cond: e, Then: v})
	}
	v, err := value(c.Defresult)
	if err != nil {
		return err
	}
	ac.Else = v
	switch {
	case col != "":
		a.Args = []string{col}
	case a.Func == "count":
		a.Args = []string{"*"} // COUNT(CASE WHEN c THEN 1 END) counts rows
	default:
		return w.refuse(pos, RuleAggregate, "%s of constants only: count the rows instead (COUNT(CASE WHEN ... THEN 1 END))", strings.ToUpper(a.Func))
	}
	a.Case = ac
	return nil
}

// affine reads column, or affine(column) op constant.
func (w *walker) affine(n *pg.Node) (string, Affine, error) {
	if err := w.enter(n); err != nil {
		return "", Affine{}, err
	}
	defer w.leave()
	pos := locOr(n, 0)
	unbounded := func() error {
		return w.refuse(pos, RuleUnbounded, "cannot bound what one person adds to this aggregate: aggregates read a column, or a column with + - * / by constants")
	}
	switch x := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		name, err := w.column(x.ColumnRef)
		if err != nil {
			return "", Affine{}, err
		}
		w.q.refs = append(w.q.refs, colRef{Name: name, Use: "aggregate", Pos: pos})
		return name, Affine{Mul: 1}, nil
	case *pg.Node_FuncCall:
		if _, ok := aggArity[funcName(x.FuncCall)]; ok {
			return "", Affine{}, w.refuse(pos, RuleNestedAgg, "aggregate %s inside another aggregate", strings.ToUpper(funcName(x.FuncCall)))
		}
		return "", Affine{}, unbounded()
	case *pg.Node_SubLink:
		return "", Affine{}, w.refuse(pos, RuleSubquery, "subqueries are not supported")
	case *pg.Node_AExpr:
		e := x.AExpr
		op := opName(e.Name)
		if e.Kind != pg.A_Expr_Kind_AEXPR_OP || !(op == "+" || op == "-" || op == "*" || op == "/") {
			return "", Affine{}, unbounded()
		}
		if e.Lexpr == nil { // -x, +x
			col, af, err := w.affine(e.Rexpr)
			if err != nil {
				return "", Affine{}, err
			}
			if op == "-" {
				af = Affine{Mul: -af.Mul, Add: -af.Add}
			}
			return col, af, nil
		}
		lc, lok := w.constant(e.Lexpr)
		rc, rok := w.constant(e.Rexpr)
		switch {
		case rok && !rc.IsStr && !rc.Null && !lok:
			col, af, err := w.affine(e.Lexpr)
			if err != nil {
				return "", Affine{}, err
			}
			switch op {
			case "+":
				af.Add += rc.Num
			case "-":
				af.Add -= rc.Num
			case "*":
				af = Affine{Mul: af.Mul * rc.Num, Add: af.Add * rc.Num}
			case "/":
				if rc.Num == 0 {
					return "", Affine{}, w.refuse(locOr(e.Rexpr, pos), RuleUnbounded, "division by zero")
				}
				af = Affine{Mul: af.Mul / rc.Num, Add: af.Add / rc.Num}
			}
			return col, af, nil
		case lok && !lc.IsStr && !lc.Null && !rok && op != "/":
			col, af, err := w.affine(e.Rexpr)
			if err != nil {
				return "", Affine{}, err
			}
			switch op {
			case "+":
				af.Add += lc.Num
			case "-":
				af = Affine{Mul: -af.Mul, Add: lc.Num - af.Add}
			case "*":
				af = Affine{Mul: af.Mul * lc.Num, Add: af.Add * lc.Num}
			}
			return col, af, nil
		}
	}
	return "", Affine{}, unbounded()
}
