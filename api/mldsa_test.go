package api_test

import (
	"net/http"
	"strings"
	"testing"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// A post-quantum account works end to end: it registers its ML-DSA-65
// key, is granted a role, signs every request with ML-DSA-65 (RFC 9421),
// its job is relayed and re-verified by every node, and an auditor's
// replay of the ledger accepts it.
func TestMLDSAAccountEndToEnd(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	k, err := chain.GenerateKey(chain.MLDSA65)
	if err != nil {
		t.Fatal(err)
	}
	f.Keys["pq"] = k
	f.Must(t, "pq", 1, "POST", "/v1/accounts", policies.RegisterDoc{PublicKey: k.PublicKey(), Algorithm: "ml-dsa-65", Name: "pq bank"}, nil)
	f.Must(t, "admin", 0, "POST", "/v1/accounts/grants", policies.GrantDoc{Address: k.Address().String(), Role: "enterprise", Org: "pqbank"}, nil)
	var j JobResponse
	f.Must(t, "pq", 2, "POST", "/v1/jobs", apitest.JobBody("SELECT region, COUNT(*) FROM tax2025 GROUP BY region"), &j)
	if j.Requester != k.Address().String() || j.Status == policies.JobRejected {
		t.Fatalf("job %+v", j)
	}
	f.C.WaitConverged(f.C.Nodes[0].Ledger().Size())
	for i, sm := range f.SMs {
		if _, ok := sm.M.Job(j.Job); !ok {
			t.Fatalf("node%d lacks the job", i+1)
		}
	}
	// A signature by another key under the account's keyid is refused.
	other, _ := chain.GenerateKey(chain.MLDSA65)
	r, _ := http.NewRequest("GET", f.Srv[0].URL+"/v1/datasets", nil)
	if err := audit.SignRequestKey(r, nil, other); err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), other.Address().String(), k.Address().String(), 1))
	if code, p := apitest.Send(t, r, nil); code != http.StatusUnauthorized || p.Code != "bad-signature" {
		t.Fatalf("forged ML-DSA signature: %d %+v", code, p)
	}
	// An ed25519 key registered as ml-dsa-65 (or the reverse) is refused.
	ed, _ := chain.GenerateKey(chain.Ed25519)
	f.Keys["mislabelled"] = ed
	if code, p := f.Do(t, "mislabelled", 0, "POST", "/v1/accounts", policies.RegisterDoc{PublicKey: ed.PublicKey(), Algorithm: "ml-dsa-65"}, nil); code != http.StatusBadRequest || !strings.Contains(p.Detail, "ml-dsa-65") {
		t.Fatalf("mislabelled key: %d %+v", code, p)
	}
}
