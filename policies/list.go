package policies

import (
	"fmt"
	"slices"
	"time"
)

// List joins (DESIGN.md, "Joining across agencies, and with the
// enterprise's own ids"): a join job may join its datasets with an id list
// the enterprise keeps on its own machine. The query names the list as a
// table (FROM tax2025 t JOIN applicants a ON t.person_id = a.id), so the
// plan derived from its text has a join side for it like a dataset's; the
// submission says which side is the list (ListDoc): its name, its number
// of distinct ids and the ephemeral HPKE key to which the owner node that
// draws k_job seals it. The rules, here so that every node and the auditor
// hold them:
//
//   - every dataset's policy has join.lists; the list's size is within each
//     policy's max_list_ids and not below its min_group_size;
//   - the list is a joined table, never FROM, and no dataset bears its name;
//   - the enterprise pseudonymises at most the list's size for the job;
//   - the job key is sealed to the list's key as well as to the other owner
//     nodes, never to the executor;
//   - the enterprise records its shipment of tags to the job's runner
//     (job.list, a flow of the list: count and digest, never its contents),
//     once per runner, with as many tags as the list has ids; the job
//     completes only with it.

// KindJobList records an enterprise's shipment of its list's tags to a
// list join's runner (relayed for the requester).
const KindJobList = "job.list"

// MinListIDs is the smallest list a job may join (below any policy's
// minimum group size of 2 or more, a list of one person is refused anyway).
const MinListIDs = 2

type (
	// ListDoc is a job submission's list: the table name the query joins
	// it as, its number of distinct ids, and the enterprise's ephemeral
	// X25519 HPKE public key for the job's key.
	ListDoc struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
		HPKE []byte `json:"hpke"`
	}
	// JobListDoc is the enterprise's record of what it ships to the
	// job's runner: the tags of its list (and the plan's columns of it).
	JobListDoc struct {
		Job    string  `json:"job"`
		To     Address `json:"to"`
		Rows   int64   `json:"rows"`
		BLAKE3 string  `json:"blake3,omitempty"` // of the shipment's bytes (sandbox.ShipmentDigest)
		SHA256 string  `json:"sha256,omitempty"` // instead, in entries committed before BLAKE3 (replayed as they were)
	}
)

// JobList is a job's list as the ledger keeps it: never its ids, only
// their count, the plan's side of it and the job key sealed to the
// enterprise's ephemeral key (job.key).
type JobList struct {
	Name    string   `json:"name"`
	Key     string   `json:"key"`
	Columns []string `json:"columns"`
	Size    int64    `json:"size"`
	HPKE    []byte   `json:"hpke"`
	Sealed  []byte   `json:"sealed,omitempty"`
}

// IsList reports whether name is the job's list (not a dataset).
func (j *Job) IsList(name string) bool { return j.List != nil && j.List.Name == name }

// NewJobList checks a submission's list against the job's plan and returns
// what the job keeps of it; errors are malformed submissions.
func NewJobList(d *ListDoc, p Plan) (*JobList, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: job.submit: list: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if !identRE.MatchString(d.Name) {
		return nil, bad("name %q is not a table name ([a-z_][a-z0-9_]*)", clip(d.Name))
	}
	if d.Size < 1 || d.Size > 100_000_000 {
		return nil, bad("size %d is not a count of distinct ids (1..100000000)", d.Size)
	}
	if len(d.HPKE) != 32 {
		return nil, bad("hpke: an X25519 public key is 32 bytes, not %d", len(d.HPKE))
	}
	for i, sd := range p.Join {
		if sd.Dataset != d.Name {
			continue
		}
		if i == 0 {
			return nil, bad("%s is the query's FROM table: a list is joined to a dataset (FROM dataset JOIN %s ...)", d.Name, d.Name)
		}
		return &JobList{Name: d.Name, Key: sd.Key, Columns: slices.Clone(sd.Columns), Size: d.Size, HPKE: slices.Clone(d.HPKE)}, nil
	}
	return nil, bad("the query joins no table %q", clip(d.Name))
}

// listRule returns the rule of p that joining the job's list with its
// dataset ds breaks, or "".
func listRule(p *Policy, ds *Dataset, l *JobList) string {
	switch {
	case !p.Join.Lists:
		return fmt.Sprintf("policy %s does not allow joining dataset %q with an enterprise's id list (join.lists)", p.ID, ds.Name)
	case l.Size < int64(p.MinGroupSize) || l.Size < MinListIDs:
		return fmt.Sprintf("list %s has %d distinct ids, fewer than policy %s's min_group_size of %d (a list join needs at least %d)", l.Name, l.Size, p.ID, p.MinGroupSize, max(int64(p.MinGroupSize), MinListIDs))
	case l.Size > p.Join.ListIDs():
		return fmt.Sprintf("list %s has %d distinct ids, policy %s allows lists of up to %d (join.max_list_ids)", l.Name, l.Size, p.ID, p.Join.ListIDs())
	}
	return ""
}

// listSideRule is the rejection of a list job in mode he or whose list
// names a dataset.
func (s *state) listSideRule(j *Job) string {
	if j.Mode != ModeMasked {
		// The runner's he path joins ciphertexts owners ship; a list's
		// tags and columns have no such part.
		return fmt.Sprintf("list %s: a list join runs in mode masked only (not %s)", j.List.Name, j.Mode)
	}
	if _, ok := s.Datasets[j.List.Name]; ok {
		return fmt.Sprintf("list %s bears the name of a registered dataset: name the list otherwise", j.List.Name)
	}
	return ""
}

// jobList records the requester's shipment of its list's tags to the
// job's current runner.
func (s *state) jobList(e Entry, index uint64, now time.Time) error {
	var d JobListDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	j, err := s.liveJoin(d.Job)
	if err != nil {
		return err
	}
	switch {
	case j.List == nil:
		return fmt.Errorf("%w: job %s joins no list", ErrInvalid, j.ID)
	case e.Actor != j.Requester:
		return fmt.Errorf("%w: job %s's list is shipped by its requester %s only, not %s", ErrForbidden, j.ID, j.Requester, e.Actor)
	case j.Status != JobRunning || d.To != j.Runner:
		return fmt.Errorf("%w: job %s's list goes only to its runner (%s), not %s", ErrForbidden, j.ID, j.Runner, d.To)
	case d.Rows != j.List.Size:
		return fmt.Errorf("%w: job %s's list has %d distinct ids on the ledger; a shipment of %d tags is not it", ErrForbidden, j.ID, j.List.Size, d.Rows)
	case !oneShipDigest(d.BLAKE3, d.SHA256):
		return fmt.Errorf("%w: job.list needs the shipment's digest, its blake3 (or, as entries before BLAKE3 did, its sha256, not both) in 64 lowercase hex digits", ErrInvalid)
	}
	for _, f := range j.Flows {
		if f.Dataset == j.List.Name && f.To == d.To {
			return fmt.Errorf("%w: list %s was already shipped to %s for job %s", ErrConflict, j.List.Name, d.To, j.ID)
		}
	}
	j = edit(s, s.Jobs, j.ID, newJob)
	j.Updated = now
	j.Flows = append(j.Flows, JobFlow{Dataset: j.List.Name, Columns: slices.Clone(j.List.Columns), BLAKE3: d.BLAKE3, SHA256: d.SHA256, Rows: d.Rows, To: d.To, From: e.Actor, Index: index})
	return nil
}

// sealList checks and records the job key sealed to the job's list key.
func (s *state) sealList(j *Job, sealed []byte) error {
	switch {
	case j.List == nil && len(sealed) > 0:
		return fmt.Errorf("%w: job %s joins no list: its key is sealed to no list", ErrInvalid, j.ID)
	case j.List == nil:
		return nil
	case len(sealed) == 0 || len(sealed) > maxSealedKey:
		return fmt.Errorf("%w: job %s's key sealed to list %s is %d bytes (1 to %d)", ErrInvalid, j.ID, j.List.Name, len(sealed), maxSealedKey)
	}
	l := *j.List
	l.Sealed = slices.Clone(sealed)
	j.List = &l
	return nil
}

// listBatch is the rule of a pseudonym batch for a list job: at most the
// list's size, in all.
func listBatch(j *Job, got, count int64) error {
	if j.List == nil {
		return nil
	}
	if got+count > j.List.Size {
		return fmt.Errorf("%w: job %s's list has %d distinct ids: %d pseudonymised, this batch asks %d", ErrForbidden, j.ID, j.List.Size, got, count)
	}
	return nil
}
