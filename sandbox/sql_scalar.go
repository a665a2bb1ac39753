package sandbox

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Scalar is an expression over one output row: released aggregate values,
// group keys and constants. Evaluating it is post-processing of released
// values and costs no privacy.
type Scalar interface {
	// String is the expression as SQL, canonical.
	String() string
	eval(r *outRow) any
}

// Lit is a constant.
type Lit struct{ V Value }

// AggRef is the released value of Query.Aggs[I].
type AggRef struct {
	I int
	A *Agg
}

// KeyRef is the value of Query.Keys[I] in the row's group.
type KeyRef struct {
	I int
	K Key
}

// Op is an operator: + - * / % ^, neg, = <> < <= > >=, and, or, not, in,
// not in, between, not between. Args are its operands (for in and between,
// the tested value first).
type Op struct {
	Op   string
	Args []Scalar
}

// Call is a function on the list (scalarFuncs) applied to released values.
type Call struct {
	Func string
	Args []Scalar
}

// Case is CASE WHEN cond THEN value ... ELSE value END over an output row.
type Case struct {
	Whens [][2]Scalar // condition, result
	Else  Scalar      // nil: NULL
}

// scalarFuncs are the functions allowed over released values, with their
// arity (-1: one or more).
var scalarFuncs = map[string][2]int{
	"round": {1, 2}, "abs": {1, 1}, "power": {2, 2}, "pow": {2, 2}, "sqrt": {1, 1}, "ln": {1, 1}, "exp": {1, 1},
	"least": {1, -1}, "greatest": {1, -1}, "coalesce": {1, -1}, "floor": {1, 1}, "ceil": {1, 1}, "ceiling": {1, 1},
	"sign": {1, 1}, "log10": {1, 1},
}

func (l Lit) String() string    { return l.V.String() }
func (a AggRef) String() string { return a.A.String() }
func (k KeyRef) String() string { return k.K.String() }

func (o Op) String() string {
	s := make([]string, len(o.Args))
	for i, a := range o.Args {
		s[i] = a.String()
	}
	switch o.Op {
	case "neg":
		return "(-" + s[0] + ")"
	case "not":
		return "(NOT " + s[0] + ")"
	case "in", "not in":
		return "(" + s[0] + " " + strings.ToUpper(o.Op) + " (" + strings.Join(s[1:], ", ") + "))"
	case "between", "not between":
		return "(" + s[0] + " " + strings.ToUpper(o.Op) + " " + s[1] + " AND " + s[2] + ")"
	}
	return "(" + strings.Join(s, " "+strings.ToUpper(o.Op)+" ") + ")"
}

func (c Call) String() string {
	s := make([]string, len(c.Args))
	for i, a := range c.Args {
		s[i] = a.String()
	}
	return c.Func + "(" + strings.Join(s, ", ") + ")"
}

func (c Case) String() string {
	var b strings.Builder
	b.WriteString("CASE")
	for _, w := range c.Whens {
		fmt.Fprintf(&b, " WHEN %s THEN %s", w[0], w[1])
	}
	if c.Else != nil {
		fmt.Fprintf(&b, " ELSE %s", c.Else)
	}
	b.WriteString(" END")
	return b.String()
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// outRow is what a Scalar reads: one group's released aggregate values
// and key values.
type outRow struct {
	aggs []any
	keys []any
}

func (l Lit) eval(*outRow) any      { return l.V.any() }
func (a AggRef) eval(r *outRow) any { return r.aggs[a.I] }
func (k KeyRef) eval(r *outRow) any { return r.keys[k.I] }

// Arithmetic is in float64 (PostgreSQL's numeric, not its integer
// division); NULL in, NULL out; a division by zero, or a root or logarithm
// outside its domain, is NULL (a released noisy value may be 0 or
// negative where the true one is not; the job does not fail for it).
func (o Op) eval(r *outRow) any {
	switch o.Op {
	case "and", "or":
		// Three-valued: false AND NULL is false, true OR NULL is true.
		sawNull := false
		for _, a := range o.Args {
			v := a.eval(r)
			b, ok := v.(bool)
			if !ok {
				sawNull = true
				continue
			}
			if b == (o.Op == "or") {
				return b
			}
		}
		if sawNull {
			return nil
		}
		return o.Op == "and"
	case "not":
		if b, ok := o.Args[0].eval(r).(bool); ok {
			return !b
		}
		return nil
	case "in", "not in":
		x := o.Args[0].eval(r)
		if x == nil {
			return nil
		}
		for _, a := range o.Args[1:] {
			if c, ok := compareValues(x, a.eval(r)); ok && c == 0 {
				return o.Op == "in"
			}
		}
		return o.Op == "not in"
	case "between", "not between":
		lo, ok1 := compareValues(o.Args[0].eval(r), o.Args[1].eval(r))
		hi, ok2 := compareValues(o.Args[0].eval(r), o.Args[2].eval(r))
		if !ok1 || !ok2 {
			return nil
		}
		return (lo >= 0 && hi <= 0) == (o.Op == "between")
	case "=", "<>", "<", "<=", ">", ">=":
		c, ok := compareValues(o.Args[0].eval(r), o.Args[1].eval(r))
		if !ok {
			return nil
		}
		switch o.Op {
		case "=":
			return c == 0
		case "<>":
			return c != 0
		case "<":
			return c < 0
		case "<=":
			return c <= 0
		case ">":
			return c > 0
		}
		return c >= 0
	}
	xs := make([]float64, len(o.Args))
	for i, a := range o.Args {
		f, ok := a.eval(r).(float64)
		if !ok {
			return nil
		}
		xs[i] = f
	}
	var v float64
	switch o.Op {
	case "neg":
		v = -xs[0]
	case "+":
		v = xs[0] + xs[1]
	case "-":
		v = xs[0] - xs[1]
	case "*":
		v = xs[0] * xs[1]
	case "/":
		if xs[1] == 0 {
			return nil
		}
		v = xs[0] / xs[1]
	case "%":
		if xs[1] == 0 {
			return nil
		}
		v = math.Mod(xs[0], xs[1])
	case "^":
		v = math.Pow(xs[0], xs[1])
	default:
		return nil
	}
	return finite(v)
}

func finite(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
}

func (c Call) eval(r *outRow) any {
	switch c.Func {
	case "coalesce":
		for _, a := range c.Args {
			if v := a.eval(r); v != nil {
				return v
			}
		}
		return nil
	case "least", "greatest":
		// NULLs are ignored, as in PostgreSQL.
		var best any
		for _, a := range c.Args {
			v := a.eval(r)
			if v == nil {
				continue
			}
			if best == nil {
				best = v
				continue
			}
			if cmp, ok := compareValues(v, best); ok && (cmp < 0) == (c.Func == "least") && cmp != 0 {
				best = v
			}
		}
		return best
	}
	xs := make([]float64, len(c.Args))
	for i, a := range c.Args {
		f, ok := a.eval(r).(float64)
		if !ok {
			return nil
		}
		xs[i] = f
	}
	x := xs[0]
	switch c.Func {
	case "round":
		d := 0.0
		if len(xs) == 2 {
			d = math.Trunc(xs[1])
		}
		p := math.Pow(10, d)
		// PostgreSQL rounds half away from zero.
		return finite(math.Round(x*p) / p)
	case "abs":
		return math.Abs(x)
	case "power", "pow":
		return finite(math.Pow(x, xs[1]))
	case "sqrt":
		if x < 0 {
			return nil
		}
		return math.Sqrt(x)
	case "ln":
		if x <= 0 {
			return nil
		}
		return math.Log(x)
	case "log10":
		if x <= 0 {
			return nil
		}
		return math.Log10(x)
	case "exp":
		return finite(math.Exp(x))
	case "floor":
		return math.Floor(x)
	case "ceil", "ceiling":
		return math.Ceil(x)
	case "sign":
		switch {
		case x > 0:
			return 1.0
		case x < 0:
			return -1.0
		}
		return 0.0
	}
	return nil
}

func (c Case) eval(r *outRow) any {
	for _, w := range c.Whens {
		if b, ok := w[0].eval(r).(bool); ok && b {
			return w[1].eval(r)
		}
	}
	if c.Else == nil {
		return nil
	}
	return c.Else.eval(r)
}

// compareValues compares two cell values of the same kind; ok is false
// when either is NULL or they cannot be compared.
func compareValues(x, y any) (int, bool) {
	switch a := x.(type) {
	case float64:
		b, ok := y.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case a < b:
			return -1, true
		case a > b:
			return 1, true
		}
		return 0, true
	case string:
		b, ok := y.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(a, b), true
	case bool:
		b, ok := y.(bool)
		if !ok {
			return 0, false
		}
		switch {
		case a == b:
			return 0, true
		case !a:
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

// outputRow evaluates the select list and HAVING on one group's released
// values; keep is false when HAVING is not true.
func (q *Query) outputRow(aggs, keys []any) (row []any, keep bool) {
	r := &outRow{aggs: aggs, keys: keys}
	if q.Having != nil {
		if b, ok := q.Having.eval(r).(bool); !ok || !b {
			return nil, false
		}
	}
	row = make([]any, len(q.Select), len(q.Select)+len(q.OrderBy))
	for i, it := range q.Select {
		row[i] = it.Expr.eval(r)
	}
	// ORDER BY expressions that are not output columns ride along after
	// them until the rows are sorted (window drops them).
	for _, o := range q.OrderBy {
		if o.Expr != nil {
			row = append(row, o.Expr.eval(r))
		}
	}
	return row, true
}
