package chain

import (
	"crypto/ed25519"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// VerifySignature reports whether sig is a valid signature of msg under
// the public key pub of algorithm alg, by the ledger's rules: Ed25519 as
// FIPS 186-5 (cofactored, canonical encodings; see verify.go), ML-DSA-65 as
// FIPS 204 with an empty context. It is the one validity rule for an
// account's key, whatever the key signs: entries here, the HE and
// pseudonym ceremonies' messages in mpc. A key or signature of the wrong
// size, or an unknown algorithm, is simply not valid.
func VerifySignature(alg Algorithm, pub, msg, sig []byte) bool {
	switch alg {
	case Ed25519:
		return len(sig) == ed25519.SignatureSize && verifyEd25519(pub, msg, sig)
	case MLDSA65:
		var pk mldsa65.PublicKey
		return pk.UnmarshalBinary(pub) == nil && mldsa65.Verify(&pk, msg, nil, sig)
	}
	return false
}
