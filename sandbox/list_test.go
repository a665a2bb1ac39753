package sandbox

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
)

// listPseudonyms stands in for the VOPRF as the fixtures' fakePRF does
// for the key column person_id.
func listPseudonyms(ids []string) [][]byte {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		s := sha512.Sum512([]byte("person_id|" + id))
		out[i] = s[:]
	}
	return out
}

// listPart ships a list as sandboxctl does and parses it as the runner
// does.
func listPart(t testing.TB, q *Query, kJob []byte, ids, branch []string) JoinPart {
	t.Helper()
	l := testList(q, int64(len(ids)))
	tags, err := ListTags(kJob, listPseudonyms(ids))
	if err != nil {
		t.Fatal(err)
	}
	cols := map[string][]string{}
	if len(l.Columns) > 0 {
		cols["branch"] = branch
	}
	s, err := ShipList("job-1", l, tags, cols)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseList(b, ShipmentDigest(b), "job-1", l)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testList is the job's list as the ledger keeps it, from the query's plan.
func testList(q *Query, size int64) policies.JobList {
	for _, sd := range q.Plan().Join {
		if sd.Dataset == "applicants" {
			return policies.JobList{Name: "applicants", Key: sd.Key, Columns: sd.Columns, Size: size}
		}
	}
	panic("no list in the query")
}

// taxPart ships tax2025 as its owner would.
func (f *joinFixture) taxPart(t testing.TB, q *Query, kJob []byte) JoinPart {
	t.Helper()
	side := q.Plan().Join[0]
	s, err := Ship("job-1", f.tax, side, kJob)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Marshal()
	got, err := ParseShipment(b, ShipmentDigest(b), "job-1", side, &f.tax.Schema)
	if err != nil {
		t.Fatal(err)
	}
	return got.Part(&f.tax.Schema, 1)
}

const listSQL = "SELECT a.branch, COUNT(*), AVG(t.income) FROM tax2025 t JOIN applicants a ON t.person_id = a.id WHERE t.region <> 'r3' GROUP BY a.branch"

// A list join equals the plaintext semi-join of the list with the
// dataset: without noise exactly, with noise within the stated bound.
func TestListJoinMatchesPlaintextSemiJoin(t *testing.T) {
	f := joinFixtures(t, 3000, 0, 1, nil)
	q, err := ParseQuery(listSQL)
	if err != nil {
		t.Fatal(err)
	}
	// The list: every third person of tax2025 and 500 people it does not
	// hold, with a branch each.
	var ids, branch []string
	for i := 0; i < 3000; i += 3 {
		ids = append(ids, fmt.Sprintf("P%07d", i))
	}
	for i := range 500 {
		ids = append(ids, fmt.Sprintf("Q%07d", i))
	}
	for i := range ids {
		branch = append(branch, []string{"north", "south"}[i%2])
	}
	type cell struct{ n, inc float64 }
	want := map[string]*cell{}
	for i, id := range ids {
		inc, ok := f.income[id]
		if !ok {
			continue
		}
		var n int
		fmt.Sscanf(id, "P%d", &n)
		if n%4 == 3 {
			continue
		}
		c := want[branch[i]]
		if c == nil {
			c = &cell{}
			want[branch[i]] = c
		}
		c.n++
		c.inc += inc
	}
	k := []byte("k-job")
	run := func(ctl Control) *Result {
		parts := []JoinPart{f.taxPart(t, q, k), listPart(t, q, k, ids, branch)}
		res, err := ExecuteJoin(context.Background(), q, parts, ctl, DefaultLimits(), []byte("sel"))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != 2 {
			t.Fatalf("%d rows: %v", len(res.Rows), res.Rows)
		}
		return res
	}
	t.Run("exact", func(t *testing.T) {
		for _, r := range run(Control{MinGroupSize: 10, NoNoise: true}).Rows {
			c := want[r[0].(string)]
			if c == nil || r[1].(float64) != c.n || math.Abs(r[2].(float64)-c.inc/c.n) > 0.01 {
				t.Fatalf("row %v, want %+v", r, c)
			}
		}
	})
	t.Run("noisy", func(t *testing.T) {
		// epsilon 1 over 2 moments: the count's Laplace scale is 2, the
		// sum's 2·100000; 30 scales.
		for _, r := range run(Control{MinGroupSize: 10, Epsilon: 1}).Rows {
			c := want[r[0].(string)]
			if math.Abs(r[1].(float64)-c.n) > 60 || math.Abs(r[2].(float64)-c.inc/c.n) > 30*2*100000/(c.n-60) {
				t.Fatalf("noisy row %v far from %+v", r, c)
			}
		}
	})
}

// Lists that name one person of the data, or none of it, release nothing:
// their cells are suppressed (the minimum group size counts people).
func TestListJoinSuppressesSmallIntersections(t *testing.T) {
	f := joinFixtures(t, 200, 0, 1, nil)
	q, err := ParseQuery("SELECT COUNT(*), AVG(t.income) FROM tax2025 t JOIN applicants a ON t.person_id = a.id")
	if err != nil {
		t.Fatal(err)
	}
	for name, ids := range map[string][]string{
		"one id":           {"P0000007"},
		"one id in a list": {"P0000007", "X1", "X2", "X3", "X4", "X5", "X6", "X7", "X8", "X9", "X10"},
		"none in the data": {"X1", "X2", "X3", "X4", "X5", "X6", "X7", "X8", "X9", "X10", "X11", "X12"},
	} {
		t.Run(name, func(t *testing.T) {
			parts := []JoinPart{f.taxPart(t, q, []byte("k")), listPart(t, q, []byte("k"), ids, nil)}
			res, err := ExecuteJoin(context.Background(), q, parts, Control{MinGroupSize: 10, Epsilon: 10}, DefaultLimits(), []byte("sel"))
			if err != nil {
				t.Fatal(err)
			}
			// Suppressed cells are not counted for a list (it would tell
			// an empty intersection from a small one).
			if len(res.Rows) != 0 || res.Suppressed != 0 {
				t.Fatalf("released %v (suppressed %d)", res.Rows, res.Suppressed)
			}
		})
	}
}

func TestParseListRefuses(t *testing.T) {
	q, err := ParseQuery(listSQL)
	if err != nil {
		t.Fatal(err)
	}
	l := testList(q, 3)
	k := []byte("k")
	ship := func(ids, branch []string, size int64) []byte {
		tags, _ := ListTags(k, listPseudonyms(ids))
		ll := l
		ll.Size = size
		s, err := ShipList("job-1", ll, tags, map[string][]string{"branch": branch})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := s.Marshal()
		return b
	}
	good := ship([]string{"a", "b", "c"}, []string{"x", "y", "x"}, 3)
	cases := []struct {
		name   string
		b      []byte
		digest string
		l      policies.JobList
		want   string
	}{
		{"another digest", good, strings.Repeat("0", 64), l, "is not the"},
		{"fewer tags than the list's size", ship([]string{"a", "b"}, []string{"x", "y"}, 2), "", l, "2 tags, the job's list has 3"},
		{"repeated id", ship([]string{"a", "b", "a"}, []string{"x", "y", "x"}, 3), "", l, "repeats a tag"},
		{"another list", good, "", policies.JobList{Name: "customers", Key: "id", Columns: l.Columns, Size: 3}, `dataset "applicants"`},
		{"missing column", good, "", policies.JobList{Name: "applicants", Key: "id", Size: 3}, "1 columns, the plan ships 0"},
		{"truncated", good[:len(good)-3], "", l, "truncated"},
		{"another SHA-256 (a job.list from before BLAKE3)", good, FlowDigest(policies.JobFlow{SHA256: strings.Repeat("0", 64)}), l, "sha256 "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.digest
			if d == "" {
				d = ShipmentDigest(c.b)
			}
			if _, err := ParseList(c.b, d, "job-1", c.l); !errors.Is(err, ErrBadData) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	if _, err := ParseList(good, ShipmentDigest(good), "job-1", l); err != nil {
		t.Fatal(err)
	}
	// A job.list from before BLAKE3 commits the shipment's SHA-256.
	old := sha256.Sum256(good)
	if _, err := ParseList(good, FlowDigest(policies.JobFlow{SHA256: hex.EncodeToString(old[:])}), "job-1", l); err != nil {
		t.Fatalf("a list against its job.list's SHA-256: %v", err)
	}
	if _, err := ShipList("job-1", l, nil, nil); !errors.Is(err, ErrBadData) {
		t.Fatalf("shipped 0 tags for a list of 3: %v", err)
	}
}

func FuzzParseList(f *testing.F) {
	l := policies.JobList{Name: "applicants", Key: "id", Columns: []string{"branch"}, Size: 2}
	tags, _ := ListTags([]byte("k"), listPseudonyms([]string{"a", "b"}))
	s, _ := ShipList("job-1", l, tags, map[string][]string{"branch": {"x", "y"}})
	b, _ := s.Marshal()
	f.Add(b)
	f.Add(b[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseList(b, ShipmentDigest(b), "job-1", l)
		if err != nil {
			return
		}
		if len(p.Tags) != 2 || p.Table.Rows != 2 || p.MaxRows != 1 {
			t.Fatalf("parsed %d tags, %d rows", len(p.Tags), p.Table.Rows)
		}
	})
}

// Two lists that differ by one person give results that differ only by
// noise: without noise by at most that person's contribution, and with
// noise no test tells them apart better than ε allows. The best test of
// "is this person in the list's intersection?" from an ε-DP release is
// right with probability at most e^ε/(1+e^ε); a midpoint test on the
// released count is right far more often if the noise were missing or too
// small (then it is always right).
func TestListsDifferingByOnePerson(t *testing.T) {
	f := joinFixtures(t, 400, 0, 1, nil)
	q, err := ParseQuery("SELECT COUNT(*) FROM tax2025 t JOIN applicants a ON t.person_id = a.id")
	if err != nil {
		t.Fatal(err)
	}
	var common []string
	for i := 0; i < 400; i += 4 {
		common = append(common, fmt.Sprintf("P%07d", i))
	}
	// The lists have the same size (which the enterprise knows, and which
	// bounds the released count): one names a person the data holds, the
	// other in its place one it does not — the question an enterprise
	// would ask to learn whether someone is in an agency's data.
	base := append(append([]string(nil), common...), "X0000001")
	with := append(append([]string(nil), common...), "P0000001")
	k := []byte("k-job")
	count := func(ids []string, ctl Control) (float64, bool) {
		parts := []JoinPart{f.taxPart(t, q, k), listPart(t, q, k, ids, nil)}
		res, err := ExecuteJoin(context.Background(), q, parts, ctl, DefaultLimits(), []byte("sel"))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) == 0 {
			return 0, false
		}
		return res.Rows[0][0].(float64), true
	}
	exact := Control{MinGroupSize: 10, NoNoise: true}
	a, _ := count(base, exact)
	b, _ := count(with, exact)
	if b-a != 1 {
		t.Fatalf("without noise the counts differ by %v, want one person", b-a)
	}
	const eps, runs = 1.0, 300
	right := 0
	for i := range 2 * runs {
		ids, in := base, false
		if i%2 == 1 {
			ids, in = with, true
		}
		c, ok := count(ids, Control{MinGroupSize: 10, Epsilon: eps})
		if (ok && c > a+0.5) == in {
			right++
		}
	}
	acc := float64(right) / (2 * runs)
	bound := math.Exp(eps) / (1 + math.Exp(eps))
	// Four standard errors of slack over 600 trials.
	if acc > bound+4*math.Sqrt(0.25/(2*runs)) {
		t.Fatalf("a midpoint test tells the lists apart %.1f%% of the time; ε = %v allows %.1f%%", 100*acc, eps, 100*bound)
	}
	t.Logf("midpoint test right %.1f%% of the time (ε = %v allows %.1f%%)", 100*acc, eps, 100*bound)
}
