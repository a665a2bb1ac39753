package policies

import (
	"fmt"
	"math"
)

// KindLimitsSet is an admin's change of the consortium-wide limits.
const KindLimitsSet = "limits.set"

// Limits are the consortium-wide ceilings on what a policy may set. Genesis
// may carry them; an admin changes them with a limits.set entry. A genesis
// without them (every consortium written before they existed) gets
// DefaultLimits.
type Limits struct {
	// MaxEpsilonPerQuery is the largest dp.epsilon_per_query a policy may set.
	MaxEpsilonPerQuery float64 `json:"max_epsilon_per_query"`
	// MaxEpsilonBudget is the largest dp.epsilon_budget a policy may set.
	MaxEpsilonBudget float64 `json:"max_epsilon_budget"`
	// MaxDelta is the ceiling of dp.delta.
	MaxDelta float64 `json:"max_delta"`
}

// DefaultLimits: ε ≤ 1 per query, ≤ 10 in total, δ ≤ 1e-5.
func DefaultLimits() Limits {
	return Limits{MaxEpsilonPerQuery: 1, MaxEpsilonBudget: 10, MaxDelta: 1e-5}
}

// Validate checks that the limits are usable numbers.
func (l Limits) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: limits: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch {
	case !(l.MaxEpsilonPerQuery > 0) || math.IsInf(l.MaxEpsilonPerQuery, 0):
		return bad("max_epsilon_per_query must be a number > 0")
	case !(l.MaxEpsilonBudget >= l.MaxEpsilonPerQuery) || math.IsInf(l.MaxEpsilonBudget, 0):
		return bad("max_epsilon_budget must be a number at least max_epsilon_per_query")
	case !(l.MaxDelta >= 0 && l.MaxDelta < 1):
		return bad("max_delta must be in [0, 1)")
	}
	return nil
}

// limits returns the limits in force.
func (s *state) limits() Limits {
	if s.Limits == nil {
		return DefaultLimits()
	}
	return *s.Limits
}

// CheckPolicy refuses a policy beyond the limits, naming the rule.
func (l Limits) CheckPolicy(p *Policy) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: policy: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch {
	case p.DP.EpsilonPerQuery > l.MaxEpsilonPerQuery:
		return bad("dp.epsilon_per_query %s exceeds the consortium's limit of %s per query (limits.max_epsilon_per_query)", fnum(p.DP.EpsilonPerQuery), fnum(l.MaxEpsilonPerQuery))
	case p.DP.EpsilonBudget > l.MaxEpsilonBudget:
		return bad("dp.epsilon_budget %s exceeds the consortium's limit of %s in total (limits.max_epsilon_budget)", fnum(p.DP.EpsilonBudget), fnum(l.MaxEpsilonBudget))
	case p.DP.Delta > l.MaxDelta:
		return bad("dp.delta %s exceeds the consortium's ceiling of %s (limits.max_delta)", fnum(p.DP.Delta), fnum(l.MaxDelta))
	}
	return nil
}

// Limits returns the consortium-wide limits in force.
func (m *Machine) Limits() Limits {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.limits()
}

// ParseLimits reads a limits.set document from untrusted JSON.
func ParseLimits(b []byte) (Limits, error) {
	var l Limits
	if err := strictUnmarshal(b, &l); err != nil {
		return l, fmt.Errorf("%w: limits: %v", ErrInvalid, err)
	}
	return l, l.Validate()
}

func (s *state) setLimits(e Entry) error {
	l, err := ParseLimits(e.Payload)
	if err != nil {
		return err
	}
	set(s, &s.Limits, &l)
	return nil
}
