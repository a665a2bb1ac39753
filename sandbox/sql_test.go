package sandbox

import (
	"errors"
	"strings"
	"testing"
)

func TestParseQuery(t *testing.T) {
	q, err := ParseQuery(`SELECT region, COUNT(*) AS n, AVG(income), CORR(income, age), HISTOGRAM(income, 0, 100000, 10)
		FROM Tax2025 WHERE (region IN ('north', 'south') OR age BETWEEN 30 AND 39) AND NOT income < -5.5e2
		GROUP BY region ORDER BY n DESC, 1 LIMIT 20;`)
	if err != nil {
		t.Fatal(err)
	}
	if q.From != "tax2025" || len(q.Select) != 5 || q.Select[1].Alias != "n" || q.Limit != 20 || len(q.OrderBy) != 2 || !q.OrderBy[0].Desc {
		t.Fatalf("%+v", q)
	}
	if h := q.Select[4].Agg; h.Func != "histogram" || h.Params[2] != 10 {
		t.Fatalf("histogram %+v", h)
	}
	if got := strings.Join(q.FilterColumns(), ","); got != "age,income,region" {
		t.Fatalf("filter columns %s", got)
	}
}

func TestParseQueryErrors(t *testing.T) {
	cases := []struct{ sql, want string }{
		{"SELECT * FROM t", "column 8: SELECT * would return row-level values"},
		{"SELECT income FROM t", `column "income" is outside GROUP BY`},
		{"SELECT region FROM t GROUP BY region", "computes no aggregate"},
		{"SELECT COUNT(*) FROM", "column 21: expected a dataset name, found end of query"},
		{"SELECT MEDIAN(x) FROM t", "column 8: unknown function MEDIAN"},
		{"SELECT SUM(x FROM t", `column 14: expected ), found "from"`},
		{"SELECT CORR(x) FROM t", "expected , (CORR takes 2 columns)"},
		{"SELECT COUNT(*) FROM t WHERE x = ", "expected a number or a 'string', found end of query"},
		{"SELECT COUNT(*) FROM t WHERE x LIKE 'a'", `expected a comparison (= <> < <= > >=), IN or BETWEEN, found "like"`},
		{"SELECT COUNT(*) FROM t LIMIT 0", "positive whole number after LIMIT"},
		{"SELECT COUNT(*) FROM t WHERE x = 'abc", "unterminated string"},
		{"SELECT COUNT(*) FROM t extra", `column 24: expected end of query, found "extra"`},
		{"SELECT HISTOGRAM(x, 5, 1, 3) FROM t", "HISTOGRAM needs lo < hi"},
		{"SELECT COUNT(*) FROM t WHERE " + strings.Repeat("(", 100) + "x = 1" + strings.Repeat(")", 100), "nested more than 64 deep"},
		{"SELECT COUNT(*) FROM t WHERE x @ 1", "unexpected character '@'"},
	}
	for _, c := range cases {
		_, err := ParseQuery(c.sql)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: %v, want %q", c.sql, err, c.want)
		}
	}
}

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
			var se *SyntaxError
			if !errors.As(err, &se) || se.Col < 1 || se.Col > len(s)+1 {
				t.Fatalf("error without a valid position: %v", err)
			}
			return
		}
		if q.From == "" || len(q.Select) == 0 {
			t.Fatalf("empty query accepted: %q", s)
		}
	})
}
