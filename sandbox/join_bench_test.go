package sandbox

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/policies"
)

var (
	joinRows = flag.Int("join-rows", 1_000_000, "rows of each dataset in BenchmarkJoin")
	joinCSV  = flag.String("join-csv", "", "BenchmarkJoin writes the two datasets it joins as CSV files into this folder (tax2025.csv, benefits2025.csv: the ids as text, before pseudonyms), for cmd/bench's DuckDB baseline")
)

// joinBenchTable is n rows of people first..first+n-1: consortium
// pseudonyms, a 16-valued public column and a bounded number.
func joinBenchTable(schema policies.Schema, first, n int, group, value string, dict []string, hi float64) *Table {
	t := &Table{Rows: n, Schema: schema, Cols: map[string]*Column{}}
	key, _ := schema.Column("person_id")
	gm, _ := schema.Column(group)
	vm, _ := schema.Column(value)
	ps := make([]byte, 0, n*PseudonymSize)
	// The pseudonym stands for the consortium's of the id the CSV holds
	// (writeJoinCSV).
	codes := make([]uint32, n)
	nums := make([]float64, n)
	var id [8]byte
	for i := range n {
		binary.BigEndian.PutUint64(id[:], uint64(first+i))
		h := sha256.Sum256(id[:])
		ps = append(ps, h[:PseudonymSize]...)
		codes[i] = uint32((first + i) % len(dict))
		nums[i] = float64((first+i)*7919%int(hi)) + 0.5
	}
	t.Cols["person_id"] = &Column{Meta: key, Kind: kindPseudo, Pseudo: ps}
	t.Cols[group] = &Column{Meta: gm, Kind: kindDict, Codes: codes, Dict: dict}
	t.Cols[value] = &Column{Meta: vm, Kind: kindNum, Num: nums}
	return t
}

// BenchmarkJoin is a masked join end to end between two datasets of
// -join-rows rows each, half of the people in both, GROUP BY a 16-valued
// column: both owners tag and encode their part, the executor checks the
// digests, parses, joins on tags, aggregates with output control. It
// reports the rows of both datasets per second, the process's CPU time
// per join (and of it, the owners' tagging and encoding, and the
// executor's part) and the bytes shipped per row (what moves between nodes; the node-to-node hop itself is not
// timed).
func BenchmarkJoin(b *testing.B) {
	n := *joinRows
	regions := DemoRegions
	tax := joinBenchTable(taxJoinSchema, 0, n, "region", "income", regions, 100000)
	ben := joinBenchTable(benefitJoinSchema, n/2, n, "kind", "benefit", []string{"unemployment", "housing", "child"}, 5000)
	q, err := ParseQuery("SELECT t.region, COUNT(*), AVG(b.benefit) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id GROUP BY t.region")
	if err != nil {
		b.Fatal(err)
	}
	if *joinCSV != "" { // the same files for every run of one folder
		if err := writeJoinCSV(filepath.Join(*joinCSV, "tax2025.csv"), tax, 0, "region", "income"); err != nil {
			b.Fatal(err)
		}
		if err := writeJoinCSV(filepath.Join(*joinCSV, "benefits2025.csv"), ben, n/2, "kind", "benefit"); err != nil {
			b.Fatal(err)
		}
	}
	plan := q.Plan()
	tabs := map[string]*Table{"tax2025": tax, "benefits2025": ben}
	kJob := []byte("bench job key")
	var shipped int
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	for range b.N {
		var parts []JoinPart
		parts, shipped = shipAndParse(b, plan, tabs, kJob, nil, maskedPart)
		res, err := ExecuteJoin(context.Background(), q, parts, Control{MinGroupSize: 10, Epsilon: 1}, DefaultLimits(), []byte("sel"))
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Rows) != len(regions) {
			b.Fatalf("%d groups", len(res.Rows))
		}
	}
	el := time.Since(start)
	cpu := processCPU() - cpu0
	// The owners' share of the CPU, measured apart: in the join, a part is
	// checked as soon as its owner has shipped it, beside the other owner.
	b.StopTimer()
	c0 := processCPU()
	for range b.N {
		shipParts(b, plan, tabs, kJob, nil)
	}
	ownersCPU := processCPU() - c0
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(ownersCPU)/float64(b.N)/1e6, "owners-cpu-ms/op")
	b.ReportMetric(float64(cpu-ownersCPU)/float64(b.N)/1e6, "executor-cpu-ms/op")
	b.ReportMetric(float64(2*n*b.N)/el.Seconds(), "rows/s")
	b.ReportMetric(float64(shipped)/float64(2*n), "ship-bytes/row")
}

// writeJoinCSV writes a joinBenchTable of people first.. as the CSV an
// agency would upload (unless the file exists): person_id (the id as
// text, P and 8 digits), the group and the number.
func writeJoinCSV(path string, t *Table, first int, group, value string) error {
	if _, err := os.Stat(path); err == nil {
		return nil // written by an earlier run
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "person_id,%s,%s\n", group, value)
	g, v := t.Cols[group], t.Cols[value]
	for i := range t.Rows {
		fmt.Fprintf(w, "P%08d,%s,%s\n", first+i, g.Dict[g.Codes[i]], strconv.FormatFloat(v.Num[i], 'f', -1, 64))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var listIDs = flag.Int("list-ids", 100_000, "distinct ids of the list in BenchmarkListJoin")

// BenchmarkListJoin is a list join in process: the enterprise's side
// (tags of -list-ids pseudonyms under k_job, the shipment encoded) and the
// executor's (the list and a -join-rows dataset checked and parsed,
// semi-joined on tags, grouped by a list column, output control with the
// noisy threshold). Half the list is in the dataset. It reports the
// seconds per list join and the bytes shipped per id of the list.
func BenchmarkListJoin(b *testing.B) {
	n, m := *joinRows, *listIDs
	tax := joinBenchTable(taxJoinSchema, 0, n, "region", "income", DemoRegions, 100000)
	q, err := ParseQuery("SELECT a.branch, COUNT(*), AVG(t.income) FROM tax2025 t JOIN applicants a ON t.person_id = a.id GROUP BY a.branch")
	if err != nil {
		b.Fatal(err)
	}
	plan := q.Plan()
	l := policies.JobList{Name: "applicants", Key: plan.Join[1].Key, Columns: plan.Join[1].Columns, Size: int64(m)}
	// The list's pseudonyms: people n-m/2 .. n+m/2-1 (half in tax2025),
	// as joinBenchTable derives them; a branch of 3 each.
	ps := make([][]byte, m)
	branch := make([]string, m)
	var id [8]byte
	for i := range m {
		binary.BigEndian.PutUint64(id[:], uint64(n-m/2+i))
		h := sha256.Sum256(id[:])
		ps[i] = h[:]
		branch[i] = []string{"east", "north", "south"}[i%3]
	}
	kJob := []byte("bench job key")
	var shipped int
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		tags, err := ListTags(kJob, ps)
		if err != nil {
			b.Fatal(err)
		}
		s, err := ShipList("job-1", l, tags, map[string][]string{"branch": branch})
		if err != nil {
			b.Fatal(err)
		}
		raw, err := s.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		shipped = len(raw)
		list, err := ParseList(raw, ShipmentDigest(raw), "job-1", l)
		if err != nil {
			b.Fatal(err)
		}
		ts, err := Ship("job-1", tax, plan.Join[0], kJob)
		if err != nil {
			b.Fatal(err)
		}
		traw, err := ts.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		got, err := ParseShipment(traw, ShipmentDigest(traw), "job-1", plan.Join[0], &tax.Schema)
		if err != nil {
			b.Fatal(err)
		}
		res, err := ExecuteJoin(context.Background(), q, []JoinPart{got.Part(&tax.Schema, 1), list}, Control{MinGroupSize: 10, Epsilon: 1}, DefaultLimits(), []byte("sel"))
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Rows) != 3 {
			b.Fatalf("%d groups", len(res.Rows))
		}
	}
	el := time.Since(start)
	b.ReportMetric(el.Seconds()/float64(b.N), "s/op")
	b.ReportMetric(float64(shipped)/float64(m), "ship-bytes/id")
}

// shipParts is what the owners of plan's datasets ship, each a node of its
// own, at once: the part encoded (tagged as it is written, as Joiner
// ships) and the digest its job.flow commits. With he set, the parts of
// the datasets it holds ciphertexts of are he parts (ShipHE).
func shipParts(b *testing.B, plan policies.Plan, tabs map[string]*Table, kJob []byte, he map[string]*heData) (raws [][]byte, digests []string) {
	raws, digests = make([][]byte, len(plan.Join)), make([]string, len(plan.Join))
	parallel(b, len(plan.Join), func(i int) error {
		var err error
		raws[i], digests[i], err = shipPart(plan, tabs, kJob, he, i)
		return err
	})
	return raws, digests
}

// shipPart is the owner of plan.Join[i] shipping its part.
func shipPart(plan policies.Plan, tabs map[string]*Table, kJob []byte, he map[string]*heData, i int) ([]byte, string, error) {
	side := plan.Join[i]
	var s *Shipment
	var err error
	if d := he[side.Dataset]; d != nil {
		s, err = ShipHE("job-1", tabs[side.Dataset], side, kJob, d, plan.Aggregates)
	} else {
		s, err = shipUntagged("job-1", tabs[side.Dataset], side, kJob) // as Joiner ships
	}
	if err != nil {
		return nil, "", err
	}
	return s.MarshalDigest()
}

// shipAndParse is shipParts with the executor checking and parsing each
// part as soon as its owner has shipped it (Joiner fetches the parts at
// once), turned into what the join reads by part; and the bytes shipped.
func shipAndParse[P any](b *testing.B, plan policies.Plan, tabs map[string]*Table, kJob []byte, he map[string]*heData, part func(*Shipment, *policies.Schema) (P, error)) ([]P, int) {
	out := make([]P, len(plan.Join))
	sizes := make([]int, len(plan.Join))
	parallel(b, len(plan.Join), func(i int) error {
		raw, digest, err := shipPart(plan, tabs, kJob, he, i)
		if err != nil {
			return err
		}
		sizes[i] = len(raw)
		schema := &tabs[plan.Join[i].Dataset].Schema
		s, err := ParseShipment(raw, digest, "job-1", plan.Join[i], schema)
		if err == nil {
			out[i], err = part(s, schema)
		}
		return err
	})
	return out, sizes[0] + sizes[1]
}

// maskedPart is a masked join's part, one row per person.
func maskedPart(s *Shipment, schema *policies.Schema) (JoinPart, error) {
	return s.Part(schema, 1), nil
}

// hePart is an he join's part, one row per person.
func hePart(s *Shipment, schema *policies.Schema) (HEJoinPart, error) { return s.HEPart(schema, 1) }

// parallel runs f(0..n-1) at once and fails b with the first error.
func parallel(b *testing.B, n int, f func(i int) error) {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}
