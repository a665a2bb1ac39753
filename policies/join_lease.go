package policies

import (
	"fmt"
	"time"
)

// MinJoinLease and MaxJoinLease bound a genesis's join_lease_seconds.
const (
	MinJoinLease = 5 * time.Second
	MaxJoinLease = 24 * time.Hour
)

// checkJoinLease checks a genesis's join_lease_seconds (0: JoinLease).
func checkJoinLease(sec int64) error {
	if sec == 0 {
		return nil
	}
	if d := time.Duration(sec) * time.Second; sec < 0 || d < MinJoinLease || d > MaxJoinLease {
		return fmt.Errorf("%w: genesis: join_lease_seconds %d is outside [%d, %d]", ErrInvalid, sec, int64(MinJoinLease/time.Second), int64(MaxJoinLease/time.Second))
	}
	return nil
}

// joinLease is the consortium's lease of a join's runner: the genesis's
// join_lease_seconds, or JoinLease.
func (s *state) joinLease() time.Duration {
	if s.JoinLeaseSeconds > 0 {
		return time.Duration(s.JoinLeaseSeconds) * time.Second
	}
	return JoinLease
}

// JoinLease is how long, in block time, a join job's runner holds it
// without renewing (JoinLease unless the genesis set join_lease_seconds).
func (m *Machine) JoinLease() time.Duration {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.joinLease()
}
