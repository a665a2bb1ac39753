package sandbox

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/datasandbox/datasandbox/policies"
)

// DemoSchema is the schema of the synthetic tax records GenerateDemo
// writes.
func DemoSchema() policies.Schema {
	return policies.Schema{Columns: []policies.Column{
		{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier},
		{Name: "age", Type: policies.TypeInt, Class: policies.QuasiIdentifier, Generalize: &policies.Generalize{Band: 10}},
		{Name: "sex", Type: policies.TypeString, Class: policies.QuasiIdentifier},
		{Name: "region", Type: policies.TypeString, Class: policies.Public},
		{Name: "household_size", Type: policies.TypeInt, Class: policies.QuasiIdentifier, Generalize: &policies.Generalize{Band: 1}},
		{Name: "income", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 1000000}},
		{Name: "benefits", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 100000}},
		{Name: "year", Type: policies.TypeInt, Class: policies.Public},
	}}
}

// DemoRegions are the regions of the synthetic data (16, as the bench's
// GROUP BY expects).
var DemoRegions = []string{"north", "south", "east", "west", "central", "coast", "highlands", "lakes",
	"valley", "plains", "islands", "capital", "harbour", "forest", "delta", "border"}

// GenerateDemo writes n synthetic tax records as CSV, the same for the
// same seed: ages 18-90, household sizes 1-7, incomes log-normal with
// regional levels rising with age to 60 and falling after, benefits higher
// for low incomes and large households.
func GenerateDemo(w io.Writer, n int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintln(bw, "person_id,age,sex,region,household_size,income,benefits,year")
	level := make([]float64, len(DemoRegions))
	for i := range level {
		level[i] = 38000 + float64(i%5)*4500 + float64(i/5)*2500
	}
	for i := 1; i <= n; i++ {
		age := 18 + int(math.Min(72, math.Abs(r.NormFloat64()*18+28)))
		sex := "F"
		if r.IntN(2) == 0 {
			sex = "M"
		}
		reg := r.IntN(len(DemoRegions))
		hh := 1 + int(math.Min(6, math.Abs(r.NormFloat64()*1.6)))
		ageFactor := 0.55 + math.Min(float64(age-18), 42)/60
		if age > 65 {
			ageFactor *= 0.7
		}
		income := level[reg] * ageFactor * math.Exp(r.NormFloat64()*0.5)
		income = math.Min(income, 999999)
		benefits := math.Max(0, (30000-income)*0.25+float64(hh-1)*1800+r.NormFloat64()*800)
		benefits = math.Min(benefits, 99999)
		fmt.Fprintf(bw, "P%08d,%d,%s,%s,%d,%.2f,%.2f,%d\n", i, age, sex, DemoRegions[reg], hh, income, benefits, 2025)
	}
	return bw.Flush()
}

// DemoPolicy is a policy for the demo dataset of that name: enterprises may
// compute statistics of income and benefits by region, age band, sex and
// household size, for credit risk statistics, 0.5 epsilon per query out of
// 5, cells of at least 10 people, no single person above half a cell.
func DemoPolicy(dataset string) []byte {
	return []byte(`{"dataset": "` + dataset + `", "grantees": ["role:enterprise"], "purpose": "credit risk statistics",
 "modes": ["masked", "he"],
 "aggregates": {"income": ["count", "sum", "avg", "var", "stddev", "corr", "regr_slope", "regr_intercept", "histogram"],
                "benefits": ["count", "sum", "avg", "var", "stddev", "corr", "regr_slope", "regr_intercept", "histogram"]},
 "group_by": ["region", "age", "sex", "household_size"], "filter": ["region", "age", "sex", "household_size", "year"],
 "min_group_size": 10, "dominance": {"n": 1, "k": 0.5},
 "dp": {"epsilon_per_query": 0.5, "epsilon_budget": 5.0, "delta": 1e-6},
 "approval": {"mode": "auto"}, "expires": "2030-12-31T00:00:00Z"}`)
}
