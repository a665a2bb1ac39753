package sandbox

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ErrSyntax wraps every parse error; SyntaxError has the position.
var ErrSyntax = errors.New("sandbox: sql")

// SyntaxError is a parse error at a 1-based column of the query text.
type SyntaxError struct {
	Col int
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("sql: column %d: %s", e.Col, e.Msg) }
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// MaxQueryLen bounds the query text.
const MaxQueryLen = 16 << 10

// Query is a parsed SELECT of the SQL subset (CONTRACT.md).
type Query struct {
	Select  []Item
	From    string
	Where   Expr // nil when absent
	GroupBy []string
	OrderBy []Order
	Limit   int // 0 when absent
	// Source is the text parsed.
	Source string
}

// Item is one output column: an aggregate, or a grouping column.
type Item struct {
	Agg    *Agg   // nil for a bare column
	Column string // for a bare column
	Alias  string
}

// Agg is an aggregate call. Args are column names ("*" for COUNT(*));
// HISTOGRAM's numeric arguments are in Params.
type Agg struct {
	Func   string // lower case
	Args   []string
	Params []float64
}

// Order is one ORDER BY key: an output alias, column or 1-based position.
type Order struct {
	Key  string
	Desc bool
}

// Expr is a WHERE predicate tree.
type Expr interface{ columns(into map[string]bool) }

// Compare is column op literal.
type Compare struct {
	Column string
	Op     string // = <> < <= > >=
	Value  Value
}

// In is column [NOT] IN (values).
type In struct {
	Column string
	Not    bool
	Values []Value
}

// Between is column [NOT] BETWEEN lo AND hi.
type Between struct {
	Column string
	Not    bool
	Lo, Hi Value
}

// Logic is AND / OR of two predicates, or NOT of one (R nil).
type Logic struct {
	Op   string // and, or, not
	L, R Expr
}

// Value is a literal: a number or a string.
type Value struct {
	Num   float64
	Str   string
	IsStr bool
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

// Aggregate functions and their column arity.
var aggArity = map[string]int{
	"count": 1, "sum": 1, "avg": 1, "var": 1, "stddev": 1, "min": 1, "max": 1,
	"corr": 2, "regr_slope": 2, "regr_intercept": 2, "histogram": 1,
}

// ParseQuery parses the SQL subset and refuses what would return row-level
// values (SELECT *, a bare column outside GROUP BY). Keywords are case
// insensitive; identifiers are folded to lower case.
func ParseQuery(src string) (*Query, error) {
	if len(src) > MaxQueryLen {
		return nil, &SyntaxError{Col: 1, Msg: fmt.Sprintf("query is %d bytes, limit %d", len(src), MaxQueryLen)}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	q, err := p.query()
	if err != nil {
		return nil, err
	}
	q.Source = src
	return q, q.check()
}

// check refuses row-level outputs.
func (q *Query) check() error {
	grouped := map[string]bool{}
	for _, g := range q.GroupBy {
		grouped[g] = true
	}
	hasAgg := false
	for _, it := range q.Select {
		if it.Agg != nil {
			hasAgg = true
			continue
		}
		if !grouped[it.Column] {
			return &SyntaxError{Col: max(1, position(q.Source, inSelect, it.Column)), Msg: fmt.Sprintf("column %q is outside GROUP BY and would return row-level values", it.Column)}
		}
	}
	if !hasAgg {
		return &SyntaxError{Col: 1, Msg: "the query computes no aggregate (only aggregates leave the sandbox)"}
	}
	return nil
}

// FilterColumns lists the columns the WHERE clause reads, sorted.
func (q *Query) FilterColumns() []string {
	if q.Where == nil {
		return nil
	}
	m := map[string]bool{}
	q.Where.columns(m)
	out := make([]string, 0, len(m))
	for c := range m {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

type token struct {
	kind string // ident, num, str, sym, eof
	text string
	col  int
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		col := i + 1
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case isLetter(c):
			j := i
			for j < len(src) && (isLetter(src[j]) || isDigit(src[j])) {
				j++
			}
			toks = append(toks, token{"ident", strings.ToLower(src[i:j]), col})
			i = j
		case c == '"':
			j := strings.IndexByte(src[i+1:], '"')
			if j < 0 {
				return nil, &SyntaxError{col, "unterminated quoted identifier"}
			}
			toks = append(toks, token{"ident", strings.ToLower(src[i+1 : i+1+j]), col})
			i += j + 2
		case isDigit(c) || (c == '.' && i+1 < len(src) && isDigit(src[i+1])) || (c == '-' && i+1 < len(src) && (isDigit(src[i+1]) || src[i+1] == '.')):
			j := i + 1
			for j < len(src) && (isDigit(src[j]) || src[j] == '.' || src[j] == 'e' || src[j] == 'E' || ((src[j] == '-' || src[j] == '+') && (src[j-1] == 'e' || src[j-1] == 'E'))) {
				j++
			}
			if _, err := strconv.ParseFloat(src[i:j], 64); err != nil {
				return nil, &SyntaxError{col, fmt.Sprintf("bad number %q", src[i:j])}
			}
			toks = append(toks, token{"num", src[i:j], col})
			i = j
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(src) {
					return nil, &SyntaxError{col, "unterminated string"}
				}
				if src[j] == '\'' {
					if j+1 < len(src) && src[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(src[j])
				j++
			}
			toks = append(toks, token{"str", b.String(), col})
			i = j + 1
		default:
			for _, op := range []string{"<>", "<=", ">=", "!=", "=", "<", ">", "(", ")", ",", "*", ";"} {
				if strings.HasPrefix(src[i:], op) {
					if op == "!=" {
						op = "<>"
					}
					toks = append(toks, token{"sym", op, col})
					i += len(op)
					goto next
				}
			}
			return nil, &SyntaxError{col, fmt.Sprintf("unexpected character %q", c)}
		next:
		}
	}
	return append(toks, token{"eof", "", len(src) + 1}), nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != "eof" {
		p.pos++
	}
	return t
}

func (p *parser) errf(t token, format string, a ...any) error {
	what := fmt.Sprintf("%q", t.text)
	if t.kind == "eof" {
		what = "end of query"
	}
	return &SyntaxError{Col: t.col, Msg: fmt.Sprintf(format, a...) + ", found " + what}
}

var keywords = map[string]bool{"select": true, "from": true, "where": true, "group": true, "by": true, "order": true,
	"limit": true, "and": true, "or": true, "not": true, "in": true, "between": true, "as": true, "asc": true, "desc": true}

func (p *parser) keyword(k string) bool {
	if t := p.peek(); t.kind == "ident" && t.text == k {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expectKeyword(k string) error {
	if !p.keyword(k) {
		return p.errf(p.peek(), "expected %s", strings.ToUpper(k))
	}
	return nil
}

func (p *parser) sym(s string) bool {
	if t := p.peek(); t.kind == "sym" && t.text == s {
		p.pos++
		return true
	}
	return false
}

func (p *parser) ident(what string) (string, error) {
	t := p.peek()
	if t.kind != "ident" || keywords[t.text] {
		return "", p.errf(t, "expected %s", what)
	}
	p.pos++
	return t.text, nil
}

func (p *parser) query() (*Query, error) {
	q := &Query{}
	if err := p.expectKeyword("select"); err != nil {
		return nil, err
	}
	for {
		it, err := p.item()
		if err != nil {
			return nil, err
		}
		q.Select = append(q.Select, it)
		if !p.sym(",") {
			break
		}
	}
	if err := p.expectKeyword("from"); err != nil {
		return nil, err
	}
	var err error
	if q.From, err = p.ident("a dataset name"); err != nil {
		return nil, err
	}
	if p.keyword("where") {
		if q.Where, err = p.or(0); err != nil {
			return nil, err
		}
	}
	if p.keyword("group") {
		if err := p.expectKeyword("by"); err != nil {
			return nil, err
		}
		for {
			c, err := p.ident("a column to group by")
			if err != nil {
				return nil, err
			}
			q.GroupBy = append(q.GroupBy, c)
			if !p.sym(",") {
				break
			}
		}
	}
	if p.keyword("order") {
		if err := p.expectKeyword("by"); err != nil {
			return nil, err
		}
		for {
			t := p.peek()
			var key string
			if t.kind == "num" {
				p.pos++
				key = t.text
			} else if key, err = p.ident("a column, alias or position to order by"); err != nil {
				return nil, err
			}
			o := Order{Key: key}
			if p.keyword("desc") {
				o.Desc = true
			} else {
				p.keyword("asc")
			}
			q.OrderBy = append(q.OrderBy, o)
			if !p.sym(",") {
				break
			}
		}
	}
	if p.keyword("limit") {
		t := p.next()
		n, err := strconv.Atoi(t.text)
		if t.kind != "num" || err != nil || n < 1 {
			return nil, p.errf(t, "expected a positive whole number after LIMIT")
		}
		q.Limit = n
	}
	p.sym(";")
	if t := p.peek(); t.kind != "eof" {
		return nil, p.errf(t, "expected end of query")
	}
	return q, nil
}

func (p *parser) item() (Item, error) {
	t := p.peek()
	if t.kind == "sym" && t.text == "*" {
		return Item{}, &SyntaxError{Col: t.col, Msg: "SELECT * would return row-level values; select aggregates"}
	}
	name, err := p.ident("an aggregate or a grouping column")
	if err != nil {
		return Item{}, err
	}
	var it Item
	if p.sym("(") {
		arity, ok := aggArity[name]
		if !ok {
			return Item{}, &SyntaxError{Col: t.col, Msg: fmt.Sprintf("unknown function %s (COUNT, SUM, AVG, VAR, STDDEV, CORR, REGR_SLOPE, REGR_INTERCEPT, HISTOGRAM)", strings.ToUpper(name))}
		}
		a := &Agg{Func: name}
		if name == "count" && p.sym("*") {
			a.Args = []string{"*"}
		} else {
			for i := 0; i < arity; i++ {
				if i > 0 && !p.sym(",") {
					return Item{}, p.errf(p.peek(), "expected , (%s takes %d columns)", strings.ToUpper(name), arity)
				}
				c, err := p.ident("a column")
				if err != nil {
					return Item{}, err
				}
				a.Args = append(a.Args, c)
			}
			if name == "histogram" {
				for i := 0; i < 3; i++ {
					if !p.sym(",") {
						return Item{}, p.errf(p.peek(), "expected , (HISTOGRAM(col, lo, hi, bins))")
					}
					n := p.next()
					v, err := strconv.ParseFloat(n.text, 64)
					if n.kind != "num" || err != nil {
						return Item{}, p.errf(n, "expected a number")
					}
					a.Params = append(a.Params, v)
				}
				if !(a.Params[0] < a.Params[1]) || a.Params[2] < 1 || a.Params[2] != float64(int(a.Params[2])) {
					return Item{}, &SyntaxError{Col: t.col, Msg: "HISTOGRAM needs lo < hi and a whole number of bins >= 1"}
				}
			}
		}
		if !p.sym(")") {
			return Item{}, p.errf(p.peek(), "expected )")
		}
		it.Agg = a
	} else {
		it.Column = name
	}
	if p.keyword("as") {
		if it.Alias, err = p.ident("an alias"); err != nil {
			return Item{}, err
		}
	}
	return it, nil
}

// maxDepth bounds nesting so that a hostile query cannot exhaust the stack.
const maxDepth = 64

func (p *parser) or(depth int) (Expr, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &Logic{Op: "or", L: l, R: r}
	}
	return l, nil
}

func (p *parser) and(depth int) (Expr, error) {
	l, err := p.not(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		r, err := p.not(depth)
		if err != nil {
			return nil, err
		}
		l = &Logic{Op: "and", L: l, R: r}
	}
	return l, nil
}

func (p *parser) not(depth int) (Expr, error) {
	if depth > maxDepth {
		return nil, p.errf(p.peek(), "predicate nested more than %d deep", maxDepth)
	}
	if p.keyword("not") {
		e, err := p.not(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Logic{Op: "not", L: e}, nil
	}
	if p.sym("(") {
		e, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if !p.sym(")") {
			return nil, p.errf(p.peek(), "expected )")
		}
		return e, nil
	}
	return p.pred()
}

func (p *parser) pred() (Expr, error) {
	col, err := p.ident("a column")
	if err != nil {
		return nil, err
	}
	not := p.keyword("not")
	switch {
	case p.keyword("in"):
		if !p.sym("(") {
			return nil, p.errf(p.peek(), "expected ( after IN")
		}
		in := &In{Column: col, Not: not}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			in.Values = append(in.Values, v)
			if !p.sym(",") {
				break
			}
		}
		if !p.sym(")") {
			return nil, p.errf(p.peek(), "expected )")
		}
		return in, nil
	case p.keyword("between"):
		lo, err := p.value()
		if err != nil {
			return nil, err
		}
		if err := p.expectKeyword("and"); err != nil {
			return nil, err
		}
		hi, err := p.value()
		if err != nil {
			return nil, err
		}
		return &Between{Column: col, Not: not, Lo: lo, Hi: hi}, nil
	}
	if not {
		return nil, p.errf(p.peek(), "expected IN or BETWEEN after NOT")
	}
	t := p.next()
	if t.kind != "sym" || !strings.Contains("= <> < <= > >=", t.text) || t.text == "(" || t.text == ")" || t.text == "," || t.text == "*" {
		return nil, p.errf(t, "expected a comparison (= <> < <= > >=), IN or BETWEEN")
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	return &Compare{Column: col, Op: t.text, Value: v}, nil
}

func (p *parser) value() (Value, error) {
	t := p.next()
	switch t.kind {
	case "num":
		f, _ := strconv.ParseFloat(t.text, 64)
		return Value{Num: f}, nil
	case "str":
		return Value{Str: t.text, IsStr: true}, nil
	}
	return Value{}, p.errf(t, "expected a number or a 'string'")
}
