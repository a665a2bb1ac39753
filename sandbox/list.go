package sandbox

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/datasandbox/datasandbox/policies"
)

// List joins (DESIGN.md, "Joining across agencies, and with the
// enterprise's own ids"). The enterprise's sandboxctl turns each distinct
// id of its list into a per-job tag from k_job and P(id)[:PseudonymSize]
// (join_tag.go), exactly as owners tag their rows (Ship), with the job key the owner
// node sealed to the list's ephemeral key; it ships the tags and the
// plan's further columns of the list (never ids, never pseudonyms) to the
// job's runner, in the shipment encoding owners use, after committing the
// shipment's digest (job.list). The runner semi-joins the datasets' rows
// with the list's tags (ExecuteJoin, the list a part with one row per
// person) and releases the plan's aggregates under output control: the
// minimum group size counts distinct people of the intersection, whose
// size is released only as a noisy count past the threshold.

// ServiceList is the node-to-node service through which a node that took
// an enterprise's list hands it to the job's runner.
const ServiceList = "join.list"

// ListWait is how long, by default, a runner waits for the enterprise's
// list once the owners shipped (the enterprise pseudonymises its ids
// through the consortium first).
const ListWait = 10 * time.Minute

// ListSchema is the schema a list is checked and joined under: its key an
// identifier column with consortium pseudonyms, its further columns public
// strings (the enterprise's own, for grouping and filtering).
func ListSchema(l policies.JobList) *policies.Schema {
	s := &policies.Schema{Columns: []policies.Column{{Name: l.Key, Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium}}}
	for _, c := range l.Columns {
		s.Columns = append(s.Columns, policies.Column{Name: c, Type: policies.TypeString, Class: policies.Public})
	}
	return s
}

// ListTags are the per-job tags of a list's consortium pseudonyms (as
// the VOPRF returns them; truncated as stored pseudonyms are).
func ListTags(kJob []byte, pseudonyms [][]byte) ([][TagSize]byte, error) {
	tg, err := newTagger(kJob)
	if err != nil {
		return nil, err
	}
	out := make([][TagSize]byte, len(pseudonyms))
	for i, p := range pseudonyms {
		if len(p) < PseudonymSize {
			return nil, fmt.Errorf("%w: a consortium pseudonym of %d bytes", ErrBadData, len(p))
		}
		tg.tags(out[i][:], p[:PseudonymSize])
	}
	return out, nil
}

// ShipList builds the enterprise's shipment of its list for job: a tag per
// distinct id and, per further column of the list the plan uses, the
// value of each row (cols[name][row]).
func ShipList(job string, l policies.JobList, tags [][TagSize]byte, cols map[string][]string) (*Shipment, error) {
	if int64(len(tags)) != l.Size {
		return nil, fmt.Errorf("%w: list %s: %d tags for %d distinct ids", ErrBadData, l.Name, len(tags), l.Size)
	}
	s := &Shipment{Job: job, Dataset: l.Name, Rows: len(tags), Tags: make([]byte, 0, len(tags)*TagSize), Columns: []ShipmentCol{}}
	for _, t := range tags {
		s.Tags = append(s.Tags, t[:]...)
	}
	for _, name := range l.Columns {
		vals, ok := cols[name]
		if !ok || len(vals) != len(tags) {
			return nil, fmt.Errorf("%w: list %s: column %s has %d values for %d ids", ErrBadData, l.Name, name, len(vals), len(tags))
		}
		c := ShipmentCol{Name: name, Kind: kindDict, Codes: make([]uint32, len(vals))}
		code := map[string]uint32{}
		for i, v := range vals {
			k, ok := code[v]
			if !ok {
				k = uint32(len(c.Dict))
				code[v] = k
				c.Dict = append(c.Dict, v)
			}
			c.Codes[i] = k
		}
		s.Columns = append(s.Columns, c)
	}
	return s, nil
}

// ParseList reads an enterprise's list shipment from untrusted bytes for
// job's list l: the bytes hash to digest (its job.list on the ledger), it
// holds exactly l.Size distinct tags and the list's columns; it returns
// the join part (one row per person).
func ParseList(b []byte, digest, job string, l policies.JobList) (JoinPart, error) {
	schema := ListSchema(l)
	s, err := ParseShipment(b, digest, job, policies.JoinSide{Dataset: l.Name, Key: l.Key, Columns: l.Columns}, schema)
	if err != nil {
		return JoinPart{}, err
	}
	if int64(s.Rows) != l.Size {
		return JoinPart{}, fmt.Errorf("%w: list %s of %s: %d tags, the job's list has %d distinct ids", ErrBadData, l.Name, job, s.Rows, l.Size)
	}
	p := s.Part(schema, 1)
	p.List = true
	seen := make(map[[TagSize]byte]struct{}, len(p.Tags))
	for _, t := range p.Tags {
		if _, dup := seen[t]; dup {
			return JoinPart{}, fmt.Errorf("%w: list %s of %s repeats a tag: its ids are not distinct", ErrBadData, l.Name, job)
		}
		seen[t] = struct{}{}
	}
	return p, nil
}

// listInbox holds, in memory only, the list shipments a runner received,
// by job, until its run takes them.
type listInbox struct {
	mu    sync.Mutex
	byJob map[string][]byte
	moved chan struct{}
}

func (in *listInbox) put(job string, b []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.byJob == nil {
		in.byJob = map[string][]byte{}
	}
	in.byJob[job] = b
	if in.moved != nil {
		close(in.moved)
		in.moved = nil
	}
}

// take returns job's list, or a channel closed when another arrives.
func (in *listInbox) take(job string) ([]byte, <-chan struct{}) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if b, ok := in.byJob[job]; ok {
		delete(in.byJob, job)
		return b, nil
	}
	if in.moved == nil {
		in.moved = make(chan struct{})
	}
	return nil, in.moved
}

// forget drops the lists of jobs that no longer run.
func (in *listInbox) forget(live func(job string) bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for job := range in.byJob {
		if !live(job) {
			delete(in.byJob, job)
		}
	}
}

// listFlow is the committed job.list of job to node to, waiting briefly
// for it to be applied here.
func (jn *Joiner) listFlow(ctx context.Context, job string, to policies.Address) (policies.Job, policies.JobFlow, error) {
	for range 50 {
		j, ok := jn.state.Job(job)
		if !ok || j.List == nil {
			return j, policies.JobFlow{}, fmt.Errorf("%w: job %q joins no list", ErrRefused, clipVal(job))
		}
		for _, f := range j.Flows {
			if f.Dataset == j.List.Name && f.To == to {
				return j, f, nil
			}
		}
		select {
		case <-ctx.Done():
			return j, policies.JobFlow{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return policies.Job{}, policies.JobFlow{}, fmt.Errorf("%w: no job.list of job %s to %s on the ledger", ErrRefused, clipVal(job), to)
}

// ReceiveList takes an enterprise's list shipment for job (the API's
// signed request, its caller the job's requester): it must be what the
// committed job.list to the job's runner hashes; the runner keeps it (in
// memory) for the run, any other node hands it to the runner.
func (jn *Joiner) ReceiveList(ctx context.Context, job string, b []byte) error {
	j, ok := jn.state.Job(job)
	if !ok || j.List == nil || j.Status != policies.JobRunning {
		return fmt.Errorf("%w: job %q is not a running list join", ErrRefused, clipVal(job))
	}
	_, f, err := jn.listFlow(ctx, job, j.Runner)
	if err != nil {
		return err
	}
	if alg, got := digestOf(b, FlowDigest(f)); got != FlowDigest(f) {
		_, want := f.Digest()
		return fmt.Errorf("%w: list of job %s: %s %s is not the %s committed on the ledger", ErrRefused, j.ID, alg, strings.TrimPrefix(got, legacyDigest), want)
	}
	if j.Runner == jn.me {
		jn.lists.put(j.ID, b)
		jn.log.Info("list received", "job", j.ID, "rows", f.Rows, "digest", FlowDigest(f))
		return nil
	}
	runner, ok := jn.state.Account(j.Runner)
	if !ok {
		return fmt.Errorf("%w: job %s's runner %s has no account", ErrRefused, j.ID, j.Runner)
	}
	req, err := jn.cfg.Crypto.Sign(ServiceList, listRequest{Job: j.ID, List: b})
	if err != nil {
		return err
	}
	if _, err := jn.cfg.Call(ctx, runner.Name, ServiceList, req); err != nil {
		return fmt.Errorf("handing job %s's list to its runner %s: %w", j.ID, runner.Name, err)
	}
	jn.log.Info("list handed to the runner", "job", j.ID, "runner", runner.Name, "digest", FlowDigest(f))
	return nil
}

// listRequest hands a list to the job's runner.
type listRequest struct {
	Job  string `json:"job"`
	List []byte `json:"list"`
}

// serveList answers ServiceList: a node hands this runner a list.
func (jn *Joiner) serveList(ctx context.Context, body []byte) ([]byte, error) {
	if jn.cfg.Sync != nil {
		if err := jn.cfg.Sync(ctx); err != nil {
			return nil, err
		}
	}
	var req listRequest
	if _, err := jn.cfg.Crypto.Open(ServiceList, body, &req); err != nil {
		return nil, err
	}
	if j, ok := jn.state.Job(req.Job); !ok || j.Runner != jn.me {
		return nil, fmt.Errorf("%w: this node does not run job %q", ErrRefused, clipVal(req.Job))
	}
	return []byte("{}"), jn.ReceiveList(ctx, req.Job, req.List)
}

// sealToList adds to doc the job key sealed to j's list key, if j joins a
// list.
func (jn *Joiner) sealToList(j policies.Job, k []byte, doc *policies.JobKeyDoc) error {
	if j.List == nil {
		return nil
	}
	s, err := jn.cfg.Crypto.SealJobKeyToList(j.ID, j.List.Name, j.List.HPKE, k)
	if err != nil {
		return err
	}
	doc.List = s
	return nil
}

// listPart waits for the enterprise's list of job j (until the deadline)
// and returns it as a join part.
func (jn *Joiner) listPart(ctx context.Context, j policies.Job, deadline time.Time) (JoinPart, error) {
	wait := time.Until(deadline)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		b, more := jn.lists.take(j.ID)
		if b != nil {
			cur, f, err := jn.listFlow(ctx, j.ID, jn.me)
			if err != nil {
				return JoinPart{}, err
			}
			return ParseList(b, FlowDigest(f), j.ID, *cur.List)
		}
		select {
		case <-ctx.Done():
			return JoinPart{}, ctx.Err()
		case <-t.C:
			return JoinPart{}, fmt.Errorf("%w: the requester did not ship list %s within %s", errOwnerAbsent, j.List.Name, wait.Round(time.Second))
		case <-more:
		}
	}
}
