package audit

import (
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// StateMachine feeds a policies.Machine from chain's entries. Nodes commit
// through it and auditors replay through it, so both apply exactly the
// same rules.
type StateMachine struct {
	M *policies.Machine
}

var _ chain.StateMachine = StateMachine{}

// NewStateMachine returns an adapter over a fresh policies.Machine.
func NewStateMachine() StateMachine { return StateMachine{M: policies.New()} }

// Apply unpacks a verified entry for the domain state machine.
func (s StateMachine) Apply(e *chain.Entry, index uint64, blockTime time.Time) error {
	return s.M.Apply(policies.Entry{
		Author: policies.Address(e.Author()), PublicKey: e.PublicKey,
		Kind: e.Kind, Nonce: e.Nonce, Time: e.Time, Payload: e.Payload,
	}, index, blockTime)
}

// Reset discards the domain state.
func (s StateMachine) Reset() { s.M.Reset() }
