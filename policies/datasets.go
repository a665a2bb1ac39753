package policies

import (
	"fmt"
	"strconv"
	"time"
)

// Documents of the dataset and policy kinds.
type (
	DatasetDoc struct {
		Name   string `json:"name"`
		Schema Schema `json:"schema"`
		SHA256 string `json:"sha256"`
		Rows   int64  `json:"rows"`
	}
	PolicyRevokeDoc struct {
		Policy string `json:"policy"`
	}
)

// registerDataset records a dataset a node holds for an agency of its own
// organisation (dataset.register).
func (s *state) registerDataset(e Entry, now time.Time) error {
	actor := s.Accounts[e.Actor.String()]
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
	if !IsSHA256Hex(d.SHA256) || d.Rows < 0 {
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
	return nil
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

// OwnsOneOf reports whether account a owns, or is of the organisation that
// owns, one of the datasets job j reads (every dataset of a join): the
// same-owner rule the state machine applies to decisions on a job, for
// readers (who may see a job) to apply too.
func (m *Machine) OwnsOneOf(a Address, j Job) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	acc := m.s.Accounts[a.String()]
	for _, name := range j.Plan.Datasets(j.Dataset) {
		if sameOwner(m.s.Datasets[name], acc) {
			return true
		}
	}
	return false
}

// sameOwner: the actor is the dataset's owner or an account of its org.
func sameOwner(ds *Dataset, actor *Account) bool {
	return ds != nil && actor != nil && (ds.Owner == actor.Address || (ds.Org != "" && ds.Org == actor.Org))
}

// publishPolicy puts a policy in force on a dataset of the actor's agency
// (policy.publish).
func (s *state) publishPolicy(e Entry, index uint64, now time.Time) error {
	actor := s.Accounts[e.Actor.String()]
	p, err := ParsePolicy(e.Payload)
	if err != nil {
		return err
	}
	ds, ok := s.Datasets[p.Dataset]
	if !ok {
		return fmt.Errorf("%w: dataset %q is not registered", ErrNotFound, clip(p.Dataset))
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
	return nil
}

// revokePolicy withdraws a policy of the actor's agency (policy.revoke).
func (s *state) revokePolicy(e Entry) error {
	actor := s.Accounts[e.Actor.String()]
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
	return nil
}
