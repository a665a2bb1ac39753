package sandbox

import (
	"errors"
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
