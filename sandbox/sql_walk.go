package sandbox

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	pgparser "github.com/pganalyze/pg_query_go/v6/parser"
)

// This file walks PostgreSQL's parse tree (pg_query_go, the only place the
// library is used) into a Query. Every node kind not handled here is
// refused with its position: the walker accepts what it understands.

type walker struct {
	src   string
	q     *Query
	depth int
	// aggs indexes q.Aggs by their canonical text.
	aggs map[string]int
	// targets are the select list's nodes (GROUP BY and ORDER BY ordinals
	// refer to them).
	targets []*pg.ResTarget
	inAgg   bool
}

func walk(src string) (*Query, error) {
	tree, err := pg.Parse(src)
	if err != nil {
		var pe *pgparser.Error
		if errors.As(err, &pe) {
			col := pe.Cursorpos
			if col < 1 {
				col = column(src, len(src))
			}
			return nil, &SyntaxError{Col: col, Msg: pe.Message}
		}
		return nil, &SyntaxError{Col: 1, Msg: err.Error()}
	}
	w := &walker{src: src, q: &Query{}, aggs: map[string]int{}}
	switch len(tree.Stmts) {
	case 0:
		return nil, &SyntaxError{Col: 1, Msg: "the query is empty"}
	case 1:
	default:
		off := int(tree.Stmts[1].StmtLocation)
		for off < len(src) && strings.ContainsRune(" \t\r\n", rune(src[off])) {
			off++
		}
		return nil, w.refuse(off, RuleOneStatement, "the query holds %d statements; send one SELECT", len(tree.Stmts))
	}
	raw := tree.Stmts[0]
	sel := raw.Stmt.GetSelectStmt()
	if sel == nil {
		return nil, w.refuse(int(raw.StmtLocation), RuleSelectOnly, "only SELECT runs here; this is %s", stmtName(raw.Stmt))
	}
	if err := w.selectStmt(sel); err != nil {
		return nil, err
	}
	return w.q, nil
}

// stmtName names a statement node for a refusal ("an INSERT").
func stmtName(n *pg.Node) string {
	t := reflect.TypeOf(n.GetNode())
	if t == nil {
		return "not a statement"
	}
	name := strings.TrimPrefix(t.Elem().Name(), "Node_")
	name = strings.TrimSuffix(name, "Stmt")
	var b strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return "a " + strings.ToUpper(b.String()) + " statement"
}

func (w *walker) refuse(off int, rule, format string, a ...any) error {
	return &RefusalError{Col: column(w.src, off), Rule: rule, Msg: fmt.Sprintf(format, a...)}
}

// keyword returns the byte offset of the first token spelled word (lower
// case), for nodes that carry no position of their own; 0 if none.
func (w *walker) keyword(word string) int { return w.keywordAfter(-1, word) }

// keywordAfter is keyword for tokens that start after byte offset after.
func (w *walker) keywordAfter(after int, word string) int {
	res, err := pg.Scan(w.src)
	if err != nil {
		return 0
	}
	for _, t := range res.Tokens {
		if int(t.Start) > after && strings.EqualFold(w.src[t.Start:t.End], word) {
			return int(t.Start)
		}
	}
	return 0
}

// loc is a node's byte offset in the text, or -1.
func loc(n *pg.Node) int {
	if n == nil || n.GetNode() == nil {
		return -1
	}
	v := reflect.ValueOf(n.GetNode())
	if v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct && v.Elem().NumField() > 0 {
		if l, ok := v.Elem().Field(0).Interface().(interface{ GetLocation() int32 }); ok {
			return int(l.GetLocation())
		}
	}
	return -1
}

// locOr is loc(n), or def when n has none.
func locOr(n *pg.Node, def int) int {
	if l := loc(n); l >= 0 {
		return l
	}
	return def
}

func (w *walker) enter(n *pg.Node) error {
	if w.depth >= maxDepth {
		return w.refuse(locOr(n, 0), RuleUnsupported, "expression nested more than %d deep", maxDepth)
	}
	w.depth++
	return nil
}

func (w *walker) leave() { w.depth-- }

func (w *walker) selectStmt(s *pg.SelectStmt) error {
	q := w.q
	switch {
	case s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED:
		word := map[pg.SetOperation]string{pg.SetOperation_SETOP_UNION: "union", pg.SetOperation_SETOP_INTERSECT: "intersect", pg.SetOperation_SETOP_EXCEPT: "except"}[s.Op]
		return w.refuse(w.keyword(word), RuleSetOp, "%s combines the rows of two queries; send each query on its own", strings.ToUpper(word))
	case s.WithClause != nil:
		return w.refuse(int(s.WithClause.Location), RuleCTE, "WITH (common table expressions) is not supported; write one SELECT over the dataset")
	case s.IntoClause != nil:
		return w.refuse(w.keyword("into"), RuleInto, "SELECT ... INTO would store the result in a table; results are only returned")
	case len(s.ValuesLists) > 0:
		return w.refuse(w.keyword("values"), RuleRowLevel, "VALUES lists are not queries over a dataset")
	case len(s.WindowClause) > 0:
		return w.refuse(w.keyword("window"), RuleWindow, "WINDOW clauses (window functions) would return per-row values")
	case len(s.LockingClause) > 0:
		return w.refuse(w.keyword("for"), RuleUnsupported, "locking clauses (FOR UPDATE, FOR SHARE) are not supported")
	case len(s.DistinctClause) > 0:
		return w.refuse(w.keyword("distinct"), RuleRowLevel, "SELECT DISTINCT would list values without an aggregate; use GROUP BY with an aggregate")
	case s.GroupDistinct:
		return w.refuse(w.keyword("distinct"), RuleUnsupported, "GROUP BY DISTINCT is not supported")
	}
	if err := w.from(s.FromClause); err != nil {
		return err
	}
	for _, t := range s.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			return w.refuse(locOr(t, 0), RuleUnsupported, "unexpected select-list entry")
		}
		w.targets = append(w.targets, rt)
	}
	if len(w.targets) == 0 {
		return w.refuse(0, RuleRowLevel, "the query selects nothing; select aggregates")
	}
	if s.WhereClause != nil {
		e, err := w.pred(s.WhereClause, "filter")
		if err != nil {
			return err
		}
		q.Where = e
	}
	// GROUP BY first: the select list is checked against its keys.
	for _, g := range s.GroupClause {
		if err := w.groupKey(g); err != nil {
			return err
		}
	}
	for _, rt := range w.targets {
		it, err := w.item(rt)
		if err != nil {
			return err
		}
		q.Select = append(q.Select, it)
	}
	if s.HavingClause != nil {
		h, err := w.scalar(s.HavingClause)
		if err != nil {
			return err
		}
		if !isPredicate(h) {
			return w.refuse(locOr(s.HavingClause, 0), RuleUnsupported, "HAVING takes a condition (a comparison of aggregates, keys and constants)")
		}
		q.Having = h
	}
	if len(q.Aggs) == 0 {
		return w.refuse(int(w.targets[0].Location), RuleRowLevel, "the query computes no aggregate (only aggregates leave the sandbox)")
	}
	for _, sb := range s.SortClause {
		o, err := w.orderBy(sb)
		if err != nil {
			return err
		}
		q.OrderBy = append(q.OrderBy, o)
	}
	if s.LimitOption == pg.LimitOption_LIMIT_OPTION_WITH_TIES {
		return w.refuse(w.keyword("ties"), RuleUnsupported, "FETCH ... WITH TIES is not supported")
	}
	if s.LimitCount != nil {
		n, all, err := w.count(s.LimitCount, "LIMIT")
		if err != nil {
			return err
		}
		if !all {
			if n < 1 {
				return w.refuse(locOr(s.LimitCount, 0), RuleUnsupported, "LIMIT takes a positive whole number")
			}
			q.Limit = n
		}
	}
	if s.LimitOffset != nil {
		n, all, err := w.count(s.LimitOffset, "OFFSET")
		if err != nil {
			return err
		}
		if all {
			return w.refuse(locOr(s.LimitOffset, 0), RuleUnsupported, "OFFSET takes a whole number")
		}
		q.Offset = n
	}
	var groups []string
	for _, k := range q.Keys {
		if k.Case == nil {
			groups = append(groups, k.Column)
		}
	}
	groups = append(groups, q.uses("group")...)
	q.GroupBy = dedupe(groups)
	return nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// count reads LIMIT's or OFFSET's whole number (all: LIMIT ALL).
func (w *walker) count(n *pg.Node, what string) (v int, all bool, err error) {
	c := n.GetAConst()
	if c == nil {
		return 0, false, w.refuse(locOr(n, 0), RuleUnsupported, "%s takes a whole number", what)
	}
	if c.Isnull {
		return 0, true, nil
	}
	if i := c.GetIval(); i != nil && c.GetFval() == nil {
		if i.Ival < 0 {
			return 0, false, w.refuse(int(c.Location), RuleUnsupported, "%s takes a whole number >= 0", what)
		}
		return int(i.Ival), false, nil
	}
	return 0, false, w.refuse(int(c.Location), RuleUnsupported, "%s takes a whole number", what)
}

// from reads the FROM clause: one dataset, or datasets joined.
func (w *walker) from(items []*pg.Node) error {
	if len(items) == 0 {
		return w.refuse(len(w.src), RuleSelectOnly, "the query reads no dataset (FROM is missing)")
	}
	if len(items) > 1 {
		return w.refuse(locOr(items[1], w.keyword(",")), RuleJoin, "FROM lists several datasets (a cross join); join them with JOIN ... ON")
	}
	return w.fromItem(items[0], true)
}

func (w *walker) fromItem(n *pg.Node, first bool) error {
	if err := w.enter(n); err != nil {
		return err
	}
	defer w.leave()
	switch x := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		if rv.Schemaname != "" || rv.Catalogname != "" {
			return w.refuse(int(rv.Location), RuleUnsupported, "datasets have no schema: write FROM %s, not %s.%s", rv.Relname, rv.Schemaname, rv.Relname)
		}
		alias := ""
		if rv.Alias != nil {
			if len(rv.Alias.Colnames) > 0 {
				return w.refuse(int(rv.Location), RuleUnsupported, "column aliases in FROM are not supported")
			}
			alias = rv.Alias.Aliasname
		}
		if first {
			w.q.From, w.q.Alias = rv.Relname, alias
		} else {
			w.q.Joins = append(w.q.Joins, Join{Dataset: rv.Relname, Alias: alias, Pos: int(rv.Location)})
		}
		return nil
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		if err := w.fromItem(j.Larg, first); err != nil {
			return err
		}
		if j.Rarg.GetRangeVar() == nil {
			return w.refuse(locOr(j.Rarg, w.keyword("join")), RuleJoin, "a JOIN's right side must be a dataset")
		}
		if err := w.fromItem(j.Rarg, false); err != nil {
			return err
		}
		jn := &w.q.Joins[len(w.q.Joins)-1]
		jn.Kind = map[pg.JoinType]string{pg.JoinType_JOIN_INNER: "inner", pg.JoinType_JOIN_LEFT: "left", pg.JoinType_JOIN_RIGHT: "right", pg.JoinType_JOIN_FULL: "full"}[j.Jointype]
		if jn.Kind == "" || j.IsNatural || j.Alias != nil {
			return w.refuse(jn.Pos, RuleJoin, "only [INNER|LEFT|RIGHT|FULL] JOIN ... ON a.x = b.y or USING (x) is parsed")
		}
		for _, u := range j.UsingClause {
			jn.Using = append(jn.Using, u.GetString_().GetSval())
			w.q.refs = append(w.q.refs, colRef{Name: u.GetString_().GetSval(), Use: "join", Pos: jn.Pos})
		}
		if j.Quals != nil {
			return w.joinOn(jn, j.Quals)
		}
		if len(jn.Using) == 0 {
			return w.refuse(jn.Pos, RuleJoin, "a JOIN needs ON a.x = b.y or USING (x)")
		}
		return nil
	case *pg.Node_RangeSubselect:
		return w.refuse(w.keywordAfter(w.keyword("from"), "("), RuleSubquery, "subqueries in FROM are not supported; query the dataset itself")
	case *pg.Node_RangeFunction:
		return w.refuse(w.keyword("from"), RuleFunction, "functions in FROM are not supported; query a dataset")
	}
	return w.refuse(locOr(n, w.keyword("from")), RuleUnsupported, "FROM takes a dataset name")
}

// joinOn reads ON a.x = b.y [AND ...].
func (w *walker) joinOn(j *Join, n *pg.Node) error {
	if b := n.GetBoolExpr(); b != nil && b.Boolop == pg.BoolExprType_AND_EXPR {
		for _, a := range b.Args {
			if err := w.joinOn(j, a); err != nil {
				return err
			}
		}
		return nil
	}
	e := n.GetAExpr()
	if e == nil || e.Kind != pg.A_Expr_Kind_AEXPR_OP || opName(e.Name) != "=" || e.Lexpr.GetColumnRef() == nil || e.Rexpr.GetColumnRef() == nil {
		return w.refuse(locOr(n, j.Pos), RuleJoin, "a JOIN's ON compares columns with = (a.x = b.y)")
	}
	var pair [2]string
	for i, side := range []*pg.ColumnRef{e.Lexpr.GetColumnRef(), e.Rexpr.GetColumnRef()} {
		var parts []string
		for _, f := range side.Fields {
			if f.GetString_() == nil {
				return w.refuse(int(side.Location), RuleJoin, "a JOIN's ON compares columns with = (a.x = b.y)")
			}
			parts = append(parts, f.GetString_().Sval)
		}
		pair[i] = strings.Join(parts, ".")
		w.q.refs = append(w.q.refs, colRef{Name: pair[i], Use: "join", Pos: int(side.Location)})
	}
	j.On = append(j.On, pair)
	return nil
}

func opName(name []*pg.Node) string {
	if len(name) == 0 {
		return ""
	}
	return name[len(name)-1].GetString_().GetSval()
}

// column resolves a column reference against FROM: an unqualified name,
// or one qualified by the dataset's alias (or its name when it has none).
func (w *walker) column(c *pg.ColumnRef) (string, error) {
	var parts []string
	for _, f := range c.Fields {
		if f.GetAStar() != nil {
			return "", w.refuse(int(c.Location), RuleRowLevel, "* would return row-level values; select aggregates")
		}
		parts = append(parts, f.GetString_().GetSval())
	}
	switch len(parts) {
	case 1:
		return parts[0], nil
	case 2:
		q := parts[0]
		if q == w.q.Alias || (w.q.Alias == "" && q == w.q.From) {
			return parts[1], nil
		}
		for _, j := range w.q.Joins {
			if q == j.Alias || (j.Alias == "" && q == j.Dataset) {
				return q + "." + parts[1], nil
			}
		}
		if w.q.Alias != "" && q == w.q.From {
			return "", w.refuse(int(c.Location), RuleUnknown, "invalid reference to %s: the dataset is called %s in this query", q, w.q.Alias)
		}
		return "", w.refuse(int(c.Location), RuleUnknown, "unknown table %s (FROM names %s)", q, w.fromNames())
	}
	return "", w.refuse(int(c.Location), RuleUnknown, "column names take at most one qualifier (table.column)")
}

func (w *walker) fromNames() string {
	name := func(d, a string) string {
		if a != "" {
			return a
		}
		return d
	}
	names := []string{name(w.q.From, w.q.Alias)}
	for _, j := range w.q.Joins {
		names = append(names, name(j.Dataset, j.Alias))
	}
	return strings.Join(names, ", ")
}

// constant reads a literal: a number, a string or NULL.
func (w *walker) constant(n *pg.Node) (Value, bool) {
	c := n.GetAConst()
	if c == nil {
		return Value{}, false
	}
	switch {
	case c.Isnull:
		return Value{Null: true}, true
	case c.GetIval() != nil:
		return Value{Num: float64(c.GetIval().Ival)}, true
	case c.GetFval() != nil:
		f, err := strconv.ParseFloat(c.GetFval().Fval, 64)
		if err != nil || math.IsInf(f, 0) {
			return Value{}, false
		}
		return Value{Num: f}, true
	case c.GetSval() != nil:
		return Value{Str: c.GetSval().Sval, IsStr: true}, true
	}
	// A constant with no value field is integer zero in the tree.
	if c.GetBoolval() == nil && c.GetBsval() == nil {
		return Value{Num: 0}, true
	}
	return Value{}, false
}

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

func funcName(f *pg.FuncCall) string {
	return strings.ToLower(opName(f.Funcname))
}

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
		cond := cw.Expr
		if c.Arg != nil {
			// CASE x WHEN v THEN ...: x = v.
			cond = &pg.Node{Node: &pg.Node_AExpr{AExpr: &pg.A_Expr{Kind: pg.A_Expr_Kind_AEXPR_OP, Name: []*pg.Node{pg.MakeStrNode("=")}, Lexpr: c.Arg, Rexpr: cw.Expr, Location: cw.Location}}}
		}
		e, err := w.pred(cond, "case")
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
		cond := cw.Expr
		if c.Arg != nil {
			cond = &pg.Node{Node: &pg.Node_AExpr{AExpr: &pg.A_Expr{Kind: pg.A_Expr_Kind_AEXPR_OP, Name: []*pg.Node{pg.MakeStrNode("=")}, Lexpr: c.Arg, Rexpr: cw.Expr, Location: cw.Location}}}
		}
		cs, err := w.scalar(cond)
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
	// An expression: the select list must compute it. Nothing it reads is
	// kept (no aggregate is added for it).
	aggs, refs := len(w.q.Aggs), len(w.q.refs)
	s, err := w.scalar(sb.Node)
	for k, i := range w.aggs {
		if i >= aggs {
			delete(w.aggs, k)
		}
	}
	w.q.Aggs, w.q.refs = w.q.Aggs[:aggs], w.q.refs[:refs]
	if err == nil {
		for i, it := range w.q.Select {
			if it.Expr.String() == s.String() {
				o.Key = strconv.Itoa(i + 1)
				return o, nil
			}
		}
	}
	var re *RefusalError
	if err != nil && !(errors.As(err, &re) && re.Rule == RuleRowLevel) {
		return Order{}, err
	}
	return Order{}, w.refuse(pos, RuleOrderBy, "ORDER BY sorts by an output column (its alias, its position, or the same expression)")
}
