package policies

import (
	"math/rand/v2"
	"testing"
	"time"
)

func entry(author byte, kind string, nonce uint64) Entry {
	return Entry{Author: Address{author}, Kind: kind, Nonce: nonce, Time: time.Unix(0, 0)}
}

func TestNonceReplayRefused(t *testing.T) {
	m := New()
	e := func(n uint64) Entry { return entry(1, "demo.note", n) }
	if err := m.Apply(e(5), 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	before := m.StateHash()
	for _, n := range []uint64{5, 4} {
		if err := m.Apply(e(n), 1, time.Now()); err == nil {
			t.Fatalf("nonce %d accepted after 5", n)
		}
	}
	if m.StateHash() != before {
		t.Fatal("refused entry changed the state")
	}
	if m.NextNonce(Address{1}) != 6 {
		t.Fatal("next nonce")
	}
}

// The same random log applied to two machines gives the same state hash,
// and Reset then replay gives it again.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var log []Entry
	for i := 0; i < 500; i++ {
		log = append(log, entry(byte(rng.IntN(5)), []string{"a", "b.c"}[rng.IntN(2)], rng.Uint64N(200)))
	}
	a, b := New(), New()
	for i, e := range log {
		errA, errB := a.Apply(e, uint64(i), time.Unix(0, 0)), b.Apply(e, uint64(i), time.Unix(0, 0))
		if (errA == nil) != (errB == nil) {
			t.Fatalf("entry %d: outcomes differ", i)
		}
	}
	if a.StateHash() != b.StateHash() {
		t.Fatal("state hashes differ")
	}
	want := a.StateHash()
	a.Reset()
	for i, e := range log {
		_ = a.Apply(e, uint64(i), time.Unix(0, 0))
	}
	if a.StateHash() != want {
		t.Fatal("replay after reset differs")
	}
}
