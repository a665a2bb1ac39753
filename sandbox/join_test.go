package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/zeebo/blake3"
)

var taxJoinSchema = policies.Schema{Columns: []policies.Column{
	{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
	{Name: "household", Type: policies.TypeString, Class: policies.Identifier},
	{Name: "region", Type: policies.TypeString, Class: policies.Public},
	{Name: "income", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 100000}},
}}

var benefitJoinSchema = policies.Schema{Columns: []policies.Column{
	{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
	{Name: "kind", Type: policies.TypeString, Class: policies.Public},
	{Name: "benefit", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 5000}},
}}

type joinFixture struct {
	tax, ben *Table
	// person -> values, for the plaintext join
	income  map[string]float64
	benefit map[string]float64
	kind    map[string]string
	ids     []string
	// the CSVs ingested
	taxCSV, benCSV []byte
}

// joinFixtures: tax2025 holds P0..P(n-1), benefits2025 holds P(lo)..P(hi-1)
// (one row each, plus extra rows for the people in dup, who appear 4
// times in benefits).
func joinFixtures(t *testing.T, n, lo, hi int, dup map[int]bool) *joinFixture {
	t.Helper()
	f := &joinFixture{income: map[string]float64{}, benefit: map[string]float64{}, kind: map[string]string{}}
	var tb, bb bytes.Buffer
	tb.WriteString("person_id,household,region,income\n")
	for i := range n {
		id := fmt.Sprintf("P%07d", i)
		f.ids = append(f.ids, id)
		f.income[id] = float64((i * 7919) % 90000)
		fmt.Fprintf(&tb, "%s,H%d,r%d,%g\n", id, i/3, i%4, f.income[id])
	}
	bb.WriteString("person_id,kind,benefit\n")
	for i := lo; i < hi; i++ {
		id := fmt.Sprintf("P%07d", i)
		f.benefit[id] = float64((i * 131) % 4000)
		f.kind[id] = []string{"unemployment", "housing", "child"}[i%3]
		reps := 1
		if dup[i] {
			reps = 4
		}
		for range reps {
			fmt.Fprintf(&bb, "%s,%s,%g\n", id, f.kind[id], f.benefit[id])
		}
	}
	f.taxCSV, f.benCSV = tb.Bytes(), bb.Bytes()
	prf := &fakePRF{}
	f.tax = loadJoinTable(t, prf, tb.Bytes(), taxJoinSchema, "tax2025")
	f.ben = loadJoinTable(t, prf, bb.Bytes(), benefitJoinSchema, "benefits2025")
	return f
}

// loadJoinTable ingests a CSV with consortium pseudonyms (prf stands for
// the consortium) and loads the stored table.
func loadJoinTable(t *testing.T, prf *fakePRF, csv []byte, s policies.Schema, name string) *Table {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if _, err := IngestConsortium(context.Background(), bytes.NewReader(csv), &s, bytes.Repeat([]byte{byte(len(name))}, 32), dir, nil, prf.fn); err != nil {
		t.Fatal(err)
	}
	tab, err := LoadTable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// parts ships both sides as owners would and parses them as the executor
// does (digests checked).
func (f *joinFixture) parts(t *testing.T, q *Query, kJob []byte, maxRows int) []JoinPart {
	t.Helper()
	p := q.Plan()
	var out []JoinPart
	for _, side := range p.Join {
		tab := map[string]*Table{"tax2025": f.tax, "benefits2025": f.ben}[side.Dataset]
		s, err := Ship("job-1", tab, side, kJob)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseShipment(b, ShipmentDigest(b), "job-1", side, &tab.Schema)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got.Part(&tab.Schema, maxRows))
	}
	return out
}

const joinSQL = "SELECT b.kind, COUNT(*), AVG(t.income), SUM(b.benefit) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id WHERE t.region <> 'r3' GROUP BY b.kind"

// The masked join equals the plaintext join of the same records (without
// noise), and within the stated noise with it.
func TestJoinMatchesPlaintextJoin(t *testing.T) {
	f := joinFixtures(t, 3000, 1000, 4000, nil)
	q, err := ParseQuery(joinSQL)
	if err != nil {
		t.Fatal(err)
	}
	type cell struct{ n, inc, ben float64 }
	want := map[string]*cell{}
	for i, id := range f.ids {
		k, ok := f.kind[id]
		if !ok || i%4 == 3 {
			continue
		}
		c := want[k]
		if c == nil {
			c = &cell{}
			want[k] = c
		}
		c.n++
		c.inc += f.income[id]
		c.ben += f.benefit[id]
	}
	ctl := Control{MinGroupSize: 10, NoNoise: true}
	res, err := ExecuteJoin(context.Background(), q, f.parts(t, q, []byte("k-job"), 1), ctl, DefaultLimits(), []byte("sel"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != len(want) || len(want) != 3 {
		t.Fatalf("%d rows, want %d: %v", len(res.Rows), len(want), res.Rows)
	}
	for _, r := range res.Rows {
		c := want[r[0].(string)]
		if c == nil || !near(r[1].(float64), c.n) || math.Abs(r[2].(float64)-c.inc/c.n) > 0.01 || !near(r[3].(float64), c.ben) {
			t.Fatalf("row %v, want %+v", r, c)
		}
	}
	// With noise: each released value within 30 scales of the truth
	// (epsilon 1 over 3 moments).
	ctl = Control{MinGroupSize: 10, Epsilon: 1}
	res, err = ExecuteJoin(context.Background(), q, f.parts(t, q, []byte("k-job"), 1), ctl, DefaultLimits(), []byte("sel"))
	if err != nil {
		t.Fatal(err)
	}
	if res.EpsilonSpent != 1 || len(res.Rows) != 3 {
		t.Fatalf("%+v", res)
	}
	for _, r := range res.Rows {
		c := want[r[0].(string)]
		if math.Abs(r[1].(float64)-c.n) > 30*3 || math.Abs(r[3].(float64)-c.ben) > 30*3*5000 {
			t.Fatalf("noisy row %v far from %+v", r, c)
		}
	}
}

// A person contributes at most max_rows_per_person rows from each side,
// the minimum group size counts people, and noise is calibrated to the
// bound.
func TestJoinBoundsRowsPerPerson(t *testing.T) {
	dup := map[int]bool{}
	for i := 100; i < 140; i++ {
		dup[i] = true
	}
	f := joinFixtures(t, 200, 100, 200, dup)
	q, err := ParseQuery("SELECT COUNT(*), SUM(b.benefit) FROM tax2025 t JOIN benefits2025 b USING (person_id)")
	if err != nil {
		t.Fatal(err)
	}
	for _, max := range []int{1, 2, 4} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			res, err := ExecuteJoin(context.Background(), q, f.parts(t, q, []byte("k"), max), Control{MinGroupSize: 90, NoNoise: true}, DefaultLimits(), []byte("sel"))
			if err != nil {
				t.Fatal(err)
			}
			want := 60 + 40*min(max, 4)
			if len(res.Rows) != 1 || res.Rows[0][0].(float64) != float64(want) {
				t.Fatalf("%v, want %d rows", res.Rows, want)
			}
		})
	}
	// 100 people, 220 rows at max 4: a minimum group size of 101 people
	// suppresses the cell though it has 220 rows.
	res, err := ExecuteJoin(context.Background(), q, f.parts(t, q, []byte("k"), 4), Control{MinGroupSize: 101, NoNoise: true}, DefaultLimits(), []byte("sel"))
	if err != nil || res.Suppressed != 1 || len(res.Rows) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
}

// Attacks on the join: each is refused with its rule, or suppressed.
func TestJoinAttacks(t *testing.T) {
	schemas := map[string]*policies.Schema{"tax2025": &taxJoinSchema, "benefits2025": &benefitJoinSchema}
	env := JoinEnv{Schemas: schemas, Nodes: 3, Allows: func(string, string) bool { return true }}
	cases := []struct {
		name, sql, mode string
		env             *JoinEnv
		rule, msg       string
	}{
		{"join on a public column", "SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.region = b.kind", "masked", nil, RuleJoin, "tax2025.region is a public column"},
		{"join on an agency pseudonym", "SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.household = b.person_id", "masked", nil, RuleJoin, "tax2025.household is an identifier column with agency pseudonyms (not joinable)"},
		{"self-join", "SELECT COUNT(*) FROM tax2025 a JOIN tax2025 b ON a.person_id = b.person_id", "", nil, RuleJoin, "joined with itself"},
		{"cross join", "SELECT COUNT(*) FROM tax2025, benefits2025", "", nil, RuleJoin, "cross join"},
		{"left join", "SELECT COUNT(*) FROM tax2025 t LEFT JOIN benefits2025 b ON t.person_id = b.person_id", "masked", nil, RuleJoin, "only inner joins"},
		{"two keys", "SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id AND t.household = b.person_id", "", nil, RuleJoin, "on one identifier column"},
		{"ON within one side", "SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.person_id = t.household", "", nil, RuleJoin, "compares two columns of tax2025"},
		{"row-level output", "SELECT t.income FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id", "masked", nil, RuleRowLevel, ""},
		{"identifier filtered", "SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id WHERE t.person_id = 'P1'", "masked", nil, RuleIdentifier, "identifier column"},
		{"unqualified column", "SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id WHERE region = 'r1'", "", nil, RuleJoin, "qualify every column"},
		{"policy forbids", "SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id", "masked",
			&JoinEnv{Schemas: schemas, Nodes: 3, Allows: func(d, o string) bool { return d != "benefits2025" }}, RuleJoin, "no policy of dataset benefits2025 allows joining it with tax2025"},
		{"two nodes", "SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id", "masked",
			&JoinEnv{Schemas: schemas, Nodes: 2}, RuleJoin, "at least 3 nodes, it has 2"},
		{"he: product of two datasets", "SELECT CORR(t.income, b.benefit) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id", "he", nil, RuleHE, "product of ciphertexts"},
		{"he: a histogram of ciphertexts", "SELECT HISTOGRAM(t.income, 0, 100000, 10) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id", "he", nil, RuleHE, "not available in he mode"},
		{"unknown dataset", "SELECT COUNT(*) FROM tax2025 t JOIN health b ON t.person_id = b.person_id", "masked", nil, RuleUnknown, `unknown dataset "health"`},
		{"MIN of the other side", "SELECT MIN(b.benefit) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id", "masked", nil, RuleAggregate, "individual's value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := ParseQuery(c.sql)
			if err == nil {
				e := env
				if c.env != nil {
					e = *c.env
				}
				if c.mode == "" {
					t.Fatalf("parsed: %+v", q.Joins)
				}
				err = CheckJoin(q, e, c.mode)
			}
			var re *RefusalError
			if !errors.As(err, &re) || re.Rule != c.rule || !strings.Contains(re.Msg, c.msg) {
				t.Fatalf("got %v, want rule %s: %q", err, c.rule, c.msg)
			}
		})
	}
	t.Run("one-person intersection suppressed", func(t *testing.T) {
		f := joinFixtures(t, 50, 49, 60, nil)
		q, _ := ParseQuery("SELECT COUNT(*), AVG(t.income) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id")
		res, err := ExecuteJoin(context.Background(), q, f.parts(t, q, []byte("k"), 1), Control{MinGroupSize: 10, Epsilon: 1}, DefaultLimits(), []byte("s"))
		if err != nil || len(res.Rows) != 0 || res.Suppressed != 1 {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

// What an owner ships holds tags only: no raw id, no stored pseudonym,
// and tags of another job do not match.
func TestShipmentHoldsNoIdentity(t *testing.T) {
	f := joinFixtures(t, 300, 100, 400, nil)
	q, _ := ParseQuery(joinSQL)
	pseudo := map[string]bool{}
	for _, tab := range []*Table{f.tax, f.ben} {
		ps := tab.Cols["person_id"].Pseudo
		for i := 0; i < tab.Rows; i++ {
			pseudo[string(ps[i*PseudonymSize:(i+1)*PseudonymSize])] = true
			pseudo[string(ps[i*PseudonymSize:i*PseudonymSize+TagSize])] = true
		}
	}
	for _, side := range q.Plan().Join {
		tab := map[string]*Table{"tax2025": f.tax, "benefits2025": f.ben}[side.Dataset]
		s, err := Ship("job-1", tab, side, []byte("k1"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := s.Marshal()
		for _, id := range f.ids {
			if bytes.Contains(b, []byte(id)) {
				t.Fatalf("raw id %s shipped", id)
			}
		}
		for _, c := range s.Columns {
			if c.Name == "person_id" || c.Name == "household" {
				t.Fatalf("identifier column %s shipped", c.Name)
			}
		}
		other, _ := Ship("job-2", tab, side, []byte("k2"))
		for i := 0; i < s.Rows; i++ {
			tag := s.Tags[i*TagSize : (i+1)*TagSize]
			if pseudo[string(tag)] || bytes.Equal(tag, other.Tags[i*TagSize:(i+1)*TagSize]) {
				t.Fatalf("row %d: the tag is a pseudonym, or the same in another job", i)
			}
		}
	}
}

// An owner's encoding, with the tags computed into it as it is written
// and hashed block by block (as Joiner ships), is byte for byte Ship's
// shipment encoded, and its digest is the digest of those bytes; over
// sizes around the encoder's hashing step.
func TestShipEncodedIsShipMarshalled(t *testing.T) {
	q, _ := ParseQuery(joinSQL)
	for _, n := range []int{0, 1, hashStep / TagSize, hashStep/TagSize + 1, 3*hashStep/TagSize + 7} {
		t.Run(fmt.Sprint(n, " rows"), func(t *testing.T) {
			tab := joinBenchTable(taxJoinSchema, 0, n, "region", "income", DemoRegions, 100000)
			side := q.Plan().Join[0]
			want, err := Ship("job-1", tab, side, []byte("k"))
			if err != nil {
				t.Fatal(err)
			}
			wantB, err := want.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			b, sum := encodedPart(t, tab, side)
			if !bytes.Equal(b, wantB) || sum != ShipmentDigest(wantB) {
				t.Fatalf("the encodings differ (%d and %d bytes) or the digest is not theirs", len(b), len(wantB))
			}
			if cap(b) != len(b) || cap(wantB) != len(wantB) {
				t.Fatalf("the encoding was sized %d for %d bytes", cap(b), len(b))
			}
		})
	}
}

// ShipmentDigest is BLAKE3-256 in hex: the reference's test vectors for
// "" and "abc", and 3 MiB and 17 bytes of the pattern i mod 251 (its
// digest cross-checked with an independent implementation,
// lukechampine.com/blake3), whole and hashed in pieces as shipments are.
func TestShipmentDigestIsBLAKE3(t *testing.T) {
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(i % 251)
	}
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
		{"abc", []byte("abc"), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"},
		{"3 MiB", big, "26003c63117013de5d02be76e5e32a2f75bfbc075f17180fd5f9f0b4752d2bfe"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ShipmentDigest(c.in); got != c.want {
				t.Errorf("ShipmentDigest = %s, want %s", got, c.want)
			}
			e := &encoder{b: c.in, h: blake3.New()}
			for e.done < len(c.in) {
				e.hashTo(min(e.done+hashStep-5, len(c.in)))
			}
			if got := hex.EncodeToString(e.h.Sum(nil)); got != c.want {
				t.Errorf("hashed in pieces: %s, want %s", got, c.want)
			}
		})
	}
}

// encodedPart is tab's part for side of job-1 (job key "k") encoded as an
// owner ships it (tags computed into the encoding), and its digest.
func encodedPart(t *testing.T, tab *Table, side policies.JoinSide) ([]byte, string) {
	t.Helper()
	s, err := shipUntagged("job-1", tab, side, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	b, sum, err := s.MarshalDigest()
	if err != nil {
		t.Fatal(err)
	}
	return b, sum
}

// The executor refuses shipped data that is not what the owner committed,
// or that breaks the plan or the schema.
func TestShipmentRefusedByDigest(t *testing.T) {
	f := joinFixtures(t, 40, 10, 50, nil)
	q, _ := ParseQuery(joinSQL)
	side := q.Plan().Join[0]
	s, err := Ship("job-1", f.tax, side, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	good, _ := s.Marshal()
	sum := ShipmentDigest(good)
	reenc := func(edit func(s *Shipment)) []byte {
		c, err := decodeShipment(good)
		if err != nil {
			t.Fatal(err)
		}
		c.Tags = bytes.Clone(c.Tags)
		edit(c)
		b, err := c.Marshal()
		if err != nil {
			// Marshal refuses some shapes; write them as an attacker would.
			b = rawShipment(c)
		}
		return b
	}
	cases := []struct {
		name   string
		b      []byte
		digest string
		want   string
	}{
		{"a flipped byte", flipByte(good, len(good)-1), sum, "is not the"},
		{"truncated", good[:len(good)-5], sum, "is not the"},
		{"out of bounds, digest recomputed", reenc(func(s *Shipment) { s.Columns[0].Num[0] = 1e9 }), "", "outside its bounds"},
		{"a column the plan does not ship", reenc(func(s *Shipment) {
			s.Columns = append(s.Columns, ShipmentCol{Name: "household", Kind: kindDict, Codes: make([]uint32, s.Rows), Dict: []string{"H1"}})
		}), "", "the plan ships"},
		{"bad magic", append([]byte("DSJ1"), good[4:]...), "", "bad magic"},
		{"trailing bytes", append(bytes.Clone(good), 0), "", "trailing bytes"},
		{"rows past the data", reenc(func(s *Shipment) { s.Rows = 1 << 20 }), "", "rows in"},
		{"a tag missing", reenc(func(s *Shipment) { s.Tags = s.Tags[TagSize:] }), "", "trailing bytes"},
		{"another job", reenc(func(s *Shipment) { s.Job = "job-2" }), "", "names job"},
		{"a code outside the dictionary", reenc(func(s *Shipment) { s.Columns[1].Codes[0] = 99 }), "", "outside its dictionary"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.digest
			if d == "" {
				d = ShipmentDigest(c.b)
			}
			_, err := ParseShipment(c.b, d, "job-1", side, &f.tax.Schema)
			if !errors.Is(err, ErrBadData) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	if _, err := ParseShipment(good, sum, "job-1", side, &f.tax.Schema); err != nil {
		t.Fatal(err)
	}
	// A flow committed before BLAKE3 names the shipment's SHA-256: the
	// shipment is checked against that, and a BLAKE3 does not pass for it.
	old := sha256.Sum256(good)
	legacy := FlowDigest(policies.JobFlow{SHA256: hex.EncodeToString(old[:])})
	if _, err := ParseShipment(good, legacy, "job-1", side, &f.tax.Schema); err != nil {
		t.Fatalf("a shipment against its flow's SHA-256: %v", err)
	}
	if _, err := ParseShipment(flipByte(good, 9), legacy, "job-1", side, &f.tax.Schema); !errors.Is(err, ErrBadData) || !strings.Contains(err.Error(), "sha256 ") {
		t.Fatalf("a changed shipment against its flow's SHA-256: %v", err)
	}
	if d := FlowDigest(policies.JobFlow{BLAKE3: sum}); d != sum {
		t.Fatalf("FlowDigest of a BLAKE3 flow: %q", d)
	}
	if _, err := ParseShipment(good, legacyDigest+sum, "job-1", side, &f.tax.Schema); !errors.Is(err, ErrBadData) {
		t.Fatalf("a BLAKE3 passed for a SHA-256: %v", err)
	}
}

func FuzzParseShipment(f *testing.F) {
	side := policies.JoinSide{Dataset: "tax2025", Key: "person_id", Columns: []string{"income", "region"}}
	good, err := (&Shipment{Job: "job-1", Dataset: "tax2025", Rows: 2, Tags: make([]byte, 2*TagSize), Columns: []ShipmentCol{
		{Name: "income", Kind: kindNum, Num: []float64{5, 7}}, {Name: "region", Kind: kindDict, Codes: []uint32{0, 1}, Dict: []string{"r1", "r2"}}}}).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	// In mode he, a column of ciphertexts (these are not well-formed).
	he, err := (&Shipment{Job: "job-1", Dataset: "tax2025", Rows: 2, Tags: make([]byte, 2*TagSize), Columns: []ShipmentCol{
		{Name: "income", Kind: kindHE, Norm: 100000, HE: []ShipmentCT{{Name: "x:income", Cts: [][]byte{{1, 2, 3}}}, {Name: "xx:income", Cts: [][]byte{{4}}}}},
		{Name: "region", Kind: kindDict, Codes: []uint32{0, 1}, Dict: []string{"r1", "r2"}}}}).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(he)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseShipment(b, ShipmentDigest(b), "job-1", side, &taxJoinSchema)
		if err != nil {
			return
		}
		if _, err := s.HEPart(&taxJoinSchema, 1); err != nil {
			t.Fatalf("a parsed shipment's ciphertexts do not load: %v", err)
		}
		p := s.Part(&taxJoinSchema, 1)
		if len(p.Tags) != p.Table.Rows {
			t.Fatal("tags and rows differ")
		}
		// What parses re-encodes to the same bytes (one encoding per
		// shipment, so one digest).
		again, err := s.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}

// A conditional aggregate whose condition reads one dataset and whose
// value the other: the plan ships the condition's column from its owner,
// and the result is the plaintext join's.
func TestJoinConditionalAggregate(t *testing.T) {
	f := joinFixtures(t, 300, 100, 400, nil)
	q, err := ParseQuery("SELECT b.kind, SUM(CASE WHEN t.region = 'r1' THEN b.benefit ELSE 0 END) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id GROUP BY b.kind")
	if err != nil {
		t.Fatal(err)
	}
	if p := q.Plan(); len(p.Join) != 2 || len(p.Join[0].Columns) != 1 || p.Join[0].Columns[0] != "region" || len(p.Case) != 1 || p.Case[0] != "tax2025.region" {
		t.Fatalf("plan %+v", p)
	}
	res, err := ExecuteJoin(context.Background(), q, f.parts(t, q, []byte("k"), 1), Control{MinGroupSize: 1, NoNoise: true}, DefaultLimits(), []byte("s"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{}
	for i, id := range f.ids {
		if k, ok := f.kind[id]; ok && i%4 == 1 {
			want[k] += f.benefit[id]
		}
	}
	if len(res.Rows) != 3 {
		t.Fatalf("%v", res.Rows)
	}
	for _, r := range res.Rows {
		if !near(r[1].(float64), want[r[0].(string)]) {
			t.Fatalf("row %v, want %v", r, want)
		}
	}
}

// Three datasets join as two do: a person is in the result when it is in
// all three.
func TestJoinThreeDatasets(t *testing.T) {
	f := joinFixtures(t, 300, 100, 400, nil)
	s := policies.Schema{Columns: []policies.Column{
		{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
		{Name: "tenure", Type: policies.TypeString, Class: policies.Public},
	}}
	var b bytes.Buffer
	b.WriteString("person_id,tenure\n")
	for i := 250; i < 500; i++ {
		fmt.Fprintf(&b, "P%07d,t%d\n", i, i%2)
	}
	dir := filepath.Join(t.TempDir(), "housing2025")
	if _, err := IngestConsortium(context.Background(), &b, &s, bytes.Repeat([]byte{9}, 32), dir, nil, (&fakePRF{}).fn); err != nil {
		t.Fatal(err)
	}
	h, err := LoadTable(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParseQuery("SELECT h.tenure, COUNT(*) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id JOIN housing2025 h ON h.person_id = b.person_id GROUP BY h.tenure")
	if err != nil {
		t.Fatal(err)
	}
	var parts []JoinPart
	for _, side := range q.Plan().Join {
		tab := map[string]*Table{"tax2025": f.tax, "benefits2025": f.ben, "housing2025": h}[side.Dataset]
		sh, err := Ship("job-1", tab, side, []byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, sh.Part(&tab.Schema, 1))
	}
	res, err := ExecuteJoin(context.Background(), q, parts, Control{MinGroupSize: 1, NoNoise: true}, DefaultLimits(), []byte("s"))
	if err != nil {
		t.Fatal(err)
	}
	// People 250..299 are in all three: 25 of each tenure.
	if len(res.Rows) != 2 || res.Rows[0][1].(float64) != 25 || res.Rows[1][1].(float64) != 25 {
		t.Fatalf("%v", res.Rows)
	}
	four, err := ParseQuery("SELECT COUNT(*) FROM tax2025 t JOIN benefits2025 b USING (person_id) JOIN housing2025 h USING (person_id) JOIN other2025 o USING (person_id)")
	if err != nil {
		t.Fatal(err)
	}
	var re *RefusalError
	if err := CheckJoin(four, JoinEnv{Nodes: 5}, policies.ModeMasked); !errors.As(err, &re) || re.Rule != RuleJoin || !strings.Contains(re.Msg, "at most 3 datasets") {
		t.Fatalf("four datasets: %v", err)
	}
}

func flipByte(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

// rawShipment encodes a shipment whatever its shape (Marshal refuses
// inconsistent ones): what a faulty or hostile owner could send.
func rawShipment(s *Shipment) []byte {
	ok := *s
	ok.Rows = len(s.Tags) / TagSize
	b, err := (&Shipment{Job: s.Job, Dataset: s.Dataset, Rows: ok.Rows, Tags: s.Tags, Columns: []ShipmentCol{}}).Marshal()
	if err != nil {
		panic(err)
	}
	// Patch the row count, then append the columns as they are.
	off := len(shipMagic) + 2 + len(s.Job) + 2 + len(s.Dataset)
	binary.LittleEndian.PutUint32(b[off:], uint32(s.Rows))
	b = b[:len(b)-2]
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s.Columns)))
	e := &encoder{b: b}
	for _, c := range s.Columns {
		e.b = binary.LittleEndian.AppendUint16(e.b, uint16(len(c.Name)))
		e.b = append(e.b, c.Name...)
		if c.Kind == kindNum {
			appendNumCol(e, c)
			continue
		}
		appendDictCol(e, c)
	}
	return e.b
}
