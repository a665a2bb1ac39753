package sandbox

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"
)

// ErrSyntax wraps every parse error; SyntaxError has the position.
var ErrSyntax = errors.New("sandbox: sql")

// SyntaxError is a query that is not SQL PostgreSQL would parse, or too
// large to parse, at a 1-based column (in characters) of the query text.
type SyntaxError struct {
	Col int
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("sql: column %d: %s", e.Col, e.Msg) }
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// RefusalError is a query that parses but that the sandbox refuses: Rule
// names the rule (docs/sql.md lists them), Col the 1-based column (in
// characters) of the offending token. It wraps ErrRefused.
type RefusalError struct {
	Col  int
	Rule string
	Msg  string
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("sql: column %d: %s (rule: %s)", e.Col, e.Msg, e.Rule)
}
func (e *RefusalError) Unwrap() error { return ErrRefused }

// Rules a query can break (RefusalError.Rule).
const (
	RuleRowLevel     = "row-level"          // SELECT *, a bare column outside GROUP BY, no aggregate
	RuleSubquery     = "subquery"           // subqueries, derived tables
	RuleCTE          = "cte"                // WITH
	RuleWindow       = "window"             // OVER, WINDOW
	RuleSetOp        = "set-operation"      // UNION, INTERSECT, EXCEPT
	RuleInto         = "select-into"        // SELECT ... INTO
	RuleOneStatement = "one-statement"      // more than one statement
	RuleSelectOnly   = "select-only"        // DDL, DML, utility statements
	RuleNestedAgg    = "nested-aggregate"   // an aggregate of an aggregate
	RuleUnbounded    = "unbounded"          // an expression in an aggregate whose bounds cannot be derived
	RuleSensitive    = "sensitive-group-by" // grouping by a sensitive column
	RuleFunction     = "function"           // a function not on the list
	RuleUnknown      = "unknown-column"     // a column the dataset does not have
	RuleIdentifier   = "identifier"         // an identifier column used in a query
	RuleUnsupported  = "unsupported"        // valid SQL the sandbox does not run (LIKE, casts, ...)
	RuleJoin         = "join"               // joins are parsed, not executed yet
	RuleGroupBy      = "group-by"           // what may not be grouped by
	RuleOrderBy      = "order-by"           // ORDER BY keys that are not output columns
	RuleAggregate    = "aggregate"          // an aggregate the engine refuses for this column
	RuleHE           = "he"                 // what the encrypted engine cannot evaluate
)

// MaxQueryLen bounds the query text: longer queries are refused before
// parsing.
const MaxQueryLen = 64 << 10

// maxDepth bounds the nesting of expressions the checker walks, so that a
// hostile query cannot exhaust the stack.
const maxDepth = 64

// Query is a parsed, checked SELECT (docs/sql.md): the plan the engines run
// and policies check (Plan).
type Query struct {
	Select []Item
	From   string // the dataset
	Alias  string // FROM's alias, "" when none
	// Joins are the datasets joined to From (CheckJoin says which joins
	// run). In a join query every column name is qualified by its
	// dataset's name ("tax2025.income"), whatever the aliases.
	Joins   []Join
	Where   Expr // nil when absent
	GroupBy []string
	// Keys are GROUP BY's keys in order: plain columns and CASE
	// expressions over columns. GroupBy lists the columns grouped by.
	Keys []Key
	// Having is evaluated on released (noisy) values; nil when absent.
	Having  Scalar
	OrderBy []Order
	Limit   int // 0 when absent
	Offset  int
	// Aggs are every aggregate the query computes (in the select list and
	// HAVING), each once, in order of first appearance.
	Aggs []*Agg
	// Source is the text parsed.
	Source string
	refs   []colRef
	// joinKey is, in a join, the column each dataset is matched on.
	joinKey map[string]string
}

// colRef is a column the query reads, how, and where in the text.
type colRef struct {
	Name string
	Use  string // aggregate, group, filter, case, join
	Pos  int    // byte offset in Source
}

// Item is one output column. Expr is always set; Agg or Column are too
// when the item is exactly one aggregate or one grouping column.
type Item struct {
	Agg    *Agg   // nil unless the item is one aggregate
	Column string // set when the item is one grouping column
	Alias  string
	Expr   Scalar
	Pos    int // byte offset in Source
}

// Agg is an aggregate call. Args are column names ("*" for COUNT(*));
// HISTOGRAM's numeric arguments are in Params. Affine, when set, is
// applied to the (first) column's values before aggregating: the bounds
// of a*x+b follow from x's.
type Agg struct {
	Func   string // lower case
	Args   []string
	Params []float64
	Affine *Affine
	// Case, when set, is the aggregate's argument: a value per row (its
	// conditions filter rows as WHERE does; a NULL value leaves the row
	// out of this aggregate). Affine is then nil.
	Case *AggCase
	Pos  int // byte offset in Source
}

// Affine is x*Mul + Add.
type Affine struct{ Mul, Add float64 }

// AggCase is CASE WHEN <predicate> THEN <value> ... ELSE <value> END
// inside an aggregate.
type AggCase struct {
	Whens []AggWhen
	Else  AggValue
}

// AggWhen is one WHEN of an AggCase.
type AggWhen struct {
	Cond Expr
	Then AggValue
}

// AggValue is the aggregate's column under an affine map, or a constant
// (NULL leaves the row out).
type AggValue struct {
	Column bool
	Affine Affine
	Value  Value
}

func (v AggValue) string(col string) string {
	if v.Column {
		return fmt.Sprintf("%s * %s + %s", col, num(v.Affine.Mul), num(v.Affine.Add))
	}
	return v.Value.String()
}

// values lists the branches' values, ELSE last.
func (c *AggCase) values() []AggValue {
	out := make([]AggValue, 0, len(c.Whens)+1)
	for _, w := range c.Whens {
		out = append(out, w.Then)
	}
	return append(out, c.Else)
}

// String is the aggregate as SQL, canonical (the same aggregate, the same
// text).
func (a *Agg) String() string {
	args := make([]string, len(a.Args))
	copy(args, a.Args)
	if a.Affine != nil && len(args) > 0 {
		args[0] = fmt.Sprintf("%s * %s + %s", args[0], num(a.Affine.Mul), num(a.Affine.Add))
	}
	if c := a.Case; c != nil && len(args) > 0 {
		var b strings.Builder
		b.WriteString("CASE")
		for _, w := range c.Whens {
			fmt.Fprintf(&b, " WHEN %s THEN %s", exprString(w.Cond), w.Then.string(args[0]))
		}
		fmt.Fprintf(&b, " ELSE %s END", c.Else.string(args[0]))
		args[0] = b.String()
	}
	for _, p := range a.Params {
		args = append(args, num(p))
	}
	return a.Func + "(" + strings.Join(args, ", ") + ")"
}

// bounds returns the bounds of the aggregate's first argument after its
// affine transform.
func (a *Agg) bounds(lo, hi float64) (float64, float64) {
	if a.Case != nil {
		// The union of the branches' bounds (NULL branches add none).
		l, h := math.Inf(1), math.Inf(-1)
		for _, v := range a.Case.values() {
			switch {
			case v.Column:
				x, y := lo*v.Affine.Mul+v.Affine.Add, hi*v.Affine.Mul+v.Affine.Add
				l, h = min(l, x, y), max(h, x, y)
			case !v.Value.Null:
				l, h = min(l, v.Value.Num), max(h, v.Value.Num)
			}
		}
		if l > h { // every branch NULL: nothing is aggregated
			return 0, 0
		}
		return l, h
	}
	if a.Affine == nil {
		return lo, hi
	}
	l, h := lo*a.Affine.Mul+a.Affine.Add, hi*a.Affine.Mul+a.Affine.Add
	return min(l, h), max(l, h)
}

// Key is one GROUP BY key: a column, or a CASE over columns.
type Key struct {
	Column string   // a plain column; "" for a CASE
	Case   *KeyCase // nil for a plain column
	Pos    int      // byte offset in Source
	// Alias is the output alias GROUP BY named the key by, if it did.
	Alias string
}

// String is the key as SQL, canonical.
func (k Key) String() string {
	if k.Case == nil {
		return k.Column
	}
	return k.Case.String()
}

// KeyCase is CASE WHEN <predicate> THEN <column or constant> ... [ELSE
// ...] END evaluated on each row; its values are the groups.
type KeyCase struct {
	Whens []KeyWhen
	Else  KeyResult // NULL when absent
}

// KeyWhen is one WHEN of a KeyCase.
type KeyWhen struct {
	Cond Expr
	Then KeyResult
}

// KeyResult is a column's value or a constant.
type KeyResult struct {
	Column string // "" for a constant
	Value  Value
}

func (r KeyResult) String() string {
	if r.Column != "" {
		return r.Column
	}
	return r.Value.String()
}

func (c *KeyCase) String() string {
	var b strings.Builder
	b.WriteString("CASE")
	for _, w := range c.Whens {
		fmt.Fprintf(&b, " WHEN %s THEN %s", exprString(w.Cond), w.Then)
	}
	fmt.Fprintf(&b, " ELSE %s END", c.Else)
	return b.String()
}

// Join is a JOIN of the FROM clause, as parsed.
type Join struct {
	Kind    string // inner, left, right, full
	Dataset string
	Alias   string
	On      [][2]string // equalities of columns (dataset.column), this join's dataset second
	Using   []string
	Pos     int // byte offset in Source
}

// Order is one ORDER BY key: Key is the 1-based position of the output
// column it sorts by (aliases and the select list's expressions are
// resolved when parsing), or Expr another expression over the row's keys
// and released aggregates (Key is then "").
type Order struct {
	Key  string
	Desc bool
	Expr Scalar
}

// Expr is a WHERE predicate tree over the dataset's rows.
type Expr interface{ columns(into map[string]bool) }

// Compare is column op literal.
type Compare struct {
	Column string
	Op     string // = <> < <= > >=
	Value  Value
	Pos    int
}

// In is column [NOT] IN (values).
type In struct {
	Column string
	Not    bool
	Values []Value
	Pos    int
}

// Between is column [NOT] BETWEEN lo AND hi.
type Between struct {
	Column string
	Not    bool
	Lo, Hi Value
	Pos    int
}

// Logic is AND / OR of two predicates, or NOT of one (R nil).
type Logic struct {
	Op   string // and, or, not
	L, R Expr
}

// Value is a literal: a number, a string, or NULL.
type Value struct {
	Num   float64
	Str   string
	IsStr bool
	Null  bool
}

func (v Value) String() string {
	switch {
	case v.Null:
		return "NULL"
	case v.IsStr:
		return "'" + strings.ReplaceAll(v.Str, "'", "''") + "'"
	}
	return num(v.Num)
}

// any is the value as a result cell holds it.
func (v Value) any() any {
	switch {
	case v.Null:
		return nil
	case v.IsStr:
		return v.Str
	}
	return v.Num
}

func (c *Compare) columns(m map[string]bool) { m[c.Column] = true }
func (c *In) columns(m map[string]bool)      { m[c.Column] = true }
func (c *Between) columns(m map[string]bool) { m[c.Column] = true }
func (c *Logic) columns(m map[string]bool) {
	c.L.columns(m)
	if c.R != nil {
		c.R.columns(m)
	}
}

// exprString renders a predicate as SQL, canonical.
func exprString(e Expr) string {
	switch x := e.(type) {
	case *Compare:
		return fmt.Sprintf("%s %s %s", x.Column, x.Op, x.Value)
	case *In:
		vs := make([]string, len(x.Values))
		for i, v := range x.Values {
			vs[i] = v.String()
		}
		not := ""
		if x.Not {
			not = "NOT "
		}
		return fmt.Sprintf("%s %sIN (%s)", x.Column, not, strings.Join(vs, ", "))
	case *Between:
		not := ""
		if x.Not {
			not = "NOT "
		}
		return fmt.Sprintf("%s %sBETWEEN %s AND %s", x.Column, not, x.Lo, x.Hi)
	case *Logic:
		if x.Op == "not" {
			return "NOT (" + exprString(x.L) + ")"
		}
		return "(" + exprString(x.L) + " " + strings.ToUpper(x.Op) + " " + exprString(x.R) + ")"
	}
	return "?"
}

// Aggregate functions and their column arity.
var aggArity = map[string]int{
	"count": 1, "sum": 1, "avg": 1, "var": 1, "stddev": 1, "min": 1, "max": 1,
	"corr": 2, "regr_slope": 2, "regr_intercept": 2, "histogram": 1,
}

// ParseQuery parses a query with PostgreSQL's grammar and walks the tree
// into a Query, refusing (RefusalError, with the rule and position) what
// the sandbox never runs whatever the dataset: row-level output,
// subqueries, CTEs, windows, set operations, SELECT INTO, several
// statements, anything but SELECT, aggregates of aggregates, expressions
// in aggregates whose bounds cannot be derived, functions not on the
// list. Queries over MaxQueryLen bytes are refused before parsing.
// Identifiers follow PostgreSQL: folded to lower case unless quoted.
func ParseQuery(src string) (*Query, error) {
	if len(src) > MaxQueryLen {
		return nil, &SyntaxError{Col: 1, Msg: fmt.Sprintf("query is %d bytes, limit %d", len(src), MaxQueryLen)}
	}
	if !utf8.ValidString(src) {
		i := 0
		for i < len(src) {
			r, n := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return nil, &SyntaxError{Col: column(src, i), Msg: "the query is not valid UTF-8"}
	}
	if i := strings.IndexByte(src, 0); i >= 0 {
		// The C parser would stop at it and see a different query.
		return nil, &SyntaxError{Col: column(src, i), Msg: "the query holds a NUL character"}
	}
	q, err := walk(src)
	if err != nil {
		return nil, err
	}
	q.Source = src
	return q, nil
}

// column is the 1-based character column of byte offset off in src (the
// end of the text when off is negative or past it).
func column(src string, off int) int {
	if off < 0 || off > len(src) {
		off = len(src)
	}
	return utf8.RuneCountInString(src[:off]) + 1
}

// FilterColumns lists the columns the WHERE clause reads, sorted.
func (q *Query) FilterColumns() []string {
	if q.Where == nil {
		return nil
	}
	m := map[string]bool{}
	q.Where.columns(m)
	return sortedKeys(m)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for c := range m {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// uses returns the columns read for a use, in order of first appearance.
func (q *Query) uses(use string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range q.refs {
		if r.Use == use && !seen[r.Name] {
			seen[r.Name] = true
			out = append(out, r.Name)
		}
	}
	return out
}
