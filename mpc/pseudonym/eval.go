package pseudonym

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/cloudflare/circl/group"
	"github.com/oasisprotocol/curve25519-voi/curve"
)

// Request is a batch of blinded ids, r_i·H(id_i): what a node sees.
type Request struct {
	elements []group.Element
	raw      []byte // the encoding, kept for digests

	once sync.Once // the encodings and points the proofs need, made once
	enc  [][]byte
	pts  []*curve.RistrettoPoint
	err  error
}

// prepared returns the elements' encodings and voi points (shared by the
// proofs of every partial of the request).
func (r *Request) prepared() ([][]byte, []*curve.RistrettoPoint, error) {
	r.once.Do(func() {
		raw, _ := r.MarshalBinary()
		body := raw[len(requestMagic)+4:]
		r.enc = make([][]byte, len(r.elements))
		for i := range r.enc {
			r.enc[i] = body[i*ElementSize : (i+1)*ElementSize]
		}
		r.pts, r.err = points(r.enc)
	})
	return r.enc, r.pts, r.err
}

// Len is the number of blinded elements.
func (r *Request) Len() int { return len(r.elements) }

const (
	requestMagic = "PSR1"
	partialMagic = "PSP1"
)

// MarshalBinary encodes the request: "PSR1", a 32-bit count, the elements.
func (r *Request) MarshalBinary() ([]byte, error) {
	if r.raw == nil {
		r.raw = marshalElements(requestMagic, nil, r.elements)
	}
	return r.raw, nil
}

func marshalElements(magic string, head []byte, es []group.Element) []byte {
	b := make([]byte, 0, len(magic)+len(head)+4+ElementSize*len(es))
	b = append(append(append(b, magic...), head...), binary.BigEndian.AppendUint32(nil, uint32(len(es)))...)
	for _, e := range es {
		b = append(b, marshalElement(e)...)
	}
	return b
}

// parseElements reads a 32-bit count and that many elements, and returns
// what follows.
func parseElements(b []byte) ([]group.Element, []byte, error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: truncated count", ErrInvalidInput)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if n == 0 || n > MaxBatch {
		return nil, nil, fmt.Errorf("%w: a batch of %d elements (need 1..%d)", ErrInvalidInput, n, MaxBatch)
	}
	if len(b) < int(n)*ElementSize {
		return nil, nil, fmt.Errorf("%w: %d elements announced, %d bytes follow", ErrInvalidInput, n, len(b))
	}
	out := make([]group.Element, n)
	for i := range out {
		e, err := parseElement(b[i*ElementSize : (i+1)*ElementSize])
		if err != nil {
			return nil, nil, fmt.Errorf("element %d: %w", i, err)
		}
		out[i] = e
	}
	return out, b[int(n)*ElementSize:], nil
}

// ParseRequest reads a request from an untrusted client.
func ParseRequest(b []byte) (*Request, error) {
	if len(b) < 4 || string(b[:4]) != requestMagic {
		return nil, fmt.Errorf("%w: a request starts %q", ErrInvalidInput, requestMagic)
	}
	es, rest, err := parseElements(b[4:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the request", ErrInvalidInput, len(rest))
	}
	return &Request{elements: es, raw: append([]byte(nil), b...)}, nil
}

// Partial is one node's evaluation of a request with its share, k_x·B_i
// for every blinded B_i, and one batched DLEQ proof (RFC 9497 section
// 2.2) that the same k_x is behind its verification key k_x·G.
type Partial struct {
	Point    uint64
	elements []group.Element
	enc      [][]byte // the elements' encodings
	proof    *proof
}

// Len is the number of evaluated elements.
func (p *Partial) Len() int { return len(p.elements) }

// Evaluate computes this share's partial evaluation of a request. The
// node must have checked on its own ledger that the batch is committed
// and within quota before it calls Evaluate.
func (s *KeyShare) Evaluate(req *Request) (*Partial, error) {
	return s.evaluate(req, g.RandomScalar(rand.Reader))
}

// evaluate is Evaluate with the proof's randomness given (known-answer
// tests only).
func (s *KeyShare) evaluate(req *Request, r group.Scalar) (*Partial, error) {
	if req == nil || len(req.elements) == 0 || len(req.elements) > MaxBatch {
		return nil, fmt.Errorf("%w: an empty or oversized request", ErrInvalidInput)
	}
	bEnc, bPts, err := req.prepared()
	if err != nil {
		return nil, err
	}
	out := make([]group.Element, len(req.elements))
	enc := make([][]byte, len(out))
	_ = parallel(len(out), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			out[i] = g.NewElement().Mul(req.elements[i], s.k)
			enc[i] = marshalElement(out[i])
		}
		return nil
	})
	pr := prove(s.k, marshalElement(s.vk), bEnc, bPts, enc, r)
	return &Partial{Point: s.Point, elements: out, enc: enc, proof: pr}, nil
}

// MarshalBinary encodes the partial: "PSP1", the 64-bit point, a 32-bit
// count, the elements, the 64-byte proof (c || s).
func (p *Partial) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, len(partialMagic)+8+4+ElementSize*len(p.enc)+ProofSize)
	b = append(append(append(b, partialMagic...), binary.BigEndian.AppendUint64(nil, p.Point)...), binary.BigEndian.AppendUint32(nil, uint32(len(p.enc)))...)
	for _, e := range p.enc {
		b = append(b, e...)
	}
	return append(b, p.proof.marshal()...), nil
}

// ParsePartial reads a partial evaluation from a node. Its proof is not
// checked here: Client.Verify does that against the node's key.
func ParsePartial(b []byte) (*Partial, error) {
	if len(b) < 12 || string(b[:4]) != partialMagic {
		return nil, fmt.Errorf("%w: a partial starts %q and a point", ErrInvalidInput, partialMagic)
	}
	x := binary.BigEndian.Uint64(b[4:12])
	if x == 0 || x > MaxParticipants {
		return nil, fmt.Errorf("%w: partial from point %d", ErrInvalidInput, x)
	}
	es, rest, err := parseElements(b[12:])
	if err != nil {
		return nil, err
	}
	if len(rest) != ProofSize {
		return nil, fmt.Errorf("%w: a proof of %d bytes (need %d)", ErrInvalidInput, len(rest), ProofSize)
	}
	c, err := parseScalar(rest[:ScalarSize])
	if err != nil {
		return nil, fmt.Errorf("proof: %w", err)
	}
	s, err := parseScalar(rest[ScalarSize:])
	if err != nil {
		return nil, fmt.Errorf("proof: %w", err)
	}
	body := b[16 : 16+len(es)*ElementSize]
	enc := make([][]byte, len(es))
	for i := range enc {
		enc[i] = append([]byte(nil), body[i*ElementSize:(i+1)*ElementSize]...)
	}
	return &Partial{Point: x, elements: es, enc: enc, proof: &proof{c: c, s: s}}, nil
}
