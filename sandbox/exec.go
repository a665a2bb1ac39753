package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
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
	// NoisyThreshold compares a noisy count of a cell's people with
	// MinGroupSize (drawn with one more share of Epsilon) and releases no
	// count of suppressed cells: what a list join needs, since the
	// enterprise chooses the list (an exact threshold, or the number of
	// cells withheld, would tell it whether one more id is in the data).
	NoisyThreshold bool
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
	for _, r := range q.refs {
		m[r.Name] = true
	}
	return m
}

// refuseAt is a RefusalError at byte offset pos of the query's text.
func (q *Query) refuseAt(pos int, rule, format string, a ...any) error {
	return &RefusalError{Col: column(q.Source, pos), Rule: rule, Msg: fmt.Sprintf(format, a...)}
}

var useNames = map[string]string{"aggregate": "an aggregate", "group": "GROUP BY", "filter": "WHERE", "case": "a CASE", "join": "a JOIN"}

// CheckQuery is the one check a parsed query passes before anything is
// recorded (the api calls it before the ledger, the engines again before
// running) on one dataset: joins are refused (CheckJoin checks them), then the engine's
// rules for the dataset's schema (Check), and in mode he what the
// encrypted engine can evaluate (CheckHE). Its errors are *RefusalError
// with the rule and the position of the offending token.
func CheckQuery(q *Query, s *policies.Schema, mode string) error {
	if len(q.Joins) > 0 {
		j := q.Joins[0]
		return q.refuseAt(j.Pos, RuleJoin, "JOIN %s: a join runs on an executor over every dataset's shipped columns (CheckJoin, ExecuteJoin), not on one dataset's table", j.Dataset)
	}
	if err := Check(q, s); err != nil {
		return err
	}
	if mode == policies.ModeHE {
		return CheckHE(q, s)
	}
	return nil
}

// Check refuses what the engine never runs, whatever the policy says:
// unknown columns, identifiers anywhere, MIN/MAX of sensitive columns,
// grouping by sensitive or unbounded columns, aggregates of unbounded
// numbers. Columns are checked in the order they appear in the text.
func Check(q *Query, s *policies.Schema) error {
	refs := append([]colRef(nil), q.refs...)
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].Pos < refs[j].Pos })
	for _, r := range refs {
		if r.Use == "join" {
			continue // CheckJoin checks join keys
		}
		c, ok := s.Column(r.Name)
		if !ok {
			return q.refuseAt(r.Pos, RuleUnknown, "unknown column %q", r.Name)
		}
		if c.Class == policies.Identifier {
			return q.refuseAt(r.Pos, RuleIdentifier, "identifier column %q may not be used in %s (it would single out a person)", r.Name, useNames[r.Use])
		}
	}
	for _, k := range q.Keys {
		if _, ok := s.Column(k.Alias); ok && k.Alias != "" {
			return q.refuseAt(k.Pos, RuleGroupBy, "GROUP BY %s is ambiguous: an output alias and a column of the dataset (PostgreSQL would group by the column); group by the expression or its position", k.Alias)
		}
	}
	for _, a := range q.Aggs {
		for _, name := range a.Args {
			if name == "*" {
				continue
			}
			c, _ := s.Column(name)
			fn, up := a.Func, strings.ToUpper(a.Func)
			if (fn == "min" || fn == "max") && c.Class != policies.Public {
				return q.refuseAt(a.Pos, RuleAggregate, "%s of %s column %q would return an individual's value", up, c.Class, name)
			}
			if fn != "count" && fn != "min" && fn != "max" && columnKind(c) != kindNum {
				return q.refuseAt(a.Pos, RuleAggregate, "%s(%s): column %q is not numeric", up, name, name)
			}
			if fn != "count" && len(c.Bounds) != 2 {
				return q.refuseAt(a.Pos, RuleUnbounded, "%s(%s): column %q has no bounds, so no one's contribution is bounded", up, name, name)
			}
		}
	}
	for _, r := range refs {
		if r.Use != "group" {
			continue
		}
		c, _ := s.Column(r.Name)
		if c.Class == policies.Sensitive {
			return q.refuseAt(r.Pos, RuleSensitive, "sensitive column %q may not be grouped by", r.Name)
		}
		if columnKind(c) != kindDict {
			return q.refuseAt(r.Pos, RuleGroupBy, "numeric column %q may not be grouped by (every value would be its own group); generalise it in the schema, or group by a CASE over it", r.Name)
		}
	}
	return nil
}

// Execute runs a checked query on a table and applies output control.
func Execute(ctx context.Context, t *Table, q *Query, ctl Control, lim Limits) (*Result, error) {
	if err := CheckQuery(q, &t.Schema, policies.ModeMasked); err != nil {
		return nil, err
	}
	need := int64(t.Rows) * 9 // mask and group ids
	for name := range q.Columns() {
		if c, ok := t.Cols[name]; ok {
			need += int64(len(c.Num))*8 + int64(len(c.Codes))*4
		}
	}
	for _, a := range q.Aggs {
		switch {
		case a.Affine != nil:
			need += int64(t.Rows) * 8 // the transformed values
		case a.Case != nil:
			need += int64(t.Rows) * (9 + int64(len(a.Case.Whens))) // values, selection, conditions
		}
	}
	for _, k := range q.Keys {
		if k.Case != nil {
			need += int64(t.Rows) * (4 + int64(len(k.Case.Whens))) // codes and masks
		}
	}
	if need > lim.MaxMemory {
		return nil, fmt.Errorf("%w: the query needs about %d MiB, limit %d MiB", ErrLimit, need>>20, lim.MaxMemory>>20)
	}
	mask, err := evalWhere(t, q.Where)
	if err != nil {
		return nil, err
	}
	gid, ngroups, keys, err := groupIDs(t, q.Keys, lim)
	if err != nil {
		return nil, err
	}
	for _, a := range q.Aggs {
		if a.Func == "histogram" && int(a.Params[2]) > lim.MaxBins {
			return nil, q.refuseAt(a.Pos, RuleAggregate, "HISTOGRAM with %d bins; limit %d", int(a.Params[2]), lim.MaxBins)
		}
	}
	aggs, counts, err := computeAggs(ctx, t, q.Aggs, mask, gid, ngroups, ctl.Dominance)
	if err != nil {
		return nil, err
	}
	return finish(q, ctl, keys, counts, aggs, t.Rows)
}

// computeAggs computes a query's aggregates, in order, and the selected
// rows' count per group. Every aggregate without CASE counts the selected
// rows of each group as it passes over them, so the first one's counts are
// the groups' counts; a COUNT without CASE then releases those rather than
// counting again (it cannot fail, so filling it last reports the same
// first error). Only a query without such an aggregate counts on its own.
func computeAggs(ctx context.Context, t *Table, list []*Agg, mask []bool, gid []uint32, groups int, dom *policies.Dominance) ([]*aggState, []int64, error) {
	aggs := make([]*aggState, len(list))
	var counts []int64
	for i, ag := range list {
		if ag.Func == "count" && ag.Case == nil {
			continue
		}
		a, err := computeAgg(ctx, t, ag, mask, gid, groups, dom)
		if err != nil {
			return nil, nil, err
		}
		if counts == nil && ag.Case == nil {
			counts = append([]int64(nil), a.n...)
		}
		aggs[i] = a
	}
	if counts == nil {
		var err error
		if counts, err = parallelCount(ctx, t.Rows, mask, gid, groups); err != nil {
			return nil, nil, err
		}
	}
	for i, ag := range list {
		if aggs[i] != nil {
			continue
		}
		a, err := computeAggCounted(ctx, t, ag, mask, gid, groups, dom, counts)
		if err != nil {
			return nil, nil, err
		}
		aggs[i] = a
	}
	return aggs, counts, nil
}

// evalWhere returns the selection mask, nil when every row is selected:
// AND, OR and NOT combine their operands' masks (evalLogic); a comparison
// becomes a test of one value (predicate), applied to its column
// (maskColumn).
func evalWhere(t *Table, e Expr) ([]bool, error) {
	if e == nil {
		return nil, nil
	}
	if x, ok := e.(*Logic); ok {
		return evalLogic(t, x)
	}
	name, test, err := predicate(e)
	if err != nil {
		return nil, err
	}
	return maskColumn(t, name, test)
}

// evalLogic evaluates AND, OR and NOT over their operands' masks.
func evalLogic(t *Table, x *Logic) ([]bool, error) {
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

// valueTest decides whether one value (a number, or a string when isNum
// is false) satisfies a predicate.
type valueTest func(num float64, str string, isNum bool) (bool, error)

// predicate returns the column a comparison, IN or BETWEEN reads and its
// test of one value.
func predicate(e Expr) (string, valueTest, error) {
	switch x := e.(type) {
	case *Compare:
		return x.Column, func(n float64, s string, isNum bool) (bool, error) {
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
		}, nil
	case *In:
		return x.Column, func(n float64, s string, isNum bool) (bool, error) {
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
		}, nil
	case *Between:
		return x.Column, func(n float64, s string, isNum bool) (bool, error) {
			lo, err := cmpValue(n, s, isNum, x.Lo)
			if err != nil {
				return false, err
			}
			hi, err := cmpValue(n, s, isNum, x.Hi)
			if err != nil {
				return false, err
			}
			return (lo >= 0 && hi <= 0) != x.Not, nil
		}, nil
	}
	return "", nil, fmt.Errorf("sandbox: unknown predicate %T", e)
}

// maskColumn applies a test to every row of a column: to each number of
// a numeric column, and once to each distinct value of a dictionary
// column, whose codes then map to the decisions.
func maskColumn(t *Table, name string, test valueTest) ([]bool, error) {
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

// keyColumn is one GROUP BY key over the rows: a code per row, and the
// value each code stands for.
type keyColumn struct {
	codes []uint32
	vals  []any
}

// keyColumns evaluates GROUP BY's keys on the table.
func keyColumns(t *Table, keys []Key) ([]keyColumn, error) {
	out := make([]keyColumn, len(keys))
	for i, k := range keys {
		if k.Case != nil {
			kc, err := caseKey(t, k.Case)
			if err != nil {
				return nil, err
			}
			out[i] = kc
			continue
		}
		c, ok := t.Cols[k.Column]
		if !ok || c.Kind != kindDict {
			return nil, refuse("column %q cannot be grouped by", k.Column)
		}
		kc := keyColumn{codes: c.Codes, vals: make([]any, len(c.Dict))}
		for code, v := range c.Dict {
			kc.vals[code] = keyValue(t, k.Column, v)
		}
		out[i] = kc
	}
	return out, nil
}

// caseKey evaluates a grouping CASE row by row: the first WHEN that holds
// picks its result (a column's value or a constant), else ELSE's. Equal
// results of different branches are one group.
func caseKey(t *Table, kc *KeyCase) (keyColumn, error) {
	masks := make([][]bool, len(kc.Whens))
	results := make([]KeyResult, 0, len(kc.Whens)+1)
	for i, w := range kc.Whens {
		m, err := evalWhere(t, w.Cond)
		if err != nil {
			return keyColumn{}, err
		}
		masks[i] = m
		results = append(results, w.Then)
	}
	results = append(results, kc.Else)
	cols := make([]*Column, len(results))
	for i, r := range results {
		if r.Column == "" {
			continue
		}
		c, ok := t.Cols[r.Column]
		if !ok || c.Kind != kindDict {
			return keyColumn{}, refuse("column %q cannot be grouped by", r.Column)
		}
		cols[i] = c
	}
	out := keyColumn{codes: make([]uint32, t.Rows)}
	byValue := map[any]uint32{}
	type branchCode struct{ branch, code int }
	memo := map[branchCode]uint32{}
	for row := 0; row < t.Rows; row++ {
		b := len(kc.Whens)
		for i, m := range masks {
			if m[row] {
				b = i
				break
			}
		}
		bc := branchCode{b, -1}
		if cols[b] != nil {
			bc.code = int(cols[b].Codes[row])
		}
		id, ok := memo[bc]
		if !ok {
			var v any
			if cols[b] != nil {
				v = keyValue(t, results[b].Column, cols[b].Dict[bc.code])
			} else {
				v = results[b].Value.any()
			}
			if id, ok = byValue[v]; !ok {
				id = uint32(len(out.vals))
				byValue[v] = id
				out.vals = append(out.vals, v)
			}
			memo[bc] = id
		}
		out.codes[row] = id
	}
	return out, nil
}

// groupIDs maps each row to a dense group index (mixed radix over the
// keys' codes) and returns each group's key values.
func groupIDs(t *Table, by []Key, lim Limits) ([]uint32, int, [][]any, error) {
	if len(by) == 0 {
		return nil, 1, [][]any{{}}, nil
	}
	cols, err := keyColumns(t, by)
	if err != nil {
		return nil, 0, nil, err
	}
	n := 1
	for _, c := range cols {
		n *= len(c.vals)
		if n > lim.MaxGroups {
			names := make([]string, len(by))
			for i, k := range by {
				names[i] = k.String()
			}
			return nil, 0, nil, refuse("GROUP BY %s makes more than %d cells", strings.Join(names, ", "), lim.MaxGroups)
		}
	}
	if len(cols) == 1 {
		// One key: its codes are the group ids (read only from here on).
		return cols[0].codes, n, keyTuples(cols, n), nil
	}
	gid := make([]uint32, t.Rows)
	for _, c := range cols {
		card := uint32(len(c.vals))
		for i, code := range c.codes {
			gid[i] = gid[i]*card + code
		}
	}
	return gid, n, keyTuples(cols, n), nil
}

// keyTuples returns the key values of each of the n groups numbered in
// mixed radix over the key columns.
func keyTuples(cols []keyColumn, n int) [][]any {
	keys := make([][]any, n)
	for g := 0; g < n; g++ {
		rest := g
		k := make([]any, len(cols))
		for i := len(cols) - 1; i >= 0; i-- {
			card := len(cols[i].vals)
			k[i] = cols[i].vals[rest%card]
			rest /= card
		}
		keys[g] = k
	}
	return keys
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
			if mask == nil && gid != nil {
				countGroups(c, gid[r[0]:r[1]])
				res[p] = c
				return
			}
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

// countGroups adds each row's group to c: parallelCount's columnar loop
// for every row selected. Four sets of counters keep consecutive rows of
// one group from waiting on each other's increment.
func countGroups(c []int64, gid []uint32) {
	var lanes [3][]int64
	for i := range lanes {
		lanes[i] = make([]int64, len(c))
	}
	l1, l2, l3 := lanes[0], lanes[1], lanes[2]
	i := 0
	for ; i+4 <= len(gid); i += 4 {
		c[gid[i]]++
		l1[gid[i+1]]++
		l2[gid[i+2]]++
		l3[gid[i+3]]++
	}
	for ; i < len(gid); i++ {
		c[gid[i]]++
	}
	for g := range c {
		c[g] += l1[g] + l2[g] + l3[g]
	}
}
