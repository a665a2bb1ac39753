package policies

import (
	"fmt"
	"time"
)

// ReplayWindow is how far a signed act's time may be from the block time.
// Replay keys are remembered for twice as long, so a replay is refused
// for as long as its time would still be accepted.
const ReplayWindow = 10 * time.Minute

// ReplayError refuses an entry carrying a signed act the ledger already
// applied; Index is the entry that carried it first. It wraps ErrReplay.
type ReplayError struct{ Index uint64 }

func (e *ReplayError) Error() string {
	return fmt.Sprintf("%v: this signed act was already applied, by entry %d", ErrReplay, e.Index)
}

func (e *ReplayError) Unwrap() error { return ErrReplay }

// Act returns the index of the entry that applied the signed act with this
// replay key, while the ledger still remembers it.
func (m *Machine) Act(key string) (uint64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.s.Used[key]
	return u.Index, ok
}

// pruneUsed forgets replay keys whose acts can no longer be applied (their
// time is out of the window). It runs only as part of an entry that
// commits, so that refusals change nothing.
func (s *state) pruneUsed(now time.Time) {
	i := 0
	for i < len(s.UsedLog) && s.UsedLog[i].Expiry.Before(now) {
		// Keys are not strictly in expiry order; a key still in force is
		// kept in the map even when an older one is dropped here.
		if u, ok := s.Used[s.UsedLog[i].Key]; ok && !u.Expiry.After(now) {
			k := s.UsedLog[i].Key
			old := u
			delete(s.Used, k)
			s.undo = append(s.undo, func() { s.Used[k] = old })
		}
		i++
	}
	if i > 0 {
		set(s, &s.UsedLog, s.UsedLog[i:])
	}
}
