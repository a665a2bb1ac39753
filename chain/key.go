package chain

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// SeedSize is the length of a private key seed for both algorithms.
const SeedSize = 32

// Key is an account's signing key. Its seed is the only secret; it never
// appears in logs, errors or the ledger.
type Key struct {
	alg    Algorithm
	seed   [SeedSize]byte
	public []byte
	ed     ed25519.PrivateKey
	ml     *mldsa65.PrivateKey
}

// GenerateKey makes a new key from crypto/rand.
func GenerateKey(alg Algorithm) (*Key, error) {
	var seed [SeedSize]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	return NewKeyFromSeed(alg, seed[:])
}

// NewKeyFromSeed derives the key pair of a 32-byte seed.
func NewKeyFromSeed(alg Algorithm, seed []byte) (*Key, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrBadKey, len(seed), SeedSize)
	}
	k := &Key{alg: alg}
	copy(k.seed[:], seed)
	switch alg {
	case Ed25519:
		k.ed = ed25519.NewKeyFromSeed(seed)
		k.public = []byte(k.ed.Public().(ed25519.PublicKey))
	case MLDSA65:
		pk, sk := mldsa65.NewKeyFromSeed(&k.seed)
		k.ml = sk
		k.public = pk.Bytes()
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownAlgorithm, alg)
	}
	return k, nil
}

// Seed returns a copy of the 32-byte seed the key pair derives from. It is
// as secret as the private key; callers derive other per-account secrets
// from it (the requester's CKKS key, in sandbox).
func (k *Key) Seed() []byte { return append([]byte(nil), k.seed[:]...) }

// Algorithm returns the key's signature scheme.
func (k *Key) Algorithm() Algorithm { return k.alg }

// PublicKey returns the public key bytes.
func (k *Key) PublicKey() []byte { return append([]byte(nil), k.public...) }

// Address returns the account address of the key.
func (k *Key) Address() Address { return AddressOf(k.public) }

// Ed25519 returns the key as an ed25519.PrivateKey, or nil for other
// algorithms. HTTP request signing uses it.
func (k *Key) Ed25519() ed25519.PrivateKey { return k.ed }

// SignMessage signs an arbitrary message with the key (no context prefix):
// callers that sign other formats (checkpoints, HTTP requests) add their own
// domain separation.
func (k *Key) SignMessage(msg []byte) ([]byte, error) {
	switch k.alg {
	case Ed25519:
		return ed25519.Sign(k.ed, msg), nil
	case MLDSA65:
		sig := make([]byte, mldsa65.SignatureSize)
		if err := mldsa65.SignTo(k.ml, msg, nil, true, sig); err != nil {
			return nil, err
		}
		return sig, nil
	}
	return nil, ErrUnknownAlgorithm
}

// Sign fills in the entry's algorithm, public key and signature.
func (k *Key) Sign(e *Entry) error {
	e.Algorithm = k.alg
	e.PublicKey = k.PublicKey()
	body, err := e.body()
	if err != nil {
		return err
	}
	sig, err := k.SignMessage(signedMessage(body))
	if err != nil {
		return err
	}
	e.Signature = sig
	return nil
}

// NewEntry builds and signs an entry, returning its canonical bytes.
func (k *Key) NewEntry(kind string, nonce uint64, t time.Time, payload []byte) ([]byte, error) {
	e := &Entry{Kind: kind, Nonce: nonce, Time: t.UTC(), Payload: payload}
	if err := k.Sign(e); err != nil {
		return nil, err
	}
	return e.Marshal()
}

// keyFile is the on-disk form of a key (CONTRACT.md).
type keyFile struct {
	Algorithm  string `json:"algorithm"`
	Address    string `json:"address"`
	PublicKey  string `json:"public_key"`
	PrivateKey string `json:"private_key"`
}

// MarshalKeyFile encodes the key in the key-file JSON format, secret included.
func (k *Key) MarshalKeyFile() []byte {
	b, _ := json.MarshalIndent(keyFile{
		Algorithm:  k.alg.String(),
		Address:    k.Address().String(),
		PublicKey:  base64.StdEncoding.EncodeToString(k.public),
		PrivateKey: base64.StdEncoding.EncodeToString(k.seed[:]),
	}, "", "  ")
	return append(b, '\n')
}

// ParseKeyFile reads a key file and checks that its public key and address
// match its seed.
func ParseKeyFile(b []byte) (*Key, error) {
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: not key-file JSON: %v", ErrBadKey, err)
	}
	alg, err := ParseAlgorithm(f.Algorithm)
	if err != nil {
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(f.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("%w: private_key is not base64", ErrBadKey)
	}
	k, err := NewKeyFromSeed(alg, seed)
	if err != nil {
		return nil, err
	}
	if f.PublicKey != "" && f.PublicKey != base64.StdEncoding.EncodeToString(k.public) {
		return nil, fmt.Errorf("%w: public_key does not match private_key", ErrBadKey)
	}
	if f.Address != "" && f.Address != k.Address().String() {
		return nil, fmt.Errorf("%w: address does not match private_key", ErrBadKey)
	}
	return k, nil
}

// LoadKeyFile reads a key file from disk.
func LoadKeyFile(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKeyFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes the key to path with mode 0600, refusing to overwrite.
func (k *Key) WriteKeyFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(k.MarshalKeyFile()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
