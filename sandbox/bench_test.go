package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// benchTable is a 10M-row demo dataset, ingested once per process.
var benchTable *Table

func loadBenchTable(b *testing.B) *Table {
	b.Helper()
	if benchTable != nil {
		return benchTable
	}
	var buf bytes.Buffer
	if err := GenerateDemo(&buf, 10_000_000, 1); err != nil {
		b.Fatal(err)
	}
	schema := DemoSchema()
	dir := filepath.Join(b.TempDir(), "tax")
	if _, err := Ingest(context.Background(), &buf, &schema, testKey, dir); err != nil {
		b.Fatal(err)
	}
	t, err := LoadTable(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchTable = t
	return t
}

// BenchmarkMaskedGroupBy: 10M rows, 16 groups, COUNT and AVG with DP.
func BenchmarkMaskedGroupBy(b *testing.B) {
	t := loadBenchTable(b)
	q, err := ParseQuery("SELECT region, COUNT(*), AVG(income) FROM tax GROUP BY region")
	if err != nil {
		b.Fatal(err)
	}
	ctl := Control{MinGroupSize: 10, Epsilon: 1}
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		res, err := Execute(context.Background(), t, q, ctl, DefaultLimits())
		if err != nil || len(res.Rows) != 16 {
			b.Fatalf("%v %d", err, len(res.Rows))
		}
	}
	b.ReportMetric(float64(t.Rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	// The process's CPU time per query: steadier than wall time when the
	// machine is shared.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// peakHeap runs f while sampling the heap in use, and returns the peak
// growth over the heap before f.
func peakHeap(f func()) uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		peak := base
		var m runtime.MemStats
		for {
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak {
					peak = m.HeapInuse
				}
			}
		}
	}()
	f()
	close(done)
	return <-result - base
}

// BenchmarkIngest: 8-column CSV rows per second, and the peak heap.
func BenchmarkIngest(b *testing.B) {
	const rows = 1_000_000
	var buf bytes.Buffer
	if err := GenerateDemo(&buf, rows, 2); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	schema := DemoSchema()
	var peak uint64
	var cpu time.Duration
	b.ResetTimer()
	for b.Loop() {
		dir := filepath.Join(b.TempDir(), "t")
		cpu0 := processCPU()
		p := peakHeap(func() {
			if _, err := Ingest(context.Background(), bytes.NewReader(data), &schema, testKey, dir); err != nil {
				b.Fatal(err)
			}
		})
		cpu += processCPU() - cpu0
		peak = max(peak, p)
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// Ingest's memory does not grow with the file: 5x the rows, about the same
// peak heap.
func TestIngestMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 600,000 rows")
	}
	schema := DemoSchema()
	peak := func(rows int) uint64 {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(GenerateDemo(pw, rows, 3)) }()
		dir := filepath.Join(t.TempDir(), "t")
		return peakHeap(func() {
			if _, err := Ingest(context.Background(), pr, &schema, testKey, dir); err != nil {
				t.Error(err)
			}
		})
	}
	small, large := peak(100_000), peak(500_000)
	t.Logf("peak heap growth: %d KiB for 100k rows, %d KiB for 500k rows", small>>10, large>>10)
	if large > 2*small+(8<<20) {
		t.Fatalf("ingest memory grows with the file: %d KiB vs %d KiB", small>>10, large>>10)
	}
}

// BenchmarkHEIngest: encrypted ingest of 500,000 demo rows, whose two
// sensitive columns make 1M values (each stored as x, x² and the product
// of the pair so that plans need no multiplication): the whole ingest
// (CSV, clear columns, encryption, compression, fsync) per 1M values, and
// the encrypted files' bytes per sensitive value.
func BenchmarkHEIngest(b *testing.B) {
	const rows = 500_000
	f := newHEFixture(b)
	var buf bytes.Buffer
	if err := GenerateDemo(&buf, rows, 4); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	schema := DemoSchema()
	values := float64(rows * 2)
	var stored int64
	b.ResetTimer()
	for b.Loop() {
		dir := filepath.Join(b.TempDir(), "t")
		if _, err := IngestEncrypted(context.Background(), bytes.NewReader(data), &schema, testKey, dir, f.keys.PK); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		stored = dirSize(b, filepath.Join(dir, "he"))
		b.StartTimer()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e6/values, "s/1M-values")
	b.ReportMetric(float64(stored)/values, "stored-B/value")
}

func dirSize(b *testing.B, dir string) int64 {
	b.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		st, err := d.Info()
		n += st.Size()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkHEEncrypt: the encryption stage of an encrypted ingest alone
// (values already parsed): 500,000 rows of two sensitive columns, 1M
// values, stored as x, x² and x·y (305 ciphertexts), on all cores.
func BenchmarkHEEncrypt(b *testing.B) {
	const rows = 500_000
	f := newHEFixture(b)
	schema := DemoSchema()
	vals := [][]float64{make([]float64, rows), make([]float64, rows)}
	for i := range rows {
		vals[0][i], vals[1][i] = float64(i%100000)*7.5, float64(i%3000)
	}
	n := heparams.Params().N()
	chunks := (rows + n - 1) / n
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		cols, _ := heColumns(&schema, true)
		e, err := newHEIngest(cols, f.keys.PK)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.open(b.TempDir()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := e.encryptBatch(context.Background(), vals, chunks); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		e.abort()
		b.StartTimer()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e6/float64(2*rows), "s/1M-values")
}

// query10KB is a 10 KB query as an analyst writes one: aliases, a
// grouping CASE, post-processing, HAVING, ORDER BY, and a long IN list.
func query10KB() string {
	var b strings.Builder
	b.WriteString(`SELECT t.region AS r, t.sex, CASE WHEN t.age >= 60 THEN 'senior' WHEN t.age >= 30 THEN 'adult' ELSE 'young' END AS band,
	COUNT(*) AS n, ROUND(AVG(income), 2) AS avg_income, SUM(income * 1.1 - 100) AS adjusted, STDDEV(benefits) AS sd,
	POWER(AVG(income), 2) AS sq, GREATEST(AVG(benefits), 0) AS b, COALESCE(CORR(income, benefits), 0) AS c
	FROM tax AS t -- the 2025 tax records
	WHERE t.age BETWEEN 18 AND 90 AND t.household_size IN (1, 2, 3, 4) AND t.region IN (`)
	for i := 0; b.Len() < 10<<10-200; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "'region-%04d'", i)
	}
	b.WriteString(`)
	GROUP BY t.region, t.sex, 3 HAVING COUNT(*) > 10 ORDER BY n DESC, r LIMIT 100`)
	return b.String()
}

// BenchmarkParseQuery10KB: parse (PostgreSQL's grammar) and walk a 10 KB
// query into its plan, and check it against the schema (make bench
// reports it; goal < 1 ms).
func BenchmarkParseQuery10KB(b *testing.B) {
	src := query10KB()
	schema := DemoSchema()
	b.SetBytes(int64(len(src)))
	// On a shared machine wall time says more about the neighbours than
	// about the parser: the process's CPU time per query is reported too.
	cpu0 := processCPU()
	for b.Loop() {
		q, err := ParseQuery(src)
		if err != nil {
			b.Fatal(err)
		}
		if err := CheckQuery(q, &schema, policies.ModeMasked); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}
