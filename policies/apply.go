package policies

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Apply checks and applies one committed entry at log index. It is
// deterministic and transactional: on error the state is byte-identical to
// what it was (journal.go).
func (m *Machine) Apply(e Entry, index uint64, blockTime time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.s
	if e.Kind == KindGenesis {
		if s.Genesis || index != 0 {
			return fmt.Errorf("%w: genesis must be the first entry, and only once", ErrInvalid)
		}
		ns := newState()
		if err := ns.genesis(e, blockTime); err != nil {
			return err
		}
		m.s = ns
		m.moved()
		return nil
	}
	s.begin()
	if err := s.applyEntry(e, index, blockTime); err != nil {
		s.rollback()
		return err
	}
	s.commit()
	m.moved()
	return nil
}

// applyEntry runs the checks every kind shares, then the kind's own.
func (s *state) applyEntry(e Entry, index uint64, blockTime time.Time) error {
	if !s.Genesis {
		return fmt.Errorf("%w: the first entry must be genesis", ErrInvalid)
	}
	if e.Author != e.Actor && !s.can(e.Author, PermNode) {
		return fmt.Errorf("%w: %s relays for %s but is not a node's account (needs %s)", ErrForbidden, e.Author, e.Actor, PermNode)
	}
	if nodeKinds[e.Kind] && e.Author != e.Actor {
		return fmt.Errorf("%w: %s is a node's own act and is never relayed for an account", ErrForbidden, e.Kind)
	}
	if e.Extra != nil && e.Kind != KindJobSubmit {
		return fmt.Errorf("%w: %s takes no relay data", ErrInvalid, e.Kind)
	}
	if d := e.ReplayTime.Sub(blockTime); d > ReplayWindow || d < -ReplayWindow {
		return fmt.Errorf("%w: signed at %s, more than %s from the ledger's time %s", ErrReplay,
			e.ReplayTime.UTC().Format(time.RFC3339), ReplayWindow, blockTime.UTC().Format(time.RFC3339))
	}
	if e.ReplayKey == "" {
		return fmt.Errorf("%w: no replay key", ErrInvalid)
	}
	// A key past its expiry may still be in the map (keys are pruned only
	// when an entry commits); it cannot match an act in the window anyway.
	if u, used := s.Used[e.ReplayKey]; used && !u.Expiry.Before(blockTime) {
		return &ReplayError{Index: u.Index}
	}
	if e.Kind != KindAccountRegister {
		if _, ok := s.Accounts[e.Actor.String()]; !ok {
			return fmt.Errorf("%w: %s", ErrUnknownAccount, e.Actor)
		}
	}
	if perm := kindPermission[e.Kind]; perm != "" && !s.can(e.Actor, perm) {
		return fmt.Errorf("%w: account %s lacks permission %s", ErrForbidden, e.Actor, perm)
	}
	if err := s.apply(e, index, blockTime); err != nil {
		return err
	}
	s.pruneUsed(blockTime)
	exp := e.ReplayTime.Add(2 * ReplayWindow)
	put(s, s.Used, e.ReplayKey, usedAct{Index: index, Expiry: exp})
	n := len(s.UsedLog)
	s.UsedLog = append(s.UsedLog, usedKey{Key: e.ReplayKey, Expiry: exp})
	s.undo = append(s.undo, func() { s.UsedLog = s.UsedLog[:n] })
	put(s, s.Counts, e.Kind, s.Counts[e.Kind]+1)
	return nil
}

// apply runs one kind's rules. It changes the state only through the
// journal (journal.go), so Apply can take a refusal back whole.
func (s *state) apply(e Entry, index uint64, now time.Time) error {
	switch e.Kind {
	case KindAccountRegister:
		return s.register(e)
	case KindAccountGrant, KindAccountRevoke:
		return s.changeRole(e)
	case KindAccountRotate:
		return s.rotate(e)
	case KindTableSet:
		return s.setTable(e)
	case KindDatasetRegister:
		return s.registerDataset(e, now)
	case KindPolicyPublish:
		return s.publishPolicy(e, index, now)
	case KindPolicyRevoke:
		return s.revokePolicy(e)
	case KindJobSubmit:
		return s.submit(e, index, now)
	case KindJobApprove, KindJobReject:
		return s.decide(e, now)
	case KindJobStart, KindJobComplete, KindJobFail:
		return s.progress(e, now)
	case KindLimitsSet:
		return s.setLimits(e)
	case KindHECeremony:
		return s.heCeremony(e, now)
	case KindHEKey:
		return s.heKey(e)
	case KindHEShare:
		return s.heShare(e, now)
	case KindHERotate:
		return s.heRotate(e, index)
	case KindPseudonymCeremony:
		return s.pseudonymCeremony(e, now)
	case KindPseudonymRotate:
		return s.pseudonymRotate(e)
	case KindPseudonymBatch:
		return s.pseudonymBatch(e, index, now)
	case KindNodeHPKE:
		return s.nodeHPKE(e)
	case KindJobKey:
		return s.jobKey(e, now)
	case KindJobFlow:
		return s.jobFlow(e, index, now)
	case KindJobList:
		return s.jobList(e, index, now)
	default:
		return note(e)
	}
}

// note checks a free-form note.* entry: its payload is JSON.
func note(e Entry) error {
	if !strings.HasPrefix(e.Kind, "note.") {
		return fmt.Errorf("%w: unknown entry kind %q", ErrInvalid, clip(e.Kind))
	}
	if !json.Valid(e.Payload) {
		return fmt.Errorf("%w: a note's payload must be JSON", ErrInvalid)
	}
	return nil
}
