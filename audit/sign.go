package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"

	"github.com/yaronf/httpsign"
)

// SignRequest signs an outgoing request as CONTRACT.md asks: RFC 9421,
// ed25519, keyid = the account's hex address, covering @method,
// @target-uri and, with a body, content-digest (RFC 9530, sha-256), with a
// created parameter. body must be the request's body (or nil).
// SignRequestKey signs with a key of either algorithm.
func SignRequest(r *http.Request, body []byte, key ed25519.PrivateKey, keyID string) error {
	if len(body) == 0 {
		return sign(r, false, key, keyID)
	}
	sum := setBody(r, body)
	return SignStreamedRequest(r, sum, key, keyID)
}

// SignStreamedRequest signs a request whose body the caller streams (a
// large upload): sum is the SHA-256 of that body, which the caller has
// computed before.
func SignStreamedRequest(r *http.Request, sum []byte, key ed25519.PrivateKey, keyID string) error {
	setDigest(r, sum)
	return sign(r, true, key, keyID)
}

// setBody makes body the request's body and sets its Content-Digest.
func setBody(r *http.Request, body []byte) []byte {
	sum := sha256.Sum256(body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	setDigest(r, sum[:])
	return sum[:]
}

func setDigest(r *http.Request, sum []byte) {
	r.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum)+":")
}

func sign(r *http.Request, hasBody bool, key ed25519.PrivateKey, keyID string) error {
	return signWith(r, hasBody, keyID, func(cfg *httpsign.SignConfig, f httpsign.Fields) (*httpsign.Signer, error) {
		return httpsign.NewEd25519Signer(key, cfg, f)
	})
}

// signWith signs with the signer newSigner makes for the configuration
// and the required components.
func signWith(r *http.Request, hasBody bool, keyID string, newSigner func(*httpsign.SignConfig, httpsign.Fields) (*httpsign.Signer, error)) error {
	// A random nonce makes each signature unique: two identical requests
	// in the same second are then two acts, as the user meant them.
	var n [12]byte
	if _, err := rand.Read(n[:]); err != nil {
		return err
	}
	cfg := httpsign.NewSignConfig().SetKeyID(keyID).SetNonce(base64.RawURLEncoding.EncodeToString(n[:]))
	s, err := newSigner(cfg, RequiredComponents(hasBody))
	if err != nil {
		return err
	}
	in, sig, err := httpsign.SignRequest("sig1", *s, r)
	if err != nil {
		return fmt.Errorf("audit: signing request: %w", err)
	}
	r.Header.Set("Signature-Input", in)
	r.Header.Set("Signature", sig)
	return nil
}
