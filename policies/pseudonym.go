package policies

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Entry kinds of consortium pseudonyms (DESIGN.md, "Joining across
// agencies").
const (
	// KindPseudonymCeremony records the threshold OPRF key generation:
	// participants with their points and verification keys, the
	// threshold, every dealer's Feldman commitments. Once; a second one
	// (a key rotation) only after an admin's pseudonym.rotate.
	KindPseudonymCeremony = "pseudonym.ceremony"
	// KindPseudonymRotate is an admin's approval of one new ceremony.
	KindPseudonymRotate = "pseudonym.rotate"
	// KindPseudonymBatch records a batch of ids to pseudonymise: who asks,
	// how many, for what. Nodes evaluate only batches committed on their
	// own ledger, and the state machine keeps each account within quota.
	KindPseudonymBatch = "pseudonym.batch"
)

// PseudonymSuite is the only OPRF ciphersuite a ceremony may use.
const PseudonymSuite = "ristretto255-SHA512"

// PseudonymKeySize is the length of a compressed ristretto255 element.
const PseudonymKeySize = 32

// MaxPseudonymBatch bounds one batch (mpc/pseudonym.MaxBatch).
const MaxPseudonymBatch = 1 << 15

// DefaultPseudonymQuota is how many ids an account of each role may have
// pseudonymised in all, when genesis sets no pseudonym_quota: an agency a
// large register (as does its node, which pseudonymises its uploads), an
// enterprise a customer list. Other roles: none. The map is the caller's.
func DefaultPseudonymQuota() map[string]int64 { return maps.Clone(defaultPseudonymQuota) }

// defaultPseudonymQuota is the table behind DefaultPseudonymQuota; the state
// machine reads it, so nothing outside may change it.
var defaultPseudonymQuota = map[string]int64{"agency": 50_000_000, "node": 50_000_000, "enterprise": 1_000_000}

// PseudonymParticipant is one holder of a key share.
type PseudonymParticipant struct {
	Node    string  `json:"node"`
	Address Address `json:"address"`
	Point   uint64  `json:"point"`
	// VerificationKey is k_x·G: partials from this node are checked
	// against it.
	VerificationKey []byte `json:"verification_key"`
}

// PseudonymCeremony is the pseudonym.ceremony document and the state's
// record of it.
type PseudonymCeremony struct {
	ID           string                 `json:"id"`
	Suite        string                 `json:"suite"`
	Threshold    int                    `json:"threshold"`
	Participants []PseudonymParticipant `json:"participants"`
	// Commitments holds each dealer's t Feldman commitments, dealers in
	// the order of Participants.
	Commitments [][][]byte `json:"commitments"`
	PublicKey   []byte     `json:"public_key"` // k·G
	Time        time.Time  `json:"time,omitzero"`
	Generation  int        `json:"generation,omitempty"` // 0 first, +1 per rotation
}

// Batch purposes.
const (
	PurposeDataset = "dataset" // ids of a dataset being registered
	PurposeJob     = "job"     // an enterprise's list for a job
)

// PseudonymBatchDoc is the pseudonym.batch document.
type PseudonymBatchDoc struct {
	Count   int64  `json:"count"`
	Purpose string `json:"purpose"` // dataset or job
	// Dataset (purpose dataset) names the dataset the ids are for; it is
	// registered after the upload, and its row count bounds the batches.
	Dataset string `json:"dataset,omitempty"`
	// Job (purpose job) is the requester's job the list is for.
	Job string `json:"job,omitempty"`
	// Request is the SHA-256 of the blinded request: nodes evaluate only
	// that request for this batch.
	Request string `json:"request_sha256"`
}

// PseudonymBatch is a committed batch.
type PseudonymBatch struct {
	ID        string    `json:"id"`
	Requester Address   `json:"requester"`
	Count     int64     `json:"count"`
	Purpose   string    `json:"purpose"`
	Dataset   string    `json:"dataset,omitempty"`
	Job       string    `json:"job,omitempty"`
	Request   string    `json:"request_sha256"`
	Time      time.Time `json:"time"`
}

// pseudonyms is the part of the state about consortium pseudonyms.
type pseudonyms struct {
	Ceremony *PseudonymCeremony `json:"ceremony,omitempty"`
	Rotate   bool               `json:"rotate,omitempty"` // an admin approved a new ceremony
	// Quota is per-account by role (genesis pseudonym_quota, else
	// DefaultPseudonymQuota).
	Quota   map[string]int64           `json:"quota,omitempty"`
	Used    map[string]int64           `json:"used,omitempty"`     // account -> ids so far
	ForData map[string]int64           `json:"for_data,omitempty"` // "org or account/dataset" -> ids
	ForJob  map[string]int64           `json:"for_job,omitempty"`  // job -> its list's ids
	Batches map[string]*PseudonymBatch `json:"batches,omitempty"`
}

func (s *state) pseudonymCeremony(e Entry, now time.Time) error {
	var c PseudonymCeremony
	if err := decode(e, &c); err != nil {
		return err
	}
	p := &s.Pseudonyms
	// Every ceremony, the first included, follows an admin's approval on
	// the ledger (see heCeremony).
	if !p.Rotate {
		if p.Ceremony != nil {
			return fmt.Errorf("%w: a pseudonym ceremony is on the ledger; a new one needs an admin's %s first", ErrConflict, KindPseudonymRotate)
		}
		return fmt.Errorf("%w: a pseudonym key ceremony needs an admin's approval on the ledger first (%s; POST /v1/pseudonyms/ceremony commits it)", ErrForbidden, KindPseudonymRotate)
	}
	if c.ID == "" || c.Suite != PseudonymSuite {
		return fmt.Errorf("%w: pseudonym.ceremony needs an id and suite %s", ErrInvalid, PseudonymSuite)
	}
	n := len(c.Participants)
	if c.Threshold < 2 || c.Threshold > n || n > 256 {
		return fmt.Errorf("%w: threshold %d of %d participants: need 2 ≤ t ≤ N ≤ 256", ErrInvalid, c.Threshold, n)
	}
	if len(c.PublicKey) != PseudonymKeySize {
		return fmt.Errorf("%w: public key of %d bytes, need %d", ErrInvalid, len(c.PublicKey), PseudonymKeySize)
	}
	if len(c.Commitments) != n {
		return fmt.Errorf("%w: %d dealers' commitments for %d participants (every participant deals)", ErrInvalid, len(c.Commitments), n)
	}
	for d, cs := range c.Commitments {
		if len(cs) != c.Threshold {
			return fmt.Errorf("%w: dealer %d has %d commitments, need %d", ErrInvalid, d, len(cs), c.Threshold)
		}
		for _, b := range cs {
			if len(b) != PseudonymKeySize {
				return fmt.Errorf("%w: dealer %d: a commitment of %d bytes", ErrInvalid, d, len(b))
			}
		}
	}
	points, names := map[uint64]bool{}, map[string]bool{}
	in := false
	for _, q := range c.Participants {
		if !s.can(q.Address, PermNode) {
			return fmt.Errorf("%w: participant %s (%s) is not a node's account (needs %s)", ErrForbidden, clip(q.Node), q.Address, PermNode)
		}
		if q.Point == 0 || q.Point > 256 || points[q.Point] || q.Node == "" || names[q.Node] {
			return fmt.Errorf("%w: participants need distinct names and distinct points in 1..256", ErrInvalid)
		}
		if len(q.VerificationKey) != PseudonymKeySize {
			return fmt.Errorf("%w: participant %s: a verification key of %d bytes", ErrInvalid, clip(q.Node), len(q.VerificationKey))
		}
		points[q.Point], names[q.Node] = true, true
		in = in || q.Address == e.Actor
	}
	// The author check lives here, not only in the API: only a node that
	// holds a share may commit the ceremony, and it signs it itself (it is
	// a node kind: never relayed).
	if !in || e.Author != e.Actor {
		return fmt.Errorf("%w: the pseudonym ceremony is committed by one of its participants, directly", ErrForbidden)
	}
	if err := checkCeremonyKeys(&c); err != nil {
		return err
	}
	c.Generation = 0
	if p.Ceremony != nil {
		c.Generation = p.Ceremony.Generation + 1
	}
	c.Time = now
	set(s, &p.Ceremony, &c)
	set(s, &p.Rotate, false)
	return nil
}

func (s *state) pseudonymRotate(e Entry) error {
	if !s.can(e.Actor, PermGrant) {
		return fmt.Errorf("%w: only an admin (%s) approves a pseudonym key rotation", ErrForbidden, PermGrant)
	}
	var d struct {
		Reason string `json:"reason"`
	}
	if err := decode(e, &d); err != nil {
		return err
	}
	if strings.TrimSpace(d.Reason) == "" {
		return fmt.Errorf("%w: pseudonym.rotate needs a reason", ErrInvalid)
	}
	if s.Pseudonyms.Rotate {
		return fmt.Errorf("%w: a pseudonym key rotation is already approved and pending", ErrConflict)
	}
	set(s, &s.Pseudonyms.Rotate, true)
	return nil
}

// pseudonymQuota is an account's quota: the largest of its roles'.
func (s *state) pseudonymQuota(a Address) int64 {
	acc, ok := s.Accounts[a.String()]
	if !ok {
		return 0
	}
	q := s.Pseudonyms.Quota
	if q == nil {
		q = defaultPseudonymQuota
	}
	var best int64
	for _, r := range acc.Roles {
		best = max(best, q[r])
	}
	return best
}

func (s *state) pseudonymBatch(e Entry, index uint64, now time.Time) error {
	var d PseudonymBatchDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	p := &s.Pseudonyms
	if p.Ceremony == nil {
		return fmt.Errorf("%w: no pseudonym ceremony on the ledger", ErrConflict)
	}
	if d.Count < 1 || d.Count > MaxPseudonymBatch || !IsSHA256Hex(d.Request) {
		return fmt.Errorf("%w: pseudonym.batch needs a count in 1..%d and the request's sha256", ErrInvalid, MaxPseudonymBatch)
	}
	key := e.Actor.String()
	switch d.Purpose {
	case PurposeDataset:
		if d.Job != "" || !identRE.MatchString(d.Dataset) {
			return fmt.Errorf("%w: a dataset batch names a valid dataset and no job", ErrInvalid)
		}
		// An agency, or its node pseudonymising an upload as it streams.
		if !s.can(e.Actor, PermRegisterDataset) && !s.can(e.Actor, PermNode) {
			return fmt.Errorf("%w: %s may neither register datasets nor run a node", ErrForbidden, e.Actor)
		}
		if _, taken := s.Datasets[d.Dataset]; taken {
			return fmt.Errorf("%w: dataset %q is registered already: its ids were pseudonymised at upload", ErrConflict, d.Dataset)
		}
	case PurposeJob:
		if d.Dataset != "" || d.Job == "" {
			return fmt.Errorf("%w: a job batch names a job and no dataset", ErrInvalid)
		}
		j, ok := s.Jobs[d.Job]
		if !ok {
			return fmt.Errorf("%w: job %q", ErrNotFound, clip(d.Job))
		}
		if j.Requester != e.Actor {
			return fmt.Errorf("%w: job %s is not %s's", ErrForbidden, j.ID, e.Actor)
		}
		// Before it runs: pending approval (the list is ready when the
		// approvals come), authorised, or running.
		if j.Status != JobPending && j.Status != JobAuthorised && j.Status != JobRunning {
			return fmt.Errorf("%w: job %s is %s: lists are pseudonymised only for jobs that have yet to run or are running", ErrConflict, j.ID, j.Status)
		}
		pol := s.Policies[j.Policy]
		if pol == nil || pol.Join == nil || !pol.Join.Lists {
			return fmt.Errorf("%w: the policy that authorised job %s allows no id list to be joined with dataset %q", ErrForbidden, j.ID, j.Dataset)
		}
		if got := p.ForJob[j.ID]; got+d.Count > pol.Join.ListIDs() {
			return fmt.Errorf("%w: job %s's list: %d ids pseudonymised, this batch asks %d, policy %s allows %d", ErrForbidden, j.ID, got, d.Count, pol.ID, pol.Join.ListIDs())
		}
		if err := listBatch(j, p.ForJob[j.ID], d.Count); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: purpose %q (need %s or %s)", ErrInvalid, clip(d.Purpose), PurposeDataset, PurposeJob)
	}
	quota := s.pseudonymQuota(e.Actor)
	if used := p.Used[key]; used+d.Count > quota {
		return fmt.Errorf("%w: pseudonym quota of %s: %d used of %d, this batch asks %d", ErrForbidden, e.Actor, used, quota, d.Count)
	}
	if p.Used == nil {
		set(s, &p.Used, map[string]int64{})
		set(s, &p.ForData, map[string]int64{})
		set(s, &p.Batches, map[string]*PseudonymBatch{})
	}
	if p.ForJob == nil {
		set(s, &p.ForJob, map[string]int64{})
	}
	put(s, p.Used, key, p.Used[key]+d.Count)
	if d.Purpose == PurposeDataset {
		k := s.orgOf(e.Actor) + "/" + d.Dataset
		put(s, p.ForData, k, p.ForData[k]+d.Count)
	} else {
		put(s, p.ForJob, d.Job, p.ForJob[d.Job]+d.Count)
	}
	b := &PseudonymBatch{ID: "psb-" + strconv.FormatUint(index, 10), Requester: e.Actor, Count: d.Count, Purpose: d.Purpose,
		Dataset: d.Dataset, Job: d.Job, Request: d.Request, Time: now}
	put(s, p.Batches, b.ID, b)
	return nil
}

// orgOf is an account's organisation, or its address when it has none:
// an agency and its node count their dataset batches together.
func (s *state) orgOf(a Address) string {
	if acc, ok := s.Accounts[a.String()]; ok && acc.Org != "" {
		return "org:" + acc.Org
	}
	return a.String()
}

// pseudonymsRegistered checks, at dataset.register, that the ids the
// actor had pseudonymised for this dataset do not exceed its rows times
// its consortium-pseudonymised columns.
func (s *state) pseudonymsRegistered(actor Address, d *DatasetDoc) error {
	got := s.Pseudonyms.ForData[s.orgOf(actor)+"/"+d.Name]
	cols := int64(0)
	for _, c := range d.Schema.Columns {
		if c.Pseudonym == PseudonymConsortium {
			cols++
		}
	}
	if got > d.Rows*cols {
		return fmt.Errorf("%w: %d ids were pseudonymised for dataset %q, more than its %d rows × %d consortium columns", ErrForbidden, got, d.Name, d.Rows, cols)
	}
	return nil
}

// Pseudonym returns the committed pseudonym ceremony, if any.
func (m *Machine) Pseudonym() (PseudonymCeremony, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c := m.s.Pseudonyms.Ceremony
	if c == nil {
		return PseudonymCeremony{}, false
	}
	out := *c
	out.Participants = slices.Clone(c.Participants)
	return out, true
}

// PseudonymBatch returns a committed batch.
func (m *Machine) PseudonymBatch(id string) (PseudonymBatch, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.s.Pseudonyms.Batches[id]
	if !ok {
		return PseudonymBatch{}, false
	}
	return *b, true
}

// PseudonymQuota returns how many ids an account had pseudonymised and
// its quota.
func (m *Machine) PseudonymQuota(a Address) (used, quota int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.Pseudonyms.Used[a.String()], m.s.pseudonymQuota(a)
}

// pseudonymGenesis takes genesis's quotas: roles of the table, counts ≥ 0.
func (s *state) pseudonymGenesis(q map[string]int64) error {
	for role, n := range q {
		if _, ok := s.Table[role]; !ok || n < 0 {
			return fmt.Errorf("%w: pseudonym_quota: role %q unknown or quota %d negative", ErrInvalid, clip(role), n)
		}
	}
	if q != nil {
		s.Pseudonyms.Quota = q
	}
	return nil
}
