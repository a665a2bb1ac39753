// Package chaintest provides a small deterministic state machine and
// cluster helpers for testing chain and the packages above it. It is for
// tests only; the product's state machine lives in policies.
package chaintest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/datasandbox/datasandbox/chain"
)

// Kinds the test state machine understands.
const (
	KindNote      = "test.note"       // any payload
	KindGrantJoin = "test.grant-join" // payload: a 40-hex address; only the admin may write it
)

// StateMachine refuses replayed nonces (each author's nonce must grow),
// unknown kinds, and grants not written by the admin. It records notes and
// join grants, and hashes its state deterministically.
type StateMachine struct {
	Admin chain.Address

	mu      sync.Mutex
	nonces  map[chain.Address]uint64
	joiners map[chain.Address]bool
	applied uint64
	digest  [32]byte // running hash of applied (index, leaf) pairs
}

// NewStateMachine returns an empty state machine with the given admin.
func NewStateMachine(admin chain.Address) *StateMachine {
	s := &StateMachine{Admin: admin}
	s.Reset()
	return s
}

var _ chain.StateMachine = (*StateMachine)(nil)

func (s *StateMachine) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nonces = map[chain.Address]uint64{}
	s.joiners = map[chain.Address]bool{}
	s.applied = 0
	s.digest = [32]byte{}
}

func (s *StateMachine) Apply(e *chain.Entry, index uint64, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := e.Author()
	if last, ok := s.nonces[a]; ok && e.Nonce <= last {
		return fmt.Errorf("test: nonce %d of %s already used (last %d)", e.Nonce, a, last)
	}
	switch e.Kind {
	case KindNote:
	case KindGrantJoin:
		if a != s.Admin {
			return fmt.Errorf("test: %s may not grant join", a)
		}
		target, err := chain.ParseAddress(string(e.Payload))
		if err != nil {
			return err
		}
		s.joiners[target] = true
	default:
		return fmt.Errorf("test: unknown kind %q", e.Kind)
	}
	s.nonces[a] = e.Nonce
	s.applied++
	var buf [32 + 8 + chain.AddressSize + 8]byte
	copy(buf[:], s.digest[:])
	binary.BigEndian.PutUint64(buf[32:], index)
	copy(buf[40:], a[:])
	binary.BigEndian.PutUint64(buf[60:], e.Nonce)
	s.digest = sha256.Sum256(buf[:])
	return nil
}

// Applied returns how many entries were applied.
func (s *StateMachine) Applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// StateHash is a digest of the whole state.
func (s *StateMachine) StateHash() [32]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	h.Write(s.digest[:])
	var addrs []chain.Address
	for a := range s.nonces {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return string(addrs[i][:]) < string(addrs[j][:]) })
	for _, a := range addrs {
		h.Write(a[:])
		h.Write(binary.BigEndian.AppendUint64(nil, s.nonces[a]))
		if s.joiners[a] {
			h.Write([]byte{1})
		}
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Admit is a chain.AdmitFunc backed by the grants on the ledger.
func (s *StateMachine) Admit(_ context.Context, a chain.Address) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.joiners[a] {
		return fmt.Errorf("test: account %s lacks the join permission", a)
	}
	return nil
}
