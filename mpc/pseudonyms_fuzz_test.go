package mpc

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// signedBody signs raw bytes as a message body (what seal does after
// json.Marshal), so that the fuzzer reaches the body's parsing.
func signedBody(t testing.TB, key *chain.Key, service string, body []byte) []byte {
	t.Helper()
	sig, err := key.SignMessage(sigMessage(service, body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(signed{Body: body, Signer: policies.Address(key.Address()), Sig: sig})
	return b
}

// FuzzPseudonymMessages feeds a participant every pseudonym service with
// bodies signed by a genuine coordinator (so that they get past the
// signature): the plan, the dealings' exchange, the shares and
// commitments, evaluation requests. Whatever they hold, the participant
// answers or refuses; it never panics. A ceremony "fuzz" is in flight.
func FuzzPseudonymMessages(f *testing.F) {
	c := newPsConsortium(f, 3, 2)
	coord := c.parties["node1"]
	p := c.parties["node2"]
	plan := psPlan{ID: "fuzz", Threshold: 2, Participants: c.nodes, Coordinator: "node1"}
	for i := range plan.Participants {
		plan.Participants[i].Point = uint64(i + 1)
	}
	pb, _ := json.Marshal(plan)
	if _, err := p.Serve(context.Background(), svcPsRound1, signedBody(f, coord.cfg.Key, svcPsRound1, pb)); err != nil {
		f.Fatal(err)
	}
	services := []string{svcPsRound1, svcPsRound2, svcPsRound3, svcPsEval}
	f.Add(uint8(0), pb)
	f.Add(uint8(1), []byte(`{"id":"fuzz","hpke":{"node1":"AAAA","node2":null}}`))
	f.Add(uint8(2), []byte(`{"id":"fuzz","shares":[{"from":"node1","to":"node2","enc":"AAAA","ct":"AAAA"}],"commitments":[[]]}`))
	f.Add(uint8(2), []byte(`{"id":"fuzz","shares":[],"commitments":[]}`))
	f.Add(uint8(3), []byte(`{"batch":"psb-1","request":"UFNSMQAAAAE="}`))
	f.Add(uint8(3), []byte(`{}`))
	f.Fuzz(func(t *testing.T, svc uint8, body []byte) {
		s := services[int(svc)%len(services)]
		msg := signedBody(t, coord.cfg.Key, s, body)
		_, _ = p.Serve(context.Background(), s, msg)
	})
}
