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
	tree, err := parseTree(src)
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
	if err := w.joinKeys(); err != nil {
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
			return nil
		}
		// Columns of a join are named by their dataset, so a dataset
		// appears once: a self-join would pair a person's rows with each
		// other, and the owner would learn nothing it could not compute
		// alone, but it would run on an executor for no reason.
		for _, d := range w.q.datasets() {
			if d == rv.Relname {
				return w.refuse(int(rv.Location), RuleJoin, "dataset %s is joined with itself (self-joins are not run)", rv.Relname)
			}
		}
		w.q.Joins = append(w.q.Joins, Join{Dataset: rv.Relname, Alias: alias, Pos: int(rv.Location)})
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
			name := u.GetString_().GetSval()
			jn.Using = append(jn.Using, name)
			// USING (x) is ON left.x = right.x, the left being the
			// dataset joined just before.
			left := w.q.datasets()[len(w.q.datasets())-2]
			jn.On = append(jn.On, [2]string{left + "." + name, jn.Dataset + "." + name})
			w.q.refs = append(w.q.refs, colRef{Name: left + "." + name, Use: "join", Pos: jn.Pos}, colRef{Name: jn.Dataset + "." + name, Use: "join", Pos: jn.Pos})
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
		for _, f := range side.Fields {
			if f.GetString_() == nil {
				return w.refuse(int(side.Location), RuleJoin, "a JOIN's ON compares columns with = (a.x = b.y)")
			}
		}
		name, err := w.column(side)
		if err != nil {
			return err
		}
		pair[i] = name
		w.q.refs = append(w.q.refs, colRef{Name: pair[i], Use: "join", Pos: int(side.Location)})
	}
	l, _, _ := strings.Cut(pair[0], ".")
	r, _, _ := strings.Cut(pair[1], ".")
	if l == r {
		return w.refuse(locOr(n, j.Pos), RuleJoin, "ON %s = %s compares two columns of %s; a JOIN's ON compares a column of each side", pair[0], pair[1], l)
	}
	if l != j.Dataset && r != j.Dataset {
		return w.refuse(locOr(n, j.Pos), RuleJoin, "ON %s = %s does not compare a column of %s, the dataset this JOIN adds", pair[0], pair[1], j.Dataset)
	}
	if r != j.Dataset {
		pair[0], pair[1] = pair[1], pair[0]
	}
	j.On = append(j.On, pair)
	return nil
}

// joinKeys finds, after FROM, the one column each joined dataset is
// matched on.
func (w *walker) joinKeys() error {
	if len(w.q.Joins) == 0 {
		return nil
	}
	w.q.joinKey = map[string]string{}
	for _, j := range w.q.Joins {
		for _, pair := range j.On {
			for _, name := range pair {
				d, col, _ := strings.Cut(name, ".")
				if k, ok := w.q.joinKey[d]; ok && k != col {
					return w.refuse(j.Pos, RuleJoin, "dataset %s is matched on %s and on %s; a dataset is joined on one identifier column", d, k, col)
				}
				w.q.joinKey[d] = col
			}
		}
	}
	return nil
}

// datasets lists the query's datasets: FROM's, then the joined ones.
func (q *Query) datasets() []string {
	out := []string{q.From}
	for _, j := range q.Joins {
		out = append(out, j.Dataset)
	}
	return out
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
	joined := len(w.q.Joins) > 0
	switch len(parts) {
	case 1:
		if joined {
			// The parse cannot know the schemas (auditors derive the plan
			// from the text alone), so it cannot tell which dataset an
			// unqualified name belongs to.
			return "", w.refuse(int(c.Location), RuleJoin, "column %s: in a join, qualify every column with its dataset or alias (one of %s)", parts[0], w.fromNames())
		}
		return parts[0], nil
	case 2:
		// In a join, columns are named dataset.column (by the dataset's
		// name, whatever its alias): the plan on the ledger says whose
		// column each one is.
		q := parts[0]
		if q == w.q.Alias || (w.q.Alias == "" && q == w.q.From) {
			if joined {
				return w.q.From + "." + parts[1], nil
			}
			return parts[1], nil
		}
		for _, j := range w.q.Joins {
			if q == j.Alias || (j.Alias == "" && q == j.Dataset) {
				return j.Dataset + "." + parts[1], nil
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

func funcName(f *pg.FuncCall) string {
	return strings.ToLower(opName(f.Funcname))
}
