package mpc

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// signed is a message with its sender's signature.
type signed struct {
	Body   []byte           `json:"body"`
	Signer policies.Address `json:"signer"`
	Sig    []byte           `json:"sig"`
}

const sigContext = "datasandbox mpc v1\n"

func (p *Party) seal(service string, v any) ([]byte, error) { return seal(p.cfg.Key, service, v) }

// seal signs a message for a service with a node's key.
func seal(key *chain.Key, service string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sig, err := key.SignMessage(sigMessage(service, body))
	if err != nil {
		return nil, err
	}
	return json.Marshal(signed{Body: body, Signer: policies.Address(key.Address()), Sig: sig})
}

func sigMessage(service string, body []byte) []byte {
	sum := sha256.Sum256(body)
	return append([]byte(sigContext+service+"\n"), sum[:]...)
}

// open checks a message's signature against its signer's account on the
// committed ledger; the account must be a node (join).
func (p *Party) open(service string, raw []byte, v any) (policies.Address, error) {
	return open(p.cfg.Ledger, service, raw, v)
}

// open checks a message's signature against its signer's node account on
// the committed ledger and decodes its body.
func open(ledger Ledger, service string, raw []byte, v any) (policies.Address, error) {
	var s signed
	if err := json.Unmarshal(raw, &s); err != nil {
		return policies.Address{}, fmt.Errorf("mpc: %s: malformed message: %v", service, err)
	}
	a, ok := ledger.Account(s.Signer)
	if !ok {
		return policies.Address{}, fmt.Errorf("mpc: %s: unknown signer %s", service, s.Signer)
	}
	if !ledger.Can(s.Signer, policies.PermNode) {
		return policies.Address{}, fmt.Errorf("mpc: %s: signer %s is not a node (needs %s)", service, s.Signer, policies.PermNode)
	}
	// The ledger's validity rule for the account's key (chain.VerifySignature),
	// not a second one: a signature valid there is valid here, and only then.
	alg, err := chain.ParseAlgorithm(a.Algorithm)
	if err != nil || !chain.VerifySignature(alg, a.PublicKey, sigMessage(service, s.Body), s.Sig) {
		return policies.Address{}, fmt.Errorf("mpc: %s: bad signature of %s", service, s.Signer)
	}
	if err := json.Unmarshal(s.Body, v); err != nil {
		return policies.Address{}, fmt.Errorf("mpc: %s: malformed body: %v", service, err)
	}
	return s.Signer, nil
}
