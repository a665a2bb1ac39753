package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors. Callers test them with errors.Is; the API maps them to statuses.
var (
	// ErrInvalid: a malformed or inconsistent document or entry.
	ErrInvalid = errors.New("policies: invalid")
	// ErrForbidden: the account lacks the permission for the action.
	ErrForbidden = errors.New("policies: forbidden")
	// ErrUnknownAccount: no account with that address is registered.
	ErrUnknownAccount = errors.New("policies: unknown account")
	// ErrNotFound: no such dataset, policy or job.
	ErrNotFound = errors.New("policies: not found")
	// ErrReplay: the entry or request was already used.
	ErrReplay = errors.New("policies: replayed")
	// ErrConflict: the action does not fit the current state (a job
	// already decided, a dataset name taken).
	ErrConflict = errors.New("policies: conflict")
)

// Address is an account address: the first 20 bytes of SHA-256 of the
// account's first public key.
type Address [20]byte

// String returns the address as 40 hex digits.
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// MarshalText encodes the address as hex (also as a JSON map key).
func (a Address) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads 40 hex digits.
func (a *Address) UnmarshalText(b []byte) error {
	x, err := ParseAddress(string(b))
	*a = x
	return err
}

// ParseAddress reads 40 hex digits.
func ParseAddress(s string) (Address, error) {
	var a Address
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(a) {
		return a, fmt.Errorf("%w: address %q is not 40 hex digits", ErrInvalid, clip(s))
	}
	copy(a[:], b)
	return a, nil
}

// Permissions (DESIGN.md).
const (
	PermJoin = "join" // run a node (an organisation that operates nodes)
	// PermNode marks a node's own account: the identity a node signs its
	// ledger entries with. Only such accounts may relay accounts' requests
	// or commit the node-only kinds (job progress, HE key material); the
	// Raft membership of a node is admitted on it too.
	PermNode            = "node"
	PermSync            = "sync"     // replicate the ledger
	PermReadAll         = "read.all" // read every ledger entry
	PermReadGroup       = "read.group"
	PermReadOwn         = "read.own"
	PermGrant           = "grant" // grant roles, change the table
	PermRegisterDataset = "dataset.register"
	PermPublishPolicy   = "policy.publish"
	PermApproveJob      = "job.approve"
	PermSubmitJob       = "job.submit"
)

// DefaultTable is the role -> permission table of DESIGN.md, plus the node
// role that nodes' own accounts hold (they run, sync and record results).
func DefaultTable() map[string][]string {
	return map[string][]string{
		"admin":      {PermJoin, PermSync, PermReadAll, PermReadGroup, PermReadOwn, PermGrant},
		"agency":     {PermJoin, PermSync, PermReadGroup, PermReadOwn, PermRegisterDataset, PermPublishPolicy, PermApproveJob},
		"enterprise": {PermReadOwn, PermSubmitJob},
		"auditor":    {PermSync, PermReadAll, PermReadGroup, PermReadOwn},
		"node":       {PermJoin, PermSync, PermReadAll, PermNode},
	}
}

// Account is a registered account.
type Account struct {
	Address   Address  `json:"address"`
	PublicKey []byte   `json:"public_key"` // current key (rotation replaces it)
	Algorithm string   `json:"algorithm"`
	Name      string   `json:"name,omitempty"`
	Org       string   `json:"org,omitempty"`
	Roles     []string `json:"roles"`
	HEKey     string   `json:"he_key_sha256,omitempty"`
	// HPKE is a node's long-term X25519 HPKE public key (node.hpke): join
	// keys are sealed to it.
	HPKE []byte `json:"hpke,omitempty"`
}

// Dataset is a registration: metadata and digest, never the data.
type Dataset struct {
	Name   string    `json:"name"`
	Owner  Address   `json:"owner"`
	Org    string    `json:"org"`
	Schema Schema    `json:"schema"`
	SHA256 string    `json:"sha256"`
	Rows   int64     `json:"rows"`
	Time   time.Time `json:"time"`
	// Node is the account of the node that holds the data: the node that
	// relayed the registration, which took the upload. Only it starts the
	// dataset's jobs.
	Node Address `json:"node"`
	// Population is the data subjects' budget key (budget.go): shared by
	// datasets with the same digest or linked by a policy.
	Population string `json:"population,omitempty"`
}

// Job statuses.
const (
	JobPending    = "pending" // waiting for manual approvals
	JobAuthorised = "authorised"
	JobRejected   = "rejected"
	JobRunning    = "running"
	JobCompleted  = "completed"
	JobFailed     = "failed"
)

// Job is an enterprise's analysis request and what became of it.
type Job struct {
	ID         string    `json:"id"`
	Requester  Address   `json:"requester"`
	Dataset    string    `json:"dataset"`
	Mode       string    `json:"mode"`
	Purpose    string    `json:"purpose"`
	Query      string    `json:"query"`
	Plan       Plan      `json:"plan"`
	Policy     string    `json:"policy,omitempty"`
	Epsilon    float64   `json:"epsilon"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	Approvals  []Address `json:"approvals,omitempty"`
	Needed     int       `json:"needed,omitempty"`
	Submitted  time.Time `json:"submitted"`
	Updated    time.Time `json:"updated"`
	ResultHash string    `json:"result_sha256,omitempty"`
	Suppressed int       `json:"suppressed,omitempty"`
	Engine     string    `json:"engine,omitempty"`
	Node       string    `json:"node,omitempty"`   // the node that runs it
	Runner     Address   `json:"runner,omitempty"` // that node's account
	// Claimed is when a join's runner last claimed or renewed it (block
	// time): its lease runs the consortium's join lease from then.
	Claimed time.Time `json:"claimed,omitzero"`
	Shares  []HEShare `json:"he_shares,omitempty"`
	// Parts is set for a join job: per involved dataset, the policy that
	// allowed it, the epsilon debited from that dataset's budget and the
	// approvals of its own agency (Dataset, Policy, Epsilon, Approvals and
	// Needed above then describe the first dataset).
	Parts []JobPart `json:"parts,omitempty"`
	// KeyFrom is the owner node that sealed the join's per-job key to the
	// other owner nodes (job.key); KeySealed holds the sealed copies.
	KeyFrom   Address           `json:"key_from,omitzero"`
	KeySealed map[string][]byte `json:"key_sealed,omitempty"`
	// Flows are the shipments of a join's columns to its runners.
	Flows []JobFlow `json:"flows,omitempty"`
	// Refunded: the job failed before anything could be released (no
	// result, no decryption share), so its epsilon went back to the budget.
	Refunded bool `json:"refunded,omitempty"`
	// Charge is what the authorisation debited (budget.go).
	Charge *Charge `json:"charge,omitempty"`
	// List is set for a join with the enterprise's own id list (list.go).
	List *JobList `json:"list,omitempty"`
}

// JobFlow is one shipment of a join: which columns of which dataset moved
// to which node, with the digest of what was shipped: its BLAKE3, or for
// a flow committed before shipments were hashed with BLAKE3, its SHA-256
// (exactly one of the two is set).
type JobFlow struct {
	Dataset string   `json:"dataset"`
	Columns []string `json:"columns"`
	BLAKE3  string   `json:"blake3,omitempty"`
	SHA256  string   `json:"sha256,omitempty"` // flows committed before BLAKE3
	Rows    int64    `json:"rows"`
	To      Address  `json:"to"`
	From    Address  `json:"from"`
	Index   uint64   `json:"index"`
}

// JobPart is one dataset of a join job.
type JobPart struct {
	Dataset   string    `json:"dataset"`
	Policy    string    `json:"policy"`
	Epsilon   float64   `json:"epsilon"`
	Needed    int       `json:"needed,omitempty"`
	Approvals []Address `json:"approvals,omitempty"`
	// MaxRows is the policy's join.max_rows_per_person.
	MaxRows int `json:"max_rows_per_person"`
}

// Plan is what a query reads, as the policy check needs it.
type Plan struct {
	Aggregates []Aggregate `json:"aggregates"`
	GroupBy    []string    `json:"group_by,omitempty"`
	Filter     []string    `json:"filter,omitempty"`
	// Case lists the columns that CASE conditions in GROUP BY read: each
	// splits the rows by a predicate, as a filter does, so the policy must
	// let the query filter or group by it.
	Case []string `json:"case,omitempty"`
	// Join is set when the query joins datasets: then every column above
	// is qualified by its dataset's name ("tax2025.income").
	Join []JoinSide `json:"join,omitempty"`
}

// JoinSide is one dataset of a join plan: the consortium-pseudonymised
// identifier column it is matched on, and the columns its owner must
// ship to the executor (sorted; the key travels only as per-job tags).
type JoinSide struct {
	Dataset string   `json:"dataset"`
	Key     string   `json:"key"`
	Columns []string `json:"columns"`
}

// Datasets lists the datasets a plan reads: its join's, or the one given.
func (p Plan) Datasets(from string) []string {
	if len(p.Join) == 0 {
		return []string{from}
	}
	out := make([]string, len(p.Join))
	for i, s := range p.Join {
		out[i] = s.Dataset
	}
	return out
}

// Side returns the part of a join plan that reads dataset ds, with its
// columns unqualified: what ds's policy judges.
func (p Plan) Side(ds string) Plan {
	pre := ds + "."
	cols := func(in []string) []string {
		var out []string
		for _, c := range in {
			if n, ok := strings.CutPrefix(c, pre); ok {
				out = append(out, n)
			}
		}
		return out
	}
	var out Plan
	for _, a := range p.Aggregates {
		if len(a.Columns) == 0 || a.Columns[0] == "*" {
			out.Aggregates = append(out.Aggregates, a)
			continue
		}
		// A two-column aggregate across datasets (CORR(t.x, b.y)) is
		// judged by both policies, each over its own column.
		if c := cols(a.Columns); len(c) > 0 {
			out.Aggregates = append(out.Aggregates, Aggregate{Func: a.Func, Columns: c})
		}
	}
	out.GroupBy, out.Filter, out.Case = cols(p.GroupBy), cols(p.Filter), cols(p.Case)
	return out
}

// Aggregate is one aggregate of a plan: a function over a column ("*" for
// COUNT(*)); two-column functions list both.
type Aggregate struct {
	Func    string   `json:"func"`
	Columns []string `json:"columns"`
}

// state is everything the ledger decides. Its JSON encoding is canonical.
type state struct {
	Genesis  bool                          `json:"genesis"`
	Name     string                        `json:"consortium"`
	Table    map[string][]string           `json:"table"`
	Accounts map[string]*Account           `json:"accounts"`
	Datasets map[string]*Dataset           `json:"datasets"`
	Policies map[string]*Policy            `json:"policies"`
	Jobs     map[string]*Job               `json:"jobs"`
	Budgets  map[string]map[string]float64 `json:"budgets"`          // population -> holder -> epsilon spent
	Merged   map[string]string             `json:"merged,omitempty"` // population -> the one it was merged into
	Limits   *Limits                       `json:"limits,omitempty"` // nil: DefaultLimits
	Used     map[string]usedAct            `json:"used"`             // replay keys of signed acts in force
	UsedLog  []usedKey                     `json:"used_log"`
	// JoinLeaseSeconds is the genesis's join_lease_seconds (0: JoinLease).
	JoinLeaseSeconds int64 `json:"join_lease_seconds,omitempty"`
	// HERotation is the index of an admin's he.rotate entry that allows
	// one new HE key ceremony (0: none pending).
	HERotation uint64 `json:"he_rotation,omitempty"`

	// undo holds, while one entry is applied, how to take back each change
	// made so far (journal.go): a refusal runs it, so that a refused entry
	// leaves the state byte-identical. Not part of the state.
	undo   []func()
	Counts map[string]uint64 `json:"counts"` // entries by kind
	HE     *HECeremony       `json:"he,omitempty"`
	HEKeys map[string][]byte `json:"he_keys,omitempty"` // account -> CKKS public key
	// Pseudonyms: the consortium pseudonym ceremony, batches and quotas
	// (pseudonym.go).
	Pseudonyms pseudonyms `json:"pseudonyms,omitzero"`
}

// usedAct is a signed act the ledger applied: the entry that carried it,
// and until when its key is remembered.
type usedAct struct {
	Index  uint64    `json:"i"`
	Expiry time.Time `json:"e"`
}

type usedKey struct {
	Key    string    `json:"k"`
	Expiry time.Time `json:"e"`
}

func newState() *state {
	return &state{
		Table: map[string][]string{}, Accounts: map[string]*Account{}, Datasets: map[string]*Dataset{},
		Policies: map[string]*Policy{}, Jobs: map[string]*Job{}, Budgets: map[string]map[string]float64{}, Merged: map[string]string{},
		Used: map[string]usedAct{}, Counts: map[string]uint64{},
	}
}

// Machine is the replicated state. It is safe for concurrent use: the
// ledger applies entries while the API reads.
type Machine struct {
	mu sync.RWMutex
	s  *state
	// changed is closed, and replaced, whenever an entry is applied:
	// readers that wait for the state to move (the job runner, job status
	// long polls) select on it instead of polling. Not part of the state.
	changed chan struct{}
}

// Changed returns a channel closed when the state next moves (Apply,
// Reset, Restore).
func (m *Machine) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

// moved wakes the readers waiting on Changed; m.mu is held.
func (m *Machine) moved() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// New returns an empty state (before genesis).
func New() *Machine { return &Machine{s: newState(), changed: make(chan struct{})} }

// Reset discards all state.
func (m *Machine) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = newState()
	m.moved()
}

// Snapshot returns the canonical encoding of the whole state.
func (m *Machine) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return json.Marshal(m.s)
}

// Restore replaces the state with a snapshot.
func (m *Machine) Restore(b []byte) error {
	s := newState()
	if err := json.Unmarshal(b, s); err != nil {
		return fmt.Errorf("%w: snapshot: %v", ErrInvalid, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = s
	m.moved()
	return nil
}

// StateHash is SHA-256 of the snapshot: equal logs give equal hashes.
func (m *Machine) StateHash() [32]byte {
	b, err := m.Snapshot()
	if err != nil {
		panic(err) // plain data always encodes
	}
	return sha256.Sum256(b)
}

// Account returns a copy of the account with that address.
func (m *Machine) Account(a Address) (Account, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	acc, ok := m.s.Accounts[a.String()]
	if !ok {
		return Account{}, false
	}
	return *acc, true
}

// Can reports whether the account holds the permission through a role.
func (m *Machine) Can(a Address, perm string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.can(a, perm)
}

func (s *state) can(a Address, perm string) bool {
	acc, ok := s.Accounts[a.String()]
	if !ok {
		return false
	}
	for _, r := range acc.Roles {
		if contains(s.Table[r], perm) {
			return true
		}
	}
	return false
}

// Org returns the organisation of an account ("" if none).
func (m *Machine) Org(a Address) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if acc, ok := m.s.Accounts[a.String()]; ok {
		return acc.Org
	}
	return ""
}

// Datasets lists the registrations, by name.
func (m *Machine) Datasets() []Dataset {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Dataset, 0, len(m.s.Datasets))
	for _, d := range m.s.Datasets {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Dataset returns one registration.
func (m *Machine) Dataset(name string) (Dataset, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.s.Datasets[name]
	if !ok {
		return Dataset{}, false
	}
	return *d, true
}

// Policies lists the policies, by id.
func (m *Machine) Policies() []Policy {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Policy, 0, len(m.s.Policies))
	for _, p := range m.s.Policies {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return policySeq(out[i].ID) < policySeq(out[j].ID) })
	return out
}

// Policy returns one policy.
func (m *Machine) Policy(id string) (Policy, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.s.Policies[id]
	if !ok {
		return Policy{}, false
	}
	return *p, true
}

// Job returns one job.
func (m *Machine) Job(id string) (Job, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	j, ok := m.s.Jobs[id]
	if !ok {
		return Job{}, false
	}
	return *j, true
}

// Jobs lists the jobs a filter accepts, oldest first.
func (m *Machine) Jobs(keep func(Job) bool) []Job {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Job
	for _, j := range m.s.Jobs {
		if keep == nil || keep(*j) {
			out = append(out, *j)
		}
	}
	sort.Slice(out, func(i, j int) bool { return policySeq(out[i].ID) < policySeq(out[j].ID) })
	return out
}

// HasGenesis reports whether genesis was applied.
func (m *Machine) HasGenesis() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.Genesis
}

// policySeq orders ids of the form "<prefix>-<index>" by index.
func policySeq(id string) uint64 {
	_, num, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(num, 10, 64)
	return n
}

// Digest is the flow's digest and the name of its algorithm ("blake3", or
// "sha256" for a flow committed before BLAKE3).
func (f JobFlow) Digest() (alg, hex string) {
	if f.BLAKE3 == "" && f.SHA256 != "" {
		return "sha256", f.SHA256
	}
	return "blake3", f.BLAKE3
}
