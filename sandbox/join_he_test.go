package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// heJoinParts ships both sides as in masked mode, encrypts each owner's
// sensitive columns under the fixture's key in the owner's row order, and
// drops the clear copies of those columns from what the executor holds.
func heJoinParts(t *testing.T, f *joinFixture, hf *heFixture, q *Query, maxRows int) []HEJoinPart {
	t.Helper()
	var out []HEJoinPart
	for _, p := range f.parts(t, q, []byte("k-job"), maxRows) {
		src := map[string]*Table{"tax2025": f.tax, "benefits2025": f.ben}[p.Dataset]
		d, err := encryptTable(context.Background(), src, hf.keys.PK)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range d.meta.Columns {
			delete(p.Table.Cols, c)
		}
		out = append(out, HEJoinPart{JoinPart: p, HE: d})
	}
	return out
}

// An he join equals the masked join of the same parts (without noise):
// counts exactly, sums and means within 1e-6 of the value or of B/10 (as
// TestHEMatchesMasked states the encrypted engine's bound), second
// moments within 1e-4; also with several rows per person, where a row of
// one dataset is joined with several of the other and its ciphertext
// counts that many times.
func TestHEJoinMatchesMaskedJoin(t *testing.T) {
	hf := newHEFixture(t)
	dup := map[int]bool{}
	for i := 1000; i < 1400; i++ {
		dup[i] = true
	}
	f := joinFixtures(t, 3000, 1000, 4000, dup)
	cases := []struct {
		sql     string
		maxRows int
	}{
		{"SELECT b.kind, COUNT(*), SUM(t.income), AVG(b.benefit), VAR(t.income) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id WHERE t.region <> 'r3' GROUP BY b.kind", 1},
		{"SELECT b.kind, COUNT(*), SUM(t.income), AVG(b.benefit), VAR(t.income) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id WHERE t.region <> 'r3' GROUP BY b.kind", 4},
		{"SELECT t.region, COUNT(*), SUM(b.benefit) FROM tax2025 t JOIN benefits2025 b USING (person_id) GROUP BY t.region", 2},
		{"SELECT SUM(t.income) FROM tax2025 t JOIN benefits2025 b USING (person_id)", 4},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d rows per person %d", i, c.maxRows), func(t *testing.T) {
			q, err := ParseQuery(c.sql)
			if err != nil {
				t.Fatal(err)
			}
			ctl := Control{MinGroupSize: 10, NoNoise: true}
			ref, err := ExecuteJoin(context.Background(), q, f.parts(t, q, []byte("k-job"), c.maxRows), ctl, DefaultLimits(), []byte("sel"))
			if err != nil {
				t.Fatal(err)
			}
			ct, lay, err := HEEvaluateJoin(context.Background(), q, heJoinParts(t, f, hf, q, c.maxRows), hf.keys, ctl, DefaultLimits(), []byte("sel"))
			if err != nil {
				t.Fatal(err)
			}
			cols, rows, err := DecodeHEResult(lay, hf.decrypt(ct), heparams.Params().Q()[0])
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != len(ref.Rows) || len(cols) != len(ref.Columns) || len(rows) == 0 {
				t.Fatalf("%d rows %v, masked %d rows %v", len(rows), rows, len(ref.Rows), ref.Rows)
			}
			for r := range rows {
				for j := range rows[r] {
					a, aok := rows[r][j].(float64)
					b, bok := ref.Rows[r][j].(float64)
					if !aok || !bok {
						if rows[r][j] != ref.Rows[r][j] {
							t.Fatalf("cell %d,%d: %v, masked %v", r, j, rows[r][j], ref.Rows[r][j])
						}
						continue
					}
					bound := 1e-6
					switch {
					case strings.HasPrefix(cols[j], "var"):
						bound = 1e-4
					case strings.HasPrefix(cols[j], "count"):
						bound = 0
					}
					if rel := math.Abs(a-b) / math.Max(1, math.Max(math.Abs(b), 10000)); rel > bound {
						t.Fatalf("cell %d,%d (%s): he %v, masked %v (relative %.2e)", r, j, cols[j], a, b, rel)
					}
				}
			}
		})
	}
	t.Run("product of two datasets refused", func(t *testing.T) {
		q, err := ParseQuery("SELECT CORR(t.income, b.benefit) FROM tax2025 t JOIN benefits2025 b USING (person_id)")
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = HEEvaluateJoin(context.Background(), q, heJoinParts(t, f, hf, q, 1), hf.keys, Control{MinGroupSize: 10, NoNoise: true}, DefaultLimits(), []byte("sel"))
		var re *RefusalError
		if !errors.As(err, &re) || re.Rule != RuleHE || !strings.Contains(re.Msg, "product of ciphertexts") {
			t.Fatalf("got %v", err)
		}
	})
}

// BenchmarkHEJoin is a join in mode he against the same join in mode
// masked, in process, in the same run, on BenchmarkJoin's data (-join-rows
// rows each, half of the people in both, GROUP BY 16, an AVG of the
// benefits, which are encrypted): both owners build and encode their part
// (he: the ciphertexts they hold, not timed to make: an encrypted ingest
// stores them), the executor checks the digests, parses, joins on tags and
// evaluates (he: weighted sums of the ciphertexts, packed). Not in it: the
// node-to-node hop, and in he mode the threshold release (t nodes'
// decryption shares, as for any he job: BenchmarkJobEndToEnd's phases).
func BenchmarkHEJoin(b *testing.B) {
	n := *joinRows
	hf := newHEFixture(b)
	tax := joinBenchTable(taxJoinSchema, 0, n, "region", "income", DemoRegions, 100000)
	ben := joinBenchTable(benefitJoinSchema, n/2, n, "kind", "benefit", []string{"unemployment", "housing", "child"}, 5000)
	q, err := ParseQuery("SELECT t.region, COUNT(*), AVG(b.benefit) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id GROUP BY t.region")
	if err != nil {
		b.Fatal(err)
	}
	plan := q.Plan()
	tabs := map[string]*Table{"tax2025": tax, "benefits2025": ben}
	heData := map[string]*heData{}
	for name, t := range tabs {
		if heData[name], err = encryptTable(context.Background(), t, hf.keys.PK); err != nil {
			b.Fatal(err)
		}
	}
	kJob := []byte("bench job key")
	ctl := Control{MinGroupSize: 10, Epsilon: 1}
	var masked, he time.Duration
	var heBytes int
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		parts, _ := shipAndParse(b, plan, tabs, kJob, nil, maskedPart)
		if _, err := ExecuteJoin(context.Background(), q, parts, ctl, DefaultLimits(), []byte("sel")); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		var heParts []HEJoinPart
		heParts, heBytes = shipAndParse(b, plan, tabs, kJob, heData, hePart)
		if _, _, err := HEEvaluateJoin(context.Background(), q, heParts, hf.keys, ctl, DefaultLimits(), []byte("sel")); err != nil {
			b.Fatal(err)
		}
		masked, he = masked+t1.Sub(t0), he+time.Since(t1)
	}
	b.ReportMetric(float64(masked.Milliseconds())/float64(b.N), "masked-ms/op")
	b.ReportMetric(float64(he.Milliseconds())/float64(b.N), "he-ms/op")
	b.ReportMetric(float64(he)/float64(masked), "he/masked")
	b.ReportMetric(float64(heBytes)/float64(2*n), "he-ship-bytes/row")
}

// joinDPState serves policies to joinDP.
type joinDPState struct {
	HEFlowState
	pols map[string]policies.Policy
}

func (s joinDPState) Policy(id string) (policies.Policy, bool) { p, ok := s.pols[id]; return p, ok }

// A node's share of an he join is noised with the strictest policy's
// epsilon, divided by the rows one person adds to the join (the product
// of the parts' bounds), as the masked join's noise.
func TestJoinDP(t *testing.T) {
	st := joinDPState{pols: map[string]policies.Policy{
		"pol-1": {DP: policies.DP{EpsilonPerQuery: 1, Mechanism: "laplace"}},
		"pol-2": {DP: policies.DP{EpsilonPerQuery: 0.5, Delta: 1e-6, Mechanism: "gaussian"}},
	}}
	cases := []struct {
		name  string
		parts []policies.JobPart
		eps   float64
		mech  string
		err   string
	}{
		{"one row each", []policies.JobPart{{Policy: "pol-1", MaxRows: 1}, {Policy: "pol-2", MaxRows: 1}}, 0.5, "gaussian", ""},
		{"bounds 2 and 3", []policies.JobPart{{Policy: "pol-1", MaxRows: 2}, {Policy: "pol-2", MaxRows: 3}}, 0.5 / 6, "gaussian", ""},
		{"strictest first", []policies.JobPart{{Policy: "pol-2", MaxRows: 1}, {Policy: "pol-1", MaxRows: 4}}, 0.5 / 4, "gaussian", ""},
		{"a policy gone", []policies.JobPart{{Policy: "pol-1", MaxRows: 1}, {Policy: "pol-9", MaxRows: 1}}, 0, "", "policy pol-9 is gone"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dp, err := joinDP(st, policies.Job{Parts: c.parts})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || math.Abs(dp.EpsilonPerQuery-c.eps) > 1e-12 || dp.Mechanism != c.mech {
				t.Fatalf("%+v %v, want epsilon %g %s", dp, err, c.eps, c.mech)
			}
		})
	}
}

// An owner ships only the quantities of its encrypted columns that the
// plan's aggregates read.
func TestPlanReads(t *testing.T) {
	aggs := []policies.Aggregate{{Func: "count", Columns: []string{"*"}}, {Func: "avg", Columns: []string{"tax2025.income"}},
		{Func: "var", Columns: []string{"benefits2025.benefit"}}, {Func: "corr", Columns: []string{"tax2025.a", "tax2025.b"}}}
	cases := []struct {
		ds, qn string
		want   bool
	}{
		{"tax2025", "x:income", true},
		{"tax2025", "xx:income", false},
		{"benefits2025", "x:benefit", true},
		{"benefits2025", "xx:benefit", true},
		{"tax2025", "x:benefit", false},
		{"tax2025", "xy:a,b", true},
		{"tax2025", "xx:a", true},
		{"tax2025", "xy:a,income", false},
		{"benefits2025", "x:income", false},
	}
	for _, c := range cases {
		t.Run(c.ds+" "+c.qn, func(t *testing.T) {
			if got := planReads(aggs, c.ds, c.qn); got != c.want {
				t.Fatalf("planReads = %v, want %v", got, c.want)
			}
		})
	}
}
