package mpc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
)

// Evaluation: a node's partial evaluation of a committed batch, and
// Gather, which asks t nodes for theirs.

// EvalRequest asks a participant for its partial evaluation of a
// committed batch.
type EvalRequest struct {
	Batch   string `json:"batch"`
	Request []byte `json:"request"` // pseudonym.Request encoding
}

type evalResp struct {
	Batch   string `json:"batch"`
	Node    string `json:"node"`
	Partial []byte `json:"partial"`
}

// checkBatch: the batch is committed on this node's ledger, for this
// request and its size. Quota was enforced when it was committed.
func checkBatch(l PseudonymLedger, id string, req []byte, n int) error {
	b, ok := l.PseudonymBatch(id)
	if !ok {
		return fmt.Errorf("mpc: no pseudonym batch %q on this node's ledger", id)
	}
	if b.Request != pseudonym.RequestSHA256(req) || b.Count != int64(n) {
		return fmt.Errorf("mpc: batch %s was committed for another request (or size)", id)
	}
	return nil
}

func (p *Pseudonyms) evaluate(raw []byte) ([]byte, error) {
	var req EvalRequest
	if _, err := open(p.cfg.Ledger, svcPsEval, raw, &req); err != nil {
		return nil, err
	}
	ks, _, ok := p.committed()
	if !ok {
		return nil, fmt.Errorf("mpc: %s holds no share of the committed pseudonym key", p.cfg.Node)
	}
	r, err := pseudonym.ParseRequest(req.Request)
	if err != nil {
		return nil, err
	}
	if err := checkBatch(p.cfg.Ledger, req.Batch, req.Request, r.Len()); err != nil {
		return nil, err
	}
	part, err := ks.Evaluate(r)
	if err != nil {
		return nil, err
	}
	pb, _ := part.MarshalBinary()
	return seal(p.cfg.Key, svcPsEval, evalResp{Batch: req.Batch, Node: p.cfg.Node, Partial: pb})
}

// Gather asks need participants (this node first, then the others in
// order, skipping the points in exclude and any node that fails) for
// their partial evaluations of a committed batch, and returns them
// encoded.
// The caller (the client) verifies each against the ledger's keys and may
// ask again excluding a node whose proof failed.
func (p *Pseudonyms) Gather(ctx context.Context, batch string, req []byte, need int, exclude []uint64) ([][]byte, error) {
	c, ok := p.cfg.Ledger.Pseudonym()
	if !ok {
		return nil, errors.New("mpc: no pseudonym ceremony on the ledger")
	}
	if need < 1 || need > c.Threshold {
		return nil, fmt.Errorf("mpc: %d partials asked, the threshold is %d", need, c.Threshold)
	}
	r, err := pseudonym.ParseRequest(req)
	if err != nil {
		return nil, err
	}
	// Refused before any node evaluates.
	if p.cfg.Sync != nil {
		if err := p.cfg.Sync(ctx); err != nil {
			return nil, err
		}
	}
	if err := checkBatch(p.cfg.Ledger, batch, req, r.Len()); err != nil {
		return nil, err
	}
	var order []policies.PseudonymParticipant
	for _, q := range c.Participants {
		if q.Node == p.cfg.Node && !slices.Contains(exclude, q.Point) {
			order = append(order, q)
		}
	}
	for _, q := range c.Participants {
		if q.Node != p.cfg.Node && !slices.Contains(exclude, q.Point) {
			order = append(order, q)
		}
	}
	msg, err := seal(p.cfg.Key, svcPsEval, EvalRequest{Batch: batch, Request: req})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	var errs []error
	// Ask t at a time; replace the ones that fail by the next ones.
	for next := 0; len(out) < need && next < len(order); {
		k := min(need-len(out), len(order)-next)
		nodes := make([]Participant, k)
		for i, q := range order[next : next+k] {
			nodes[i] = Participant{Node: q.Node, Address: q.Address}
		}
		next += k
		for i, a := range ask[evalResp](ctx, p.call, p.cfg.Ledger, svcPsEval, nodes, same(msg)) {
			err := a.Err
			if err == nil && a.Value.Batch != batch {
				err = errors.New("answered another batch")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", nodes[i].Node, err))
				continue
			}
			out = append(out, a.Value.Partial)
		}
	}
	if len(out) < need {
		return nil, fmt.Errorf("mpc: %d of the %d partial evaluations needed: %w", len(out), need, errors.Join(errs...))
	}
	return out, nil
}

func clipID(s string) string { return chain.Clip(s, 40) }
