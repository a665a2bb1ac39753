package policies

import (
	"maps"
	"slices"
)

// Applying an entry is a transaction: either every change it makes to the
// state stays, or none does. Every node applies entries that the ledger
// then refuses (they never reach the log), while an auditor replays only
// committed ones, so a refusal that left any trace (a pruned replay key, a
// half-updated job) would make a live node's state hash differ from every
// honest replay: a false tamper alarm, or worse, a rule that holds on one
// node and not on another.
//
// Handlers therefore change the state only through the functions below,
// which record how to take each change back; Apply runs the record
// backwards when a handler refuses. Objects reached through a map are
// copied before they are changed (edit), so the record can put the old
// pointer back. A property test (TestApplyIsTransactional) applies random
// streams of valid, invalid and replayed entries and checks the state hash
// after every refusal.

// begin starts recording the changes of one entry.
func (s *state) begin() { s.undo = s.undo[:0] }

// rollback takes back every change recorded since begin.
func (s *state) rollback() {
	for i := len(s.undo) - 1; i >= 0; i-- {
		s.undo[i]()
	}
	s.undo = s.undo[:0]
}

// commit keeps the changes recorded since begin.
func (s *state) commit() { s.undo = s.undo[:0] }

// edit returns m[k] ready to be changed: a copy put in its place (or a new
// zero value where there was none), the old value restored on rollback.
// Slices in the copy are cloned too, so appending to or sorting them never
// touches the old value.
func edit[V any](s *state, m map[string]*V, k string, fresh func() *V) *V {
	old, had := m[k]
	var v *V
	if had {
		c := *old
		v = &c
		cloneSlices(v)
	} else {
		v = fresh()
	}
	m[k] = v
	s.undo = append(s.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
	return v
}

// put sets m[k] = v, the old value (or its absence) restored on rollback.
func put[K comparable, V any](s *state, m map[K]V, k K, v V) {
	old, had := m[k]
	m[k] = v
	s.undo = append(s.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

// set changes one field of the state itself.
func set[V any](s *state, field *V, v V) {
	old := *field
	*field = v
	s.undo = append(s.undo, func() { *field = old })
}

// cloneSlices gives a copied object its own slices.
func cloneSlices(v any) {
	switch x := v.(type) {
	case *Account:
		x.Roles = slices.Clone(x.Roles)
		x.PublicKey = slices.Clone(x.PublicKey)
		x.HPKE = slices.Clone(x.HPKE)
	case *Job:
		x.Approvals = slices.Clone(x.Approvals)
		x.Shares = slices.Clone(x.Shares)
		x.Parts = slices.Clone(x.Parts)
		x.Flows = slices.Clone(x.Flows)
		x.KeySealed = maps.Clone(x.KeySealed)
	case *Policy:
		// Policies change only by revocation (a flag); their slices are
		// never written after publication.
	}
}

func newAccount() *Account { return &Account{Roles: []string{}} }
func newJob() *Job         { return &Job{} }

// drop deletes m[k], restored on rollback.
func drop[K comparable, V any](s *state, m map[K]V, k K) {
	old, had := m[k]
	if !had {
		return
	}
	delete(m, k)
	s.undo = append(s.undo, func() { m[k] = old })
}
