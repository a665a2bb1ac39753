package sandbox

import (
	"errors"
	"strings"
	"testing"
)

func TestPosition(t *testing.T) {
	cases := []struct {
		src, clause, name string
		want              int
	}{
		{"SELECT regon, COUNT(*) FROM t GROUP BY regon", inGroupBy, "regon", 40},
		{"SELECT regon, COUNT(*) FROM t GROUP BY regon", inSelect, "regon", 8},
		{"SELECT COUNT(*) FROM t WHERE s = 'regon' AND regon = 1", inWhere, "regon", 46},
		{`SELECT SUM("Income") FROM t`, inSelect, "income", 12}, // the opening quote,
		{"SELECT COUNT(*) FROM t WHERE a = 'it''s' AND b = 2", inWhere, "b", 46},
		{"SELECT COUNT(*) FROM t", inWhere, "nope", 0},
	}
	for _, c := range cases {
		t.Run(c.src, func(t *testing.T) {
			if got := position(c.src, c.clause, c.name); got != c.want {
				t.Fatalf("position %d, want %d", got, c.want)
			}
		})
	}
}

// FuzzCheckQuery: any query that parses is either accepted by Check on
// the demo schema or refused with a RefusalError whose position lies in the
// query text.
func FuzzCheckQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT region, COUNT(*) FROM tax GROUP BY region",
		"SELECT regon, COUNT(*) FROM tax GROUP BY regon",
		"SELECT MIN(income) FROM tax WHERE person_id = 'x'",
		`SELECT SUM("income") FROM tax WHERE region = 'it''s' GROUP BY person_id`,
	} {
		f.Add(s)
	}
	schema := DemoSchema()
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			return
		}
		err = Check(q, &schema)
		if err == nil {
			return
		}
		var re *RefusalError
		if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || re.Pos < 0 || re.Pos > len(s) {
			t.Fatalf("refusal without a valid position: %v", err)
		}
	})
}

func TestCheckRefusesWithPositions(t *testing.T) {
	schema := DemoSchema()
	cases := []struct {
		sql, want string
		pos       int
	}{
		{"SELECT regon, COUNT(*) FROM tax GROUP BY regon", `unknown column "regon" in GROUP BY`, 42},
		{"SELECT COUNT(*) FROM tax WHERE regon = 'x'", `unknown column "regon" in WHERE`, 32},
		{"SELECT AVG(incme) FROM tax", `unknown column "incme" in an aggregate`, 12},
		{"SELECT MAX(benefits) FROM tax", `MAX of sensitive column "benefits"`, 12},
		{"SELECT person_id, COUNT(*) FROM tax GROUP BY person_id", `identifier column "person_id" may not be used in GROUP BY`, 46},
		{"SELECT region, COUNT(*) AS n FROM tax GROUP BY region ORDER BY people", `ORDER BY people: not an output column (the output columns: region, n)`, 64},
		{"SELECT region, COUNT(*) FROM tax GROUP BY region ORDER BY 3", `ORDER BY 3: there are 2 output columns`, 0},
		{"SELECT region, COUNT(*) AS n FROM tax GROUP BY region ORDER BY n DESC", "", 0},
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			q, err := ParseQuery(c.sql)
			if err != nil {
				t.Fatal(err)
			}
			err = Check(q, &schema)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var re *RefusalError
			if !errors.As(err, &re) || !strings.Contains(re.Msg, c.want) || re.Pos != c.pos {
				t.Fatalf("got %v, want %q at %d", err, c.want, c.pos)
			}
		})
	}
	// A bare column outside GROUP BY is a syntax error at the column.
	_, err := ParseQuery("SELECT COUNT(*), region FROM tax")
	var se *SyntaxError
	if !errors.As(err, &se) || se.Col != 18 {
		t.Fatalf("got %v, want a syntax error at 18", err)
	}
}
