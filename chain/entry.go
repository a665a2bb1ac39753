package chain

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// Algorithm names a signature scheme an account signs entries with.
type Algorithm uint8

const (
	// Ed25519 (RFC 8032), the default: 32-byte keys, 64-byte signatures.
	Ed25519 Algorithm = 1
	// MLDSA65 is ML-DSA-65 (FIPS 204) from circl, for accounts that want
	// post-quantum signatures: 1952-byte keys, 3309-byte signatures.
	MLDSA65 Algorithm = 2
)

// String returns the algorithm's name as used in key files.
func (a Algorithm) String() string {
	switch a {
	case Ed25519:
		return "ed25519"
	case MLDSA65:
		return "ml-dsa-65"
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// ParseAlgorithm reads an algorithm name as written by String.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "ed25519":
		return Ed25519, nil
	case "ml-dsa-65", "mldsa65":
		return MLDSA65, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownAlgorithm, s)
}

func (a Algorithm) publicKeySize() int {
	switch a {
	case Ed25519:
		return ed25519.PublicKeySize
	case MLDSA65:
		return mldsa65.PublicKeySize
	}
	return -1
}

func (a Algorithm) signatureSize() int {
	switch a {
	case Ed25519:
		return ed25519.SignatureSize
	case MLDSA65:
		return mldsa65.SignatureSize
	}
	return -1
}

// AddressSize is the length of an account address.
const AddressSize = 20

// Address identifies an account: the first 20 bytes of SHA-256 of its public
// key. It is one-way, so an address reveals nothing about the key until the
// account signs something.
type Address [AddressSize]byte

// AddressOf derives the address of a public key.
func AddressOf(publicKey []byte) Address {
	sum := sha256.Sum256(publicKey)
	var a Address
	copy(a[:], sum[:AddressSize])
	return a
}

// String returns the address as 40 lower-case hex digits.
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// ParseAddress reads 40 hex digits.
func ParseAddress(s string) (Address, error) {
	var a Address
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != AddressSize {
		return a, fmt.Errorf("%w: want 40 hex digits, got %q", ErrBadAddress, Clip(s, 64))
	}
	copy(a[:], b)
	return a, nil
}

// Limits on entry fields. They bound the memory a hostile entry can make a
// node allocate before its signature is checked.
const (
	MaxKindLen    = 64
	MaxPayloadLen = 1 << 20
	MaxEntrySize  = 8 + 1 + MaxKindLen + 1 + 2 + 2048 + 8 + 8 + 4 + MaxPayloadLen + 2 + 4096
)

// entryMagic starts every encoded entry; it names the format's version.
var entryMagic = [4]byte{'D', 'S', 'E', '1'}

// signingContext separates entry signatures from any other use of a key.
const signingContext = "datasandbox/entry/v1"

// Entry is one signed ledger entry. Its encoding (Marshal) is canonical: one
// entry has exactly one byte string, and that byte string is the Merkle leaf.
//
// Layout (big-endian): magic "DSE1" | kind len u8 | kind | alg u8 |
// public key len u16 | public key | nonce u64 | time i64 (Unix ns) |
// payload len u32 | payload | signature len u16 | signature.
// The signature covers signingContext || 0x00 || every byte before it.
type Entry struct {
	Kind      string    // what the entry does, e.g. "job.submit"; [a-z0-9._-]
	Algorithm Algorithm // the author's signature scheme
	PublicKey []byte    // the author's public key; the author's address is derived from it
	Nonce     uint64    // the author's sequence number (replay protection is the state machine's)
	Time      time.Time // when the author signed, nanosecond precision, UTC
	Payload   []byte    // canonical payload, opaque to chain
	Signature []byte
}

// Author returns the author's address.
func (e *Entry) Author() Address { return AddressOf(e.PublicKey) }

func validKind(k string) bool {
	if len(k) == 0 || len(k) > MaxKindLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// check validates every field's form (not the signature's validity).
func (e *Entry) check() error {
	if !validKind(e.Kind) {
		return fmt.Errorf("%w: kind %q must be 1-%d characters of [a-z0-9._-]", ErrMalformedEntry, Clip(e.Kind, 80), MaxKindLen)
	}
	if n := e.Algorithm.publicKeySize(); n < 0 {
		return fmt.Errorf("%w: %d", ErrUnknownAlgorithm, e.Algorithm)
	} else if len(e.PublicKey) != n {
		return fmt.Errorf("%w: %s public key is %d bytes, want %d", ErrMalformedEntry, e.Algorithm, len(e.PublicKey), n)
	}
	if len(e.Payload) > MaxPayloadLen {
		return fmt.Errorf("%w: payload is %d bytes, limit %d", ErrMalformedEntry, len(e.Payload), MaxPayloadLen)
	}
	return nil
}

// body encodes every field but the signature.
func (e *Entry) body() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 4+1+len(e.Kind)+1+2+len(e.PublicKey)+16+4+len(e.Payload)+2+e.Algorithm.signatureSize())
	b = append(b, entryMagic[:]...)
	b = append(b, byte(len(e.Kind)))
	b = append(b, e.Kind...)
	b = append(b, byte(e.Algorithm))
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.PublicKey)))
	b = append(b, e.PublicKey...)
	b = binary.BigEndian.AppendUint64(b, e.Nonce)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Payload)))
	b = append(b, e.Payload...)
	return b, nil
}

func signedMessage(body []byte) []byte {
	m := make([]byte, 0, len(signingContext)+1+len(body))
	m = append(m, signingContext...)
	m = append(m, 0)
	return append(m, body...)
}

// Marshal returns the entry's canonical bytes, signature included.
func (e *Entry) Marshal() ([]byte, error) {
	b, err := e.body()
	if err != nil {
		return nil, err
	}
	if len(e.Signature) != e.Algorithm.signatureSize() {
		return nil, fmt.Errorf("%w: %s signature is %d bytes, want %d", ErrMalformedEntry, e.Algorithm, len(e.Signature), e.Algorithm.signatureSize())
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Signature)))
	return append(b, e.Signature...), nil
}

// ParseEntry decodes an entry from untrusted bytes. It checks the encoding is
// canonical (so that re-marshalling gives the same bytes) but not the
// signature: call Verify for that. The entry's byte fields alias b, which
// must not change afterwards.
func ParseEntry(b []byte) (*Entry, error) {
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformedEntry, len(b), MaxEntrySize)
	}
	r := reader{b: b}
	if m := r.next(4); r.err != nil || [4]byte(m) != entryMagic {
		return nil, fmt.Errorf("%w: not a ledger entry (bad magic)", ErrMalformedEntry)
	}
	e := &Entry{}
	kind := r.next(int(r.u8()))
	e.Algorithm = Algorithm(r.u8())
	pk := r.next(int(r.u16()))
	e.Nonce = r.u64()
	t := int64(r.u64())
	payload := r.next(int(r.u32()))
	sig := r.next(int(r.u16()))
	if r.err != nil {
		return nil, fmt.Errorf("%w: truncated at byte %d", ErrMalformedEntry, len(b))
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformedEntry, len(b)-r.off)
	}
	e.Kind = string(kind)
	e.PublicKey, e.Payload, e.Signature = pk, payload, sig
	e.Time = time.Unix(0, t).UTC()
	// The decoding above read every length exactly and left no trailing
	// bytes, so once the fields' forms check out, Marshal would give back b.
	if err := e.check(); err != nil {
		return nil, err
	}
	if len(e.Signature) != e.Algorithm.signatureSize() {
		return nil, fmt.Errorf("%w: %s signature is %d bytes, want %d", ErrMalformedEntry, e.Algorithm, len(e.Signature), e.Algorithm.signatureSize())
	}
	return e, nil
}

// Verify checks the entry's signature under its own public key.
func (e *Entry) Verify() error {
	body, err := e.body()
	if err != nil {
		return err
	}
	if !VerifySignature(e.Algorithm, e.PublicKey, signedMessage(body), e.Signature) {
		return fmt.Errorf("%w: %s signature by %s does not verify", ErrBadSignature, e.Algorithm, e.Author())
	}
	return nil
}

// ParseAndVerify parses untrusted bytes and checks the signature.
func ParseAndVerify(b []byte) (*Entry, error) {
	e, err := ParseEntry(b)
	if err != nil {
		return nil, err
	}
	if err := e.Verify(); err != nil {
		return nil, err
	}
	return e, nil
}

// reader decodes big-endian fields, remembering the first overrun.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil || n < 0 || len(r.b)-r.off < n {
		r.err = ErrMalformedEntry
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u8() uint8 {
	if s := r.next(1); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if s := r.next(2); s != nil {
		return binary.BigEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.next(4); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if s := r.next(8); s != nil {
		return binary.BigEndian.Uint64(s)
	}
	return 0
}
