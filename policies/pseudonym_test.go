package policies

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudflare/circl/group"
)

// pseudonymDoc is a ceremony record as a joint-Feldman dealing among the
// participants produces it: every participant deals a random polynomial of
// degree t-1; the record holds the commitments, the public key and each
// participant's verification key, all following from the commitments.
func pseudonymDoc(w *world, t int, who ...string) PseudonymCeremony {
	g := group.Ristretto255
	enc := func(e group.Element) []byte {
		b, err := e.MarshalBinaryCompress()
		if err != nil {
			panic(err)
		}
		return b
	}
	c := PseudonymCeremony{ID: "p1", Suite: PseudonymSuite, Threshold: t}
	keys := make([]group.Scalar, len(who)) // k_x = Σ_d f_d(x)
	for i := range keys {
		keys[i] = g.NewScalar()
	}
	k := g.NewScalar()
	for range who {
		coef := make([]group.Scalar, t)
		var cs [][]byte
		for l := range coef {
			coef[l] = g.RandomScalar(rand.Reader)
			cs = append(cs, enc(g.NewElement().MulGen(coef[l])))
		}
		c.Commitments = append(c.Commitments, cs)
		k.Add(k, coef[0])
		for i := range who {
			x, v := g.NewScalar().SetUint64(uint64(i+1)), g.NewScalar().Set(coef[t-1])
			for l := t - 2; l >= 0; l-- {
				v.Mul(v, x)
				v.Add(v, coef[l])
			}
			keys[i].Add(keys[i], v)
		}
	}
	c.PublicKey = enc(g.NewElement().MulGen(k))
	for i, n := range who {
		c.Participants = append(c.Participants, PseudonymParticipant{Node: n, Address: w.addr(n), Point: uint64(i + 1),
			VerificationKey: enc(g.NewElement().MulGen(keys[i]))})
	}
	return c
}

func TestPseudonymCeremony(t *testing.T) {
	w := newWorld(t)
	// Not even the first ceremony without an admin's approval.
	if err := w.act("node1", KindPseudonymCeremony, pseudonymDoc(w, 2, "node1", "node2"), nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("first ceremony without approval: %v", err)
	}
	w.must("admin", KindPseudonymRotate, map[string]string{"reason": "the consortium's key"}, nil)
	edit := func(f func(c *PseudonymCeremony)) PseudonymCeremony {
		c := pseudonymDoc(w, 2, "node1", "node2")
		f(&c)
		return c
	}
	for _, c := range []struct {
		name string
		who  string
		doc  PseudonymCeremony
		want error
	}{
		{"threshold 1", "node1", pseudonymDoc(w, 1, "node1", "node2"), ErrInvalid},
		{"threshold above N", "node1", edit(func(c *PseudonymCeremony) { c.Threshold = 3 }), ErrInvalid},
		{"participant not a node", "node1", pseudonymDoc(w, 2, "node1", "bank"), ErrForbidden},
		{"author not a participant", "agency1", pseudonymDoc(w, 2, "node1", "node2"), ErrForbidden},
		{"enterprise", "bank", pseudonymDoc(w, 2, "node1", "node2"), ErrForbidden},
		{"other suite", "node1", edit(func(c *PseudonymCeremony) { c.Suite = "P256-SHA256" }), ErrInvalid},
		{"short key", "node1", edit(func(c *PseudonymCeremony) { c.Participants[1].VerificationKey = c.Participants[1].VerificationKey[:31] }), ErrInvalid},
		{"missing dealer", "node1", edit(func(c *PseudonymCeremony) { c.Commitments = c.Commitments[:1] }), ErrInvalid},
		{"few commitments", "node1", edit(func(c *PseudonymCeremony) { c.Commitments[0] = c.Commitments[0][:1] }), ErrInvalid},
		{"same point", "node1", edit(func(c *PseudonymCeremony) { c.Participants[1].Point = 1 }), ErrInvalid},
		{"no public key", "node1", edit(func(c *PseudonymCeremony) { c.PublicKey = nil }), ErrInvalid},
		// Keys that no dealing produced: refused by every node and the
		// auditor replaying, not only by the clients that later use them.
		{"public key not from the commitments", "node1", edit(func(c *PseudonymCeremony) { c.PublicKey = c.Commitments[0][0] }), ErrInvalid},
		{"verification key not from the commitments", "node1", edit(func(c *PseudonymCeremony) {
			c.Participants[1].VerificationKey = c.Participants[0].VerificationKey
		}), ErrInvalid},
		{"commitment not an element", "node1", edit(func(c *PseudonymCeremony) { c.Commitments[1][1] = bytes.Repeat([]byte{0xff}, 32) }), ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := w.act(c.who, KindPseudonymCeremony, c.doc, nil); !errors.Is(err, c.want) {
				t.Fatalf("%v, want %v", err, c.want)
			}
		})
	}
	if _, ok := w.m.Pseudonym(); ok {
		t.Fatal("a refused ceremony left state")
	}
	w.must("node1", KindPseudonymCeremony, pseudonymDoc(w, 2, "node1", "node2"), nil)
	c, ok := w.m.Pseudonym()
	if !ok || c.Threshold != 2 || len(c.Participants) != 2 || c.Generation != 0 {
		t.Fatalf("ceremony state %+v", c)
	}
	// Once: a second ceremony needs an admin's approval, used up by it.
	if err := w.act("node1", KindPseudonymCeremony, pseudonymDoc(w, 2, "node1", "node2"), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("second ceremony without approval: %v", err)
	}
	if err := w.act("agency1", KindPseudonymRotate, map[string]string{"reason": "r"}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("rotation approved by an agency: %v", err)
	}
	if err := w.act("admin", KindPseudonymRotate, map[string]string{}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("rotation without a reason: %v", err)
	}
	w.must("admin", KindPseudonymRotate, map[string]string{"reason": "node2's disk was stolen"}, nil)
	if err := w.act("admin", KindPseudonymRotate, map[string]string{"reason": "again"}, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second approval while one is pending: %v", err)
	}
	w.must("node2", KindPseudonymCeremony, pseudonymDoc(w, 2, "node2", "node1"), nil)
	if c, _ := w.m.Pseudonym(); c.Generation != 1 || c.Participants[0].Node != "node2" {
		t.Fatalf("rotated ceremony %+v", c)
	}
	if err := w.act("node1", KindPseudonymCeremony, pseudonymDoc(w, 2, "node1", "node2"), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("a rotation approval was used twice: %v", err)
	}
}

func batch(count int64, purpose, dataset, job string) PseudonymBatchDoc {
	return PseudonymBatchDoc{Count: count, Purpose: purpose, Dataset: dataset, Job: job, Request: strings.Repeat("e", 64)}
}

func TestPseudonymBatchesAndQuotas(t *testing.T) {
	w := newWorld(t)
	if err := w.act("agency1", KindPseudonymBatch, batch(10, PurposeDataset, "census", ""), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("batch before the ceremony: %v", err)
	}
	w.approveCeremonies()
	w.must("node1", KindPseudonymCeremony, pseudonymDoc(w, 2, "node1", "node2"), nil)
	w.withDataset()
	// The first policy allows no list; the second allows lists of up to
	// 5M ids per job (more than the enterprise's account quota).
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil)
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("count:*"))
	noLists := w.lastJob().ID
	if err := w.act("bank", KindPseudonymBatch, batch(1, PurposeJob, "", noLists), nil); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "allows no id list") {
		t.Fatalf("a list for a job whose policy allows none: %v", err)
	}
	for _, p := range w.m.Policies() {
		w.must("agency1", KindPolicyRevoke, PolicyRevokeDoc{Policy: p.ID}, nil)
	}
	lists := taxPolicy()
	lists["join"] = map[string]any{"lists": true, "max_rows_per_person": 1, "max_list_ids": 5_000_000}
	w.must("agency1", KindPolicyPublish, lists, nil)
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("count:*"))
	jobID := w.lastJob().ID
	w.must("shop", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("count:*"))
	shopJob := w.lastJob().ID

	for _, c := range []struct {
		name string
		who  string
		doc  PseudonymBatchDoc
		want error
	}{
		{"zero count", "agency1", batch(0, PurposeDataset, "census", ""), ErrInvalid},
		{"oversized", "agency1", batch(MaxPseudonymBatch+1, PurposeDataset, "census", ""), ErrInvalid},
		{"no digest", "agency1", PseudonymBatchDoc{Count: 1, Purpose: PurposeDataset, Dataset: "census"}, ErrInvalid},
		{"unknown purpose", "agency1", batch(1, "curiosity", "", ""), ErrInvalid},
		{"registered dataset", "agency1", batch(1, PurposeDataset, "tax2025", ""), ErrConflict},
		{"enterprise for a dataset", "bank", batch(1, PurposeDataset, "census", ""), ErrForbidden},
		{"auditor", "auditor", batch(1, PurposeDataset, "census", ""), ErrForbidden},
		{"another's job", "bank", batch(1, PurposeJob, "", shopJob), ErrForbidden},
		{"unknown job", "bank", batch(1, PurposeJob, "", "job-999"), ErrNotFound},
		{"enterprise quota", "bank", batch(MaxPseudonymBatch, PurposeJob, "", jobID), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := w.act(c.who, KindPseudonymBatch, c.doc, nil); !errors.Is(err, c.want) {
				t.Fatalf("%v, want %v", err, c.want)
			}
		})
	}
	used, quota := w.m.PseudonymQuota(w.addr("bank"))
	if used != MaxPseudonymBatch || quota != DefaultPseudonymQuota()["enterprise"] {
		t.Fatalf("bank used %d of %d", used, quota)
	}
	// Fill the bank's quota, then one more id is refused before any
	// state changes.
	for used+MaxPseudonymBatch <= quota {
		w.must("bank", KindPseudonymBatch, batch(MaxPseudonymBatch, PurposeJob, "", jobID), nil)
		used += MaxPseudonymBatch
	}
	if rest := quota - used; rest > 0 {
		w.must("bank", KindPseudonymBatch, batch(rest, PurposeJob, "", jobID), nil)
	}
	before := w.m.StateHash()
	err := w.act("bank", KindPseudonymBatch, batch(1, PurposeJob, "", jobID), nil)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("batch beyond quota: %v", err)
	}
	if w.m.StateHash() != before {
		t.Fatal("a refused batch changed the state")
	}

	// An agency's batches for a dataset bound its registration: no more
	// ids than rows × consortium columns.
	w.must("agency1", KindPseudonymBatch, batch(600, PurposeDataset, "census", ""), nil)
	w.must("node1", KindPseudonymBatch, batch(500, PurposeDataset, "census", ""), nil) // its node, same org
	schema := Schema{Columns: []Column{{Name: "person_id", Type: TypeString, Class: Identifier, Pseudonym: PseudonymConsortium},
		{Name: "region", Type: TypeString, Class: Public}}}
	reg := DatasetDoc{Name: "census", Schema: schema, SHA256: strings.Repeat("cd", 32), Rows: 1000}
	if err := w.act("agency1b", KindDatasetRegister, reg, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("1,100 ids for 1,000 rows: %v", err)
	}
	reg.Rows = 1100
	w.must("agency1b", KindDatasetRegister, reg, nil)
	if err := w.act("agency1", KindPseudonymBatch, batch(1, PurposeDataset, "census", ""), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("batch for a registered dataset: %v", err)
	}
	if b, ok := w.m.PseudonymBatch("psb-" + strconv.FormatUint(w.index-3, 10)); !ok || b.Count != 600 || b.Requester != w.addr("agency1") {
		t.Fatalf("batch record %+v", b)
	}
}

// A job's list is bounded by its policy's max_list_ids.
func TestPseudonymListBound(t *testing.T) {
	w := newWorld(t)
	w.approveCeremonies()
	w.must("node1", KindPseudonymCeremony, pseudonymDoc(w, 2, "node1", "node2"), nil)
	w.withDataset()
	p := taxPolicy()
	p["join"] = map[string]any{"lists": true, "max_rows_per_person": 1, "max_list_ids": 100}
	w.must("agency1", KindPolicyPublish, p, nil)
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("count:*"))
	id := w.lastJob().ID
	w.must("bank", KindPseudonymBatch, batch(60, PurposeJob, "", id), nil)
	if err := w.act("bank", KindPseudonymBatch, batch(41, PurposeJob, "", id), nil); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "allows 100") {
		t.Fatalf("101 ids for a list of 100: %v", err)
	}
	w.must("bank", KindPseudonymBatch, batch(40, PurposeJob, "", id), nil)
	for _, c := range []struct {
		join map[string]any
		want string
	}{
		{map[string]any{"max_rows_per_person": 1}, "leave join out"},
		{map[string]any{"lists": true}, "max_rows_per_person"},
		{map[string]any{"datasets": []string{"Bad Name"}, "max_rows_per_person": 1}, "neither"},
		{map[string]any{"datasets": []string{"*"}, "max_rows_per_person": 1, "max_list_ids": 5}, "without lists"},
	} {
		t.Run(fmt.Sprint(c.join), func(t *testing.T) {
			p := taxPolicy()
			p["join"] = c.join
			if err := w.act("agency1", KindPolicyPublish, p, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("join %v: %v, want %q", c.join, err, c.want)
			}
		})
	}
}

func TestPseudonymSchema(t *testing.T) {
	for _, c := range []struct {
		col Column
		ok  bool
	}{
		{Column{Name: "id", Type: TypeString, Class: Identifier, Pseudonym: PseudonymConsortium}, true},
		{Column{Name: "id", Type: TypeString, Class: Identifier, Pseudonym: PseudonymAgency}, true},
		{Column{Name: "id", Type: TypeString, Class: Identifier, Pseudonym: "global"}, false},
		{Column{Name: "region", Type: TypeString, Class: Public, Pseudonym: PseudonymConsortium}, false},
	} {
		t.Run(fmt.Sprintf("%s %s", c.col.Class, c.col.Pseudonym), func(t *testing.T) {
			s := Schema{Columns: []Column{c.col}}
			if err := s.Validate(); (err == nil) != c.ok {
				t.Errorf("%+v: %v", c.col, err)
			}
		})
	}
}

func TestPseudonymGenesisQuota(t *testing.T) {
	m := New()
	k := pub(1)
	g := Genesis{Consortium: "q", Table: DefaultTable(), PseudonymQuota: map[string]int64{"enterprise": 5, "ghost": 1},
		Accounts: []GenesisAccount{{PublicKey: k, Algorithm: "ed25519", Roles: []string{"admin"}}}}
	b, _ := json.Marshal(g)
	e := Entry{Author: AddressOf(k), Actor: AddressOf(k), Kind: KindGenesis, Payload: b, Time: t0, ReplayKey: "g", ReplayTime: t0}
	if err := m.Apply(e, 0, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("quota for an unknown role: %v", err)
	}
	delete(g.PseudonymQuota, "ghost")
	e.Payload, _ = json.Marshal(g)
	if err := m.Apply(e, 0, t0); err != nil {
		t.Fatal(err)
	}
	if _, q := m.PseudonymQuota(AddressOf(k)); q != 0 {
		t.Fatalf("admin quota %d, want 0 (genesis set quotas, none for admin)", q)
	}
}
