package pseudonym

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/cloudflare/circl/group"
)

// Client blinds ids, checks the nodes' partial evaluations against their
// verification keys and combines them into pseudonyms. It holds no
// secret beyond the blinds of the batches in flight; it is safe for
// concurrent use.
type Client struct {
	pub *Public
}

// NewClient returns a client for a ceremony's public part.
func NewClient(pub *Public) *Client { return &Client{pub: pub} }

// Public returns the ceremony the client checks against.
func (c *Client) Public() *Public { return c.pub }

// Blinding is the client's secret state for one batch: the ids and their
// blinds. It never leaves the client.
type Blinding struct {
	ids    [][]byte
	blinds []group.Scalar
	req    *Request
}

// Blind hashes each id to the group and multiplies it by a fresh random
// blind (crypto/rand). The request carries only the blinded points, which
// are uniformly random elements whatever the ids.
func (c *Client) Blind(ids [][]byte) (*Blinding, *Request, error) {
	blinds := make([]group.Scalar, len(ids))
	for i := range blinds {
		blinds[i] = g.RandomNonZeroScalar(rand.Reader)
	}
	return c.blind(ids, blinds)
}

func (c *Client) blind(ids [][]byte, blinds []group.Scalar) (*Blinding, *Request, error) {
	if len(ids) == 0 || len(ids) > MaxBatch || len(blinds) != len(ids) {
		return nil, nil, fmt.Errorf("%w: a batch of %d ids (need 1..%d)", ErrInvalidInput, len(ids), MaxBatch)
	}
	es := make([]group.Element, len(ids))
	err := parallel(len(ids), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			if blinds[i].IsZero() {
				return fmt.Errorf("%w: a zero blind", ErrInvalidInput)
			}
			p, err := hashToGroup(ids[i])
			if err != nil {
				return fmt.Errorf("id %d: %w", i, err)
			}
			es[i] = g.NewElement().Mul(p, blinds[i])
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	req := &Request{elements: es}
	return &Blinding{ids: slices.Clone(ids), blinds: blinds, req: req}, req, nil
}

// PartialError says which node's partial was refused, and why.
type PartialError struct {
	Point uint64
	Err   error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("pseudonym: partial of point %d: %v", e.Point, e.Err)
}

func (e *PartialError) Unwrap() error { return e.Err }

// Verified is a partial whose proof checked against its node's
// verification key for one request.
type Verified struct {
	req *Request
	p   *Partial
}

// Verify checks a partial's batched DLEQ proof against the verification
// key of its point, for the request it answers. A failure is a
// *PartialError (ErrBadProof, ErrUnknownNode or ErrInvalidInput): ask
// another node.
func (c *Client) Verify(req *Request, p *Partial) (*Verified, error) {
	vk, ok := c.pub.keys[p.Point]
	if !ok {
		return nil, &PartialError{p.Point, ErrUnknownNode}
	}
	if len(p.elements) != len(req.elements) {
		return nil, &PartialError{p.Point, fmt.Errorf("%w: %d elements for a request of %d", ErrInvalidInput, len(p.elements), len(req.elements))}
	}
	bEnc, bPts, err := req.prepared()
	if err != nil {
		return nil, &PartialError{p.Point, err}
	}
	zPts, err := points(p.enc)
	if err != nil {
		return nil, &PartialError{p.Point, err}
	}
	if !verify(vk, marshalElement(vk), bEnc, bPts, p.enc, zPts, p.proof) {
		return nil, &PartialError{p.Point, ErrBadProof}
	}
	return &Verified{req: req, p: p}, nil
}

// Finalize combines t verified partials of the blinding's request into
// the pseudonyms, in the order of the ids: for each id,
// N = Σ_j (λ_j·r⁻¹)·Z_j — Lagrange interpolation at 0 and unblinding
// folded into one scalar multiplication per partial — then RFC 9497's
// Finalize hash. Extra partials beyond t are ignored.
func (c *Client) Finalize(b *Blinding, vs []*Verified) ([][]byte, error) {
	t := c.pub.Threshold
	var use []*Partial
	seen := map[uint64]bool{}
	for _, v := range vs {
		if v == nil || v.req != b.req {
			return nil, fmt.Errorf("%w: a partial verified for another request", ErrInvalidInput)
		}
		if !seen[v.p.Point] && len(use) < t {
			seen[v.p.Point] = true
			use = append(use, v.p)
		}
	}
	if len(use) < t {
		return nil, fmt.Errorf("%w: %d verified partials from distinct nodes, the threshold is %d", ErrThreshold, len(use), t)
	}
	points := make([]uint64, t)
	for j, p := range use {
		points[j] = p.Point
	}
	lambda := lagrangeAtZero(points)
	out := make([][]byte, len(b.ids))
	err := parallel(len(b.ids), func(lo, hi int) error {
		inv, coef := g.NewScalar(), g.NewScalar()
		term := g.NewElement()
		for i := lo; i < hi; i++ {
			inv.Inv(b.blinds[i])
			sum := g.Identity()
			for j, p := range use {
				coef.Mul(lambda[j], inv)
				term.Mul(p.elements[i], coef)
				sum.Add(sum, term)
			}
			out[i] = finalize(b.ids[i], sum)
		}
		return nil
	})
	return out, err
}

// parallel runs fn over [0,n) in chunks, one per CPU.
func parallel(n int, fn func(lo, hi int) error) error {
	w := min(runtime.GOMAXPROCS(0), max(n/64, 1))
	if w <= 1 {
		return fn(0, n)
	}
	errs := make([]error, w)
	var wg sync.WaitGroup
	for k := range w {
		lo, hi := k*n/w, (k+1)*n/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = fn(lo, hi)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// String and GoString keep the blinds and ids out of logs.
func (b *Blinding) String() string   { return fmt.Sprintf("pseudonym blinding of %d ids", len(b.ids)) }
func (b *Blinding) GoString() string { return b.String() }
