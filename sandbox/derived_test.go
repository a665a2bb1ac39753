package sandbox

import (
	"math"
	"testing"
)

// An output column computed from one aggregate states the image of the
// aggregate's interval; one computed from two aggregates, or outside its
// domain inside the interval, states none.
func TestDerivedNoise(t *testing.T) {
	agg := func(i int) Scalar { return AggRef{I: i} }
	lit := func(f float64) Scalar { return Lit{V: Value{Num: f}} }
	stmts := []*Noise{
		{Mechanism: "laplace", CI95: &[2]float64{90, 110}},
		{Mechanism: "laplace", CI95: &[2]float64{-4, 9}},
	}
	aggs := []any{100.0, 2.0}
	cases := []struct {
		name   string
		e      Scalar
		lo, hi float64
		none   bool
	}{
		{"affine", Op{Op: "-", Args: []Scalar{lit(1000), Op{Op: "*", Args: []Scalar{agg(0), lit(2)}}}}, 780, 820, false},
		{"round", Call{Func: "round", Args: []Scalar{agg(0)}}, 90, 110, false},
		{"sqrt", Call{Func: "sqrt", Args: []Scalar{agg(0)}}, math.Sqrt(90), math.Sqrt(110), false},
		{"abs across 0", Call{Func: "abs", Args: []Scalar{agg(1)}}, 0, 9, false},
		{"square across 0", Call{Func: "power", Args: []Scalar{agg(1), lit(2)}}, 0, 81, false},
		{"two aggregates", Op{Op: "/", Args: []Scalar{agg(0), agg(1)}}, 0, 0, true},
		{"division by an interval holding 0", Op{Op: "/", Args: []Scalar{lit(1), agg(1)}}, 0, 0, true},
		{"log of an interval holding 0", Call{Func: "ln", Args: []Scalar{agg(1)}}, 0, 0, true},
		{"modulo", Op{Op: "%", Args: []Scalar{agg(0), lit(7)}}, 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := derivedNoise(c.e, stmts, aggs, nil)
			if c.none {
				if st != nil {
					t.Fatalf("stated %v", st.CI95)
				}
				return
			}
			if st == nil || st.CI95 == nil {
				t.Fatal("no statement")
			}
			if math.Abs(st.CI95[0]-c.lo) > 1e-9 || math.Abs(st.CI95[1]-c.hi) > 1e-9 {
				t.Fatalf("interval %v, want [%g, %g]", *st.CI95, c.lo, c.hi)
			}
		})
	}
}
