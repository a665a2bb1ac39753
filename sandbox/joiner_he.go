package sandbox

import (
	"context"
	"fmt"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// runHE runs a join in mode he on the executor: the owners' parts hold
// their encrypted columns as ciphertexts (ShipHE); the executor evaluates
// (HEEvaluateJoin) and has t nodes re-encrypt the result to the requester,
// each re-checking the job on its own ledger (AuthoriseHEShare).
func (jn *Joiner) runHE(ctx context.Context, j policies.Job, q *Query, ctl Control, ships []*Shipment, schemas []*policies.Schema, sel []byte) (*Result, error) {
	if jn.cfg.HE == nil {
		return nil, fmt.Errorf("%w: this node has no HE keys (no key ceremony)", ErrRefused)
	}
	keys, err := jn.cfg.HE.Keys()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	parts := make([]HEJoinPart, len(ships))
	for i, s := range ships {
		if parts[i], err = s.HEPart(schemas[i], j.Parts[i].MaxRows); err != nil {
			return nil, err
		}
	}
	ct, lay, err := HEEvaluateJoin(ctx, q, parts, keys, ctl, jn.cfg.Limits, sel)
	if err != nil {
		return nil, err
	}
	out, active, err := jn.cfg.HE.Release(ctx, j, ct, lay)
	if err != nil {
		return nil, err
	}
	res := &Result{Job: j.ID, Rows: [][]any{}, Suppressed: lay.Suppressed, EpsilonSpent: ctl.Epsilon,
		HE: &HEResult{Layout: lay, Ciphertext: heparams.MarshalCiphertext(heparams.Params(), out), Active: active}}
	for _, it := range q.Select {
		res.Columns = append(res.Columns, label(it))
	}
	return res, res.Seal()
}

// shipmentFor builds this owner's part of job j: in mode he its encrypted
// columns as ciphertexts under the collective key (a part without any
// ships as in masked mode).
func (jn *Joiner) shipmentFor(ctx context.Context, j policies.Job, t *Table, side policies.JoinSide, k []byte) (*Shipment, error) {
	if j.Mode != policies.ModeHE || len(heSideColumns(side, &t.Schema)) == 0 {
		return shipUntagged(j.ID, t, side, k) // nothing of it is encrypted; tagged as it is encoded
	}
	if jn.cfg.HE == nil {
		return nil, fmt.Errorf("%w: this node has no HE keys (no key ceremony)", ErrRefused)
	}
	keys, err := jn.cfg.HE.Keys()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	d, err := jn.store.HEData(ctx, side.Dataset, keys.PK)
	if err != nil {
		return nil, err
	}
	return ShipHE(j.ID, t, side, k, d, j.Plan.Aggregates)
}
