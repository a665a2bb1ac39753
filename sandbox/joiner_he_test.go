package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// testHE stands in for the node's multiparty side (api.HE over mpc,
// tested there): the fixture's single key instead of the collective one,
// and a release in which node1 and node2 each authorise their share on
// the ledger (AuthoriseHEShare, as real nodes do) but no key switch
// happens: the test decrypts with the fixture's key.
type testHE struct {
	f  *heFixture
	c  *joinCluster
	me policies.Address // the node whose side it is (it signs the requests)
}

func (h testHE) Keys() (*HEKeys, error) { return h.f.keys, nil }

func (h testHE) Release(ctx context.Context, j policies.Job, ct *rlwe.Ciphertext, lay *HELayout) (*rlwe.Ciphertext, []string, error) {
	sum := sha256.Sum256(heparams.MarshalCiphertext(heparams.Params(), ct))
	active := []string{"node1", "node2"}
	for _, n := range active {
		a := policies.Address(h.c.keys[n].Address())
		commit := func(_ context.Context, kind string, doc any) error {
			b, _ := json.Marshal(doc)
			_, err := h.c.led.apply(policies.Entry{Author: a, Actor: a, Kind: kind, Payload: b, Time: time.Now()})
			return err
		}
		if _, err := AuthoriseHEShare(ctx, h.c.led.m, commit, HEShareAsk{Job: j.ID, Runner: h.me, PerCell: len(lay.PerCell),
			CiphertextSHA256: hex.EncodeToString(sum[:]), Active: active}); err != nil {
			return nil, nil, err
		}
	}
	return ct, active, nil
}

// A join in mode he between three nodes over a ledger: the owners ship
// their encrypted columns as ciphertexts, the executor evaluates on them
// and has node1 and node2 authorise their shares on the ledger; the job
// completes; the decrypted result is the plaintext join's.
func TestJoinerHEEndToEnd(t *testing.T) {
	hf := newHEFixture(t)
	c := newJoinClusterStopped(t, 5*time.Second)
	for _, n := range c.nodes {
		n.j.cfg.HE = testHE{f: hf, c: c, me: policies.Address(n.key.Address())}
	}
	rot, _ := json.Marshal(policies.HERotateDoc{Reason: "the consortium's key ceremony"})
	c.must("admin", "admin", policies.KindHERotate, rot, nil)
	cer := policies.HECeremony{ID: "c1", Params: heparams.Name, Threshold: 2, PublicKey: "a1" + hex.EncodeToString(make([]byte, 31)),
		GaloisKeys: hex.EncodeToString(make([]byte, 32)), Transcript: hex.EncodeToString(make([]byte, 32))}
	for i, n := range []string{"node1", "node2"} {
		cer.Participants = append(cer.Participants, policies.HEParticipant{Node: n, Address: policies.Address(c.keys[n].Address()), Point: uint64(i + 1)})
	}
	cb, _ := json.Marshal(cer)
	c.must("node1", "node1", policies.KindHECeremony, cb, nil)
	pk := heparams.MarshalPublicKey(hf.keys.PK)
	kb, _ := json.Marshal(policies.HEKeyDoc{Params: heparams.Name, PublicKey: pk})
	c.must("node1", "bank", policies.KindHEKey, kb, nil)
	for _, d := range []string{"tax2025", "benefits2025"} {
		p := map[string]any{
			"dataset": d, "grantees": []string{"role:enterprise"}, "purpose": "benefit statistics", "modes": []string{"masked", "he"},
			"min_group_size": 10, "dp": map[string]any{"epsilon_per_query": 1000.0, "epsilon_budget": 5000.0},
			"approval": map[string]any{"mode": "auto"}, "expires": "2099-01-01T00:00:00Z",
			"join": map[string]any{"datasets": []string{"*"}, "lists": false, "max_rows_per_person": 1},
		}
		owner, agency := "node1", "agency1"
		if d == "tax2025" {
			p["aggregates"], p["group_by"], p["filter"] = map[string][]string{"income": {"count", "avg", "sum"}}, []string{"region"}, []string{"region"}
		} else {
			p["aggregates"], p["group_by"], p["filter"] = map[string][]string{"benefit": {"sum", "avg"}}, []string{"kind"}, []string{"kind"}
			owner, agency = "node2", "agency2"
		}
		b, _ := json.Marshal(p)
		c.must(owner, agency, policies.KindPolicyPublish, b, nil)
	}
	c.start()
	q, err := ParseQuery(joinerSQL)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(policies.JobDoc{Query: joinerSQL, Mode: policies.ModeHE, Purpose: "benefit statistics"})
	x, _ := json.Marshal(policies.JobExtra{Dataset: q.From, Plan: q.Plan()})
	c.must("node1", "bank", policies.KindJobSubmit, doc, x)
	js := c.led.m.Jobs(nil)
	id := js[len(js)-1].ID
	if j := js[len(js)-1]; j.Status != policies.JobAuthorised {
		t.Fatalf("job %s: %s", j.Status, j.Reason)
	}
	j := c.await(id, 60*time.Second)
	if j.Status != policies.JobCompleted || len(j.Shares) != 2 || len(j.Flows) != 2 {
		logMu.Lock()
		logs := c.nodes["node3"].logs.String()
		logMu.Unlock()
		t.Fatalf("%s (%d shares, %d flows): %s\n%s", j.Status, len(j.Shares), len(j.Flows), j.Reason, logs)
	}
	b, ok := c.nodes["node3"].store.Result(id)
	if !ok {
		t.Fatal("no result on the executor")
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil || res.HE == nil || res.Seal() != nil || res.ResultSHA256 != j.ResultHash {
		t.Fatalf("result %v does not match the ledger", err)
	}
	ct, err := heparams.UnmarshalCiphertext(heparams.Params(), res.HE.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	_, rows, err := DecodeHEResult(res.HE.Layout, hf.decrypt(ct), heparams.Params().Q()[0])
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]float64{}
	for _, pid := range c.fix.ids {
		if k, ok := c.fix.kind[pid]; ok {
			w := want[k]
			want[k] = [2]float64{w[0] + 1, w[1] + c.fix.income[pid]}
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %v, want %v", rows, want)
	}
	for _, r := range rows {
		w := want[r[0].(string)]
		// No DP noise here (the fake release adds none): counts exact,
		// sums within the encrypted engine's 1e-6 of B = 100000.
		if r[1].(float64) != w[0] || math.Abs(r[2].(float64)-w[1]) > 1 {
			t.Fatalf("row %v, want %v", r, w)
		}
	}
}
