package chain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nonceSM accepts any entry whose nonce grows per author.
type nonceSM struct{ last map[Address]uint64 }

func (s *nonceSM) Reset() { s.last = map[Address]uint64{} }
func (s *nonceSM) Apply(e *Entry, _ uint64, _ time.Time) error {
	if s.last == nil {
		s.Reset()
	}
	if l, ok := s.last[e.Author()]; ok && e.Nonce <= l {
		return fmt.Errorf("nonce %d replayed", e.Nonce)
	}
	s.last[e.Author()] = e.Nonce
	return nil
}

func openTestLedger(t *testing.T, dir string, node *Key) (*Ledger, error) {
	t.Helper()
	return OpenLedger(LedgerConfig{Dir: dir, StateMachine: &nonceSM{}, Key: node, Name: "node1", Origin: "test/log"})
}

// buildLedger writes blocks of entries and a checkpoint covering them all.
func buildLedger(t *testing.T, dir string, node *Key, blocks, perBlock int) {
	t.Helper()
	l, err := openTestLedger(t, dir, node)
	if err != nil {
		t.Fatal(err)
	}
	author := mustKey(t, Ed25519)
	nonce := uint64(0)
	now := time.Now()
	for b := 0; b < blocks; b++ {
		p := &proposal{Time: now.Add(time.Duration(b) * time.Millisecond), Proposer: "node1"}
		for i := 0; i < perBlock; i++ {
			nonce++
			raw, _ := author.NewEntry("test.note", nonce, now, []byte(fmt.Sprintf(`{"n":%d}`, nonce)))
			p.Entries = append(p.Entries, raw)
		}
		for i, r := range l.apply(p) {
			if r.Outcome != Committed {
				t.Fatalf("block %d entry %d: %+v", b, i, r)
			}
		}
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerReopen(t *testing.T) {
	dir := t.TempDir()
	node := mustKey(t, Ed25519)
	buildLedger(t, dir, node, 3, 4)
	l, err := openTestLedger(t, dir, node)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != 12 || l.Height() != 3 {
		t.Fatalf("size %d height %d", l.Size(), l.Height())
	}
	cp, err := l.Checkpoint()
	if err != nil || cp.Size != 12 {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}
	if err := l.VerifyStore(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerDuplicatesAndRejections(t *testing.T) {
	dir := t.TempDir()
	l, err := openTestLedger(t, dir, mustKey(t, Ed25519))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := mustKey(t, Ed25519)
	now := time.Now()
	e1, _ := a.NewEntry("test.note", 1, now, nil)
	e2, _ := a.NewEntry("test.note", 2, now, nil)
	replay, _ := a.NewEntry("test.note", 1, now.Add(time.Second), nil) // new bytes, old nonce
	old, _ := a.NewEntry("test.note", 3, now.Add(-time.Hour), nil)
	res := l.apply(&proposal{Time: now, Proposer: "n", Entries: [][]byte{e1, e1, e2, replay, old, []byte("junk")}})
	want := []Outcome{Committed, Duplicate, Committed, Rejected, Rejected, Rejected}
	for i, r := range res {
		if r.Outcome != want[i] {
			t.Errorf("entry %d: %+v, want outcome %d", i, r, want[i])
		}
	}
	if res[1].Index != 0 || l.Size() != 2 {
		t.Fatalf("size %d, dup index %d", l.Size(), res[1].Index)
	}
	if !strings.Contains(res[4].Reason, "more than") {
		t.Errorf("skew reason: %q", res[4].Reason)
	}
	// A proposal with nothing new makes no block.
	l.apply(&proposal{Time: now, Proposer: "n", Entries: [][]byte{e1}})
	if l.Height() != 1 {
		t.Fatalf("height %d", l.Height())
	}
}

// Every byte flip in every store file is refused at open with the index of
// the damaged record (entries and blocks are covered by the checkpoint).
func TestLedgerTamperEveryByte(t *testing.T) {
	dir := t.TempDir()
	node := mustKey(t, Ed25519)
	buildLedger(t, dir, node, 3, 3)
	for _, name := range []string{"entries.log", "blocks.log", "checkpoints.log"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for i := range orig {
				b := append([]byte(nil), orig...)
				b[i] ^= 0x10
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
				l, err := openTestLedger(t, dir, node)
				if err == nil {
					l.Close()
					t.Fatalf("%s: flip of byte %d not detected", name, i)
				}
				if !errors.Is(err, ErrCorruptStore) {
					t.Fatalf("%s byte %d: %v", name, i, err)
				}
				if err := os.WriteFile(p, orig, 0o600); err != nil { // open may have truncated
					t.Fatal(err)
				}
			}
		})
	}
}

// rewriteRecord replaces record i of a record file with data, fixing the
// checksum, as a tamperer with disk access would.
func rewriteRecord(t *testing.T, path string, i int, edit func([]byte) []byte) {
	t.Helper()
	b, _ := os.ReadFile(path)
	var off int
	for k := 0; ; k++ {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if k == i {
			data := edit(append([]byte(nil), b[off+8:off+8+n]...))
			rec := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
			rec = binary.BigEndian.AppendUint32(rec, crc32.Checksum(data, castagnoli))
			rec = append(rec, data...)
			out := append(append(append([]byte(nil), b[:off]...), rec...), b[off+8+n:]...)
			if err := os.WriteFile(path, out, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
		off += 8 + n
	}
}

func TestLedgerTamperWithValidChecksums(t *testing.T) {
	cases := []struct {
		file  string
		rec   int
		edit  func([]byte) []byte
		index string
	}{
		{"entries.log", 4, func(b []byte) []byte { b[len(b)-70] ^= 1; return b }, "entry 4"},
		{"blocks.log", 1, func(b []byte) []byte { b[10] ^= 1; return b }, "block 2"},
		{"blocks.log", 2, func(b []byte) []byte { b[len(b)-3] ^= 1; return b }, "block 3"},
		{"checkpoints.log", 0, func(b []byte) []byte { b[3] ^= 1; return b }, "checkpoint 0"},
	}
	for _, c := range cases {
		t.Run(c.file+"/"+c.index, func(t *testing.T) {
			dir := t.TempDir()
			node := mustKey(t, Ed25519)
			buildLedger(t, dir, node, 3, 3)
			rewriteRecord(t, filepath.Join(dir, c.file), c.rec, c.edit)
			_, err := openTestLedger(t, dir, node)
			if !errors.Is(err, ErrCorruptStore) || !strings.Contains(err.Error(), c.index) {
				t.Fatalf("got %v, want corrupt store naming %q", err, c.index)
			}
		})
	}
	// A deleted last block is caught by the signed checkpoint.
	dir := t.TempDir()
	node := mustKey(t, Ed25519)
	buildLedger(t, dir, node, 3, 3)
	p := filepath.Join(dir, "blocks.log")
	b, _ := os.ReadFile(p)
	rf, _ := openRecordFile(p, maxBlockRecord)
	last := rf.offsets[2]
	rf.close()
	os.WriteFile(p, b[:last], 0o600)
	if _, err := openTestLedger(t, dir, node); !errors.Is(err, ErrCorruptStore) || !strings.Contains(err.Error(), "checkpoint 0") {
		t.Fatalf("deleted block: %v", err)
	}
}

func TestLedgerTornTail(t *testing.T) {
	dir := t.TempDir()
	node := mustKey(t, Ed25519)
	l, _ := openTestLedger(t, dir, node)
	a := mustKey(t, Ed25519)
	now := time.Now()
	for n := uint64(1); n <= 3; n++ {
		raw, _ := a.NewEntry("test.note", n, now, nil)
		l.apply(&proposal{Time: now, Proposer: "n", Entries: [][]byte{raw}})
	}
	root2, _ := l.Root(2)
	l.Close()
	// Cut the last block header in half: the block and its entry go.
	p := filepath.Join(dir, "blocks.log")
	st, _ := os.Stat(p)
	os.Truncate(p, st.Size()-10)
	l, err := openTestLedger(t, dir, node)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != 2 || l.Height() != 2 {
		t.Fatalf("after torn write: size %d height %d", l.Size(), l.Height())
	}
	if r, _ := l.Root(2); r != root2 {
		t.Fatal("root changed")
	}
}

// BenchmarkLedgerApply is the per-entry cost of committing a 256-entry block
// on one node (parse, dedupe, state machine, tree, store), without Raft.
func BenchmarkLedgerApply(b *testing.B) {
	l, err := OpenLedger(LedgerConfig{Dir: b.TempDir(), StateMachine: &nonceSM{}, Key: mustKey(b, Ed25519), Name: "n", Origin: "o"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const block = 256
	keys := make([]*Key, 64)
	for i := range keys {
		keys[i] = mustKey(b, Ed25519)
	}
	n := (b.N + block - 1) / block * block
	raws := make([][]byte, n)
	now := time.Now()
	for i := range raws {
		raws[i], _ = keys[i%64].NewEntry("test.note", uint64(i+1), now, make([]byte, 64))
	}
	b.ResetTimer()
	for i := 0; i < n; i += block {
		l.apply(&proposal{Time: now, Proposer: "n", Entries: raws[i : i+block]})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/entry")
}
