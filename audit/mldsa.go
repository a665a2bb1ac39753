package audit

import (
	"crypto/ed25519"
	"fmt"
	"net/http"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/yaronf/httpsign"

	"github.com/datasandbox/datasandbox/chain"
)

// Post-quantum accounts sign their HTTP requests with ML-DSA-65 (FIPS 204,
// the pure variant with an empty context string, randomized signing) over
// the RFC 9421 signature base, exactly where an ed25519 account signs with
// Ed25519. RFC 9421's registry has no ML-DSA entry yet, so the algorithm
// is named by the account's key on the ledger (its length and the
// algorithm it was registered with), and a client may state it as
// alg="ml-dsa-65"; httpsign reaches the scheme through its JWS hook, under
// the JOSE name "ML-DSA-65" (draft-ietf-cose-dilithium).
const (
	// AlgMLDSA65 is the alg parameter value an ML-DSA-65 request may carry.
	AlgMLDSA65 = "ml-dsa-65"
	algJOSE    = jwa.SignatureAlgorithm("ML-DSA-65")
)

func init() {
	jws.RegisterSigner(algJOSE, jws.SignerFactoryFn(func() (jws.Signer, error) { return mldsaSigner{}, nil }))
	jws.RegisterVerifier(algJOSE, jws.VerifierFactoryFn(func() (jws.Verifier, error) { return mldsaVerifier{}, nil }))
}

type mldsaSigner struct{}

func (mldsaSigner) Algorithm() jwa.SignatureAlgorithm { return algJOSE }

func (mldsaSigner) Sign(payload []byte, key any) ([]byte, error) {
	k, ok := key.(*chain.Key)
	if !ok || k.Algorithm() != chain.MLDSA65 {
		return nil, fmt.Errorf("audit: ML-DSA-65 signing needs an ML-DSA-65 key, got %T", key)
	}
	return k.SignMessage(payload)
}

type mldsaVerifier struct{}

func (mldsaVerifier) Verify(payload, sig []byte, key any) error {
	pk, ok := key.(*mldsa65.PublicKey)
	if !ok {
		return fmt.Errorf("audit: ML-DSA-65 verification needs an ML-DSA-65 public key, got %T", key)
	}
	if !mldsa65.Verify(pk, payload, nil, sig) {
		return fmt.Errorf("%w: ML-DSA-65 signature does not verify", ErrBadSignature)
	}
	return nil
}

// requestVerifier returns the verifier for an account's key: Ed25519 or
// ML-DSA-65, told apart by the key's length (the ledger stores each key
// with its algorithm and checks the length at registration).
func requestVerifier(key []byte, cfg *httpsign.VerifyConfig, fields httpsign.Fields) (*httpsign.Verifier, string, error) {
	switch len(key) {
	case ed25519.PublicKeySize:
		v, err := httpsign.NewEd25519Verifier(ed25519.PublicKey(key), cfg, fields)
		return v, "ed25519", err
	case mldsa65.PublicKeySize:
		var pk mldsa65.PublicKey
		if err := pk.UnmarshalBinary(key); err != nil {
			return nil, "", fmt.Errorf("%w: ML-DSA-65 key: %v", ErrBadSignature, err)
		}
		v, err := httpsign.NewJWSVerifier(algJOSE, &pk, cfg, fields)
		return v, AlgMLDSA65, err
	}
	return nil, "", fmt.Errorf("%w: no Ed25519 or ML-DSA-65 key", ErrBadSignature)
}

// SignRequestKey is SignRequest with an account's key of either
// algorithm.
func SignRequestKey(r *http.Request, body []byte, k *chain.Key) error {
	if k.Algorithm() == chain.Ed25519 {
		return SignRequest(r, body, k.Ed25519(), k.Address().String())
	}
	if len(body) > 0 {
		setBody(r, body)
	}
	return signWith(r, len(body) > 0, k.Address().String(), func(cfg *httpsign.SignConfig, f httpsign.Fields) (*httpsign.Signer, error) {
		return httpsign.NewJWSSigner(algJOSE, k, cfg.SignAlg(false), f)
	})
}

// SignStreamedRequestKey is SignStreamedRequest with an account's key of
// either algorithm.
func SignStreamedRequestKey(r *http.Request, sum []byte, k *chain.Key) error {
	if k.Algorithm() == chain.Ed25519 {
		return SignStreamedRequest(r, sum, k.Ed25519(), k.Address().String())
	}
	setDigest(r, sum)
	return signWith(r, true, k.Address().String(), func(cfg *httpsign.SignConfig, f httpsign.Fields) (*httpsign.Signer, error) {
		return httpsign.NewJWSSigner(algJOSE, k, cfg.SignAlg(false), f)
	})
}
