package mpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
)

// psLedger is the committed state as the pseudonym party reads it: node
// accounts, the ceremony, batches (committed through commit, which keeps
// a quota like the state machine does).
type psLedger struct {
	*fakeLedger
	mu      sync.Mutex
	cer     *policies.PseudonymCeremony
	batches map[string]policies.PseudonymBatch
	quota   int64
	used    int64
}

func (l *psLedger) Pseudonym() (policies.PseudonymCeremony, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cer == nil {
		return policies.PseudonymCeremony{}, false
	}
	return *l.cer, true
}

func (l *psLedger) PseudonymBatch(id string) (policies.PseudonymBatch, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.batches[id]
	return b, ok
}

type psConsortium struct {
	led     *psLedger
	parties map[string]*Pseudonyms
	nodes   []Participant
	down    sync.Map // node -> true
	evals   sync.Map // node -> *int: evaluations asked of it by a peer
	rogue   sync.Map // node -> true: answers with a wrong key
}

func newPsConsortium(t testing.TB, n, thr int) *psConsortium {
	t.Helper()
	c := &psConsortium{led: &psLedger{fakeLedger: &fakeLedger{accounts: map[policies.Address]policies.Account{}}, batches: map[string]policies.PseudonymBatch{}, quota: 1 << 20},
		parties: map[string]*Pseudonyms{}}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("node%d", i)
		key, err := chain.GenerateKey(chain.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		addr := policies.Address(key.Address())
		c.led.accounts[addr] = policies.Account{Address: addr, PublicKey: key.PublicKey(), Algorithm: "ed25519", Roles: []string{"node"}}
		c.nodes = append(c.nodes, Participant{Node: name, Address: addr})
		p, err := NewPseudonyms(PseudonymConfig{Node: name, Key: key, Dir: t.TempDir(), Ledger: c.led,
			Call: func(ctx context.Context, peer, svc string, body []byte) ([]byte, error) {
				return c.serve(ctx, peer, svc, body)
			}})
		if err != nil {
			t.Fatal(err)
		}
		c.parties[name] = p
	}
	doc, err := c.parties["node1"].RunCeremony(context.Background(), c.nodes, thr)
	if err != nil {
		t.Fatal(err)
	}
	c.led.cer = doc
	return c
}

func (c *psConsortium) serve(ctx context.Context, peer, svc string, body []byte) ([]byte, error) {
	if _, down := c.down.Load(peer); down {
		return nil, errors.New("connection refused")
	}
	if svc == svcPsEval {
		n, _ := c.evals.LoadOrStore(peer, new(int))
		c.led.mu.Lock()
		*n.(*int)++
		c.led.mu.Unlock()
		if _, rogue := c.rogue.Load(peer); rogue {
			return c.rogueEval(peer, body)
		}
	}
	return c.parties[peer].Serve(ctx, svc, body)
}

// rogueEval answers with a share of another key, properly signed.
func (c *psConsortium) rogueEval(peer string, body []byte) ([]byte, error) {
	p := c.parties[peer]
	var req EvalRequest
	if _, err := open(p.cfg.Ledger, svcPsEval, body, &req); err != nil {
		return nil, err
	}
	r, err := pseudonym.ParseRequest(req.Request)
	if err != nil {
		return nil, err
	}
	_, point, _, _ := p.Share()
	d, _ := pseudonym.Deal(1, []uint64{point})
	s, _ := d.Share(point)
	other, err := pseudonym.Combine(1, point, [][]byte{s}, [][][]byte{d.Commitments()})
	if err != nil {
		return nil, err
	}
	part, err := other.Evaluate(r)
	if err != nil {
		return nil, err
	}
	pb, _ := part.MarshalBinary()
	return seal(p.cfg.Key, svcPsEval, evalResp{Batch: req.Batch, Node: peer, Partial: pb})
}

func (c *psConsortium) evalCount() int {
	total := 0
	c.evals.Range(func(_, v any) bool { total += *v.(*int); return true })
	return total
}

// transport is a client's way in through node1: commit is the state
// machine's quota check in miniature, evaluate is Gather.
type transport struct {
	c    *psConsortium
	node string
}

func (tr transport) Commit(_ context.Context, doc policies.PseudonymBatchDoc) (string, error) {
	l := tr.c.led
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used+doc.Count > l.quota {
		return "", fmt.Errorf("%w: quota", policies.ErrForbidden)
	}
	l.used += doc.Count
	id := "psb-" + strconv.Itoa(len(l.batches)+1)
	l.batches[id] = policies.PseudonymBatch{ID: id, Count: doc.Count, Purpose: doc.Purpose, Request: doc.Request}
	return id, nil
}

func (tr transport) Evaluate(ctx context.Context, batch string, req []byte, need int, exclude []uint64) ([][]byte, error) {
	return tr.c.parties[tr.node].Gather(ctx, batch, req, need, exclude)
}

func (c *psConsortium) client(t *testing.T) *pseudonym.Client {
	t.Helper()
	cer, _ := c.led.Pseudonym()
	var points []uint64
	for _, q := range cer.Participants {
		points = append(points, q.Point)
	}
	pub, err := pseudonym.NewPublic(cer.Threshold, points, cer.Commitments)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range cer.Participants {
		if !pub.CheckKey(q.Point, q.VerificationKey) {
			t.Fatalf("%s: the ledger's verification key differs from the commitments'", q.Node)
		}
	}
	if !bytes.Equal(pub.PublicKey(), cer.PublicKey) {
		t.Fatal("the ledger's public key differs from the commitments'")
	}
	return pseudonym.NewClient(pub)
}

func psIDs(n int) [][]byte {
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = []byte(fmt.Sprintf("id-%06d", i))
	}
	return ids
}

func TestPseudonymCeremonyAndEvaluation(t *testing.T) {
	c := newPsConsortium(t, 4, 3)
	cl := c.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	doc := policies.PseudonymBatchDoc{Purpose: policies.PurposeDataset, Dataset: "census"}
	ids := psIDs(20)
	want, err := cl.Pseudonymise(ctx, transport{c, "node1"}, doc, ids)
	if err != nil {
		t.Fatal(err)
	}
	// node1 evaluates itself and asks t-1 = 2 others.
	if n := c.evalCount(); n != 2 {
		t.Fatalf("%d remote evaluations for one batch, want t-1 = 2", n)
	}
	// Through another node, another active set: the same pseudonyms.
	got, err := cl.Pseudonymise(ctx, transport{c, "node4"}, doc, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !bytes.Equal(want[i], got[i]) {
			t.Fatalf("id %d: two active sets disagree", i)
		}
	}

	t.Run("rogue node detected, another asked", func(t *testing.T) {
		c.rogue.Store("node2", true)
		defer c.rogue.Delete("node2")
		got, err := cl.Pseudonymise(ctx, transport{c, "node1"}, doc, ids[:5])
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if !bytes.Equal(want[i], got[i]) {
				t.Fatalf("id %d: pseudonym with a rogue node", i)
			}
		}
	})
	t.Run("one node down", func(t *testing.T) {
		c.down.Store("node3", true)
		defer c.down.Delete("node3")
		got, err := cl.Pseudonymise(ctx, transport{c, "node1"}, doc, ids[:5])
		if err != nil || !bytes.Equal(got[4], want[4]) {
			t.Fatalf("with node3 down: %v", err)
		}
	})
	t.Run("t-1 nodes cannot evaluate", func(t *testing.T) {
		c.down.Store("node3", true)
		c.down.Store("node4", true)
		defer c.down.Delete("node3")
		defer c.down.Delete("node4")
		if _, err := cl.Pseudonymise(ctx, transport{c, "node1"}, doc, ids[:5]); err == nil {
			t.Fatal("2 of threshold 3 pseudonymised")
		}
	})
	t.Run("uncommitted batch refused by every node", func(t *testing.T) {
		_, req, _ := cl.Blind(ids[:3])
		rb, _ := req.MarshalBinary()
		before := c.evalCount()
		if _, err := c.parties["node1"].Gather(ctx, "psb-999", rb, 3, nil); err == nil {
			t.Fatal("gathered for a batch not on the ledger")
		}
		// A committed batch, another request: each node checks the digest.
		id, _ := transport{c, "node1"}.Commit(ctx, policies.PseudonymBatchDoc{Count: 3, Request: pseudonym.RequestSHA256([]byte("x"))})
		msg, _ := seal(c.parties["node1"].cfg.Key, svcPsEval, EvalRequest{Batch: id, Request: rb})
		if _, err := c.parties["node2"].Serve(ctx, svcPsEval, msg); err == nil {
			t.Fatal("node2 evaluated a request its batch does not name")
		}
		if c.evalCount() != before {
			t.Fatal("a node was asked to evaluate an uncommitted batch")
		}
	})
	t.Run("beyond quota refused before any node evaluates", func(t *testing.T) {
		c.led.mu.Lock()
		c.led.quota = c.led.used + 4
		c.led.mu.Unlock()
		before := c.evalCount()
		if _, err := cl.Pseudonymise(ctx, transport{c, "node1"}, doc, ids[:5]); !errors.Is(err, policies.ErrForbidden) {
			t.Fatalf("beyond quota: %v", err)
		}
		if c.evalCount() != before {
			t.Fatal("nodes evaluated a batch beyond quota")
		}
	})
	t.Run("restart keeps the share, 0600", func(t *testing.T) {
		p := c.parties["node2"]
		_, _, vk, _ := p.Share()
		fi, err := os.Stat(filepath.Join(p.cfg.Dir, psFileName))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("share file mode %v", fi.Mode().Perm())
		}
		again, err := NewPseudonyms(p.cfg)
		if err != nil {
			t.Fatal(err)
		}
		cer, point, vk2, ok := again.Share()
		if !ok || cer != c.led.cer.ID || point != 2 || !bytes.Equal(vk, vk2) {
			t.Fatal("a restarted node lost its share")
		}
		c.parties["node2"] = again
		c.led.mu.Lock()
		c.led.quota = 1 << 20
		c.led.mu.Unlock()
		c.down.Store("node1", true)
		defer c.down.Delete("node1")
		got, err := cl.Pseudonymise(ctx, transport{c, "node2"}, doc, ids[:2])
		if err != nil || !bytes.Equal(got[1], want[1]) {
			t.Fatalf("after restart: %v", err)
		}
	})
	t.Run("pipelined batches", func(t *testing.T) {
		got, err := cl.PseudonymiseAll(ctx, transport{c, "node1"}, doc, ids, 6, 3)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if !bytes.Equal(want[i], got[i]) {
				t.Fatalf("id %d differs when pipelined", i)
			}
		}
	})
}

func TestPseudonymCeremonyRefusals(t *testing.T) {
	c := newPsConsortium(t, 3, 2)
	ctx := context.Background()
	if _, err := c.parties["node1"].RunCeremony(ctx, c.nodes, 1); err == nil {
		t.Fatal("threshold 1 accepted")
	}
	if _, err := c.parties["node1"].RunCeremony(ctx, c.nodes[1:], 2); err == nil {
		t.Fatal("a coordinator outside the ceremony")
	}
	c.down.Store("node3", true)
	if _, err := c.parties["node1"].RunCeremony(ctx, c.nodes, 2); err == nil {
		t.Fatal("a ceremony completed with a participant down")
	}
}

// A ceremony that completes among the nodes but is not committed (say
// the state machine refused it) leaves the committed key working; once a
// new one is committed (a rotation), it is the one used, and a restarted
// node still holds both shares.
func TestPseudonymUncommittedCeremonyKeepsShares(t *testing.T) {
	c := newPsConsortium(t, 3, 2)
	ctx := context.Background()
	doc := policies.PseudonymBatchDoc{Purpose: policies.PurposeDataset, Dataset: "census"}
	ids := psIDs(3)
	before, err := c.client(t).Pseudonymise(ctx, transport{c, "node1"}, doc, ids)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.parties["node2"].RunCeremony(ctx, c.nodes, 2)
	if err != nil {
		t.Fatal(err)
	}
	same, err := c.client(t).Pseudonymise(ctx, transport{c, "node3"}, doc, ids)
	if err != nil || !bytes.Equal(same[0], before[0]) {
		t.Fatalf("after an uncommitted ceremony: %v", err)
	}
	c.led.mu.Lock()
	c.led.cer = second
	c.led.mu.Unlock()
	for name, p := range c.parties {
		again, err := NewPseudonyms(p.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(again.shares) != 2 {
			t.Fatalf("%s reloads %d shares, want 2", name, len(again.shares))
		}
		c.parties[name] = again
	}
	after, err := c.client(t).Pseudonymise(ctx, transport{c, "node1"}, doc, ids)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(after[0], before[0]) {
		t.Fatal("the rotated key gives the old pseudonyms")
	}
}
