package sandbox

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
)

var testKey = bytes.Repeat([]byte{7}, 32)

type rec struct {
	age, hh          float64
	sex, region      string
	income, benefits float64
}

// demoTable ingests n generated rows and parses the same CSV for the
// reference computations (with the same generalisation and clamping).
func demoTable(t testing.TB, n int) (*Table, []rec) {
	t.Helper()
	buf := bytes.NewBuffer(demoCSV(t, n))
	schema := DemoSchema()
	dir := filepath.Join(t.TempDir(), "tax")
	res, err := Ingest(context.Background(), bytes.NewReader(buf.Bytes()), &schema, testKey, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != int64(n) {
		t.Fatalf("rows %d", res.Rows)
	}
	tb, err := LoadTable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(bytes.NewReader(buf.Bytes()))
	all, _ := r.ReadAll()
	var recs []rec
	for _, f := range all[1:] {
		age, _ := strconv.ParseFloat(f[1], 64)
		hh, _ := strconv.ParseFloat(f[4], 64)
		inc, _ := strconv.ParseFloat(f[5], 64)
		ben, _ := strconv.ParseFloat(f[6], 64)
		recs = append(recs, rec{age: math.Floor(age/10) * 10, hh: hh, sex: f[2], region: f[3], income: inc, benefits: ben})
	}
	return tb, recs
}

// demoCSV is n generated demo records (seed 42).
func demoCSV(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := GenerateDemo(&buf, n, 42); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func run(t testing.TB, tb *Table, sql string, ctl Control) (*Result, error) {
	t.Helper()
	q, err := ParseQuery(sql)
	if err != nil {
		return nil, err
	}
	return Execute(context.Background(), tb, q, ctl, DefaultLimits())
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func TestEngineMatchesReference(t *testing.T) {
	tb, recs := demoTable(t, 20000)
	res, err := run(t, tb, `SELECT region, sex, COUNT(*), SUM(income), AVG(income), VAR(income), STDDEV(benefits),
		CORR(income, benefits), REGR_SLOPE(benefits, income), REGR_INTERCEPT(benefits, income), HISTOGRAM(income, 0, 200000, 8)
		FROM tax WHERE age >= 30 AND region IN ('north', 'south', 'capital') AND NOT household_size BETWEEN 5 AND 7
		GROUP BY region, sex ORDER BY region, sex`, Control{MinGroupSize: 1, NoNoise: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 6 {
		t.Fatalf("%d rows", len(res.Rows))
	}
	for _, row := range res.Rows {
		region, sex := row[0].(string), row[1].(string)
		var n, sx, sxx, sb, sbb, sxb float64
		hist := make([]float64, 8)
		for _, r := range recs {
			if r.region != region || r.sex != sex || r.age < 30 || (r.hh >= 5 && r.hh <= 7) {
				continue
			}
			n++
			sx += r.income
			sxx += r.income * r.income
			sb += r.benefits
			sbb += r.benefits * r.benefits
			sxb += r.income * r.benefits
			if r.income < 200000 {
				hist[int(r.income/25000)]++
			}
		}
		mx, mb := sx/n, sb/n
		vx, vb := sxx/n-mx*mx, sbb/n-mb*mb
		cov := sxb/n - mx*mb
		want := []float64{n, sx, mx, vx, math.Sqrt(vb), cov / math.Sqrt(vx*vb), cov / vx, mb - cov/vx*mx}
		for i, w := range want {
			if got := row[2+i].(float64); !near(got, w) {
				t.Errorf("%s/%s %s = %v, want %v", region, sex, res.Columns[2+i], got, w)
			}
		}
		got := row[10].([]float64)
		if len(got) != 8 {
			t.Fatalf("histogram %v", got)
		}
		for b := range hist {
			if got[b] != hist[b] {
				t.Errorf("%s/%s histogram bin %d = %v, want %v", region, sex, b, got[b], hist[b])
			}
		}
	}
	if res.Suppressed != 0 {
		t.Fatalf("suppressed %d", res.Suppressed)
	}
}

func TestNoiseWithinStatedBounds(t *testing.T) {
	tb, recs := demoTable(t, 20000)
	eps := 1.0
	res, err := run(t, tb, "SELECT region, COUNT(*), AVG(income) FROM tax GROUP BY region", Control{MinGroupSize: 10, Epsilon: eps})
	if err != nil {
		t.Fatal(err)
	}
	// Three noisy quantities per cell (count; avg = sum and count): each
	// gets eps/3. Laplace: P(|noise| > b ln 1000) = 0.001 per cell. With 16
	// cells one may exceed it now and then (1.6% of runs); two would happen
	// in about 1 run in 10,000, so that is what fails the test.
	b := 1 / (eps / 3)
	beyond := 0
	for _, row := range res.Rows {
		n := 0.0
		for _, r := range recs {
			if r.region == row[0] {
				n++
			}
		}
		if got := row[1].(float64); math.Abs(got-n) > b*math.Log(1000)+0.5 {
			beyond++
			t.Logf("%s: noisy count %v, true %v: beyond the 99.9%% bound %.1f", row[0], got, n, b*math.Log(1000))
		}
	}
	if beyond > 1 {
		t.Fatalf("%d of %d cells beyond the 99.9%% bound", beyond, len(res.Rows))
	}
	if res.EpsilonSpent != eps {
		t.Fatalf("epsilon spent %v", res.EpsilonSpent)
	}
}

// Each attack must fail to recover an individual's value.
func TestAttackSuite(t *testing.T) {
	tb, recs := demoTable(t, 5000)
	ctl := Control{MinGroupSize: 10, Dominance: &policies.Dominance{N: 1, K: 0.5}, Epsilon: 0.5}
	refused := []struct{ name, sql, want string }{
		{"select star", "SELECT * FROM tax", "row-level"},
		{"bare sensitive column", "SELECT income FROM tax", "outside GROUP BY"},
		{"filter on the identifier", "SELECT COUNT(*) FROM tax WHERE person_id = 'P00000001'", `identifier column "person_id"`},
		{"group by the identifier", "SELECT person_id, COUNT(*) FROM tax GROUP BY person_id", `identifier column "person_id"`},
		{"min of a sensitive column", "SELECT MIN(income) FROM tax", "would return an individual's value"},
		{"max of a sensitive column", "SELECT region, MAX(benefits) FROM tax GROUP BY region", "would return an individual's value"},
		{"group by a sensitive column", "SELECT income, COUNT(*) FROM tax GROUP BY income", `sensitive column "income"`},
		{"huge histogram", "SELECT HISTOGRAM(income, 0, 1000000, 100000) FROM tax", "limit 1000"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			_, err := run(t, tb, c.sql, ctl)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want refusal %q", err, c.want)
			}
		})
	}
	// A person with a unique combination of quasi-identifiers.
	var target rec
	found := false
	for _, r := range recs {
		n := 0
		for _, o := range recs {
			if o.region == r.region && o.sex == r.sex && o.age == r.age && o.hh == r.hh {
				n++
			}
		}
		if n == 1 {
			target, found = r, true
			break
		}
	}
	if !found {
		t.Fatal("no unique person in the sample")
	}
	isolate := "region = '" + target.region + "' AND sex = '" + target.sex + "' AND age = " + strconv.FormatFloat(target.age, 'f', -1, 64) +
		" AND household_size = " + strconv.FormatFloat(target.hh, 'f', -1, 64)
	t.Run("group of one / narrow filter", func(t *testing.T) {
		res, err := run(t, tb, "SELECT SUM(income) FROM tax WHERE "+isolate, ctl)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != 0 || res.Suppressed != 1 {
			t.Fatalf("a one-person cell was released: %+v", res)
		}
	})
	t.Run("differencing pair, averaged until the budget stops it", func(t *testing.T) {
		// The policy allows 10 queries of 0.5 in a budget of 5: 5 pairs.
		close := 0
		const trials = 40
		for trial := 0; trial < trials; trial++ {
			est := 0.0
			for pair := 0; pair < 5; pair++ {
				all, err := run(t, tb, "SELECT SUM(income) FROM tax", ctl)
				if err != nil {
					t.Fatal(err)
				}
				without, err := run(t, tb, "SELECT SUM(income) FROM tax WHERE NOT ("+isolate+")", ctl)
				if err != nil {
					t.Fatal(err)
				}
				est += all.Rows[0][0].(float64) - without.Rows[0][0].(float64)
			}
			est /= 5
			if math.Abs(est-target.income) < 0.1*target.income {
				close++
			}
		}
		if close > trials/10 {
			t.Fatalf("the differencing attack came within 10%% of the income in %d of %d trials", close, trials)
		}
	})
}

func TestBadCSV(t *testing.T) {
	schema := DemoSchema()
	head := "person_id,age,sex,region,household_size,income,benefits,year\n"
	good := "P1,30,F,north,2,50000,100,2025\n"
	cases := []struct{ name, data, want string }{
		{"column count", head + good + "P2,31,F,north,2,50000\n", "line 3: wrong number of columns"},
		{"non-numeric", head + good + good + "P3,abc,F,north,2,50000,100,2025\n", `line 4, column "age": "abc" is not a number`},
		{"not whole", head + "P3,30.5,F,north,2,50000,100,2025\n", `line 2, column "age": "30.5" is not a whole number`},
		{"invalid utf-8", head + "P3,30,\xff\xfe,north,2,50000,100,2025\n", `line 2, column "sex": not valid UTF-8`},
		{"long line", head + good + "P3,30,F," + strings.Repeat("n", MaxLine+10) + ",2,1,1,2025\n", "line 3: line longer than"},
		{"missing header column", "person_id,age\n", "header has 2 columns"},
		{"empty", "", "empty file"},
		{"empty value", head + "P3,,F,north,2,50000,100,2025\n", `column "age": empty value`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tax")
			_, err := Ingest(context.Background(), strings.NewReader(c.data), &schema, testKey, dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrBadData) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatal("a failed ingest left data behind")
			}
			if _, err := os.Stat(dir + ".ingest"); !os.IsNotExist(err) {
				t.Fatal("a failed ingest left its work directory")
			}
		})
	}
}

func TestPseudonymsAreKeyedAndStable(t *testing.T) {
	schema := DemoSchema()
	data := "person_id,age,sex,region,household_size,income,benefits,year\nP1,30,F,north,2,50000,100,2025\n"
	pseudo := func(key []byte) []byte {
		dir := filepath.Join(t.TempDir(), "d")
		if _, err := Ingest(context.Background(), strings.NewReader(data), &schema, key, dir); err != nil {
			t.Fatal(err)
		}
		tb, _ := LoadTable(dir, nil)
		return tb.Cols["person_id"].Pseudo
	}
	a, b := pseudo(testKey), pseudo(testKey)
	c := pseudo(bytes.Repeat([]byte{8}, 32))
	if !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Contains(a, []byte("P1")) {
		t.Fatal("pseudonyms must be stable under one key, differ across keys, and hide the value")
	}
}

func FuzzIngestCSV(f *testing.F) {
	f.Add([]byte("person_id,age,sex,region,household_size,income,benefits,year\nP1,30,F,north,2,50000,100,2025\n"))
	f.Add([]byte("a,b\n\"x\n"))
	schema := DemoSchema()
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := filepath.Join(t.TempDir(), "d")
		res, err := Ingest(context.Background(), bytes.NewReader(b), &schema, testKey, dir)
		if err != nil {
			if !errors.Is(err, ErrBadData) {
				t.Fatalf("error without the bad-data sentinel: %v", err)
			}
			return
		}
		if _, err := LoadTable(dir, nil); err != nil || res.Rows < 0 {
			t.Fatalf("ingested data does not load: %v", err)
		}
	})
}

func TestDemoPolicyValid(t *testing.T) {
	if _, err := policies.ParsePolicy(DemoPolicy("tax2025")); err != nil {
		t.Fatal(err)
	}
	s := DemoSchema()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}
