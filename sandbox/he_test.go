package sandbox

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// heFixture is a test-only single-key stand-in for the consortium's
// collective key (mpc/ tests the threshold ceremony itself).
type heFixture struct {
	sk   *rlwe.SecretKey
	keys *HEKeys
}

func newHEFixture(t testing.TB) *heFixture {
	t.Helper()
	params := heparams.Params()
	kg := rlwe.NewKeyGenerator(params)
	sk := kg.GenSecretKeyNew()
	keys := &HEKeys{PK: kg.GenPublicKeyNew(sk)}
	for _, g := range heparams.GaloisElements() {
		keys.Galois = append(keys.Galois, kg.GenGaloisKeyNew(g, sk))
	}
	return &heFixture{sk: sk, keys: keys}
}

// decrypt returns the coefficients of a result (test: with the single key).
func (f *heFixture) decrypt(ct *rlwe.Ciphertext) []uint64 {
	params := heparams.Params()
	pt := rlwe.NewDecryptor(params, f.sk).DecryptNew(ct)
	params.RingQ().AtLevel(0).INTT(pt.Value, pt.Value)
	return pt.Value.Coeffs[0]
}

func heDemo(t testing.TB, n int, f *heFixture) (*Table, *heData) {
	t.Helper()
	schema := DemoSchema()
	dir := filepath.Join(t.TempDir(), "tax")
	if _, err := IngestEncrypted(context.Background(), bytes.NewReader(demoCSV(t, n)), &schema, testKey, dir, f.keys.PK); err != nil {
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
	return tb, d
}

func TestHEMatchesMasked(t *testing.T) {
	f := newHEFixture(t)
	const n = 20000
	tb, d := heDemo(t, n, f)
	plain, _ := demoTable(t, n)
	// Stored size per sensitive value (2 columns; x, x², y, y², x·y).
	t.Logf("stored: %d bytes of ciphertexts for %d rows × %d sensitive columns: %.1f bytes per value",
		d.bytes, n, len(d.meta.Columns), float64(d.bytes)/float64(n*len(d.meta.Columns)))
	// A dataset registered in masked mode is encrypted on first use for he
	// jobs (encryptTable): the same results.
	d2, err := encryptTable(context.Background(), plain, f.keys.PK)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		name string
		tb   *Table
		d    *heData
	}{{"encrypted ingest", tb, d}, {"masked, encrypted on use", plain, d2}} {
		t.Run(src.name, func(t *testing.T) {
			for i, sql := range []string{
				`SELECT region, sex, COUNT(*), SUM(income), AVG(income), VAR(income), STDDEV(benefits),
			CORR(income, benefits), REGR_SLOPE(benefits, income), REGR_INTERCEPT(benefits, income)
			FROM tax WHERE age >= 30 AND region IN ('north', 'south', 'capital') AND NOT household_size BETWEEN 5 AND 7
			GROUP BY region, sex ORDER BY region, sex`,
				`SELECT SUM(income) FROM tax`,
				`SELECT COUNT(*) FROM tax WHERE age > 40`,
				`SELECT region, AVG(benefits) FROM tax GROUP BY region ORDER BY region`,
				// PostgreSQL's syntax: aliases, a grouping CASE, bounds derived
				// for an affine expression, post-processing and HAVING (the
				// requester evaluates those on the decrypted values).
				`SELECT t.region AS r, CASE WHEN t.age >= 60 THEN 'senior' ELSE 'other' END AS band, COUNT(*) AS count_n,
			AVG(income) * 2 AS avg_income_x2, SUM(income * 2 + 10) AS sum_income_affine, STDDEV(benefits / 10) AS stddev_benefits
			FROM tax AS t GROUP BY 1, 2 HAVING COUNT(*) > 100 ORDER BY COUNT(*) * 2 DESC, r, band`,
			} {
				t.Run("query "+strconv.Itoa(i), func(t *testing.T) {
					q, err := ParseQuery(sql)
					if err != nil {
						t.Fatal(err)
					}
					ctl := Control{MinGroupSize: 1, NoNoise: true}
					ct, lay, st, err := HEEvaluate(context.Background(), src.tb, src.d, f.keys, q, ctl, DefaultLimits())
					if err != nil {
						t.Fatal(sql, err)
					}
					cols, rows, err := DecodeHEResult(lay, f.decrypt(ct), heparams.Params().Q()[0])
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
					worst, worstCell := 0.0, ""
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
							// scale 2^36 against values normalised to |x/B| ≤ 1) —
							// relative to the value or to B/10, whichever is larger,
							// as the noise scales with the column's bound B, not with
							// the value (a mean of 579 under a bound of 100,000);
							// second moments (VAR, STDDEV, CORR, REGR_*) within 1e-4,
							// since E[x²]−E[x]² cancels most of the digits.
							bound := 1e-6
							switch {
							case strings.HasPrefix(cols[j], "var"), strings.HasPrefix(cols[j], "stddev"), strings.HasPrefix(cols[j], "corr"), strings.HasPrefix(cols[j], "regr"):
								bound = 1e-4
							case strings.HasPrefix(cols[j], "count"):
								bound = 0
							}
							rel := math.Abs(a-b) / math.Max(1, math.Max(math.Abs(b), boundOf(cols[j])/10))
							if rel > worst {
								worst, worstCell = rel, cols[j]
							}
							if rel > bound {
								t.Errorf("%s: cell %d,%d (%s): he %v, reference %v", sql, i, j, cols[j], a, b)
							}
						}
					}
					t.Logf("%s (%s)\n  cells %d, ciphertexts %d, masks %d, evaluate %v, pack %v, worst relative error %.2e in %s (relative to max(|value|, B/10); bounds: counts exact, sums and means 1e-6, second moments 1e-4)",
						sql[:min(40, len(sql))], src.name, len(rows), st.Ciphertexts, st.Masks, st.Evaluate, st.Pack, worst, worstCell)
				})
			}
		})
	}
}

// boundOf is the largest bound of the demo columns an aggregate reads
// (1 for COUNT).
func boundOf(agg string) float64 {
	b := 1.0
	for _, c := range DemoSchema().Columns {
		if len(c.Bounds) == 2 && strings.Contains(agg, c.Name) {
			b = max(b, math.Abs(c.Bounds[0]), math.Abs(c.Bounds[1]))
		}
	}
	// The fixture's affine columns (AVG(income) * 2, SUM(income * 2 + 10))
	// scale the values, and their noise, by 2: their bound is 2B (a run saw
	// 1.01e-6 relative to B/10).
	if strings.Contains(agg, "x2") || strings.Contains(agg, "affine") {
		b *= 2
	}
	return b
}

func TestTamperedCiphertextsRefused(t *testing.T) {
	f := newHEFixture(t)
	schema := DemoSchema()
	dir := filepath.Join(t.TempDir(), "tax")
	if _, err := IngestEncrypted(context.Background(), bytes.NewReader(demoCSV(t, 100)), &schema, testKey, dir, f.keys.PK); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, heDir, "q00.cts")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadHE(dir); !errors.Is(err, heparams.ErrBadCiphertext) || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("altered ciphertexts loaded: %v", err)
	}
}

func TestEncryptedIngestRefusesUnboundedColumns(t *testing.T) {
	f := newHEFixture(t)
	schema := DemoSchema()
	for i := range schema.Columns {
		if schema.Columns[i].Name == "benefits" {
			schema.Columns[i].Bounds = nil
		}
	}
	_, err := IngestEncrypted(context.Background(), bytes.NewReader(demoCSV(t, 10)), &schema, testKey, filepath.Join(t.TempDir(), "x"), f.keys.PK)
	if !errors.Is(err, ErrBadData) || !strings.Contains(err.Error(), "needs bounds") {
		t.Fatalf("err %v", err)
	}
	if _, err := IngestEncrypted(context.Background(), bytes.NewReader(demoCSV(t, 10)), &schema, testKey, filepath.Join(t.TempDir(), "y"), nil); err == nil {
		t.Fatal("ingested without a key")
	}
}
