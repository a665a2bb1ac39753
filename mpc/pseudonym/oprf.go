package pseudonym

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
)

// suite is the RFC 9497 ciphersuite every pseudonym uses
// (policies.PseudonymSuite names it on the ledger).
var suite = oprf.SuiteRistretto255

// g is the suite's group; every element and scalar below belongs to it.
var g = group.Ristretto255

// Sizes of the encodings (RFC 9497, ristretto255-SHA512).
const (
	ElementSize = 32 // a compressed ristretto255 element
	ScalarSize  = 32 // a little-endian scalar
	ProofSize   = 2 * ScalarSize
	OutputSize  = sha512.Size // a pseudonym
)

// MaxBatch bounds the elements of one request: the DLEQ composite numbers
// them with 16 bits (RFC 9497 section 2.2.1), and a bound keeps one
// request's cost known.
const MaxBatch = 1 << 15

// MaxInputLen bounds one id: RFC 9497 frames inputs with a 16-bit length.
const MaxInputLen = 1<<16 - 1

// Errors; wrapped with the detail (which partial, which element).
var (
	// ErrInvalidInput: an id, blind, element or scalar that the protocol
	// refuses (empty, too long, the identity, not canonical).
	ErrInvalidInput = errors.New("pseudonym: invalid input")
	// ErrBadProof: a partial evaluation whose DLEQ proof does not verify
	// against its node's verification key. Ask another node.
	ErrBadProof = errors.New("pseudonym: partial evaluation fails its proof")
	// ErrThreshold: fewer valid partials than the threshold.
	ErrThreshold = errors.New("pseudonym: not enough partial evaluations")
	// ErrUnknownNode: a partial from a point with no verification key.
	ErrUnknownNode = errors.New("pseudonym: partial from a node outside the ceremony")
)

// Domain separation tags of RFC 9497, verifiable mode (mode byte 0x01).
var (
	contextString  = append([]byte("OPRFV1-\x01-"), suite.Identifier()...)
	hashToGroupDST = append([]byte("HashToGroup-"), contextString...)
)

// hashToGroup maps an id to the group (RFC 9497 HashToGroup).
func hashToGroup(id []byte) (group.Element, error) {
	if len(id) == 0 || len(id) > MaxInputLen {
		return nil, fmt.Errorf("%w: an id of %d bytes (need 1..%d)", ErrInvalidInput, len(id), MaxInputLen)
	}
	p := g.HashToElement(id, hashToGroupDST)
	if p.IsIdentity() {
		return nil, fmt.Errorf("%w: the id hashes to the identity", ErrInvalidInput)
	}
	return p, nil
}

// finalize is RFC 9497's Finalize hash over an unblinded element:
// SHA-512(I2OSP(len(id),2) || id || I2OSP(len(e),2) || e || "Finalize").
func finalize(id []byte, unblinded group.Element) []byte {
	e, err := unblinded.MarshalBinaryCompress()
	if err != nil {
		panic(err) // ristretto255 elements always encode
	}
	h := sha512.New()
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(id)))
	h.Write(l[:])
	h.Write(id)
	binary.BigEndian.PutUint16(l[:], uint16(len(e)))
	h.Write(l[:])
	h.Write(e)
	h.Write([]byte("Finalize"))
	return h.Sum(nil)
}

func parseElement(b []byte) (group.Element, error) {
	if len(b) != ElementSize {
		return nil, fmt.Errorf("%w: an element of %d bytes (need %d)", ErrInvalidInput, len(b), ElementSize)
	}
	e := g.NewElement()
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: not a ristretto255 element", ErrInvalidInput)
	}
	if e.IsIdentity() {
		return nil, fmt.Errorf("%w: the identity element", ErrInvalidInput)
	}
	return e, nil
}

func parseScalar(b []byte) (group.Scalar, error) {
	if len(b) != ScalarSize {
		return nil, fmt.Errorf("%w: a scalar of %d bytes (need %d)", ErrInvalidInput, len(b), ScalarSize)
	}
	s := g.NewScalar()
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: not a canonical scalar", ErrInvalidInput)
	}
	return s, nil
}

func marshalElement(e group.Element) []byte {
	b, err := e.MarshalBinaryCompress()
	if err != nil {
		panic(err)
	}
	return b
}

func marshalScalar(s group.Scalar) []byte {
	b, err := s.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// scalarOf returns x as a scalar (a Shamir point).
func scalarOf(x uint64) group.Scalar { return g.NewScalar().SetUint64(x) }
