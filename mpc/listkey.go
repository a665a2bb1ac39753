package mpc

import (
	"fmt"

	"github.com/cloudflare/circl/hpke"

	"github.com/datasandbox/datasandbox/policies"
)

// An enterprise's list join (DESIGN.md, "Joining across agencies, and with
// the enterprise's own ids"): the enterprise's sandboxctl draws an
// ephemeral X25519 HPKE key pair per job and names its public half in the
// job's submission; the owner node that draws the job key k_job seals it
// to that key too (job.key), so that the enterprise derives the same tags
// HMAC(k_job, P(id)) from its ids' consortium pseudonyms as the owners do
// from their rows'. The private half never leaves sandboxctl's memory and
// dies with the job; the executor never holds k_job. Sealing binds the job,
// the sealing node and the list's name (the HPKE info), so a sealed key is
// not replayed for another job.

// ListKey is an enterprise's ephemeral key for one job's list.
type ListKey struct {
	sk, pk []byte
}

// NewListKey draws an ephemeral list key (crypto/rand).
func NewListKey() (*ListKey, error) {
	scheme := hpke.KEM_X25519_HKDF_SHA256.Scheme()
	pk, sk, err := scheme.GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	k := &ListKey{}
	if k.sk, err = sk.MarshalBinary(); err != nil {
		return nil, err
	}
	if k.pk, err = pk.MarshalBinary(); err != nil {
		return nil, err
	}
	return k, nil
}

// Public is the key the job's submission names (32 bytes).
func (k *ListKey) Public() []byte { return append([]byte(nil), k.pk...) }

func listKeyInfo(job, list string, from policies.Address) []byte {
	return []byte("datasandbox list join key v1\n" + job + "\n" + list + "\n" + from.String())
}

// SealJobKeyToList seals a job key to the list's ephemeral public key pub
// (sandbox.JoinCrypto).
func (k *JoinKeys) SealJobKeyToList(job, list string, pub, jobKey []byte) ([]byte, error) {
	return SealListKey(job, list, policies.Address(k.key.Address()), pub, jobKey)
}

// SealListKey seals jobKey, drawn by node from, to a list's public key.
func SealListKey(job, list string, from policies.Address, pub, jobKey []byte) ([]byte, error) {
	enc, ct, err := sealTo(pub, listKeyInfo(job, list, from), jobKey)
	if err != nil {
		return nil, fmt.Errorf("mpc: sealing the job key to list %s: %w", list, err)
	}
	return append(enc, ct...), nil
}

// Open opens the job key sealed to this list key by node from.
func (k *ListKey) Open(job, list string, from policies.Address, sealed []byte) ([]byte, error) {
	scheme := hpke.KEM_X25519_HKDF_SHA256.Scheme()
	n := scheme.CiphertextSize()
	if len(sealed) <= n {
		return nil, fmt.Errorf("mpc: sealed list key of %d bytes", len(sealed))
	}
	sk, err := scheme.UnmarshalBinaryPrivateKey(k.sk)
	if err != nil {
		return nil, err
	}
	out, err := openWith(sk, listKeyInfo(job, list, from), sealed[:n], sealed[n:])
	if err != nil {
		return nil, fmt.Errorf("mpc: the job key sealed to list %s of job %s does not open: %w", list, job, err)
	}
	return out, nil
}
