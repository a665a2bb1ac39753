package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Entry kinds of homomorphic (he) mode.
const (
	// KindHECeremony records a completed key ceremony: who holds shares of
	// the collective secret key, the threshold, and the digests of the
	// collective public and Galois keys and of the whole transcript.
	KindHECeremony = "he.ceremony"
	// KindHEKey registers the actor's own CKKS public key, the key its HE
	// results are re-encrypted to.
	KindHEKey = "account.hekey"
	// KindHEShare records one node's decryption (key-switch) share for a
	// job's result ciphertext. A node commits it before it computes the
	// share; the state machine accepts it only for a running he job that
	// is not released yet.
	KindHEShare = "he.share"
	// KindHERotate is an admin's approval of one key ceremony: the first,
	// or one that replaces the committed one (a re-key). Without it an
	// he.ceremony is refused.
	KindHERotate = "he.rotate"
)

// MaxHEKeyLen bounds a registered HE public key.
const MaxHEKeyLen = 600 << 10

// HEParticipant is one shareholder of the collective key.
type HEParticipant struct {
	Node    string  `json:"node"`
	Address Address `json:"address"`
	Point   uint64  `json:"point"` // Shamir evaluation point
}

// HECeremony is the he.ceremony document and the state's record of it.
type HECeremony struct {
	ID             string          `json:"id"`
	Params         string          `json:"params"`
	Threshold      int             `json:"threshold"`
	Participants   []HEParticipant `json:"participants"`
	GaloisElements []uint64        `json:"galois_elements"`
	PublicKey      string          `json:"public_key_sha256"`
	GaloisKeys     string          `json:"galois_keys_sha256"`
	Transcript     string          `json:"transcript_sha256"`
	Time           time.Time       `json:"time,omitzero"`
	// Rotation is the index of the he.rotate entry that allowed this
	// ceremony to replace an earlier one (0 for the first ceremony).
	Rotation uint64 `json:"rotation,omitempty"`
}

// HERotateDoc is the he.rotate document: why the key is replaced.
type HERotateDoc struct {
	Reason string `json:"reason"`
}

// HEKeyDoc is the account.hekey document.
type HEKeyDoc struct {
	Params    string `json:"params"`
	PublicKey []byte `json:"public_key"`
}

// HEShareDoc is the he.share document.
type HEShareDoc struct {
	Job        string   `json:"job"`
	Ciphertext string   `json:"ciphertext_sha256"`
	Active     []string `json:"active"` // the nodes whose shares combine
}

// HEShare is a share recorded on a job.
type HEShare struct {
	Node       Address  `json:"node"`
	Ciphertext string   `json:"ciphertext_sha256"`
	Active     []string `json:"active"`
}

func (s *state) heCeremony(e Entry, now time.Time) error {
	var c HECeremony
	if err := decode(e, &c); err != nil {
		return err
	}
	// Every ceremony, the first included, follows an admin's approval on
	// the ledger: otherwise any node could commit one before the admin's,
	// choosing its participants and threshold.
	if s.HERotation == 0 {
		if s.HE != nil {
			return fmt.Errorf("%w: the consortium's HE key ceremony %s is committed; a new one needs an admin's he.rotate entry first", ErrConflict, clip(s.HE.ID))
		}
		return fmt.Errorf("%w: an HE key ceremony needs an admin's approval on the ledger first (he.rotate; POST /v1/he/ceremony commits it)", ErrForbidden)
	}
	if c.Rotation != 0 {
		return fmt.Errorf("%w: he.ceremony: rotation is recorded by the ledger, not set by the author", ErrInvalid)
	}
	if c.ID == "" || c.Params == "" || !IsSHA256Hex(c.PublicKey) || !IsSHA256Hex(c.GaloisKeys) || !IsSHA256Hex(c.Transcript) {
		return fmt.Errorf("%w: he.ceremony needs id, params and the three digests", ErrInvalid)
	}
	if c.Threshold < 2 || c.Threshold > len(c.Participants) {
		return fmt.Errorf("%w: threshold %d of %d participants: need 2 ≤ t ≤ N", ErrInvalid, c.Threshold, len(c.Participants))
	}
	seen := map[uint64]bool{}
	names := map[string]bool{}
	in := false
	for _, p := range c.Participants {
		if !s.can(p.Address, PermNode) {
			return fmt.Errorf("%w: participant %s (%s) is not a node", ErrForbidden, p.Node, p.Address)
		}
		if p.Point == 0 || seen[p.Point] || names[p.Node] {
			return fmt.Errorf("%w: participants need distinct names and non-zero points", ErrInvalid)
		}
		seen[p.Point], names[p.Node] = true, true
		in = in || p.Address == e.Actor
	}
	if !in {
		return fmt.Errorf("%w: the ceremony is committed by one of its participants", ErrForbidden)
	}
	c.Time = now
	c.Rotation = s.HERotation
	set(s, &s.HE, &c)
	set(s, &s.HERotation, 0)
	return nil
}

// heRotate records an admin's approval of one re-key.
func (s *state) heRotate(e Entry, index uint64) error {
	var d HERotateDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	if strings.TrimSpace(d.Reason) == "" {
		return fmt.Errorf("%w: he.rotate needs a reason", ErrInvalid)
	}
	if s.HERotation != 0 {
		return fmt.Errorf("%w: a rotation approved by entry %d is pending", ErrConflict, s.HERotation)
	}
	set(s, &s.HERotation, index)
	return nil
}

func (s *state) heKey(e Entry) error {
	var d HEKeyDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	if len(d.PublicKey) == 0 || len(d.PublicKey) > MaxHEKeyLen || d.Params == "" {
		return fmt.Errorf("%w: account.hekey needs params and a public key of at most %d bytes", ErrInvalid, MaxHEKeyLen)
	}
	sum := sha256.Sum256(d.PublicKey)
	edit(s, s.Accounts, e.Actor.String(), newAccount).HEKey = hex.EncodeToString(sum[:])
	if s.HEKeys == nil {
		set(s, &s.HEKeys, map[string][]byte{})
	}
	put(s, s.HEKeys, e.Actor.String(), d.PublicKey)
	return nil
}

func (s *state) heShare(e Entry, now time.Time) error {
	var d HEShareDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	if s.HE == nil {
		return fmt.Errorf("%w: no key ceremony on the ledger", ErrConflict)
	}
	if !slices.ContainsFunc(s.HE.Participants, func(p HEParticipant) bool { return p.Address == e.Actor }) {
		return fmt.Errorf("%w: %s holds no share of the collective key", ErrForbidden, e.Actor)
	}
	j, err := s.editJob(d.Job)
	if err != nil {
		return err
	}
	if j.Mode != ModeHE {
		return fmt.Errorf("%w: job %s is not an he job", ErrForbidden, j.ID)
	}
	if j.Status != JobRunning {
		return fmt.Errorf("%w: job %s is %s: shares are issued only for a running, unreleased job", ErrForbidden, j.ID, j.Status)
	}
	if !IsSHA256Hex(d.Ciphertext) || len(d.Active) < s.HE.Threshold {
		return fmt.Errorf("%w: he.share needs the ciphertext digest and at least %d active nodes", ErrInvalid, s.HE.Threshold)
	}
	for _, sh := range j.Shares {
		if sh.Node == e.Actor && sh.Ciphertext != d.Ciphertext {
			return fmt.Errorf("%w: %s already issued a share for another ciphertext of job %s", ErrForbidden, e.Actor, j.ID)
		}
	}
	j.Shares = append(j.Shares, HEShare{Node: e.Actor, Ciphertext: d.Ciphertext, Active: d.Active})
	j.Updated = now
	return nil
}

// heReleased checks, at job.complete of an he job, that at least the
// threshold of distinct nodes issued shares for one ciphertext.
func (s *state) heReleased(j *Job) error {
	if s.HE == nil {
		return fmt.Errorf("%w: no key ceremony on the ledger", ErrConflict)
	}
	by := map[string]map[Address]bool{}
	for _, sh := range j.Shares {
		if by[sh.Ciphertext] == nil {
			by[sh.Ciphertext] = map[Address]bool{}
		}
		by[sh.Ciphertext][sh.Node] = true
		if len(by[sh.Ciphertext]) >= s.HE.Threshold {
			return nil
		}
	}
	return fmt.Errorf("%w: he job %s completes only after %d nodes issued decryption shares", ErrConflict, j.ID, s.HE.Threshold)
}

// HE returns the committed key ceremony, if any.
func (m *Machine) HE() (HECeremony, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.s.HE == nil {
		return HECeremony{}, false
	}
	c := *m.s.HE
	c.Participants = slices.Clone(c.Participants)
	return c, true
}

// HEKey returns an account's registered HE public key.
func (m *Machine) HEKey(a Address) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, ok := m.s.HEKeys[a.String()]
	return k, ok
}

// Accounts lists every account (copies).
func (m *Machine) Accounts() []Account {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Account, 0, len(m.s.Accounts))
	for _, a := range m.s.Accounts {
		c := *a
		c.Roles = slices.Clone(a.Roles)
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y Account) int { return strings.Compare(x.Address.String(), y.Address.String()) })
	return out
}
