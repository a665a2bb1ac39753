package policies

import (
	"crypto/subtle"
	"fmt"

	"github.com/cloudflare/circl/group"
)

// checkCeremonyKeys holds a pseudonym ceremony's record to its dealers'
// Feldman commitments, as every node and auditor replays it: the public
// key is Σ_d C_d0 and each participant's verification key is
// Σ_d Σ_l C_dl·x^l at its point x. Without it a ceremony entry could
// list keys that no dealing produced and the ledger would keep it; clients
// (mpc/pseudonym.NewPublic, which derives the same sums) refused such a
// ceremony, but only when they used it. policies imports nothing of the
// module, so the sums are written here again over circl's group.
func checkCeremonyKeys(c *PseudonymCeremony) error {
	g := group.Ristretto255
	agg := make([]group.Element, c.Threshold)
	for i := range agg {
		agg[i] = g.Identity()
	}
	for d, cs := range c.Commitments {
		for i, b := range cs {
			e := g.NewElement()
			if err := e.UnmarshalBinary(b); err != nil {
				return fmt.Errorf("%w: dealer %d: commitment %d is not a ristretto255 element", ErrInvalid, d, i)
			}
			agg[i].Add(agg[i], e)
		}
	}
	same := func(e group.Element, want []byte) bool {
		b, err := e.MarshalBinaryCompress()
		return err == nil && subtle.ConstantTimeCompare(b, want) == 1
	}
	if agg[0].IsIdentity() || !same(agg[0], c.PublicKey) {
		return fmt.Errorf("%w: the public key does not follow from the dealers' commitments", ErrInvalid)
	}
	for _, q := range c.Participants {
		x := g.NewScalar().SetUint64(q.Point)
		vk := g.NewElement().Set(agg[len(agg)-1])
		for i := len(agg) - 2; i >= 0; i-- {
			vk.Mul(vk, x)
			vk.Add(vk, agg[i])
		}
		if vk.IsIdentity() || !same(vk, q.VerificationKey) {
			return fmt.Errorf("%w: participant %s: the verification key does not follow from the dealers' commitments", ErrInvalid, clip(q.Node))
		}
	}
	return nil
}
