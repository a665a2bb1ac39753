package sandbox

import (
	"math"
	"sort"
	"testing"
)

// groupStats are the plain-data sums of one group, for the reference
// computations.
type groupStats struct {
	n, inc, inc2, ben float64
}

func (g *groupStats) add(r rec) {
	g.n++
	g.inc += r.income
	g.inc2 += r.income * r.income
	g.ben += r.benefits
}

func (g *groupStats) varInc() float64 { m := g.inc / g.n; return g.inc2/g.n - m*m }

// statsBy groups the records by key (records where key returns "" are
// left out).
func statsBy(recs []rec, key func(rec) string) (map[string]*groupStats, []string) {
	m := map[string]*groupStats{}
	var keys []string
	for _, r := range recs {
		k := key(r)
		if k == "" {
			continue
		}
		if m[k] == nil {
			m[k] = &groupStats{}
			keys = append(keys, k)
		}
		m[k].add(r)
	}
	sort.Strings(keys)
	return m, keys
}

// TestAcceptedQueriesMatchPlainData: the corpus's PostgreSQL forms, run by
// the engine without noise, give what the same computation on the plain
// records gives.
func TestAcceptedQueriesMatchPlainData(t *testing.T) {
	tb, recs := demoTable(t, 3000)
	all, _ := statsBy(recs, func(rec) string { return "all" })
	cases := []struct {
		name, sql string
		want      func() [][]any
	}{
		{"aliases, qualified names, ORDER BY alias and LIMIT",
			"SELECT t.region AS r, COUNT(*) AS n, AVG(t.income) AS a FROM tax AS t WHERE t.age >= 30 GROUP BY t.region ORDER BY n DESC, r LIMIT 5",
			func() [][]any {
				m, keys := statsBy(recs, func(r rec) string {
					if r.age < 30 {
						return ""
					}
					return r.region
				})
				sort.SliceStable(keys, func(i, j int) bool { return m[keys[i]].n > m[keys[j]].n })
				var rows [][]any
				for _, k := range keys[:5] {
					rows = append(rows, []any{k, m[k].n, m[k].inc / m[k].n})
				}
				return rows
			}},
		{"parentheses, arithmetic, functions and constants over aggregates",
			"SELECT (SUM(income)) AS s, SUM(income) * 1 AS s1, POWER(AVG(income), 2) AS p, ROUND(AVG(income) / 1000, 2) AS k, 3 AS three, SQRT(VAR(income)) AS sd, LN(COUNT(*)) AS l, GREATEST(AVG(benefits), 1e9) AS g, COALESCE(NULL, COUNT(income)) AS c FROM tax",
			func() [][]any {
				a := all["all"]
				m := a.inc / a.n
				return [][]any{{a.inc, a.inc, m * m, math.Round(m/1000*100) / 100, 3.0, math.Sqrt(a.varInc()), math.Log(a.n), 1e9, a.n}}
			}},
		{"bounds derived for affine expressions",
			"SELECT SUM(income * 2 + 100) AS s, AVG(benefits - 50) AS b, VAR(income / 10) AS v FROM tax",
			func() [][]any {
				a := all["all"]
				return [][]any{{2*a.inc + 100*a.n, a.ben/a.n - 50, a.varInc() / 100}}
			}},
		{"conditional aggregates",
			"SELECT region, SUM(CASE WHEN age >= 60 THEN income ELSE 0 END) AS s, COUNT(CASE WHEN sex = 'F' THEN 1 END) AS f, AVG(CASE sex WHEN 'F' THEN income * 2 END) AS a FROM tax GROUP BY region ORDER BY region LIMIT 4",
			func() [][]any {
				type acc struct{ s, f, fi float64 }
				m := map[string]*acc{}
				for _, r := range recs {
					if m[r.region] == nil {
						m[r.region] = &acc{}
					}
					if r.age >= 60 {
						m[r.region].s += r.income
					}
					if r.sex == "F" {
						m[r.region].f++
						m[r.region].fi += 2 * r.income
					}
				}
				_, keys := statsBy(recs, func(r rec) string { return r.region })
				var rows [][]any
				for _, k := range keys[:4] {
					rows = append(rows, []any{k, m[k].s, m[k].f, m[k].fi / m[k].f})
				}
				return rows
			}},
		{"grouping CASE, in the select list by position",
			"SELECT sex, CASE WHEN age >= 60 THEN 'senior' ELSE 'other' END AS band, COUNT(*) FROM tax GROUP BY sex, 2 ORDER BY 1, 2",
			func() [][]any {
				m, keys := statsBy(recs, func(r rec) string {
					band := "other"
					if r.age >= 60 {
						band = "senior"
					}
					return r.sex + "|" + band
				})
				var rows [][]any
				for _, k := range keys {
					sex, band := splitKey(k)
					rows = append(rows, []any{sex, band, m[k].n})
				}
				return rows
			}},
		{"a CASE whose results are a column's values",
			"SELECT CASE WHEN region IN ('north', 'south') THEN 'north+south' ELSE region END AS area, COUNT(*) AS n FROM tax GROUP BY 1 ORDER BY area",
			func() [][]any {
				m, keys := statsBy(recs, func(r rec) string {
					if r.region == "north" || r.region == "south" {
						return "north+south"
					}
					return r.region
				})
				var rows [][]any
				for _, k := range keys {
					rows = append(rows, []any{k, m[k].n})
				}
				return rows
			}},
		{"a CASE over a grouped column, HAVING, OFFSET",
			"SELECT region, CASE region WHEN 'north' THEN 1 ELSE 0 END AS is_north, COUNT(*) FROM tax GROUP BY region HAVING COUNT(*) > 150 AND AVG(income) > 0 ORDER BY region OFFSET 1",
			func() [][]any {
				m, keys := statsBy(recs, func(r rec) string { return r.region })
				var rows [][]any
				for _, k := range keys {
					if m[k].n <= 150 {
						continue
					}
					isNorth := 0.0
					if k == "north" {
						isNorth = 1
					}
					rows = append(rows, []any{k, isNorth, m[k].n})
				}
				return rows[1:]
			}},
		{"ORDER BY a key and an aggregate that are not selected",
			"SELECT COUNT(*) AS n FROM tax WHERE region IN ('north', 'south', 'east', 'west') GROUP BY region, sex ORDER BY AVG(income) DESC LIMIT 3",
			func() [][]any {
				m, keys := statsBy(recs, func(r rec) string {
					switch r.region {
					case "north", "south", "east", "west":
						return r.region + "|" + r.sex
					}
					return ""
				})
				sort.SliceStable(keys, func(i, j int) bool { return m[keys[i]].inc/m[keys[i]].n > m[keys[j]].inc/m[keys[j]].n })
				var rows [][]any
				for _, k := range keys[:3] {
					rows = append(rows, []any{m[k].n})
				}
				return rows
			}},
		{"ORDER BY a grouped column that is not selected",
			"SELECT COUNT(*) AS n FROM tax GROUP BY region ORDER BY region DESC LIMIT 4",
			func() [][]any {
				m, keys := statsBy(recs, func(r rec) string { return r.region })
				sort.Sort(sort.Reverse(sort.StringSlice(keys)))
				var rows [][]any
				for _, k := range keys[:4] {
					rows = append(rows, []any{m[k].n})
				}
				return rows
			}},
		{"ORDER BY an expression the select list computes",
			"SELECT region, SUM(income) / COUNT(*) AS mean FROM tax GROUP BY region ORDER BY SUM(income) / COUNT(*) DESC LIMIT 3",
			func() [][]any {
				m, keys := statsBy(recs, func(r rec) string { return r.region })
				sort.SliceStable(keys, func(i, j int) bool { return m[keys[i]].inc/m[keys[i]].n > m[keys[j]].inc/m[keys[j]].n })
				var rows [][]any
				for _, k := range keys[:3] {
					rows = append(rows, []any{k, m[k].inc / m[k].n})
				}
				return rows
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := run(t, tb, c.sql, Control{MinGroupSize: 1, NoNoise: true})
			if err != nil {
				t.Fatal(err)
			}
			want := c.want()
			if len(res.Rows) != len(want) {
				t.Fatalf("%d rows, want %d: %v", len(res.Rows), len(want), res.Rows)
			}
			for i, row := range res.Rows {
				for j, got := range row {
					w := want[i][j]
					gf, gok := got.(float64)
					wf, wok := w.(float64)
					if gok && wok {
						// finishCell rounds aggregates to 1e-6.
						if math.Abs(gf-wf) > 1e-6*math.Max(1, math.Abs(wf)) {
							t.Errorf("row %d %s = %v, want %v", i, res.Columns[j], got, w)
						}
						continue
					}
					if got != w {
						t.Errorf("row %d %s = %v (%T), want %v (%T)", i, res.Columns[j], got, got, w, w)
					}
				}
			}
		})
	}
}

func splitKey(k string) (string, string) {
	for i := range k {
		if k[i] == '|' {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

// TestPostProcessingWithinNoise: with DP noise on, an expression over a
// noisy aggregate is that expression of the noisy value (post-processing
// costs no privacy and adds no error of its own), and HAVING sees the
// noisy values, not the true ones.
func TestPostProcessingWithinNoise(t *testing.T) {
	tb, recs := demoTable(t, 3000)
	eps := 1.0
	res, err := run(t, tb, "SELECT COUNT(*) AS n, COUNT(*) * 2 + 1 AS m, ROUND(COUNT(*)) AS r FROM tax", Control{MinGroupSize: 10, Epsilon: eps})
	if err != nil {
		t.Fatal(err)
	}
	n, m, r := res.Rows[0][0].(float64), res.Rows[0][1].(float64), res.Rows[0][2].(float64)
	if m != 2*n+1 || r != math.Round(n) {
		t.Fatalf("post-processing of the released count: n %v, 2n+1 %v, round %v", n, m, r)
	}
	// One noisy quantity with epsilon 1: Laplace scale 1; beyond
	// ln(10^6) ≈ 13.8 with probability 1e-6.
	if math.Abs(n-float64(len(recs))) > math.Log(1e6) {
		t.Fatalf("noisy count %v, true %d", n, len(recs))
	}
	if res.EpsilonSpent != eps {
		t.Fatalf("epsilon %v", res.EpsilonSpent)
	}
	// HAVING's aggregate is released (noised) too, and costs its share.
	res, err = run(t, tb, "SELECT region FROM tax GROUP BY region HAVING COUNT(*) > 0", Control{MinGroupSize: 10, Epsilon: eps})
	if err != nil || len(res.Rows) != 16 || res.EpsilonSpent != eps {
		t.Fatalf("%v %+v", err, res)
	}
}
