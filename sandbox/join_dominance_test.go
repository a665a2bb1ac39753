package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
)

// Dominance in a join is judged per person: one person's rows are summed
// before the (n, k) rule compares the largest contributions with the
// cell's total. Thirty people receive 100 each; one more, D, has four
// benefit rows of 1000. No row exceeds half the cell's total (1000 of
// 7000), but D's 4000 does, so the cell is suppressed when D's four rows
// all count (max_rows_per_person 4). With one row of D (max 1), D's
// contribution is 1000 of 4000: released.
func TestJoinDominancePerPerson(t *testing.T) {
	var tb, bb bytes.Buffer
	tb.WriteString("person_id,household,region,income\n")
	bb.WriteString("person_id,kind,benefit\n")
	for i := range 31 {
		id := fmt.Sprintf("P%07d", i)
		fmt.Fprintf(&tb, "%s,H%d,r1,%d\n", id, i, 1000+i)
		if i < 30 {
			fmt.Fprintf(&bb, "%s,housing,100\n", id)
			continue
		}
		for range 4 {
			fmt.Fprintf(&bb, "%s,housing,1000\n", id)
		}
	}
	prf := &fakePRF{}
	f := &joinFixture{
		tax: loadJoinTable(t, prf, tb.Bytes(), taxJoinSchema, "tax2025"),
		ben: loadJoinTable(t, prf, bb.Bytes(), benefitJoinSchema, "benefits2025"),
	}
	q, err := ParseQuery("SELECT b.kind, COUNT(*), SUM(b.benefit) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id GROUP BY b.kind")
	if err != nil {
		t.Fatal(err)
	}
	dom := &policies.Dominance{N: 1, K: 0.5}
	cases := []struct {
		name       string
		maxRows    int
		dom        *policies.Dominance
		suppressed int
		sum        float64
	}{
		{"four rows of one person dominate", 4, dom, 1, 0},
		{"without the rule the cell is released", 4, nil, 0, 7000},
		{"one row of that person does not dominate", 1, dom, 0, 4000},
		{"two largest people under n=2, k=0.55", 4, &policies.Dominance{N: 2, K: 0.55}, 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctl := Control{MinGroupSize: 10, Dominance: c.dom, NoNoise: true}
			res, err := ExecuteJoin(context.Background(), q, f.parts(t, q, []byte("k"), c.maxRows), ctl, DefaultLimits(), []byte("sel"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Suppressed != c.suppressed {
				t.Fatalf("suppressed %d, want %d: %v", res.Suppressed, c.suppressed, res.Rows)
			}
			if c.suppressed == 0 && (len(res.Rows) != 1 || !near(res.Rows[0][2].(float64), c.sum)) {
				t.Fatalf("rows %v, want one cell summing %g", res.Rows, c.sum)
			}
		})
	}
}
