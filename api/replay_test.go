package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/policies"
)

// relabel renames a request's signature label in both headers: the label
// is covered by no signature, so the signature still verifies.
func relabel(r *http.Request, label string) *http.Request {
	c := r.Clone(r.Context())
	for _, h := range []string{"Signature-Input", "Signature"} {
		v := c.Header.Get(h)
		_, rest, _ := strings.Cut(v, "=")
		c.Header.Set(h, label+"="+rest)
	}
	return c
}

// Finding 1 of issue 12: one signed job submission, sent again with its
// label renamed and to the other nodes, made several jobs and debited the
// budget each time. Now every copy is answered with the first job, and
// the ledger holds one job.submit.
func TestRelabelledWriteReplayIsOneAct(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	body, _ := json.Marshal(apitest.JobBody("SELECT region, COUNT(*) FROM tax2025 GROUP BY region"))
	r := f.Request(t, "bank", 0, "POST", "/v1/jobs", json.RawMessage(body))
	var first JobResponse
	if code, p := apitest.Send(t, r, &first); code != http.StatusCreated {
		t.Fatalf("first: %d %+v", code, p)
	}
	spent := f.SMs[0].M.Spent(policies.Address(f.Keys["bank"].Address()), "tax2025")
	// At the node it was signed for, under any label: the first outcome.
	for _, label := range []string{"sig1", "evil", "x"} {
		t.Run("label "+label, func(t *testing.T) {
			req := relabel(r, label)
			req.Body = ioNop(body)
			var again JobResponse
			if code, p := apitest.Send(t, req, &again); code != http.StatusCreated || again.Job != first.Job {
				t.Fatalf("label %s: %d %+v, job %q (first %q)", label, code, p, again.Job, first.Job)
			}
		})
	}
	// At the other nodes, with the Host it was signed for: refused (the
	// state machine would refuse a relay of the act too; see policies'
	// TestReplayedActNamesFirstEntry and audit's TestVerifyCatchesReplayedAct).
	for node := 1; node < 3; node++ {
		req := relabel(r, "evil")
		code, p := apitest.Send(t, retarget(t, f, req, body, node), nil)
		if code != http.StatusUnauthorized || p.Code != "wrong-node" {
			t.Fatalf("at node%d: %d %+v", node+1, code, p)
		}
	}
	f.C.WaitConverged(f.C.Nodes[0].Ledger().Size())
	for i, sm := range f.SMs {
		if n := len(sm.M.Jobs(nil)); n != 1 {
			t.Fatalf("node%d holds %d jobs", i+1, n)
		}
		if got := sm.M.Spent(policies.Address(f.Keys["bank"].Address()), "tax2025"); got != spent {
			t.Fatalf("node%d: budget %g spent, %g after the first", i+1, got, spent)
		}
	}
}

// retarget points a signed request at node i while keeping the host it
// was signed for, as an attacker replaying it elsewhere would.
func retarget(t *testing.T, f *apitest.Consortium, r *http.Request, body []byte, node int) *http.Request {
	t.Helper()
	c := r.Clone(r.Context())
	c.Body = ioNop(body)
	c.Host = r.URL.Host
	c.URL.Host = strings.TrimPrefix(f.Srv[node].URL, "http://")
	return c
}

// The repeat carries the index of the entry that applied the act.
func TestRepeatedWriteSaysWhichEntry(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	body, _ := json.Marshal(apitest.JobBody("SELECT COUNT(*) FROM tax2025"))
	r := f.Request(t, "bank", 0, "POST", "/v1/jobs", json.RawMessage(body))
	var first JobResponse
	apitest.Send(t, r, &first)
	again := r.Clone(r.Context())
	again.Body = ioNop(body)
	resp, err := http.DefaultClient.Do(again)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(RepeatHeader); "job-"+got != first.Job {
		t.Fatalf("%s = %q for job %s", RepeatHeader, got, first.Job)
	}
}

// Finding 5: a plain RFC 9421 client without nonces repeats identical GETs
// (allowed), but a GET captured at node1 is refused by node2 and node3
// even with node1's Host header.
func TestReadsBoundToTheirNode(t *testing.T) {
	f := apitest.New(t)
	r, _ := http.NewRequest("GET", f.Srv[0].URL+"/v1/datasets", nil)
	apitest.ManualSign(r, nil, f.Keys["auditor"], time.Now())
	for range 3 {
		if code, p := apitest.Send(t, r.Clone(r.Context()), nil); code != http.StatusOK {
			t.Fatalf("repeated nonce-less GET: %d %+v", code, p)
		}
	}
	for node := 1; node < 3; node++ {
		code, p := apitest.Send(t, retarget(t, f, r, nil, node), nil)
		if code != http.StatusUnauthorized || p.Code != "wrong-node" || !strings.Contains(p.Detail, "not this node") {
			t.Fatalf("GET for node1 sent to node%d: %d %+v", node+1, code, p)
		}
	}
}

// Finding 2, at the API: an agency's own key appends the node-only kinds
// straight to the ledger. The state machine refuses each, and nothing
// changes.
func TestAgencyCannotActAsNode(t *testing.T) {
	f := apitest.New(t)
	// Manual approval: the job stays pending, so the state moves only if
	// a refused entry moved it.
	f.WithPolicy(t, func(p map[string]any) { p["approval"] = map[string]any{"mode": "manual", "approvers": 1} })
	var j JobResponse
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT COUNT(*) FROM tax2025"), &j)
	ceremony := policies.HECeremony{ID: "evil", Params: "p", Threshold: 2, PublicKey: strings.Repeat("a", 64),
		GaloisKeys: strings.Repeat("b", 64), Transcript: strings.Repeat("c", 64),
		Participants: []policies.HEParticipant{{Node: "a", Address: policies.Address(f.Keys["agency1"].Address()), Point: 1}, {Node: "b", Address: policies.Address(f.Keys["agency1b"].Address()), Point: 2}}}
	docs := map[string]any{
		policies.KindHECeremony:  ceremony,
		policies.KindHEShare:     policies.HEShareDoc{Job: j.Job, Ciphertext: strings.Repeat("1", 64), Active: []string{"a", "b"}},
		policies.KindJobStart:    policies.JobResultDoc{Job: j.Job, Node: "node1"},
		policies.KindJobComplete: policies.JobResultDoc{Job: j.Job, ResultHash: strings.Repeat("f", 64)},
		policies.KindJobFail:     policies.JobResultDoc{Job: j.Job, Reason: "x"},
	}
	before := f.SMs[0].M.StateHash()
	nonce := uint64(time.Now().UnixNano())
	for kind, doc := range docs {
		t.Run(kind, func(t *testing.T) {
			payload, _ := json.Marshal(doc)
			nonce++
			raw, err := f.Keys["agency1"].NewEntry(kind, nonce, time.Now(), payload)
			if err != nil {
				t.Fatal(err)
			}
			// Whichever node takes it (the refusal's sentinel travels from
			// the leader with it): 403 with the rule.
			for node := range 3 {
				code, p := f.Do(t, "agency1", node, "POST", "/v1/ledger/entries", map[string]string{"entry": base64.StdEncoding.EncodeToString(raw)}, nil)
				if code != http.StatusForbidden || !strings.Contains(p.Detail, "permission node") {
					t.Fatalf("%s by an agency at node%d: %d %+v", kind, node+1, code, p)
				}
			}
		})
	}
	if f.SMs[0].M.StateHash() != before {
		t.Fatal("refused node acts changed the state")
	}
}

// Finding 3: agency1 (tax) pointed at node3, which another organisation
// operates, had its raw CSV taken there. Now the upload is refused before
// any byte is read, naming the agency's own node.
func TestUploadToForeignNodeRefused(t *testing.T) {
	f := apitest.New(t)
	for _, node := range []int{1, 2} {
		t.Run(fmt.Sprintf("node%d", node+1), func(t *testing.T) {
			code, _, p := f.Upload(t, "agency1", node, apitest.TaxSchema, apitest.TaxCSV(10))
			if code != http.StatusForbidden || !strings.Contains(p.Detail, "node1") {
				t.Fatalf("upload to node%d: %d %+v", node+1, code, p)
			}
		})
	}
	if code, _, p := f.Upload(t, "agency1", 0, apitest.TaxSchema, apitest.TaxCSV(10)); code != http.StatusCreated {
		t.Fatalf("upload to its own node: %d %+v", code, p)
	}
}
