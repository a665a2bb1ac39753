// Package policies is the consortium's "smart contract": the deterministic
// state machine every node applies to committed ledger entries.
//
// This first version enforces what every later rule stands on: each
// account's entries carry strictly increasing nonces, so a replayed or
// reordered entry is refused, and the state has a deterministic hash that
// auditors can recompute. Genesis, roles, datasets, policies and jobs build
// on it.
//
// The package imports none of the others (DESIGN.md): it sees an entry as
// plain fields (Entry); the ledger's adapter (audit.StateMachine) unpacks
// chain's signed entries into them.
//
// Machine is safe for concurrent use: the ledger applies entries while the
// API reads.
package policies

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Address is an account address: the first 20 bytes of SHA-256 of the
// account's public key.
type Address [20]byte

// String returns the address as 40 hex digits.
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// Entry is a committed ledger entry as the state machine sees it: its
// signature has been checked by the ledger.
type Entry struct {
	Author    Address
	PublicKey []byte
	Kind      string
	Nonce     uint64
	Time      time.Time // the author's time
	Payload   []byte
}

// Machine is the replicated state.
type Machine struct {
	mu      sync.RWMutex
	nonces  map[Address]uint64
	entries uint64
	kinds   map[string]uint64
}

// New returns an empty state.
func New() *Machine {
	m := &Machine{}
	m.Reset()
	return m
}

// Reset discards all state.
func (m *Machine) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nonces = map[Address]uint64{}
	m.kinds = map[string]uint64{}
	m.entries = 0
}

// Apply checks and applies one committed entry. It is deterministic.
func (m *Machine) Apply(e Entry, _ uint64, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := e.Author
	if last, ok := m.nonces[a]; ok && e.Nonce <= last {
		return fmt.Errorf("policies: nonce %d of account %s is not above its last nonce %d (replayed or out of order)", e.Nonce, a, last)
	}
	m.nonces[a] = e.Nonce
	m.kinds[e.Kind]++
	m.entries++
	return nil
}

// NextNonce returns the smallest nonce the account may use next.
func (m *Machine) NextNonce(a Address) uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.nonces[a] + 1
}

// StateHash is SHA-256 over a canonical encoding of the whole state; equal
// logs give equal hashes on every node.
func (m *Machine) StateHash() [32]byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, m.entries))
	addrs := make([]Address, 0, len(m.nonces))
	for a := range m.nonces {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return string(addrs[i][:]) < string(addrs[j][:]) })
	for _, a := range addrs {
		h.Write(a[:])
		h.Write(binary.BigEndian.AppendUint64(nil, m.nonces[a]))
	}
	kinds := make([]string, 0, len(m.kinds))
	for k := range m.kinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write(binary.BigEndian.AppendUint64(nil, m.kinds[k]))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
