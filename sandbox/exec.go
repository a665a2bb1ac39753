package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/datasandbox/datasandbox/policies"
)

// Limits bound one job.
type Limits struct {
	MaxMemory int64 // bytes of column data and work arrays
	MaxGroups int   // output cells of a GROUP BY
	MaxBins   int   // HISTOGRAM bins
}

// DefaultLimits are the engine's defaults.
func DefaultLimits() Limits {
	return Limits{MaxMemory: 4 << 30, MaxGroups: 100_000, MaxBins: 1000}
}

// Control is the output control a policy asks for.
type Control struct {
	MinGroupSize int
	Dominance    *policies.Dominance
	Epsilon      float64 // the query's whole epsilon
	Delta        float64
	Mechanism    string // laplace or gaussian
	// MaxIntervalRatio suppresses a value whose 95% interval is wider than
	// this multiple of it (the policy's dp.max_interval_ratio; 0: never).
	MaxIntervalRatio float64
	// NoNoise disables DP noise: only for tests that compare with a
	// reference computation. Never set by the product.
	NoNoise bool
}

// Result is a job's output after output control (CONTRACT.md).
type Result struct {
	Job          string   `json:"job"`
	Columns      []string `json:"columns"`
	Rows         [][]any  `json:"rows"`
	Suppressed   int      `json:"suppressed"`
	EpsilonSpent float64  `json:"epsilon_spent"`
	ResultSHA256 string   `json:"result_sha256"`
	// Noise states each released value's noise: one row per row of Rows,
	// one entry per column (null for grouping columns), with its 95%
	// interval (interval.go). Absent when no noise was added.
	Noise [][]*Noise `json:"noise,omitempty"`
	// TooNoisy counts the values withheld (null in Rows) because their
	// interval was wider than the policy's dp.max_interval_ratio allows.
	TooNoisy int `json:"too_noisy,omitempty"`
	// HE is set for an he job: the result encrypted to the requester, who
	// decrypts it and fills Rows (DecryptHEResult). Rows is empty here.
	HE *HEResult `json:"he,omitempty"`
}

// HEResult is the encrypted part of an he job's result.
type HEResult struct {
	Layout     *HELayout `json:"layout"`
	Ciphertext []byte    `json:"ciphertext"` // compact format, under the requester's key
	Active     []string  `json:"active"`     // the nodes whose shares re-encrypted it
}

// Seal sets ResultSHA256: SHA-256 of the canonical JSON of the result
// without the hash. The same hash is committed in job.complete.
func (r *Result) Seal() error {
	r.ResultSHA256 = ""
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	r.ResultSHA256 = hex.EncodeToString(sum[:])
	return nil
}

func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
}

// Columns lists the columns a query reads.
func (q *Query) Columns() map[string]bool {
	m := map[string]bool{}
	for _, it := range q.Select {
		if it.Agg != nil {
			for _, a := range it.Agg.Args {
				if a != "*" {
					m[a] = true
				}
			}
		} else {
			m[it.Column] = true
		}
	}
	for _, g := range q.GroupBy {
		m[g] = true
	}
	for _, f := range q.FilterColumns() {
		m[f] = true
	}
	return m
}

// Check refuses what the engine never runs, whatever the policy says:
// unknown columns, identifiers anywhere, MIN/MAX of sensitive columns,
// grouping by sensitive or unbounded columns, aggregates of unbounded
// numbers. Its errors are *RefusalError, with the position in the query.
// The API runs it before anything reaches the ledger; the state machine
// applies the same class rules to the plan (policies, defence in depth).
func Check(q *Query, s *policies.Schema) error {
	col := func(name, clause, use string) (policies.Column, error) {
		c, ok := s.Column(name)
		if !ok {
			return c, refuseAt(q, clause, name, "unknown column %q in %s (the dataset's columns: %s)", name, use, columnNames(s))
		}
		if c.Class == policies.Identifier {
			return c, refuseAt(q, clause, name, "identifier column %q may not be used in %s (it would single out a person)", name, use)
		}
		return c, nil
	}
	for _, it := range q.Select {
		if it.Agg == nil {
			continue
		}
		for _, a := range it.Agg.Args {
			if a == "*" {
				continue
			}
			c, err := col(a, inSelect, "an aggregate")
			if err != nil {
				return err
			}
			fn := it.Agg.Func
			if (fn == "min" || fn == "max") && c.Class != policies.Public {
				return refuseAt(q, inSelect, a, "%s of %s column %q would return an individual's value", strings.ToUpper(fn), c.Class, a)
			}
			if fn != "count" && fn != "min" && fn != "max" && columnKind(c) != kindNum {
				return refuseAt(q, inSelect, a, "%s(%s): column %q is not numeric", strings.ToUpper(fn), a, a)
			}
			if fn != "count" && len(c.Bounds) != 2 {
				return refuseAt(q, inSelect, a, "%s(%s): column %q has no bounds, so no one's contribution is bounded", strings.ToUpper(fn), a, a)
			}
		}
	}
	for _, g := range q.GroupBy {
		c, err := col(g, inGroupBy, "GROUP BY")
		if err != nil {
			return err
		}
		if c.Class == policies.Sensitive {
			return refuseAt(q, inGroupBy, g, "sensitive column %q may not be grouped by", g)
		}
		if columnKind(c) != kindDict {
			return refuseAt(q, inGroupBy, g, "numeric column %q may not be grouped by (every value would be its own group); generalise it in the schema", g)
		}
	}
	for _, f := range q.FilterColumns() {
		if _, err := col(f, inWhere, "WHERE"); err != nil {
			return err
		}
	}
	return checkOrder(q)
}

// checkOrder refuses ORDER BY keys that name no output column (order
// applies the same rule to the result).
func checkOrder(q *Query) error {
	labels := make([]string, len(q.Select))
	for i, it := range q.Select {
		labels[i] = label(it)
	}
	for _, o := range q.OrderBy {
		if n, err := strconv.Atoi(o.Key); err == nil {
			if n < 1 || n > len(labels) {
				return refuseAt(q, "order", o.Key, "ORDER BY %d: there are %d output columns", n, len(labels))
			}
			continue
		}
		if !slices.Contains(labels, o.Key) {
			return refuseAt(q, "order", o.Key, "ORDER BY %s: not an output column (the output columns: %s)", o.Key, strings.Join(labels, ", "))
		}
	}
	return nil
}

// columnNames lists a schema's columns for a refusal's message.
func columnNames(s *policies.Schema) string {
	names := make([]string, 0, 20)
	for _, c := range s.Columns {
		if len(names) == 20 {
			return strings.Join(names, ", ") + fmt.Sprintf(" and %d more", len(s.Columns)-20)
		}
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// Execute runs a checked query on a table and applies output control.
func Execute(ctx context.Context, t *Table, q *Query, ctl Control, lim Limits) (*Result, error) {
	if err := Check(q, &t.Schema); err != nil {
		return nil, err
	}
	need := int64(t.Rows) * 9 // mask and group ids
	for name := range q.Columns() {
		if c, ok := t.Cols[name]; ok {
			need += int64(len(c.Num))*8 + int64(len(c.Codes))*4
		}
	}
	if need > lim.MaxMemory {
		return nil, fmt.Errorf("%w: the query needs about %d MiB, limit %d MiB", ErrLimit, need>>20, lim.MaxMemory>>20)
	}
	mask, err := evalWhere(t, q.Where)
	if err != nil {
		return nil, err
	}
	gid, ngroups, keys, err := groupIDs(t, q.GroupBy, lim)
	if err != nil {
		return nil, err
	}
	for _, it := range q.Select {
		if it.Agg != nil && it.Agg.Func == "histogram" && int(it.Agg.Params[2]) > lim.MaxBins {
			return nil, refuse("HISTOGRAM with %d bins; limit %d", int(it.Agg.Params[2]), lim.MaxBins)
		}
	}
	counts, err := parallelCount(ctx, t.Rows, mask, gid, ngroups)
	if err != nil {
		return nil, err
	}
	aggs := make([]*aggState, len(q.Select))
	for i, it := range q.Select {
		if it.Agg == nil {
			continue
		}
		a, err := computeAgg(ctx, t, it.Agg, mask, gid, ngroups, ctl.Dominance)
		if err != nil {
			return nil, err
		}
		aggs[i] = a
	}
	return finish(t, q, ctl, keys, counts, aggs)
}

// evalWhere returns the selection mask, nil when every row is selected.
func evalWhere(t *Table, e Expr) ([]bool, error) {
	if e == nil {
		return nil, nil
	}
	switch x := e.(type) {
	case *Logic:
		l, err := evalWhere(t, x.L)
		if err != nil {
			return nil, err
		}
		if x.Op == "not" {
			for i := range l {
				l[i] = !l[i]
			}
			return l, nil
		}
		r, err := evalWhere(t, x.R)
		if err != nil {
			return nil, err
		}
		for i := range l {
			if x.Op == "and" {
				l[i] = l[i] && r[i]
			} else {
				l[i] = l[i] || r[i]
			}
		}
		return l, nil
	}
	var name string
	var test func(num float64, str string, isNum bool) (bool, error)
	switch x := e.(type) {
	case *Compare:
		name = x.Column
		test = func(n float64, s string, isNum bool) (bool, error) {
			c, err := cmpValue(n, s, isNum, x.Value)
			if err != nil {
				return false, err
			}
			switch x.Op {
			case "=":
				return c == 0, nil
			case "<>":
				return c != 0, nil
			case "<":
				return c < 0, nil
			case "<=":
				return c <= 0, nil
			case ">":
				return c > 0, nil
			}
			return c >= 0, nil
		}
	case *In:
		name = x.Column
		test = func(n float64, s string, isNum bool) (bool, error) {
			for _, v := range x.Values {
				c, err := cmpValue(n, s, isNum, v)
				if err != nil {
					return false, err
				}
				if c == 0 {
					return !x.Not, nil
				}
			}
			return x.Not, nil
		}
	case *Between:
		name = x.Column
		test = func(n float64, s string, isNum bool) (bool, error) {
			lo, err := cmpValue(n, s, isNum, x.Lo)
			if err != nil {
				return false, err
			}
			hi, err := cmpValue(n, s, isNum, x.Hi)
			if err != nil {
				return false, err
			}
			return (lo >= 0 && hi <= 0) != x.Not, nil
		}
	default:
		return nil, fmt.Errorf("sandbox: unknown predicate %T", e)
	}
	c, ok := t.Cols[name]
	if !ok {
		return nil, refuse("unknown column %q", name)
	}
	mask := make([]bool, t.Rows)
	numeric := c.Meta.Type == policies.TypeInt || c.Meta.Type == policies.TypeFloat
	switch c.Kind {
	case kindNum:
		for i, v := range c.Num {
			ok, err := test(v, "", true)
			if err != nil {
				return nil, refuse("column %q: %v", name, err)
			}
			mask[i] = ok
		}
	case kindDict:
		// Decide once per distinct value, then map codes.
		table := make([]bool, len(c.Dict))
		for code, s := range c.Dict {
			n := 0.0
			if numeric {
				n, _ = strconv.ParseFloat(s, 64)
			}
			ok, err := test(n, s, numeric)
			if err != nil {
				return nil, refuse("column %q: %v", name, err)
			}
			table[code] = ok
		}
		for i, code := range c.Codes {
			mask[i] = table[code]
		}
	default:
		return nil, refuse("column %q cannot be filtered on", name)
	}
	return mask, nil
}

func cmpValue(n float64, s string, isNum bool, v Value) (int, error) {
	if isNum {
		if v.IsStr {
			return 0, fmt.Errorf("compared with the string %q, but it is numeric", v.Str)
		}
		switch {
		case n < v.Num:
			return -1, nil
		case n > v.Num:
			return 1, nil
		}
		return 0, nil
	}
	if !v.IsStr {
		return 0, fmt.Errorf("compared with a number, but it holds strings (quote the value)")
	}
	return strings.Compare(s, v.Str), nil
}

// groupIDs maps each row to a dense group index (mixed radix over the
// grouping columns' dictionary codes).
func groupIDs(t *Table, by []string, lim Limits) ([]uint32, int, [][]string, error) {
	if len(by) == 0 {
		return nil, 1, [][]string{{}}, nil
	}
	n := 1
	cols := make([]*Column, len(by))
	for i, name := range by {
		cols[i] = t.Cols[name]
		n *= len(cols[i].Dict)
		if n > lim.MaxGroups {
			return nil, 0, nil, refuse("GROUP BY %s makes more than %d cells", strings.Join(by, ", "), lim.MaxGroups)
		}
	}
	gid := make([]uint32, t.Rows)
	for _, c := range cols {
		card := uint32(len(c.Dict))
		for i, code := range c.Codes {
			gid[i] = gid[i]*card + code
		}
	}
	keys := make([][]string, n)
	for g := 0; g < n; g++ {
		rest := g
		k := make([]string, len(cols))
		for i := len(cols) - 1; i >= 0; i-- {
			card := len(cols[i].Dict)
			k[i] = cols[i].Dict[rest%card]
			rest /= card
		}
		keys[g] = k
	}
	return gid, n, keys, nil
}

// chunks splits rows for the workers.
func chunks(rows int) [][2]int {
	w := runtime.GOMAXPROCS(0)
	size := (rows + w - 1) / w
	if size < 1<<16 {
		size = 1 << 16
	}
	var out [][2]int
	for lo := 0; lo < rows; lo += size {
		out = append(out, [2]int{lo, min(lo+size, rows)})
	}
	return out
}

func parallelCount(ctx context.Context, rows int, mask []bool, gid []uint32, n int) ([]int64, error) {
	parts := chunks(rows)
	res := make([][]int64, len(parts))
	var wg sync.WaitGroup
	for p, r := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := make([]int64, n)
			for i := r[0]; i < r[1]; i++ {
				if mask != nil && !mask[i] {
					continue
				}
				g := 0
				if gid != nil {
					g = int(gid[i])
				}
				c[g]++
			}
			res[p] = c
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for _, c := range res {
		for g := range c {
			out[g] += c[g]
		}
	}
	return out, nil
}
