package audit

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// relabelled returns a copy of a signed request whose signature label is
// renamed in both headers (no signature covers the label).
func relabelled(r *http.Request, label string) *http.Request {
	c := r.Clone(r.Context())
	for _, h := range []string{"Signature-Input", "Signature"} {
		_, rest, _ := strings.Cut(c.Header.Get(h), "=")
		c.Header.Set(h, label+"="+rest)
	}
	return c
}

func TestActKeyIgnoresLabelAndFormatting(t *testing.T) {
	k, _ := chain.GenerateKey(chain.Ed25519)
	r := signed(t, k, "POST", "http://node1.example:8080/v1/jobs", []byte(jobJSON))
	want, err := ActKey(r)
	if err != nil {
		t.Fatal(err)
	}
	spaced := r.Clone(r.Context())
	spaced.Header.Set("Signature", "  "+r.Header.Get("Signature")+" ")
	for name, c := range map[string]*http.Request{"relabelled": relabelled(r, "evil"), "re-spaced": spaced} {
		t.Run(name, func(t *testing.T) {
			if got, err := ActKey(c); err != nil || got != want {
				t.Fatalf("%s: %q, %v; want %q", name, got, err, want)
			}
		})
	}
	other := signed(t, k, "POST", "http://node1.example:8080/v1/jobs", []byte(jobJSON))
	if got, _ := ActKey(other); got == want {
		t.Fatal("two signings (different nonces) are the same act")
	}
}

// handLedger builds a ledger block by block as a node that breaks the rules
// could, bypassing its own state machine: each call to add puts entries
// in a new block.
type handLedger struct {
	src memSource
	fr  chain.Frontier
	t0  time.Time
}

func (h *handLedger) add(entries ...[]byte) {
	first := h.fr.Size()
	for _, e := range entries {
		h.fr.Append(chain.LeafHash(e))
	}
	var prev chain.Hash
	if n := len(h.src.blocks); n > 0 {
		prev = h.src.blocks[n-1].Hash()
	}
	b := chain.Block{Height: uint64(len(h.src.blocks)) + 1, Prev: prev, FirstIndex: first, Count: uint32(len(entries)), Root: h.fr.Root(), Time: h.t0}
	h.src.blocks = append(h.src.blocks, b)
	h.src.entries = append(h.src.entries, entries)
}

func (h *handLedger) checkpoint() *chain.Checkpoint {
	return &chain.Checkpoint{Size: h.fr.Size(), Root: h.fr.Root()}
}

// A node that commits a replayed act (here relabelled and relayed by a
// second node) produces a ledger the auditor refuses, naming both entries.
func TestVerifyCatchesReplayedAct(t *testing.T) {
	w := newRelayWorld(t)
	node2, _ := chain.GenerateKey(chain.Ed25519)
	now := time.Now()
	g := policies.Genesis{Table: policies.DefaultTable(), Accounts: []policies.GenesisAccount{
		{PublicKey: w.admin.PublicKey(), Algorithm: "ed25519", Roles: []string{"admin"}},
		{PublicKey: w.bank.PublicKey(), Algorithm: "ed25519", Org: "bank", Roles: []string{"enterprise"}},
		{PublicKey: w.node.PublicKey(), Algorithm: "ed25519", Roles: []string{"node"}},
		{PublicKey: node2.PublicKey(), Algorithm: "ed25519", Roles: []string{"node"}},
	}}
	genesis, _ := GenesisEntry(w.admin, g, now)
	body := []byte(jobJSON)
	r := signed(t, w.bank, "POST", "http://node1.example:8080/v1/jobs", body)
	honest := w.relayEntry(w.node, policies.KindJobSubmit, w.bank.Address().String(), r, body, jobExtra)
	replay := w.relayEntry(node2, policies.KindJobSubmit, w.bank.Address().String(), relabelled(r, "evil"), body, jobExtra)
	note, _ := w.admin.NewEntry("note.x", 1, now, []byte(`{}`))

	clean := &handLedger{t0: now}
	clean.add(genesis)
	clean.add(honest, note)
	rep, _, err := Verify(t.Context(), &clean.src, clean.checkpoint())
	if err != nil || !rep.OK {
		t.Fatalf("honest ledger: %+v %v", rep.FirstFailure, err)
	}

	for name, blocks := range map[string][][][]byte{
		"same block":  {{genesis}, {honest, replay}},
		"later block": {{genesis}, {honest, note}, {replay}},
	} {
		t.Run(name, func(t *testing.T) {
			bad := &handLedger{t0: now}
			for _, b := range blocks {
				bad.add(b...)
			}
			rep, _, err := Verify(t.Context(), &bad.src, bad.checkpoint())
			if err != nil {
				t.Fatal(err)
			}
			at := bad.fr.Size() - 1
			if rep.OK || rep.FirstFailure == nil || rep.FirstFailure.Index != int64(at) ||
				!strings.Contains(rep.FirstFailure.Reason, "already applied, by entry 1") {
				t.Fatalf("replayed act: %+v, want a failure at %d naming entry 1", rep.FirstFailure, at)
			}
		})
	}
}

// The state machine refuses a relabelled relay of an applied act, whoever
// relays it, and says which entry applied it.
func TestRelabelledRelayRefused(t *testing.T) {
	w := newRelayWorld(t)
	body := []byte(jobJSON)
	r := signed(t, w.bank, "POST", "http://node1.example:8080/v1/jobs", body)
	first := w.index
	if err := w.apply(w.relayEntry(w.node, policies.KindJobSubmit, w.bank.Address().String(), r, body, jobExtra)); err != nil {
		t.Fatal(err)
	}
	before := w.sm.M.StateHash()
	for _, label := range []string{"sig1", "evil", "a"} {
		err := w.apply(w.relayEntry(w.node, policies.KindJobSubmit, w.bank.Address().String(), relabelled(r, label), body, jobExtra))
		var re *policies.ReplayError
		if !errors.As(err, &re) || re.Index != first {
			t.Fatalf("label %s: %v", label, err)
		}
	}
	if w.sm.M.StateHash() != before {
		t.Fatal("refused replays changed the state")
	}
	if n := len(w.sm.M.Jobs(nil)); n != 1 {
		t.Fatal(fmt.Sprint(n, " jobs"))
	}
}
