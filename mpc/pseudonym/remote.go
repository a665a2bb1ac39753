package pseudonym

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/datasandbox/datasandbox/policies"
)

// Transport is how a client reaches one node of the consortium: sandboxctl's
// signed HTTP client, or an agency's node pseudonymising an upload.
type Transport interface {
	// Commit has the node commit a pseudonym.batch entry for the request
	// and returns the batch's id. A batch beyond the requester's quota is
	// refused here, before any node evaluates.
	Commit(ctx context.Context, doc policies.PseudonymBatchDoc) (string, error)
	// Evaluate has the node gather need partial evaluations of a
	// committed batch, from participants at none of the points in
	// exclude, and returns them encoded.
	Evaluate(ctx context.Context, batch string, req []byte, need int, exclude []uint64) ([][]byte, error)
}

// RequestSHA256 is the digest pseudonym.batch records of an encoded
// request.
func RequestSHA256(req []byte) string {
	sum := sha256.Sum256(req)
	return hex.EncodeToString(sum[:])
}

// Pseudonymise computes the consortium pseudonyms of one batch of ids
// (at most MaxBatch) through a node: blind, commit the batch (doc gives
// the purpose; count and digest are filled in), gather partials, verify
// each against the ledger's keys — a node whose proof fails is excluded
// and others asked — then combine and finalise. The ids never leave this
// process; the node and the evaluators see blinded points only.
func (c *Client) Pseudonymise(ctx context.Context, tr Transport, doc policies.PseudonymBatchDoc, ids [][]byte) ([][]byte, error) {
	b, req, err := c.Blind(ids)
	if err != nil {
		return nil, err
	}
	rb, _ := req.MarshalBinary()
	doc.Count, doc.Request = int64(len(ids)), RequestSHA256(rb)
	batch, err := tr.Commit(ctx, doc)
	if err != nil {
		return nil, err
	}
	var good []*Verified
	var exclude []uint64
	var bad []error
	for len(good) < c.pub.Threshold {
		parts, err := tr.Evaluate(ctx, batch, rb, c.pub.Threshold-len(good), exclude)
		if err != nil {
			return nil, errors.Join(append(bad, err)...)
		}
		progress := false
		for _, raw := range parts {
			p, err := ParsePartial(raw)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			if slices.Contains(exclude, p.Point) {
				continue
			}
			// Asked once: a node whose proof failed is not asked again.
			exclude, progress = append(exclude, p.Point), true
			v, err := c.Verify(req, p)
			if err != nil {
				bad = append(bad, err)
				continue
			}
			good = append(good, v)
		}
		if !progress {
			return nil, fmt.Errorf("%w: %d valid of %d: %w", ErrThreshold, len(good), c.pub.Threshold, errors.Join(bad...))
		}
	}
	return c.Finalize(b, good)
}

// PseudonymiseAll pseudonymises ids in batches of size (≤ MaxBatch),
// with up to inflight batches in the pipeline at once (blinding and
// combining one while nodes evaluate others). Results keep the ids' order.
func (c *Client) PseudonymiseAll(ctx context.Context, tr Transport, doc policies.PseudonymBatchDoc, ids [][]byte, size, inflight int) ([][]byte, error) {
	if size < 1 || size > MaxBatch || inflight < 1 {
		return nil, fmt.Errorf("%w: batch size %d (1..%d), %d in flight", ErrInvalidInput, size, MaxBatch, inflight)
	}
	out := make([][]byte, len(ids))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for lo := 0; lo < len(ids); lo += size {
		hi := min(lo+size, len(ids))
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ps, err := c.Pseudonymise(ctx, tr, doc, ids[lo:hi])
			if err != nil {
				once.Do(func() { first = fmt.Errorf("ids %d..%d: %w", lo, hi-1, err); cancel() })
				return
			}
			copy(out[lo:hi], ps)
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, ctx.Err()
}
