package policies

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Entry is a committed ledger entry as the state machine sees it. The
// adapter (package audit) has checked the author's signature and, for an
// entry a node relays for an account, the account's request signature.
type Entry struct {
	Author Address // who signed the ledger entry: the actor, or a node relaying
	Actor  Address // whose action it is (equal to Author for direct entries)
	// ActorKey is the public key the actor's signature was checked with.
	ActorKey  []byte
	Algorithm string
	Kind      string
	Time      time.Time // the author's time
	Payload   []byte    // the action document (JSON)
	// Extra is what a relaying node adds to the actor's document: for
	// job.submit, the dataset and the query's plan.
	Extra []byte
	// ReplayKey identifies the signed act (the request signature, or the
	// author and nonce); it is refused a second time. ReplayTime anchors
	// it: the request's created time, or the entry's time.
	ReplayKey  string
	ReplayTime time.Time
}

// ReplayWindow is how far a signed act's time may be from the block time.
// Replay keys are remembered for twice as long, so a replay is refused
// for as long as its time would still be accepted.
const ReplayWindow = 10 * time.Minute

// AddressOf derives an address from a public key, as chain does.
func AddressOf(pub []byte) Address {
	sum := sha256.Sum256(pub)
	var a Address
	copy(a[:], sum[:20])
	return a
}

// Kinds of entries.
const (
	KindGenesis         = "genesis"
	KindAccountRegister = "account.register"
	KindAccountGrant    = "account.grant"
	KindAccountRevoke   = "account.revoke"
	KindAccountRotate   = "account.rotate"
	KindTableSet        = "table.set"
	KindDatasetRegister = "dataset.register"
	KindPolicyPublish   = "policy.publish"
	KindPolicyRevoke    = "policy.revoke"
	KindJobSubmit       = "job.submit"
	KindJobApprove      = "job.approve"
	KindJobReject       = "job.reject"
	KindJobStart        = "job.start"
	KindJobComplete     = "job.complete"
	KindJobFail         = "job.fail"
	// Joins (join.go): a node's long-term HPKE key, a join's per-job key
	// sealed to its owner nodes, and each column shipment to the executor.
	KindNodeHPKE = "node.hpke"
	KindJobKey   = "job.key"
	KindJobFlow  = "job.flow"
)

// Genesis is the first entry's document.
type Genesis struct {
	Consortium string              `json:"consortium"`
	Table      map[string][]string `json:"table"`
	Accounts   []GenesisAccount    `json:"accounts"`
	// Limits are the consortium-wide DP limits; absent: DefaultLimits.
	Limits *Limits `json:"limits,omitempty"`
	// PseudonymQuota is how many ids an account of each role may have
	// pseudonymised with the consortium key (DefaultPseudonymQuota when
	// absent).
	PseudonymQuota map[string]int64 `json:"pseudonym_quota,omitempty"`
}

// GenesisAccount is an account written by genesis.
type GenesisAccount struct {
	PublicKey []byte   `json:"public_key"`
	Algorithm string   `json:"algorithm"`
	Name      string   `json:"name,omitempty"`
	Org       string   `json:"org,omitempty"`
	Roles     []string `json:"roles"`
}

// Documents of the other kinds.
type (
	RegisterDoc struct {
		PublicKey []byte `json:"public_key"`
		Algorithm string `json:"algorithm"`
		Name      string `json:"name,omitempty"`
	}
	GrantDoc struct {
		Address string `json:"address"`
		Role    string `json:"role"`
		Org     string `json:"org,omitempty"`
	}
	RotateDoc struct {
		PublicKey []byte `json:"public_key"`
	}
	TableDoc struct {
		Role        string   `json:"role"`
		Permissions []string `json:"permissions"`
	}
	DatasetDoc struct {
		Name   string `json:"name"`
		Schema Schema `json:"schema"`
		SHA256 string `json:"sha256"`
		Rows   int64  `json:"rows"`
	}
	PolicyRevokeDoc struct {
		Policy string `json:"policy"`
	}
	JobDoc struct {
		Query   string `json:"query"`
		Mode    string `json:"mode"`
		Purpose string `json:"purpose"`
		// List, when the query joins the enterprise's own ids (list.go).
		List *ListDoc `json:"list,omitempty"`
	}
	// JobExtra is what the relaying node adds to a job.submit.
	JobExtra struct {
		Dataset string `json:"dataset"`
		Plan    Plan   `json:"plan"`
	}
	JobDecisionDoc struct {
		Job    string `json:"job"`
		Reason string `json:"reason,omitempty"`
	}
	JobResultDoc struct {
		Job        string  `json:"job"`
		Node       string  `json:"node,omitempty"` // job.start: the node's name
		ResultHash string  `json:"result_sha256,omitempty"`
		Epsilon    float64 `json:"epsilon_spent,omitempty"`
		Suppressed int     `json:"suppressed,omitempty"`
		Engine     string  `json:"engine,omitempty"`
		Reason     string  `json:"reason,omitempty"`
	}
)

var knownPermissions = []string{PermJoin, PermNode, PermSync, PermReadAll, PermReadGroup, PermReadOwn, PermGrant,
	PermRegisterDataset, PermPublishPolicy, PermApproveJob, PermSubmitJob}

// KindPermission names the permission an actor needs for each kind ("" for
// kinds with their own rule).
var KindPermission = map[string]string{
	KindAccountGrant: PermGrant, KindAccountRevoke: PermGrant, KindTableSet: PermGrant,
	KindDatasetRegister: PermRegisterDataset, KindPolicyPublish: PermPublishPolicy, KindPolicyRevoke: PermPublishPolicy,
	KindJobSubmit: PermSubmitJob, KindJobApprove: PermApproveJob, KindJobReject: PermApproveJob,
	KindJobStart: PermNode, KindJobComplete: PermNode, KindJobFail: PermNode,
	KindHECeremony: PermNode, KindHEShare: PermNode, KindHERotate: PermGrant,
	KindPseudonymCeremony: PermNode, KindPseudonymRotate: PermGrant,
	KindNodeHPKE: PermNode, KindJobKey: PermNode, KindJobFlow: PermNode,
	KindJobList:   PermSubmitJob,
	KindLimitsSet: PermGrant,
}

// nodeKinds are the acts only a node's own account commits, each from the
// node entitled to it (the handlers check which): job progress from the
// node that holds the job's dataset, HE material from the ceremony's
// participants. They are never relayed for an account.
var nodeKinds = map[string]bool{
	KindJobStart: true, KindJobComplete: true, KindJobFail: true,
	KindHECeremony: true, KindHEShare: true,
	KindPseudonymCeremony: true,
	KindNodeHPKE:          true, KindJobKey: true, KindJobFlow: true,
}

// IsNodeKind reports whether only a node's own account may commit entries
// of the kind.
func IsNodeKind(kind string) bool { return nodeKinds[kind] }

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
	if perm := KindPermission[e.Kind]; perm != "" && !s.can(e.Actor, perm) {
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

func (s *state) genesis(e Entry, blockTime time.Time) error {
	var g Genesis
	if err := strictUnmarshal(e.Payload, &g); err != nil {
		return fmt.Errorf("%w: genesis: %v", ErrInvalid, err)
	}
	if len(g.Table) == 0 {
		return fmt.Errorf("%w: genesis has no permission table", ErrInvalid)
	}
	for role, perms := range g.Table {
		if err := checkRole(role, perms); err != nil {
			return err
		}
	}
	if g.Limits != nil {
		if err := g.Limits.Validate(); err != nil {
			return err
		}
		l := *g.Limits
		s.Limits = &l
	}
	s.Table = g.Table
	s.Name = g.Consortium
	if err := s.pseudonymGenesis(g.PseudonymQuota); err != nil {
		return err
	}
	for _, a := range g.Accounts {
		if err := checkKey(a.PublicKey, a.Algorithm); err != nil {
			return err
		}
		addr := AddressOf(a.PublicKey)
		if _, dup := s.Accounts[addr.String()]; dup {
			return fmt.Errorf("%w: genesis lists account %s twice", ErrInvalid, addr)
		}
		for _, r := range a.Roles {
			if _, ok := g.Table[r]; !ok {
				return fmt.Errorf("%w: genesis account %s has unknown role %q", ErrInvalid, addr, clip(r))
			}
		}
		s.Accounts[addr.String()] = &Account{Address: addr, PublicKey: a.PublicKey, Algorithm: a.Algorithm, Name: a.Name, Org: a.Org, Roles: sortedSet(a.Roles)}
	}
	if !s.can(e.Author, PermGrant) {
		return fmt.Errorf("%w: genesis must be signed by one of its accounts holding %s", ErrInvalid, PermGrant)
	}
	s.Genesis = true
	s.Counts[KindGenesis]++
	s.Used["genesis"] = usedAct{Index: 0, Expiry: blockTime.Add(2 * ReplayWindow)}
	return nil
}

func checkRole(role string, perms []string) error {
	if !identRE.MatchString(role) {
		return fmt.Errorf("%w: role name %q must match [a-z_][a-z0-9_]*", ErrInvalid, clip(role))
	}
	for _, p := range perms {
		if !contains(knownPermissions, p) {
			return fmt.Errorf("%w: role %s: unknown permission %q", ErrInvalid, role, clip(p))
		}
	}
	return nil
}

// Account key algorithms and their public key sizes: requests are signed
// with RFC 9421 under the account's key, Ed25519 or ML-DSA-65 (FIPS 204).
var keySizes = map[string]int{"ed25519": 32, "ml-dsa-65": 1952}

func checkKey(pub []byte, alg string) error {
	size, ok := keySizes[alg]
	if !ok || len(pub) != size {
		return fmt.Errorf("%w: account keys are ed25519 (32-byte public keys) or ml-dsa-65 (1952 bytes); got %q with %d bytes", ErrInvalid, clip(alg), len(pub))
	}
	return nil
}

func sortedSet(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	j := 0
	for i := range out {
		if i == 0 || out[i] != out[i-1] {
			out[j] = out[i]
			j++
		}
	}
	return out[:j]
}

func decode(e Entry, v any) error {
	if err := strictUnmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, e.Kind, err)
	}
	return nil
}

// apply runs one kind's rules. It changes the state only through the
// journal (journal.go), so Apply can take a refusal back whole.
func (s *state) apply(e Entry, index uint64, now time.Time) error {
	actor := s.Accounts[e.Actor.String()]
	switch e.Kind {
	case KindAccountRegister:
		var d RegisterDoc
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := checkKey(d.PublicKey, d.Algorithm); err != nil {
			return err
		}
		addr := AddressOf(d.PublicKey)
		if addr != e.Actor {
			return fmt.Errorf("%w: the key registered must be the actor's own", ErrInvalid)
		}
		if acc, ok := s.Accounts[addr.String()]; ok && acc.PublicKey != nil {
			return fmt.Errorf("%w: account %s is already registered", ErrConflict, addr)
		}
		acc := edit(s, s.Accounts, addr.String(), newAccount)
		acc.Address = addr
		acc.PublicKey, acc.Algorithm, acc.Name = d.PublicKey, d.Algorithm, d.Name
	case KindAccountGrant, KindAccountRevoke:
		var d GrantDoc
		if err := decode(e, &d); err != nil {
			return err
		}
		addr, err := ParseAddress(d.Address)
		if err != nil {
			return err
		}
		if _, ok := s.Table[d.Role]; !ok {
			return fmt.Errorf("%w: unknown role %q", ErrInvalid, clip(d.Role))
		}
		cur, ok := s.Accounts[addr.String()]
		if e.Kind == KindAccountRevoke {
			if !ok {
				return fmt.Errorf("%w: account %s", ErrUnknownAccount, addr)
			}
			if !contains(cur.Roles, d.Role) {
				return fmt.Errorf("%w: account %s does not hold role %s", ErrConflict, addr, d.Role)
			}
		}
		acc := edit(s, s.Accounts, addr.String(), newAccount)
		acc.Address = addr
		if e.Kind == KindAccountGrant {
			acc.Roles = sortedSet(append(acc.Roles, d.Role))
			if d.Org != "" {
				acc.Org = d.Org
			}
			return nil
		}
		acc.Roles = slices.DeleteFunc(acc.Roles, func(r string) bool { return r == d.Role })
		if s.admins() == 0 {
			return fmt.Errorf("%w: revoking it would leave no account with %s", ErrConflict, PermGrant)
		}
	case KindAccountRotate:
		var d RotateDoc
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := checkKey(d.PublicKey, actor.Algorithm); err != nil {
			return err
		}
		edit(s, s.Accounts, e.Actor.String(), newAccount).PublicKey = d.PublicKey
	case KindTableSet:
		var d TableDoc
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := checkRole(d.Role, d.Permissions); err != nil {
			return err
		}
		put(s, s.Table, d.Role, sortedSet(d.Permissions))
		if s.admins() == 0 {
			return fmt.Errorf("%w: this would leave no account with %s", ErrConflict, PermGrant)
		}
	case KindDatasetRegister:
		var d DatasetDoc
		if err := decode(e, &d); err != nil {
			return err
		}
		if !identRE.MatchString(d.Name) {
			return fmt.Errorf("%w: dataset name %q must match [a-z_][a-z0-9_]*", ErrInvalid, clip(d.Name))
		}
		if _, taken := s.Datasets[d.Name]; taken {
			return fmt.Errorf("%w: dataset %q is already registered", ErrConflict, d.Name)
		}
		if err := d.Schema.Validate(); err != nil {
			return err
		}
		if len(d.SHA256) != 64 || strings.Trim(d.SHA256, "0123456789abcdef") != "" || d.Rows < 0 {
			return fmt.Errorf("%w: dataset needs a hex sha256 and a row count", ErrInvalid)
		}
		if err := s.holdsFor(e.Author, actor); err != nil {
			return err
		}
		if err := s.pseudonymsRegistered(e.Actor, &d); err != nil {
			return err
		}
		put(s, s.Datasets, d.Name, &Dataset{Name: d.Name, Owner: e.Actor, Org: actor.Org, Schema: d.Schema, SHA256: d.SHA256, Rows: d.Rows, Time: now, Node: e.Author,
			Population: s.newPopulation(d.Name, d.SHA256)})
	case KindPolicyPublish:
		p, err := ParsePolicy(e.Payload)
		if err != nil {
			return err
		}
		ds, ok := s.Datasets[p.Dataset]
		if !ok {
			return fmt.Errorf("%w: dataset %q", ErrNotFound, clip(p.Dataset))
		}
		if !sameOwner(ds, actor) {
			return fmt.Errorf("%w: dataset %q belongs to another agency", ErrForbidden, p.Dataset)
		}
		if err := p.validateAgainst(&ds.Schema, now); err != nil {
			return err
		}
		if err := s.limits().CheckPolicy(p); err != nil {
			return err
		}
		if err := s.checkShares(p, actor); err != nil {
			return err
		}
		if old := inForce(s.Policies, p); old != "" {
			return fmt.Errorf("%w: policy: identical to %s, which is in force", ErrConflict, old)
		}
		p.ID = "pol-" + strconv.FormatUint(index, 10)
		p.Owner = e.Actor
		put(s, s.Policies, p.ID, p)
		s.mergePopulations(append([]string{p.Dataset}, p.DP.SharesBudgetWith...))
	case KindPolicyRevoke:
		var d PolicyRevokeDoc
		if err := decode(e, &d); err != nil {
			return err
		}
		p, ok := s.Policies[d.Policy]
		if !ok {
			return fmt.Errorf("%w: policy %q", ErrNotFound, clip(d.Policy))
		}
		if !sameOwner(s.Datasets[p.Dataset], actor) {
			return fmt.Errorf("%w: policy %s belongs to another agency", ErrForbidden, p.ID)
		}
		edit(s, s.Policies, p.ID, func() *Policy { return &Policy{} }).Revoked = true
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
		if !strings.HasPrefix(e.Kind, "note.") {
			return fmt.Errorf("%w: unknown entry kind %q", ErrInvalid, clip(e.Kind))
		}
		if !json.Valid(e.Payload) {
			return fmt.Errorf("%w: a note's payload must be JSON", ErrInvalid)
		}
	}
	return nil
}

func (s *state) admins() int {
	n := 0
	for _, a := range s.Accounts {
		if a.PublicKey != nil && s.can(a.Address, PermGrant) {
			n++
		}
	}
	return n
}

// holdsFor checks that a dataset registration comes through a node of the
// registering agency's own organisation: the node that took the upload
// holds the data, so a node of another organisation would have received
// the agency's raw records.
func (s *state) holdsFor(node Address, actor *Account) error {
	if node == actor.Address {
		return fmt.Errorf("%w: a dataset is registered through the node that holds its upload (POST /v1/datasets on that node), not by an entry of the agency's own", ErrForbidden)
	}
	n := s.Accounts[node.String()]
	if n == nil || actor.Org == "" || n.Org != actor.Org {
		return fmt.Errorf("%w: node %s is not operated by organisation %q: an agency uploads and registers its data on its own organisation's node", ErrForbidden, node, actor.Org)
	}
	return nil
}

// sameOwner: the actor is the dataset's owner or an account of its org.
func sameOwner(ds *Dataset, actor *Account) bool {
	return ds != nil && actor != nil && (ds.Owner == actor.Address || (ds.Org != "" && ds.Org == actor.Org))
}

func (s *state) submit(e Entry, index uint64, now time.Time) error {
	var d JobDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	var x JobExtra
	if e.Extra == nil {
		return fmt.Errorf("%w: job.submit needs the relaying node's plan", ErrInvalid)
	}
	if err := strictUnmarshal(e.Extra, &x); err != nil {
		return fmt.Errorf("%w: job plan: %v", ErrInvalid, err)
	}
	if d.Mode != ModeMasked && d.Mode != ModeHE {
		return fmt.Errorf("%w: mode must be masked or he", ErrInvalid)
	}
	j := &Job{ID: "job-" + strconv.FormatUint(index, 10), Requester: e.Actor, Dataset: x.Dataset, Mode: d.Mode,
		Purpose: d.Purpose, Query: d.Query, Plan: x.Plan, Submitted: now, Updated: now}
	if d.List != nil {
		l, err := NewJobList(d.List, x.Plan)
		if err != nil {
			return err
		}
		j.List = l
	}
	put(s, s.Jobs, j.ID, j)
	if j.Mode == ModeHE {
		// Refused up front rather than failing once authorised (and paid for).
		if s.HE == nil {
			j.Status, j.Reason = JobRejected, "he mode needs the consortium's HE key ceremony, and there is none on the ledger yet"
			return nil
		}
		if _, ok := s.HEKeys[j.Requester.String()]; !ok {
			j.Status, j.Reason = JobRejected, "he results are encrypted to the requester's CKKS key: register one first (account.hekey; sandboxctl does it)"
			return nil
		}
	}
	if j.IsJoin() {
		if x.Dataset != j.Plan.Join[0].Dataset {
			return fmt.Errorf("%w: a join job's dataset is its plan's first, %q", ErrInvalid, clip(j.Plan.Join[0].Dataset))
		}
		return s.submitJoin(j, now)
	}
	p, reason := s.evaluate(j, now)
	if p == nil {
		j.Status, j.Reason = JobRejected, reason
		return nil
	}
	j.Policy, j.Epsilon = p.ID, p.DP.EpsilonPerQuery
	if p.Approval.Mode == "manual" {
		j.Status, j.Needed = JobPending, p.Approval.Approvers
		return nil
	}
	s.authorise(j, p)
	return nil
}

// authorise debits the budget (budget.go) or rejects the job when it is
// exhausted or the policy's epsilon is beyond the consortium's limit.
func (s *state) authorise(j *Job, p *Policy) {
	if reason := s.debit(j, p); reason != "" {
		j.Status, j.Reason = JobRejected, reason
		return
	}
	j.Status, j.Reason = JobAuthorised, ""
}

func fnum(f float64) string { return strconv.FormatFloat(f, 'g', 6, 64) }

// evaluate finds the first active policy on the job's dataset that allows
// it; otherwise it returns why each one refuses.
func (s *state) evaluate(j *Job, now time.Time) (*Policy, string) {
	ds, ok := s.Datasets[j.Dataset]
	if !ok {
		return nil, fmt.Sprintf("unknown dataset %q", clip(j.Dataset))
	}
	if r := planRule(ds, j.Plan); r != "" {
		return nil, r
	}
	var ids []string
	for id, p := range s.Policies {
		if p.Dataset == j.Dataset && !p.Revoked {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Sprintf("no policy allows any use of dataset %q", j.Dataset)
	}
	sort.Slice(ids, func(a, b int) bool { return policySeq(ids[a]) < policySeq(ids[b]) })
	var reasons []string
	for _, id := range ids {
		p := s.Policies[id]
		if r := s.check(p, ds, j, now); r != "" {
			reasons = append(reasons, r)
			continue
		}
		return p, ""
	}
	return nil, strings.Join(reasons, "; ")
}

// check returns the first rule of p that the job breaks, or "".
func (s *state) check(p *Policy, ds *Dataset, j *Job, now time.Time) string {
	if !p.Expires.After(now) {
		return fmt.Sprintf("policy %s expired at %s", p.ID, p.Expires.UTC().Format(time.RFC3339))
	}
	if !s.isGrantee(p, j.Requester) {
		return fmt.Sprintf("policy %s: requester %s is not a grantee", p.ID, j.Requester)
	}
	if !strings.EqualFold(strings.TrimSpace(j.Purpose), strings.TrimSpace(p.Purpose)) {
		return fmt.Sprintf("policy %s: purpose %q does not match %q", p.ID, clip(j.Purpose), p.Purpose)
	}
	if !contains(p.Modes, j.Mode) {
		return fmt.Sprintf("policy %s: mode %s is not allowed (allowed: %s)", p.ID, j.Mode, strings.Join(p.Modes, ", "))
	}
	if len(j.Plan.Aggregates) == 0 {
		return fmt.Sprintf("policy %s: the query computes no aggregate", p.ID)
	}
	for _, a := range j.Plan.Aggregates {
		fn := lower(a.Func)
		if fn == "count" && (len(a.Columns) == 0 || a.Columns[0] == "*") {
			continue // COUNT(*) is protected by the threshold and DP
		}
		for _, col := range a.Columns {
			if _, ok := ds.Schema.Column(col); !ok {
				return fmt.Sprintf("policy %s: unknown column %q", p.ID, clip(col))
			}
			if !contains(lowerAll(p.Aggregates[col]), fn) {
				return fmt.Sprintf("policy %s: aggregate %s(%s) is not allowed", p.ID, fn, col)
			}
		}
	}
	for _, col := range j.Plan.GroupBy {
		if !contains(p.GroupBy, col) {
			return fmt.Sprintf("policy %s: column %q may not be grouped by", p.ID, clip(col))
		}
	}
	for _, col := range j.Plan.Filter {
		if !contains(p.Filter, col) {
			return fmt.Sprintf("policy %s: column %q may not be filtered on", p.ID, clip(col))
		}
	}
	for _, col := range j.Plan.Case {
		if !contains(p.Filter, col) && !contains(p.GroupBy, col) {
			return fmt.Sprintf("policy %s: column %q may not be filtered on or grouped by (a CASE condition reads it)", p.ID, clip(col))
		}
	}
	if math.IsNaN(p.DP.EpsilonPerQuery) {
		return fmt.Sprintf("policy %s: invalid epsilon", p.ID)
	}
	return ""
}

func lowerAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = lower(s)
	}
	return out
}

func (s *state) isGrantee(p *Policy, a Address) bool {
	acc := s.Accounts[a.String()]
	for _, g := range p.Grantees {
		kind, v, err := parseGrantee(g)
		if err != nil {
			continue
		}
		switch kind {
		case "account":
			if v == a.String() {
				return true
			}
		case "role":
			if acc != nil && contains(acc.Roles, v) {
				return true
			}
		case "org":
			if acc != nil && acc.Org == v {
				return true
			}
		}
	}
	return false
}

func (s *state) decide(e Entry, now time.Time) error {
	var d JobDecisionDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	cur, ok := s.Jobs[d.Job]
	if !ok {
		return fmt.Errorf("%w: job %q", ErrNotFound, clip(d.Job))
	}
	j := edit(s, s.Jobs, cur.ID, newJob)
	if j.IsJoin() {
		return s.decideJoin(e, j, d, now)
	}
	if !sameOwner(s.Datasets[j.Dataset], s.Accounts[e.Actor.String()]) {
		return fmt.Errorf("%w: job %s uses dataset %q of another agency", ErrForbidden, j.ID, j.Dataset)
	}
	if j.Status != JobPending {
		return fmt.Errorf("%w: job %s is %s, not pending", ErrConflict, j.ID, j.Status)
	}
	if e.Kind == KindJobReject {
		if strings.TrimSpace(d.Reason) == "" {
			return fmt.Errorf("%w: a rejection needs a reason", ErrInvalid)
		}
		j.Updated = now
		j.Status, j.Reason = JobRejected, "rejected by "+e.Actor.String()+": "+clipN(d.Reason, 500)
		return nil
	}
	for _, a := range j.Approvals {
		if a == e.Actor {
			return fmt.Errorf("%w: %s already approved job %s", ErrConflict, e.Actor, j.ID)
		}
	}
	j.Updated = now
	j.Approvals = append(j.Approvals, e.Actor)
	if len(j.Approvals) < j.Needed {
		return nil
	}
	p := s.Policies[j.Policy]
	if r := s.check(p, s.Datasets[j.Dataset], j, now); r != "" || p.Revoked {
		if p.Revoked {
			r = "policy " + p.ID + " was revoked"
		}
		j.Status, j.Reason = JobRejected, r
		return nil
	}
	s.authorise(j, p)
	return nil
}

func (s *state) progress(e Entry, now time.Time) error {
	var d JobResultDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	cur, ok := s.Jobs[d.Job]
	if !ok {
		return fmt.Errorf("%w: job %q", ErrNotFound, clip(d.Job))
	}
	j := edit(s, s.Jobs, cur.ID, newJob)
	if j.IsJoin() {
		return s.progressJoin(e, j, d, now)
	}
	from := map[string][]string{
		KindJobStart:    {JobAuthorised},
		KindJobComplete: {JobRunning, JobAuthorised},
		KindJobFail:     {JobRunning, JobAuthorised},
	}[e.Kind]
	if !contains(from, j.Status) {
		return fmt.Errorf("%w: job %s is %s", ErrConflict, j.ID, j.Status)
	}
	// Only the node entitled to the job moves it: the node holding its
	// dataset starts it (or fails it before it starts), and only the node
	// that started it completes or fails it.
	switch {
	case j.Status == JobRunning && j.Runner != e.Author:
		return fmt.Errorf("%w: job %s is run by %s, not %s", ErrForbidden, j.ID, j.Runner, e.Author)
	case j.Status == JobAuthorised:
		if ds := s.Datasets[j.Dataset]; ds == nil || ds.Node != e.Author {
			return fmt.Errorf("%w: job %s is started only by the node that holds dataset %q, not %s", ErrForbidden, j.ID, j.Dataset, e.Author)
		}
	}
	if e.Kind == KindJobComplete && len(d.ResultHash) != 64 {
		return fmt.Errorf("%w: job.complete needs result_sha256", ErrInvalid)
	}
	if e.Kind == KindJobComplete && j.Mode == ModeHE {
		if err := s.heReleased(j); err != nil {
			return err
		}
	}
	j.Updated = now
	switch e.Kind {
	case KindJobStart:
		j.Status, j.Node, j.Runner = JobRunning, clip(d.Node), e.Author
	case KindJobComplete:
		j.Status, j.ResultHash, j.Suppressed, j.Engine = JobCompleted, d.ResultHash, d.Suppressed, d.Engine
	case KindJobFail:
		j.Status, j.Reason = JobFailed, clipN(d.Reason, 500)
		// A failed job released nothing (results are delivered only once
		// completed) unless nodes issued decryption shares for it: then its
		// epsilon stays spent, to be safe.
		if len(j.Shares) == 0 && s.refund(j) {
			j.Refunded = true
		}
	}
	return nil
}
