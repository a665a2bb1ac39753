package sandbox

import (
	"bytes"
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// heFixture is a test-only single-key stand-in for the consortium's
// collective key (mpc/ tests the threshold ceremony itself).
type heFixture struct {
	sk   *rlwe.SecretKey
	keys *HEKeys
}

func newHEFixture(t testing.TB) *heFixture {
	t.Helper()
	params := HEParams()
	kg := rlwe.NewKeyGenerator(params)
	sk := kg.GenSecretKeyNew()
	keys := &HEKeys{PK: kg.GenPublicKeyNew(sk)}
	for _, g := range HEGaloisElements() {
		keys.Galois = append(keys.Galois, kg.GenGaloisKeyNew(g, sk))
	}
	return &heFixture{sk: sk, keys: keys}
}

// decrypt returns the coefficients of a result (test: with the single key).
func (f *heFixture) decrypt(ct *rlwe.Ciphertext) []uint64 {
	params := HEParams()
	pt := rlwe.NewDecryptor(params, f.sk).DecryptNew(ct)
	params.RingQ().AtLevel(0).INTT(pt.Value, pt.Value)
	return pt.Value.Coeffs[0]
}

func heDemo(t testing.TB, n int, f *heFixture) (*Table, *heData, []rec) {
	t.Helper()
	var buf bytes.Buffer
	if err := GenerateDemo(&buf, n, 42); err != nil {
		t.Fatal(err)
	}
	schema := DemoSchema()
	dir := filepath.Join(t.TempDir(), "tax")
	if _, err := IngestEncrypted(context.Background(), bytes.NewReader(buf.Bytes()), &schema, testKey, dir, f.keys.PK); err != nil {
		t.Fatal(err)
	}
	tb, err := LoadTable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tb.Cols["income"]; ok {
		t.Fatal("an encrypted column is stored in the clear")
	}
	d, err := loadHE(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, recs := demoTable(t, n)
	return tb, d, recs
}

func TestHEMatchesMasked(t *testing.T) {
	f := newHEFixture(t)
	const n = 20000
	tb, d, _ := heDemo(t, n, f)
	plain, _ := demoTable(t, n)
	for _, sql := range []string{
		`SELECT region, sex, COUNT(*), SUM(income), AVG(income), VAR(income), STDDEV(benefits),
		CORR(income, benefits), REGR_SLOPE(benefits, income), REGR_INTERCEPT(benefits, income)
		FROM tax WHERE age >= 30 AND region IN ('north', 'south', 'capital') AND NOT household_size BETWEEN 5 AND 7
		GROUP BY region, sex ORDER BY region, sex`,
		`SELECT SUM(income) FROM tax`,
		`SELECT COUNT(*) FROM tax WHERE age > 40`,
		`SELECT region, AVG(benefits) FROM tax GROUP BY region ORDER BY region`,
	} {
		q, err := ParseQuery(sql)
		if err != nil {
			t.Fatal(err)
		}
		ctl := Control{MinGroupSize: 1, NoNoise: true}
		ct, lay, st, err := HEEvaluate(context.Background(), tb, d, f.keys, q, ctl, DefaultLimits())
		if err != nil {
			t.Fatal(sql, err)
		}
		cols, rows, err := DecodeHEResult(lay, f.decrypt(ct), HEParams().Q()[0])
		if err != nil {
			t.Fatal(err)
		}
		ref, err := Execute(context.Background(), plain, q, ctl, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(ref.Rows) || len(cols) != len(ref.Columns) {
			t.Fatalf("%s: %d rows, reference %d", sql, len(rows), len(ref.Rows))
		}
		worst := 0.0
		for i := range rows {
			for j := range rows[i] {
				a, aok := rows[i][j].(float64)
				b, bok := ref.Rows[i][j].(float64)
				if !aok || !bok {
					if rows[i][j] != ref.Rows[i][j] {
						t.Fatalf("%s: cell %d,%d: %v, reference %v", sql, i, j, rows[i][j], ref.Rows[i][j])
					}
					continue
				}
				// Stated bound: counts are exact; sums and means within
				// 1e-6 relative (encryption, mask and key-switch noise at
				// scale 2^36 against values normalised to |x/B| ≤ 1);
				// second moments (VAR, STDDEV, CORR, REGR_*) within 1e-4,
				// since E[x²]−E[x]² cancels most of the digits.
				bound := 1e-6
				switch {
				case strings.HasPrefix(cols[j], "var"), strings.HasPrefix(cols[j], "stddev"), strings.HasPrefix(cols[j], "corr"), strings.HasPrefix(cols[j], "regr"):
					bound = 1e-4
				case strings.HasPrefix(cols[j], "count"):
					bound = 0
				}
				rel := math.Abs(a-b) / math.Max(1, math.Abs(b))
				worst = max(worst, rel)
				if rel > bound {
					t.Errorf("%s: cell %d,%d (%s): he %v, reference %v", sql, i, j, cols[j], a, b)
				}
			}
		}
		t.Logf("%s\n  cells %d, ciphertexts %d, masks %d, evaluate %v, pack %v, worst relative error %.2e (bounds: counts exact, sums and means 1e-6, second moments 1e-4)",
			sql[:min(40, len(sql))], len(rows), st.Ciphertexts, st.Masks, st.Evaluate, st.Pack, worst)
	}
}
