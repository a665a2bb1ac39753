package mpc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloudflare/circl/hpke"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// JoinKeys is a node's side of joins across agencies: its long-term HPKE
// key (X25519, RFC 9180; the public half is on the ledger, node.hpke), to
// which owner nodes seal a join's per-job key k_job, and the signed
// messages of the shipping service.
//
// Threat model: k_job is drawn by one owner node (crypto/rand) and sealed
// to each other owner node only; the executor never holds it, so it cannot
// recompute a tag from a pseudonym, and an owner cannot learn which of its
// tags matched. The HPKE private key stays in the node's directory (mode
// 0600). Sealing binds the job and both nodes' addresses (the HPKE info),
// so a sealed key cannot be replayed for another job or recipient.
// Safe for concurrent use.
type JoinKeys struct {
	key    *chain.Key
	ledger Ledger
	sk     []byte
	pk     []byte
}

// ErrNoHPKE: a node that must receive a sealed key has none on the ledger.
var ErrNoHPKE = errors.New("mpc: node has no HPKE key on the ledger")

// NewJoinKeys loads the node's HPKE key from dir, or makes one.
func NewJoinKeys(dir string, key *chain.Key, ledger Ledger) (*JoinKeys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "join.hpke")
	scheme := hpke.KEM_X25519_HKDF_SHA256.Scheme()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, sk, err := scheme.GenerateKeyPair()
		if err != nil {
			return nil, err
		}
		if b, err = sk.MarshalBinary(); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	sk, err := scheme.UnmarshalBinaryPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("mpc: %s: %w", path, err)
	}
	pk, err := sk.Public().MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &JoinKeys{key: key, ledger: ledger, sk: b, pk: pk}, nil
}

// Public is the node's HPKE public key (what node.hpke commits).
func (k *JoinKeys) Public() []byte { return append([]byte(nil), k.pk...) }

func joinKeyInfo(job string, from, to policies.Address) []byte {
	return []byte("datasandbox join key v1\n" + job + "\n" + from.String() + "\n" + to.String())
}

// SealJobKey seals a job key to node to's HPKE key on the ledger.
func (k *JoinKeys) SealJobKey(job string, to policies.Address, jobKey []byte) ([]byte, error) {
	acc, ok := k.ledger.Account(to)
	if !ok || len(acc.HPKE) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoHPKE, to)
	}
	enc, ct, err := sealTo(acc.HPKE, joinKeyInfo(job, policies.Address(k.key.Address()), to), jobKey)
	if err != nil {
		return nil, fmt.Errorf("mpc: sealing the job key to %s: %w", to, err)
	}
	return append(enc, ct...), nil
}

// OpenJobKey opens a job key sealed to this node by from.
func (k *JoinKeys) OpenJobKey(job string, from policies.Address, sealed []byte) ([]byte, error) {
	scheme := hpke.KEM_X25519_HKDF_SHA256.Scheme()
	n := scheme.CiphertextSize()
	if len(sealed) <= n {
		return nil, fmt.Errorf("mpc: sealed job key of %d bytes", len(sealed))
	}
	sk, err := scheme.UnmarshalBinaryPrivateKey(k.sk)
	if err != nil {
		return nil, err
	}
	out, err := openWith(sk, joinKeyInfo(job, from, policies.Address(k.key.Address())), sealed[:n], sealed[n:])
	if err != nil {
		return nil, fmt.Errorf("mpc: sealed job key of job %s does not open: %w", job, err)
	}
	return out, nil
}

// Sign signs a message of a node-to-node service with the node's key.
func (k *JoinKeys) Sign(service string, v any) ([]byte, error) { return seal(k.key, service, v) }

// Open checks a message's signature against its signer's node account on
// the committed ledger, decodes it into v and returns the signer.
func (k *JoinKeys) Open(service string, raw []byte, v any) (policies.Address, error) {
	return open(k.ledger, service, raw, v)
}
