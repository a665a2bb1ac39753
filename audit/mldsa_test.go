package audit

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// An ML-DSA-65 account's requests, relayed by a node, are verified by the
// state machine (every node, every auditor) like an ed25519 account's.
func TestMLDSARelayedRequests(t *testing.T) {
	w := newRelayWorld(t)
	pq, _ := chain.GenerateKey(chain.MLDSA65)
	url := "http://node1.example:8080"
	reg, _ := json.Marshal(policies.RegisterDoc{PublicKey: pq.PublicKey(), Algorithm: "ml-dsa-65"})
	signedPQ := func(path string, body []byte) *http.Request {
		r, _ := http.NewRequest("POST", url+path, strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		if err := SignRequestKey(r, body, pq); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := w.apply(w.relayEntry(w.node, policies.KindAccountRegister, pq.Address().String(), signedPQ("/v1/accounts", reg), reg, "")); err != nil {
		t.Fatalf("registration: %v", err)
	}
	body := []byte(jobJSON)
	r := signedPQ("/v1/jobs", body)
	if err := w.apply(w.relayEntry(w.node, policies.KindJobSubmit, pq.Address().String(), r, body, jobExtra)); !errors.Is(err, policies.ErrForbidden) || !strings.Contains(err.Error(), "job.submit") {
		// No role yet: refused for the permission, after the signature checked out.
		t.Fatalf("job without a role: %v", err)
	}
	tampered := signedPQ("/v1/jobs", body)
	sig := []byte(tampered.Header.Get("Signature"))
	sig[20] ^= 1
	tampered.Header.Set("Signature", string(sig))
	if err := w.apply(w.relayEntry(w.node, policies.KindJobSubmit, pq.Address().String(), tampered, body, jobExtra)); !errors.Is(err, policies.ErrForbidden) || !strings.Contains(err.Error(), "relayed request") {
		t.Fatalf("tampered ML-DSA signature: %v", err)
	}
	if a, ok := w.sm.M.Account(policies.Address(pq.Address())); !ok || a.Algorithm != "ml-dsa-65" {
		t.Fatalf("account %+v", a)
	}
}
