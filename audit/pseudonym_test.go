package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
)

// The pseudonym kinds replay like the nodes apply them: the ceremony
// signed by a participant node itself, batches signed by a node or
// relayed with the account's own request signature, rotations relayed
// for an admin.
func TestPseudonymEntriesReplay(t *testing.T) {
	w := newRelayWorld(t)
	node2, _ := chain.GenerateKey(chain.Ed25519)
	grant, _ := json.Marshal(policies.GrantDoc{Address: node2.Address().String(), Role: "node"})
	raw, _ := w.admin.NewEntry(policies.KindAccountGrant, 1, time.Now(), grant)
	if err := w.apply(raw); err != nil {
		t.Fatal(err)
	}
	// A real joint-Feldman dealing: the state machine holds the record's
	// keys to its commitments.
	points := []uint64{1, 2}
	cer := policies.PseudonymCeremony{ID: "c", Suite: policies.PseudonymSuite, Threshold: 2}
	for range points {
		d, err := pseudonym.Deal(2, points)
		if err != nil {
			t.Fatal(err)
		}
		cer.Commitments = append(cer.Commitments, d.Commitments())
	}
	pub, err := pseudonym.NewPublic(2, points, cer.Commitments)
	if err != nil {
		t.Fatal(err)
	}
	cer.PublicKey = pub.PublicKey()
	for i, k := range []struct {
		name string
		addr policies.Address
	}{{"node1", policies.Address(w.node.Address())}, {"node2", policies.Address(node2.Address())}} {
		vk, _ := pub.VerificationKey(points[i])
		cer.Participants = append(cer.Participants, policies.PseudonymParticipant{Node: k.name, Address: k.addr, Point: points[i], VerificationKey: vk})
	}
	doc, _ := json.Marshal(cer)
	// No route relays a ceremony: it is signed by a participant node itself.
	if _, ok := RouteFor(policies.KindPseudonymCeremony); ok {
		t.Fatal("the ceremony must not be relayable")
	}
	// The admin's approval comes first (every ceremony needs one).
	approval, _ := w.admin.NewEntry(policies.KindPseudonymRotate, 100, time.Now(), []byte(`{"reason":"the consortium key"}`))
	if err := w.apply(approval); err != nil {
		t.Fatalf("approval: %v", err)
	}
	raw, _ = w.node.NewEntry(policies.KindPseudonymCeremony, 1, time.Now(), doc)
	if err := w.apply(raw); err != nil {
		t.Fatalf("ceremony: %v", err)
	}
	if c, ok := w.sm.M.Pseudonym(); !ok || c.ID != "c" {
		t.Fatal("ceremony not replayed")
	}
	batch := []byte(`{"count":3,"purpose":"dataset","dataset":"census","request_sha256":"` + strings.Repeat("a", 64) + `"}`)
	raw, _ = w.node.NewEntry(policies.KindPseudonymBatch, 2, time.Now(), batch)
	if err := w.apply(raw); err != nil {
		t.Fatalf("a node's batch: %v", err)
	}
	// An enterprise's relayed batch for a dataset: checked and refused by
	// the state machine itself.
	url := "http://node1.example:8080/v1/pseudonyms/batches"
	r := signed(t, w.bank, "POST", url, batch)
	if err := w.apply(w.relayEntry(w.node, policies.KindPseudonymBatch, w.bank.Address().String(), r, batch, "")); !errors.Is(err, policies.ErrForbidden) {
		t.Fatalf("an enterprise's dataset batch: %v", err)
	}
	// The node may not alter the relayed batch (count 3 -> 1).
	r = signed(t, w.bank, "POST", url, batch)
	if err := w.apply(w.relayEntry(w.node, policies.KindPseudonymBatch, w.bank.Address().String(), r, bytes.Replace(batch, []byte(`"count":3`), []byte(`"count":1`), 1), "")); !errors.Is(err, policies.ErrForbidden) {
		t.Fatalf("altered relay: %v", err)
	}
	rot := []byte(`{"reason":"rotate"}`)
	r = signed(t, w.admin, "POST", "http://node1.example:8080/v1/pseudonyms/rotations", rot)
	if err := w.apply(w.relayEntry(w.node, policies.KindPseudonymRotate, w.admin.Address().String(), r, rot, "")); err != nil {
		t.Fatalf("relayed rotation: %v", err)
	}
	raw, _ = w.node.NewEntry(policies.KindPseudonymCeremony, 3, time.Now(), doc)
	if err := w.apply(raw); err != nil {
		t.Fatalf("the approved second ceremony: %v", err)
	}
	if c, _ := w.sm.M.Pseudonym(); c.Generation != 1 {
		t.Fatalf("generation %d", c.Generation)
	}
}
