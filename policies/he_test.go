package policies

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func ceremonyDoc(w *world, t int, who ...string) HECeremony {
	c := HECeremony{ID: "c1", Params: "p", Threshold: t, PublicKey: strings.Repeat("a", 64),
		GaloisKeys: strings.Repeat("b", 64), Transcript: strings.Repeat("c", 64)}
	for i, n := range who {
		c.Participants = append(c.Participants, HEParticipant{Node: n, Address: w.addr(n), Point: uint64(i + 1)})
	}
	return c
}

func TestHECeremonyAndShares(t *testing.T) {
	w := newWorld(t)
	w.withDataset()
	w.must("agency1", KindPolicyPublish, taxPolicy(), nil)
	w.approveCeremonies()

	// The ceremony: committed by a participant, among nodes, 2 ≤ t ≤ N.
	for _, c := range []struct {
		who  string
		doc  HECeremony
		want error
	}{
		{"node1", ceremonyDoc(w, 1, "node1", "node2"), ErrInvalid},
		{"node1", ceremonyDoc(w, 3, "node1", "node2"), ErrInvalid},
		{"node1", ceremonyDoc(w, 2, "node1", "bank"), ErrForbidden},    // bank holds no join
		{"agency1", ceremonyDoc(w, 2, "node1", "node2"), ErrForbidden}, // not a participant
		{"bank", ceremonyDoc(w, 2, "node1", "node2"), ErrForbidden},
	} {
		t.Run(fmt.Sprintf("%s t=%d of %d", c.who, c.doc.Threshold, len(c.doc.Participants)), func(t *testing.T) {
			if err := w.act(c.who, KindHECeremony, c.doc, nil); !errors.Is(err, c.want) {
				t.Fatalf("%s %+v: %v, want %v", c.who, c.doc.Participants, err, c.want)
			}
		})
	}

	// An he job is refused at submission before there is a ceremony, and
	// when its requester registered no CKKS key.
	heJob := func() Job {
		w.must("bank", KindJobSubmit, job("q", "he", "credit risk statistics"), plan("sum:income"))
		return w.lastJob()
	}
	if j := heJob(); j.Status != JobRejected || !strings.Contains(j.Reason, "key ceremony") {
		t.Fatalf("he job before the ceremony: %+v", j)
	}
	w.must("node1", KindHECeremony, ceremonyDoc(w, 2, "node1", "node2"), nil)
	if c, ok := w.m.HE(); !ok || c.Threshold != 2 || len(c.Participants) != 2 {
		t.Fatalf("ceremony state %+v", c)
	}
	if j := heJob(); j.Status != JobRejected || !strings.Contains(j.Reason, "CKKS key") {
		t.Fatalf("he job without the requester's key: %+v", j)
	}
	w.must("bank", KindHEKey, HEKeyDoc{Params: "p", PublicKey: bytes.Repeat([]byte{7}, 1000)}, nil)
	id := heJob().ID
	ctA, ctB := strings.Repeat("1", 64), strings.Repeat("2", 64)
	share := func(ct string) HEShareDoc {
		return HEShareDoc{Job: id, Ciphertext: ct, Active: []string{"node1", "node2"}}
	}
	// No share before the job runs.
	if err := w.act("node1", KindHEShare, share(ctA), nil); !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrConflict) {
		t.Fatalf("share before the job started: %v", err)
	}
	w.must("node1", KindJobStart, JobResultDoc{Job: id, Node: "node1"}, nil)

	complete := JobResultDoc{Job: id, ResultHash: strings.Repeat("f", 64)}
	w.must("node1", KindHEShare, share(ctA), nil)
	if err := w.act("node1", KindJobComplete, complete, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("completed with 1 share of 2: %v", err)
	}
	if err := w.act("node1", KindHEShare, share(ctB), nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("one node shared two ciphertexts of one job: %v", err)
	}
	if err := w.act("bank", KindHEShare, share(ctA), nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a non-participant shared: %v", err)
	}
	if err := w.act("node2", KindHEShare, HEShareDoc{Job: id, Ciphertext: ctA, Active: []string{"node2"}}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("share with an active set below the threshold: %v", err)
	}
	w.must("node2", KindHEShare, share(ctA), nil)
	w.must("node1", KindJobComplete, complete, nil)
	if err := w.act("node2", KindHEShare, share(ctA), nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("share after release: %v", err)
	}
	if j, _ := w.m.Job(id); j.Status != JobCompleted || len(j.Shares) != 2 {
		t.Fatalf("job %+v", j)
	}

	// A job that fails after a node issued a share keeps its epsilon spent.
	id2 := heJob().ID
	w.must("node1", KindJobStart, JobResultDoc{Job: id2, Node: "node1"}, nil)
	w.must("node1", KindHEShare, HEShareDoc{Job: id2, Ciphertext: ctA, Active: []string{"node1", "node2"}}, nil)
	spent := w.m.Spent(w.addr("bank"), "tax2025")
	w.must("node1", KindJobFail, JobResultDoc{Job: id2, Reason: "combine failed"}, nil)
	if j, _ := w.m.Job(id2); j.Refunded || w.m.Spent(w.addr("bank"), "tax2025") != spent {
		t.Fatalf("a job with decryption shares was refunded: %+v", j)
	}

	// Shares are for he jobs only.
	w.must("bank", KindJobSubmit, job("q", "masked", "credit risk statistics"), plan("sum:income"))
	masked := w.lastJob().ID
	w.must("node1", KindJobStart, JobResultDoc{Job: masked, Node: "node1"}, nil)
	if err := w.act("node1", KindHEShare, HEShareDoc{Job: masked, Ciphertext: ctA, Active: []string{"node1", "node2"}}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("share for a masked job: %v", err)
	}
}

func TestHEKeyRegistration(t *testing.T) {
	w := newWorld(t)
	if err := w.act("bank", KindHEKey, HEKeyDoc{Params: "p"}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty key: %v", err)
	}
	key := bytes.Repeat([]byte{7}, 1000)
	w.must("bank", KindHEKey, HEKeyDoc{Params: "p", PublicKey: key}, nil)
	if got, ok := w.m.HEKey(w.addr("bank")); !ok || !bytes.Equal(got, key) {
		t.Fatal("key not kept")
	}
	if a, _ := w.m.Account(w.addr("bank")); len(a.HEKey) != 64 {
		t.Fatalf("account digest %q", a.HEKey)
	}
	// The state hash covers the key: a replayed ledger must hold the same.
	before := w.m.StateHash()
	w.must("bank", KindHEKey, HEKeyDoc{Params: "p", PublicKey: bytes.Repeat([]byte{8}, 1000)}, nil)
	if w.m.StateHash() == before {
		t.Fatal("state hash ignores the HE key")
	}
}
