package audit

import (
	"context"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/chain/chaintest"
	"github.com/datasandbox/datasandbox/policies"
)

// memSource serves blocks from copies that a test may tamper with.
type memSource struct {
	blocks  []chain.Block
	entries [][][]byte
	i       int
}

func (m *memSource) Next(context.Context) (*chain.Block, [][]byte, error) {
	if m.i >= len(m.blocks) {
		return nil, nil, io.EOF
	}
	b := m.blocks[m.i]
	e := m.entries[m.i]
	m.i++
	return &b, e, nil
}

// ledgerFixture commits genesis and a few notes on a 3-node cluster with
// the real state machine, and returns a source copy and the checkpoint.
func ledgerFixture(t *testing.T) (*memSource, *chain.Checkpoint) {
	t.Helper()
	sms := make([]StateMachine, 3)
	c := chaintest.NewClusterWith(t, 3, nil, func(i int) (chain.StateMachine, chain.AdmitFunc) {
		sms[i] = NewStateMachine()
		return sms[i], sms[i].Admit
	})
	admin, _ := chain.GenerateKey(chain.Ed25519)
	g := policies.Genesis{Table: policies.DefaultTable(), Accounts: []policies.GenesisAccount{{PublicKey: admin.PublicKey(), Algorithm: "ed25519", Roles: []string{"admin"}}}}
	raw, _ := GenesisEntry(admin, g, time.Now())
	n := c.Nodes[c.WaitLeader()]
	ctx := t.Context()
	if _, err := n.Append(ctx, raw); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 6; i++ {
		raw, _ := admin.NewEntry("note.x", i, time.Now(), []byte(`{"i":1}`))
		if _, err := n.Append(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	l := n.Ledger()
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	src := &memSource{}
	for h := uint64(1); h <= l.Height(); h++ {
		b, _ := l.Block(h)
		es, _ := l.Entries(b.FirstIndex, b.TreeSize(), 1000)
		src.blocks = append(src.blocks, b)
		src.entries = append(src.entries, es)
	}
	return src, cp
}

func TestVerifyCleanLedger(t *testing.T) {
	src, cp := ledgerFixture(t)
	rep, _, err := Verify(t.Context(), src, cp)
	if err != nil || !rep.OK || rep.Entries != 7 || rep.Kinds["note.x"] != 6 {
		t.Fatalf("%+v %v", rep, err)
	}
}

// Tampering at each layer is detected with the right index and reason.
func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(m *memSource)
		index  int64
		reason string
	}{
		{"entry payload", func(m *memSource) {
			e := m.entries[3][0]
			e[len(e)-70] ^= 1
		}, 3, "signature"},
		{"entry signature", func(m *memSource) {
			e := m.entries[2][0]
			e[len(e)-1] ^= 1
		}, 2, "bad signature"},
		{"block link", func(m *memSource) { m.blocks[4].Prev[0] ^= 1 }, 4, "does not link"},
		{"block root", func(m *memSource) { m.blocks[5].Root[0] ^= 1 }, 5, "Merkle root"},
		{"deleted entry", func(m *memSource) {
			m.blocks = append(m.blocks[:3], m.blocks[4:]...)
			m.entries = append(m.entries[:3], m.entries[4:]...)
		}, 3, "does not link"},
		{"reordered pair", func(m *memSource) {
			m.entries[2], m.entries[3] = m.entries[3], m.entries[2]
		}, 2, "Merkle root"},
		{"truncated ledger", func(m *memSource) { m.blocks, m.entries = m.blocks[:4], m.entries[:4] }, 4, "ends at 4 entries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, cp := ledgerFixture(t)
			for i := range src.entries { // private copies
				for j := range src.entries[i] {
					src.entries[i][j] = append([]byte(nil), src.entries[i][j]...)
				}
			}
			c.tamper(src)
			rep, _, err := Verify(t.Context(), src, cp)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || rep.FirstFailure.Index != c.index || !strings.Contains(rep.FirstFailure.Reason, c.reason) {
				t.Fatalf("got %+v, want index %d and %q", rep.FirstFailure, c.index, c.reason)
			}
		})
	}
}

// A ledger built by a 3-node cluster under concurrent load verifies
// cleanly, and the replayed state hash equals every node's.
func TestVerifyClusterUnderLoad(t *testing.T) {
	sms := make([]StateMachine, 3)
	c := chaintest.NewClusterWith(t, 3, nil, func(i int) (chain.StateMachine, chain.AdmitFunc) {
		sms[i] = NewStateMachine()
		return sms[i], sms[i].Admit
	})
	admin, _ := chain.GenerateKey(chain.Ed25519)
	writers := make([]*chain.Key, 8)
	g := policies.Genesis{Table: policies.DefaultTable(), Accounts: []policies.GenesisAccount{{PublicKey: admin.PublicKey(), Algorithm: "ed25519", Roles: []string{"admin"}}}}
	for i := range writers {
		writers[i], _ = chain.GenerateKey(chain.Ed25519)
		g.Accounts = append(g.Accounts, policies.GenesisAccount{PublicKey: writers[i].PublicKey(), Algorithm: "ed25519", Roles: []string{"agency"}, Org: "a"})
	}
	raw, _ := GenesisEntry(admin, g, time.Now())
	if _, err := c.Nodes[c.WaitLeader()].Append(t.Context(), raw); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, len(writers))
	for w, k := range writers {
		go func() {
			for i := uint64(1); i <= 40; i++ {
				raw, _ := k.NewEntry("note.load", i, time.Now(), []byte(`{}`))
				if _, err := c.Nodes[(w+int(i))%3].Append(t.Context(), raw); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range writers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	size := c.WaitConverged(1 + 8*40)
	for i, n := range c.Nodes {
		l := n.Ledger()
		src := &memSource{}
		for h := uint64(1); h <= l.Height(); h++ {
			b, _ := l.Block(h)
			es, _ := l.Entries(b.FirstIndex, b.TreeSize(), 1<<20)
			src.blocks = append(src.blocks, b)
			src.entries = append(src.entries, es)
		}
		root, _ := l.Root(size)
		rep, _, err := Verify(t.Context(), src, &chain.Checkpoint{Size: size, Root: root})
		if err != nil || !rep.OK {
			t.Fatalf("node %d: %+v %v", i+1, rep.FirstFailure, err)
		}
		for j, sm := range sms {
			if h := sm.M.StateHash(); hex.EncodeToString(h[:]) != rep.StateHash {
				t.Fatalf("replay of node %d's ledger differs from node %d's state", i+1, j+1)
			}
		}
	}
}
