package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// The batched, concurrent ingest stores what the row-by-row one stored:
// the SHA-256 of each column's decompressed bytes and of meta.json for
// 20,000 demo rows (seed 11), as the row-by-row ingest (commit e8235e3)
// wrote them.
func TestIngestStoresWhatItStored(t *testing.T) {
	want := map[string]string{
		"age.col":            "27117a0e45f92025f0ffdcd3cef3b13a0b0e92dc5770c012c8527fa7f1f0395f",
		"benefits.col":       "a2203cedd410be478af76245cbae6c1b32f8ef40e7405ca799156e6365b26c06",
		"household_size.col": "9edaf2632a690f34daef445494f3a28399f4f98d417be3f272d844d8fe105390",
		"income.col":         "9f38041ad2c9b4c0b4c4303e155b796fb804e813c6fa2268b2f3b3a3321add9c",
		"meta.json":          "e669568c413c45a1ac0eb60ef9fb8a84f137264488c114aaaa7a788bc739b522",
		"person_id.col":      "9a87beed3b4332d7e71d6c111b313089c980a76a730e6bc2f63ca4a9b7145c2b",
		"region.col":         "d9fd03aa90a4ce47eafc75a4f6f4a81a1d161364b6d598c28e253370bc6442ee",
		"sex.col":            "cc84c664c7c01e05d45ebd7bb1ba0a84687ffbecbbecd91d627359c421694aaf",
		"year.col":           "492ca284265aa592648a5724684068c4c5f7e3fa63651738e938d25c31997506",
	}
	var buf bytes.Buffer
	if err := GenerateDemo(&buf, 20_000, 11); err != nil {
		t.Fatal(err)
	}
	schema := DemoSchema()
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := Ingest(context.Background(), &buf, &schema, testKey, dir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(want) {
		t.Fatalf("%d files stored, want %d", len(ents), len(want))
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name(), ".col") {
			z, err := zstd.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			b, err = io.ReadAll(z)
			z.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want[e.Name()] {
			t.Errorf("%s: stored bytes changed (sha256 %s)", e.Name(), got)
		}
	}
}

// A file's first problem is reported, in the order a row-by-row reading
// meets them, wherever the batches and the columns' goroutines put it.
func TestIngestReportsTheFirstProblem(t *testing.T) {
	schema := DemoSchema()
	head := "person_id,age,sex,region,household_size,income,benefits,year\n"
	good := "P1,30,F,north,2,50000,100,2025\n"
	rows := func(n int, at map[int]string) string {
		var b strings.Builder
		b.WriteString(head)
		for i := range n {
			if r, ok := at[i]; ok {
				b.WriteString(r)
				continue
			}
			b.WriteString(good)
		}
		return b.String()
	}
	// Row i of the data is on line i+2.
	badAge := "P1,x,F,north,2,50000,100,2025\n"
	badIncome := "P1,30,F,north,2,y,100,2025\n"
	badBoth := "P1,30,F,north,2,y,z,2025\n"
	short := "P1,30\n"
	cases := []struct {
		name string
		data string
		want string
	}{
		{"later column, earlier row", rows(batchRows+50, map[int]string{batchRows + 40: badAge, batchRows + 10: badIncome}),
			fmt.Sprintf(`line %d, column "income": "y" is not a number`, batchRows+12)},
		{"first column of a row", rows(100, map[int]string{7: badBoth}), `line 9, column "income": "y"`},
		{"across batches", rows(3*batchRows, map[int]string{2*batchRows + 5: badAge, batchRows - 1: badIncome}),
			fmt.Sprintf(`line %d, column "income"`, batchRows+1)},
		{"value before a later bad record", rows(200, map[int]string{150: short, 120: badAge}), `line 122, column "age"`},
		{"bad record before a later value", rows(200, map[int]string{120: short, 150: badAge}), "line 122: wrong number of columns"},
		{"bad record after a full batch", rows(batchRows+1, map[int]string{batchRows: short}), fmt.Sprintf("line %d: wrong number of columns", batchRows+2)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tax")
			_, err := Ingest(context.Background(), strings.NewReader(c.data), &schema, testKey, dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrBadData) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if _, err := os.Stat(dir + ".ingest"); !os.IsNotExist(err) {
				t.Fatal("a failed ingest left its work directory")
			}
		})
	}
}

// An ingest stops when its context ends, leaving nothing behind.
func TestIngestCancelled(t *testing.T) {
	var buf bytes.Buffer
	if err := GenerateDemo(&buf, 50_000, 5); err != nil {
		t.Fatal(err)
	}
	schema := DemoSchema()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := Ingest(ctx, &buf, &schema, testKey, dir); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(dir + ".ingest"); !os.IsNotExist(err) {
		t.Fatal("a cancelled ingest left its work directory")
	}
}

func TestParseNumber(t *testing.T) {
	for _, s := range []string{"0", "-0", "7", "007", "30.5", "-12.75", "5.", ".5", "123456789012345", "1234567890123456",
		"0.1", "0.000000000000001", "99999.99", "1e5", "+3", "-", ".", "", "1.2.3", "1_000", "inf", "NaN", "0x10", " 1", "1 "} {
		t.Run(strconv.Quote(s), func(t *testing.T) { sameNumber(t, s) })
	}
}

func sameNumber(t *testing.T, s string) {
	t.Helper()
	want, werr := strconv.ParseFloat(s, 64)
	got, gerr := parseNumber([]byte(s))
	if (werr == nil) != (gerr == nil) || (werr == nil && math.Float64bits(want) != math.Float64bits(got)) {
		t.Fatalf("%q: strconv %v (%v), parseNumber %v (%v)", s, want, werr, got, gerr)
	}
}

func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "30.5", "-12.75", ".5", "5.", "999999999999999", "0.30000000000000004", "1e308"} {
		f.Add(s)
	}
	f.Fuzz(sameNumber)
}
