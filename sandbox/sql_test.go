package sandbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/datasandbox/datasandbox/policies"
)

func TestParseQuery(t *testing.T) {
	q, err := ParseQuery(`SELECT region, COUNT(*) AS n, AVG(income), CORR(income, age), HISTOGRAM(income, 0, 100000, 10)
		FROM Tax2025 WHERE (region IN ('north', 'south') OR age BETWEEN 30 AND 39) AND NOT income < -5.5e2
		GROUP BY region ORDER BY n DESC, 1 LIMIT 20;`)
	if err != nil {
		t.Fatal(err)
	}
	if q.From != "tax2025" || len(q.Select) != 5 || q.Select[1].Alias != "n" || q.Limit != 20 || len(q.OrderBy) != 2 || !q.OrderBy[0].Desc || q.OrderBy[0].Key != "2" {
		t.Fatalf("%+v", q)
	}
	if h := q.Select[4].Agg; h.Func != "histogram" || h.Params[2] != 10 {
		t.Fatalf("histogram %+v", h)
	}
	if got := strings.Join(q.FilterColumns(), ","); got != "age,income,region" {
		t.Fatalf("filter columns %s", got)
	}
	if c, ok := q.Where.(*Logic).R.(*Logic).L.(*Compare); !ok || c.Value.Num != -550 {
		t.Fatalf("negative constant: %#v", q.Where.(*Logic).R)
	}
}

// TestAcceptedCorpus: queries analysts write, with the plan each puts on
// the ledger and its output columns.
func TestAcceptedCorpus(t *testing.T) {
	cases := []struct{ name, sql, plan, columns string }{
		{"qualified names and aliases", "SELECT p.married, AVG(age) AS aa FROM pums AS p GROUP BY married",
			`{"aggregates":[{"func":"avg","columns":["age"]}],"group_by":["married"]}`, "married|aa"},
		{"table name as qualifier", "SELECT pums.married, COUNT(*) FROM pums GROUP BY pums.married",
			`{"aggregates":[{"func":"count","columns":["*"]}],"group_by":["married"]}`, "married|count(*)"},
		{"parentheses", "SELECT (SUM(age)) AS age FROM pums", `{"aggregates":[{"func":"sum","columns":["age"]}]}`, "age"},
		{"arithmetic over an aggregate", "SELECT SUM(age) * 1 AS age, SUM(age) / COUNT(*) - 1 FROM pums",
			`{"aggregates":[{"func":"sum","columns":["age"]},{"func":"count","columns":["*"]}]}`, "age|((sum(age) / count(*)) - 1)"},
		{"functions over aggregates", "SELECT POWER(AVG(age), 2), ROUND(AVG(age), 1), ABS(SUM(age)), SQRT(VAR(age)), LN(COUNT(*)), EXP(1), LEAST(AVG(age), 50), GREATEST(AVG(age), 50), COALESCE(AVG(age), 0) FROM pums",
			`{"aggregates":[{"func":"avg","columns":["age"]},{"func":"sum","columns":["age"]},{"func":"var","columns":["age"]},{"func":"count","columns":["*"]}]}`,
			"power(avg(age), 2)|round(avg(age), 1)|abs(sum(age))|sqrt(var(age))|ln(count(*))|exp(1)|least(avg(age), 50)|greatest(avg(age), 50)|coalesce(avg(age), 0)"},
		{"constant column", "SELECT 3 AS three, 'x' AS s, COUNT(*) FROM pums", `{"aggregates":[{"func":"count","columns":["*"]}]}`, "three|s|count(*)"},
		{"grouping CASE", "SELECT married, COUNT(*) FROM pums GROUP BY married, CASE WHEN age > 90 THEN 1 ELSE 0 END",
			`{"aggregates":[{"func":"count","columns":["*"]}],"group_by":["married"],"case":["age"]}`, "married|count(*)"},
		{"CASE in select and GROUP BY ordinal", "SELECT CASE WHEN age >= 60 THEN 'senior' WHEN age >= 18 THEN 'adult' END AS band, COUNT(*) FROM pums GROUP BY 1 ORDER BY band",
			`{"aggregates":[{"func":"count","columns":["*"]}],"case":["age"]}`, "band|count(*)"},
		{"simple CASE over a grouped column", "SELECT region, CASE region WHEN 'north' THEN 1 ELSE 0 END AS n, COUNT(*) FROM t GROUP BY region",
			`{"aggregates":[{"func":"count","columns":["*"]}],"group_by":["region"]}`, "region|n|count(*)"},
		{"CASE results from a column", "SELECT COUNT(*) FROM t GROUP BY CASE WHEN region IN ('a', 'b') THEN 'ab' ELSE region END",
			`{"aggregates":[{"func":"count","columns":["*"]}],"group_by":["region"],"case":["region"]}`, "count(*)"},
		{"GROUP BY an output alias", "SELECT region AS r, CASE WHEN age > 60 THEN 1 ELSE 0 END AS old, COUNT(*) FROM t GROUP BY r, old",
			`{"aggregates":[{"func":"count","columns":["*"]}],"group_by":["region"],"case":["age"]}`, "r|old|count(*)"},
		{"ORDER BY alias, ordinal and expression", "SELECT region AS r, COUNT(*) AS n FROM t GROUP BY region ORDER BY n DESC, 1, COUNT(*) LIMIT 5 OFFSET 2",
			`{"aggregates":[{"func":"count","columns":["*"]}],"group_by":["region"]}`, "r|n"},
		{"ORDER BY what is not selected", "SELECT COUNT(*) FROM t GROUP BY region ORDER BY region DESC, SUM(income)",
			`{"aggregates":[{"func":"count","columns":["*"]},{"func":"sum","columns":["income"]}],"group_by":["region"]}`, "count(*)"},
		{"HAVING over released aggregates", "SELECT region, AVG(income) FROM t GROUP BY region HAVING COUNT(*) >= 10 AND AVG(income) BETWEEN 1 AND 1e6",
			`{"aggregates":[{"func":"avg","columns":["income"]},{"func":"count","columns":["*"]}],"group_by":["region"]}`, "region|avg(income)"},
		{"COUNT(col) and COUNT(1)", "SELECT COUNT(income), COUNT(1) FROM t",
			`{"aggregates":[{"func":"count","columns":["income"]},{"func":"count","columns":["*"]}]}`, "count(income)|count(*)"},
		{"bounds derived for + - * /", "SELECT SUM(income * 1.5 - 100), AVG(-income), VAR(2 * (income + 1) / 4) FROM t",
			`{"aggregates":[{"func":"sum","columns":["income"]},{"func":"avg","columns":["income"]},{"func":"var","columns":["income"]}]}`,
			"sum(income * 1.5 + -100)|avg(income * -1 + -0)|var(income * 0.5 + 0.5)"},
		{"conditional aggregates", "SELECT SUM(CASE WHEN age > 30 THEN income ELSE 0 END), COUNT(CASE WHEN region = 'north' THEN 1 END), AVG(CASE sex WHEN 'F' THEN income * 2 END) FROM t",
			`{"aggregates":[{"func":"sum","columns":["income"]},{"func":"count","columns":["*"]},{"func":"avg","columns":["income"]}],"case":["age","region","sex"]}`,
			"sum(CASE WHEN age > 30 THEN income * 1 + 0 ELSE 0 END)|count(CASE WHEN region = 'north' THEN 1 ELSE NULL END)|avg(CASE WHEN sex = 'F' THEN income * 2 + 0 ELSE NULL END)"},
		{"the same aggregate twice is computed once", "SELECT SUM(income), SUM(income) * 2 FROM t", `{"aggregates":[{"func":"sum","columns":["income"]}]}`, "sum(income)|(sum(income) * 2)"},
		{"WHERE in PostgreSQL's forms", "SELECT COUNT(*) FROM t WHERE 30 <= age AND region NOT IN ('x') AND year != 2020 AND age NOT BETWEEN 1 AND 2",
			`{"aggregates":[{"func":"count","columns":["*"]}],"filter":["age","region","year"]}`, "count(*)"},
		{"quoted identifiers keep their case", `SELECT "Region", COUNT(*) FROM "T" GROUP BY "Region"`,
			`{"aggregates":[{"func":"count","columns":["*"]}],"group_by":["Region"]}`, "Region|count(*)"},
		{"comments and a trailing semicolon", "-- total\nSELECT /* all rows */ COUNT(*) FROM t; ", `{"aggregates":[{"func":"count","columns":["*"]}]}`, "count(*)"},
		{"a join is parsed", "SELECT COUNT(*) FROM tax AS a JOIN benefits AS b ON a.person_id = b.person_id",
			`{"aggregates":[{"func":"count","columns":["*"]}],"join":[{"dataset":"tax","key":"person_id","columns":[]},{"dataset":"benefits","key":"person_id","columns":[]}]}`, "count(*)"},
		{"a join USING", "SELECT COUNT(*) FROM tax JOIN benefits USING (person_id)", `{"aggregates":[{"func":"count","columns":["*"]}],"join":[{"dataset":"tax","key":"person_id","columns":[]},{"dataset":"benefits","key":"person_id","columns":[]}]}`, "count(*)"},
		{"a join's plan names whose columns", "SELECT b.region, AVG(t.income) FROM tax t JOIN benefits b ON b.person_id = t.person_id WHERE t.age > 30 GROUP BY b.region",
			`{"aggregates":[{"func":"avg","columns":["tax.income"]}],"group_by":["benefits.region"],"filter":["tax.age"],"join":[{"dataset":"tax","key":"person_id","columns":["age","income"]},{"dataset":"benefits","key":"person_id","columns":["region"]}]}`, "region|avg(tax.income)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := ParseQuery(c.sql)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(q.Plan())
			if string(b) != c.plan {
				t.Errorf("plan\n got %s\nwant %s", b, c.plan)
			}
			var cols []string
			for _, it := range q.Select {
				cols = append(cols, label(it))
			}
			if got := strings.Join(cols, "|"); got != c.columns {
				t.Errorf("columns\n got %s\nwant %s", got, c.columns)
			}
			// The plan is derived from the text alone: again, the same.
			ds, p, err := DerivePlan(c.sql)
			b2, _ := json.Marshal(p)
			if err != nil || ds != q.From || string(b2) != string(b) {
				t.Errorf("DerivePlan: %s %s %v", ds, b2, err)
			}
		})
	}
	q, _ := ParseQuery("SELECT COUNT(*) FROM tax AS a JOIN benefits AS b ON b.person_id = a.person_id")
	if len(q.Joins) != 1 || q.Joins[0].Dataset != "benefits" || q.Joins[0].Kind != "inner" || len(q.Joins[0].On) != 1 || q.Joins[0].On[0] != [2]string{"tax.person_id", "benefits.person_id"} {
		t.Fatalf("joins %+v", q.Joins)
	}
}

// TestRefusedCorpus: what is refused, by which rule, where.
func TestRefusedCorpus(t *testing.T) {
	schema := DemoSchema()
	cases := []struct {
		name, sql, mode, rule string
		col                   int
		want                  string
	}{
		// Row-level output.
		{"select star", "SELECT * FROM tax", "", RuleRowLevel, 8, "* would return row-level values"},
		{"qualified star", "SELECT t.*, COUNT(*) FROM tax t", "", RuleRowLevel, 8, "row-level"},
		{"bare column", "SELECT income FROM tax", "", RuleRowLevel, 8, `column "income" is outside GROUP BY`},
		{"bare column in an expression", "SELECT region, SUM(income) + age FROM tax GROUP BY region", "", RuleRowLevel, 30, `column "age" is outside GROUP BY`},
		{"no aggregate", "SELECT region FROM tax GROUP BY region", "", RuleRowLevel, 8, "computes no aggregate"},
		{"distinct", "SELECT DISTINCT region FROM tax", "", RuleRowLevel, 8, "SELECT DISTINCT"},
		// Shapes never run.
		{"subquery in FROM", "SELECT COUNT(*) FROM (SELECT * FROM tax) s", "", RuleSubquery, 22, "subqueries in FROM"},
		{"subquery in WHERE", "SELECT COUNT(*) FROM tax WHERE age IN (SELECT age FROM tax)", "", RuleSubquery, 36, "subqueries"},
		{"scalar subquery", "SELECT (SELECT 1), COUNT(*) FROM tax", "", RuleSubquery, 8, "subqueries"},
		{"CTE", "WITH x AS (SELECT 1) SELECT COUNT(*) FROM tax", "", RuleCTE, 1, "WITH"},
		{"window function", "SELECT COUNT(*) OVER (PARTITION BY region) FROM tax", "", RuleWindow, 8, "OVER"},
		{"union", "SELECT COUNT(*) FROM tax UNION ALL SELECT COUNT(*) FROM tax", "", RuleSetOp, 26, "UNION"},
		{"except", "SELECT COUNT(*) FROM tax EXCEPT SELECT COUNT(*) FROM tax", "", RuleSetOp, 26, "EXCEPT"},
		{"select into", "SELECT COUNT(*) INTO copy FROM tax", "", RuleInto, 17, "INTO"},
		{"two statements", "SELECT COUNT(*) FROM tax; SELECT SUM(income) FROM tax", "", RuleOneStatement, 27, "2 statements"},
		{"injection after ;", "SELECT COUNT(*) FROM tax WHERE region = 'a'; DROP TABLE tax; --'", "", RuleOneStatement, 46, "2 statements"},
		{"DDL", "CREATE TABLE x (a int)", "", RuleSelectOnly, 1, "a CREATE statement"},
		{"DML", "DELETE FROM tax", "", RuleSelectOnly, 1, "a DELETE statement"},
		{"update", "UPDATE tax SET income = 0", "", RuleSelectOnly, 1, "a UPDATE statement"},
		{"copy", "COPY tax TO '/tmp/x'", "", RuleSelectOnly, 1, "a COPY statement"},
		// Aggregates.
		{"nested aggregate", "SELECT SUM(AVG(income)) FROM tax", "", RuleNestedAgg, 12, "AVG inside another aggregate"},
		{"product of columns", "SELECT SUM(income * benefits) FROM tax", "", RuleUnbounded, 19, "cannot bound"},
		{"function in an aggregate", "SELECT SUM(ABS(income)) FROM tax", "", RuleUnbounded, 12, "cannot bound"},
		{"CASE over two columns in an aggregate", "SELECT SUM(CASE WHEN age > 30 THEN income ELSE benefits END) FROM tax", "", RuleUnbounded, 48, "reads one column (income and benefits)"},
		{"CASE of constants in SUM", "SELECT SUM(CASE WHEN age > 30 THEN 1 ELSE 0 END) FROM tax", "", RuleAggregate, 12, "COUNT(CASE WHEN ... THEN 1 END)"},
		{"CASE in HISTOGRAM", "SELECT HISTOGRAM(CASE WHEN age > 3 THEN income END, 0, 1, 2) FROM tax", "", RuleUnbounded, 18, "cannot bound"},
		{"CASE of a product", "SELECT SUM(CASE WHEN age > 30 THEN income * benefits END) FROM tax", "", RuleUnbounded, 43, "cannot bound"},
		{"he conditional aggregate", "SELECT SUM(CASE WHEN age > 30 THEN income END) FROM tax", "he", RuleHE, 8, "CASE inside an aggregate"},
		{"division of a constant by a column", "SELECT SUM(1 / income) FROM tax", "", RuleUnbounded, 14, "cannot bound"},
		{"affine two-column aggregate", "SELECT CORR(income * 2, benefits) FROM tax", "", RuleUnbounded, 8, "plain columns"},
		{"unknown function", "SELECT MEDIAN(income) FROM tax", "", RuleFunction, 8, "function MEDIAN is not on the list"},
		{"function over a column", "SELECT region, UPPER(region), COUNT(*) FROM tax GROUP BY region", "", RuleFunction, 16, "function UPPER"},
		{"schema-qualified function", "SELECT evil.sum(income) FROM tax", "", RuleFunction, 8, "not on the list"},
		{"count distinct", "SELECT COUNT(DISTINCT region) FROM tax", "", RuleUnsupported, 8, "DISTINCT"},
		{"aggregate filter", "SELECT COUNT(*) FILTER (WHERE age > 3) FROM tax", "", RuleUnsupported, 8, "FILTER"},
		{"histogram arithmetic", "SELECT HISTOGRAM(income, 0, 10, 2) * 2 FROM tax", "", RuleUnsupported, 8, "HISTOGRAM returns bins"},
		{"histogram bounds", "SELECT HISTOGRAM(income, 5, 1, 3) FROM tax", "", RuleAggregate, 8, "lo < hi"},
		{"arity", "SELECT CORR(income) FROM tax", "", RuleAggregate, 8, "CORR takes 2 column(s)"},
		{"aggregate in WHERE", "SELECT COUNT(*) FROM tax WHERE SUM(income) > 3", "", RuleUnsupported, 32, "aggregates are not allowed in WHERE"},
		// Clauses.
		{"like", "SELECT COUNT(*) FROM tax WHERE region LIKE 'n%'", "", RuleUnsupported, 39, "LIKE"},
		{"cast", "SELECT AVG(income)::int FROM tax", "", RuleUnsupported, 19, "type casts"},
		{"column compared with column", "SELECT COUNT(*) FROM tax WHERE age = household_size", "", RuleUnsupported, 38, "not with another column"},
		{"order by a row-level column", "SELECT region, COUNT(*) FROM tax GROUP BY region ORDER BY income", "", RuleRowLevel, 59, `column "income" is outside GROUP BY`},
		{"alias in HAVING", "SELECT region, COUNT(*) AS n FROM tax GROUP BY region HAVING n > 10", "", RuleUnsupported, 62, "n is an output alias"},
		{"order by bins", "SELECT COUNT(*) FROM tax ORDER BY HISTOGRAM(income, 0, 1, 2)", "", RuleOrderBy, 35, "HISTOGRAM returns bins"},
		{"order by position", "SELECT COUNT(*) FROM tax ORDER BY 3", "", RuleOrderBy, 35, "position 3"},
		{"group by position of an aggregate", "SELECT COUNT(*) FROM tax GROUP BY 1", "", RuleGroupBy, 35, "refers to an aggregate"},
		{"group by an expression", "SELECT COUNT(*) FROM tax GROUP BY age + 1", "", RuleGroupBy, 39, "GROUP BY takes columns"},
		{"group by an alias that is also a column", "SELECT CASE WHEN age > 3 THEN 1 END AS age, COUNT(*) FROM tax GROUP BY age", "masked", RuleGroupBy, 72, "ambiguous"},
		{"group by an alias of a column that is also a column", "SELECT region AS sex, COUNT(*) FROM tax GROUP BY sex", "masked", RuleGroupBy, 50, "ambiguous"},
		{"rollup", "SELECT COUNT(*) FROM tax GROUP BY ROLLUP (region)", "", RuleUnsupported, 35, "grouping sets"},
		{"limit 0", "SELECT COUNT(*) FROM tax LIMIT 0", "", RuleUnsupported, 32, "positive whole number"},
		{"limit expression", "SELECT COUNT(*) FROM tax LIMIT 1 + 1", "", RuleUnsupported, 34, "whole number"},
		{"cross join", "SELECT COUNT(*) FROM tax, benefits", "", RuleJoin, 27, "cross join"},
		{"unknown qualifier", "SELECT x.region, COUNT(*) FROM tax GROUP BY region", "", RuleUnknown, 8, "unknown table x"},
		{"name hidden by alias", "SELECT tax.region, COUNT(*) FROM tax AS t GROUP BY region", "", RuleUnknown, 8, "called t"},
		{"parameter", "SELECT COUNT(*) FROM tax WHERE age > $1", "", RuleUnsupported, 38, "parameters ($1) are not supported"},
		{"deep nesting", "SELECT " + strings.Repeat("ABS(", 100) + "COUNT(*)" + strings.Repeat(")", 100) + " FROM tax", "", RuleUnsupported, 0, "nested more than 64 deep"},
		// Rules of the dataset's schema (CheckQuery).
		{"unknown column", "SELECT region, AVG(incme) FROM tax GROUP BY region", "masked", RuleUnknown, 20, `unknown column "incme"`},
		{"unknown column in WHERE", "SELECT COUNT(*) FROM tax WHERE regio = 'x'", "masked", RuleUnknown, 32, `unknown column "regio"`},
		{"unknown column first", "SELECT incme, COUNT(*) FROM tax GROUP BY incme", "masked", RuleUnknown, 42, `unknown column "incme"`},
		{"sensitive group by", "SELECT income, COUNT(*) FROM tax GROUP BY income", "masked", RuleSensitive, 43, `sensitive column "income" may not be grouped by`},
		{"sensitive CASE result", "SELECT COUNT(*) FROM tax GROUP BY CASE WHEN age > 3 THEN income END", "masked", RuleSensitive, 58, `sensitive column "income"`},
		{"identifier", "SELECT COUNT(*) FROM tax WHERE person_id = 'P1'", "masked", RuleIdentifier, 32, `identifier column "person_id"`},
		{"identifier in CASE", "SELECT COUNT(*) FROM tax GROUP BY CASE WHEN person_id = 'P1' THEN 1 END", "masked", RuleIdentifier, 45, "a CASE"},
		{"min of sensitive", "SELECT MIN(income) FROM tax", "masked", RuleAggregate, 8, "would return an individual's value"},
		{"numeric group by", "SELECT year, COUNT(*) FROM tax GROUP BY year", "masked", RuleGroupBy, 41, "numeric column"},
		{"join on one table", "SELECT COUNT(*) FROM tax AS a JOIN benefits AS b ON a.person_id = b.person_id", "masked", RuleJoin, 36, "a join runs on an executor"},
		{"he filter on encrypted", "SELECT COUNT(*) FROM tax WHERE income > 5", "he", RuleHE, 32, "WHERE reads clear columns only"},
		{"he histogram", "SELECT HISTOGRAM(income, 0, 10, 2) FROM tax", "he", RuleHE, 8, "HISTOGRAM is not available in he mode"},
		{"aggregate of an unbounded column", "SELECT SUM(year) FROM tax", "masked", RuleUnbounded, 8, "no bounds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := ParseQuery(c.sql)
			if err == nil && c.mode != "" {
				err = CheckQuery(q, &schema, c.mode)
			}
			var re *RefusalError
			if !errors.As(err, &re) || !errors.Is(err, ErrRefused) {
				t.Fatalf("got %v, want a refusal (rule %s)", err, c.rule)
			}
			if re.Rule != c.rule || !strings.Contains(re.Msg, c.want) || (c.col > 0 && re.Col != c.col) {
				t.Fatalf("got %v (rule %s, column %d), want rule %s, column %d, %q", err, re.Rule, re.Col, c.rule, c.col, c.want)
			}
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	cases := []struct {
		sql  string
		col  int
		want string
	}{
		{"SELECT COUNT(*) FROM", 21, "syntax error at end of input"},
		{"SELECT SUM(x FROM t", 14, `syntax error at or near "FROM"`},
		{"SELECT COUNT(*) FROM t WHERE x = 'abc", 34, "unterminated quoted string"},
		{"SELECT COUNT(*) FROM t extra words", 30, `syntax error at or near "words"`},
		{"", 1, "empty"},
		{"  -- only a comment", 1, "empty"},
		{"SELECT COUNT(*) FROM t WHERE région = 'é' AND x = @", 52, "syntax error at end of input"},
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			_, err := ParseQuery(c.sql)
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) || !strings.Contains(se.Msg, c.want) || se.Col != c.col {
				t.Errorf("%q: %v, want column %d: %q", c.sql, err, c.col, c.want)
			}
		})
	}
}

// TestHostileInputs: huge, deeply nested, unicode, comments, statements
// and injections. Each is answered quickly with a clear error or parsed
// as PostgreSQL would.
func TestHostileInputs(t *testing.T) {
	deadline := func(t *testing.T, start time.Time) {
		t.Helper()
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
	}
	long := "SELECT COUNT(*) FROM tax WHERE region IN (" + strings.TrimSuffix(strings.Repeat("'north', ", 7000), ", ") + ")"
	cases := []struct {
		name, sql string
		ok        bool
		want      string
	}{
		{"over 64 KB", "SELECT COUNT(*) FROM tax WHERE region = '" + strings.Repeat("a", MaxQueryLen) + "'", false, "limit 65536"},
		{"just under 64 KB", long, true, ""},
		{"parentheses 30000 deep", "SELECT COUNT(*) FROM tax WHERE " + strings.Repeat("(", 30000) + "age = 1" + strings.Repeat(")", 30000), false, ""},
		{"NOT 10000 deep", "SELECT COUNT(*) FROM tax WHERE " + strings.Repeat("NOT ", 10000) + "age = 1", false, ""},
		{"functions 5000 deep", "SELECT " + strings.Repeat("ABS(", 5000) + "COUNT(*)" + strings.Repeat(")", 5000) + " FROM tax", false, ""},
		{"unicode identifiers and strings", "SELECT \"région\", COUNT(*) FROM tax WHERE \"région\" = '北京 ☃' GROUP BY \"région\"", true, ""},
		{"unicode error position", "SELECT '☃☃', COUNT(*) FROM tax WHERE ☃ = ", false, "syntax error at end of input"},
		{"unicode identifier", "SELECT COUNT(*) FROM tax WHERE ☃ = 1", true, ""},
		{"nested comments", "SELECT /* a /* nested */ comment */ COUNT(*) FROM tax -- trailing", true, ""},
		{"unterminated comment", "SELECT COUNT(*) FROM tax /* ", false, "unterminated /* comment"},
		{"; inside a string is a string", "SELECT COUNT(*) FROM tax WHERE region = 'a''; DROP TABLE tax; --'", true, ""},
		{"; in a quoted identifier", `SELECT COUNT(*) FROM "tax; DROP TABLE tax"`, true, ""},
		{"statement after a comment", "SELECT COUNT(*) FROM tax -- x\n; DELETE FROM tax", false, "2 statements"},
		{"empty statements", "SELECT COUNT(*) FROM tax;;;", true, ""},
		{"NUL byte", "SELECT COUNT(*) FROM tax\x00; DROP TABLE tax", false, "NUL"},
		{"invalid UTF-8", "SELECT COUNT(*) FROM tax WHERE region = '\xff'", false, "not valid UTF-8"},
		{"dollar quoting", "SELECT COUNT(*) FROM tax WHERE region = $$a'b$$", true, ""},
		{"escape string", `SELECT COUNT(*) FROM tax WHERE region = E'\x41'`, true, ""},
		{"huge number", "SELECT COUNT(*) FROM tax WHERE age > 1e999", false, "the number 1e999 is out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			q, err := ParseQuery(c.sql)
			deadline(t, start)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				if q.Source != c.sql {
					t.Fatal("source not kept")
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", q)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			checkPosition(t, c.sql, err)
		})
	}
	q, err := ParseQuery("SELECT COUNT(*) FROM tax WHERE region = 'a''; DROP TABLE tax; --'")
	if err != nil || q.Where.(*Compare).Value.Str != "a'; DROP TABLE tax; --" {
		t.Fatalf("%v %+v", err, q)
	}
}

// checkPosition fails unless err is a SyntaxError or RefusalError with a
// column inside the text (or just past its end).
func checkPosition(t testing.TB, src string, err error) {
	t.Helper()
	col := 0
	var se *SyntaxError
	var re *RefusalError
	switch {
	case errors.As(err, &se):
		col = se.Col
	case errors.As(err, &re):
		col = re.Col
		if re.Rule == "" {
			t.Fatalf("refusal without a rule: %v", err)
		}
	default:
		t.Fatalf("error without a position: %v", err)
	}
	if col < 1 || col > utf8.RuneCountInString(src)+1 {
		t.Fatalf("column %d outside the text (%d characters): %v", col, utf8.RuneCountInString(src), err)
	}
}

// FuzzParseQuery: any text parses or fails with a position; what parses
// has a dataset, a select list and an aggregate.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT region, COUNT(*) FROM t WHERE a IN (1,2) AND NOT b BETWEEN 1 AND 2 GROUP BY region ORDER BY 1 DESC LIMIT 3",
		"SELECT HISTOGRAM(x, 0, 1, 4) FROM t", "SELECT * FROM t", "select sum(\"X\") from t where s = 'it''s'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			if len(s) <= MaxQueryLen {
				checkPosition(t, s, err)
			}
			return
		}
		if q.From == "" || len(q.Select) == 0 || len(q.Aggs) == 0 {
			t.Fatalf("accepted without a dataset, select list or aggregate: %q", s)
		}
	})
}

// FuzzCheckQuery: the checker over the demo schema, in both modes. A
// refusal has a rule and a position; an accepted query's plan is derived
// again identically, reads only the schema's non-identifier columns, and
// runs on a small table without failing in an unexpected way.
func FuzzCheckQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT t.region AS r, COUNT(*) AS n, ROUND(AVG(income) / 1000, 1) FROM tax AS t WHERE age >= 30 GROUP BY 1 HAVING COUNT(*) > 5 ORDER BY n DESC LIMIT 3",
		"SELECT CASE WHEN age >= 60 THEN 'senior' ELSE 'other' END AS band, sex, SUM(income * 2 + 1) FROM tax GROUP BY 1, sex",
		"SELECT POWER(STDDEV(benefits), 2), LEAST(AVG(income), 1), COALESCE(NULL, COUNT(income)) FROM tax",
		"SELECT region, CASE region WHEN 'north' THEN 1 ELSE 0 END, COUNT(*) FROM tax GROUP BY region ORDER BY 2, 1 OFFSET 1",
		"SELECT COUNT(*) FROM tax AS a JOIN benefits AS b USING (person_id)",
		"SELECT income, COUNT(*) FROM tax GROUP BY income",
		"SELECT SUM(SUM(income)) FROM tax",
		"SELECT COUNT(*) FROM tax; DROP TABLE tax",
		"SELECT HISTOGRAM(income, 0, 100000, 4), CORR(income, benefits) FROM tax WHERE region IN ('north', 'south')",
	} {
		f.Add(s)
	}
	schema := DemoSchema()
	tb, _ := demoTable(f, 200)
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			if len(s) <= MaxQueryLen {
				checkPosition(t, s, err)
			}
			return
		}
		for _, mode := range []string{policies.ModeMasked, policies.ModeHE} {
			if err := CheckQuery(q, &schema, mode); err != nil {
				var re *RefusalError
				if !errors.As(err, &re) {
					t.Fatalf("%s: a refusal that is not a RefusalError: %v", mode, err)
				}
				checkPosition(t, s, err)
				continue
			}
			p := q.Plan()
			ds, p2, err := DerivePlan(s)
			b1, _ := json.Marshal(p)
			b2, _ := json.Marshal(p2)
			if err != nil || ds != q.From || string(b1) != string(b2) {
				t.Fatalf("the plan is not derived again: %s vs %s (%v)", b1, b2, err)
			}
			for _, cols := range [][]string{p.GroupBy, p.Filter, p.Case} {
				for _, c := range cols {
					if col, ok := schema.Column(c); !ok || col.Class == policies.Identifier {
						t.Fatalf("accepted a plan reading %q", c)
					}
				}
			}
			if mode == policies.ModeMasked {
				res, err := Execute(t.Context(), tb, q, Control{MinGroupSize: 1, Epsilon: 1}, DefaultLimits())
				if err != nil && !errors.Is(err, ErrRefused) && !errors.Is(err, ErrLimit) {
					t.Fatalf("execute: %v", err)
				}
				if err == nil && len(res.Columns) != len(q.Select) {
					t.Fatalf("%d columns for %d items", len(res.Columns), len(q.Select))
				}
			}
		}
	})
}

// The api and the runner parse concurrently: libpg_query keeps its state
// per thread, and the same text gives the same plan every time.
func TestParseConcurrently(t *testing.T) {
	src := query10KB()
	q, err := ParseQuery(src)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(q.Plan())
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 20 {
				q, err := ParseQuery(src)
				if err != nil {
					errs <- err
					return
				}
				if got, _ := json.Marshal(q.Plan()); string(got) != string(want) {
					errs <- errors.New("a different plan: " + string(got))
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
