package mpc

import (
	"crypto/rand"
	"fmt"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
)

// suite is the one HPKE suite (RFC 9180, base mode) every protocol here
// seals with: Shamir shares of the HE and pseudonym keys, and per-job
// join keys. info binds each message to its protocol, run and parties.
var suite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)

// sealTo encrypts msg to an X25519 public key (its encoding) under info;
// it returns the encapsulated key and the ciphertext.
func sealTo(pub, info, msg []byte) (enc, ct []byte, err error) {
	pk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("mpc: HPKE public key: %w", err)
	}
	snd, err := suite.NewSender(pk, info)
	if err != nil {
		return nil, nil, err
	}
	enc, sealer, err := snd.Setup(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	ct, err = sealer.Seal(msg, nil)
	return enc, ct, err
}

// openWith decrypts what sealTo made for sk's public key under info.
func openWith(sk kem.PrivateKey, info, enc, ct []byte) ([]byte, error) {
	rcv, err := suite.NewReceiver(sk, info)
	if err != nil {
		return nil, err
	}
	op, err := rcv.Setup(enc)
	if err != nil {
		return nil, err
	}
	return op.Open(ct, nil)
}
