package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// ServiceShip is the node-to-node service through which a join's
// executor asks an owner node for its part.
const ServiceShip = "join.ship"

// JoinCrypto is the node's join key material (mpc.JoinKeys): its HPKE
// key, sealing of per-job keys, and signed node-to-node messages.
type JoinCrypto interface {
	Public() []byte
	SealJobKey(job string, to policies.Address, key []byte) ([]byte, error)
	OpenJobKey(job string, from policies.Address, sealed []byte) ([]byte, error)
	SealJobKeyToList(job, list string, pub, key []byte) ([]byte, error)
	Sign(service string, v any) ([]byte, error)
	Open(service string, raw []byte, v any) (policies.Address, error)
}

// JoinState is what the joiner reads of the committed state.
type JoinState interface {
	JobSource
	Job(id string) (policies.Job, bool)
	Dataset(name string) (policies.Dataset, bool)
	Account(a policies.Address) (policies.Account, bool)
}

// JoinerConfig configures a Joiner.
type JoinerConfig struct {
	Name   string        // this node's name (its peer ID)
	Key    *chain.Key    // signs its entries
	Nonces *chain.Nonces // shared with everything else that signs with Key
	Crypto JoinCrypto
	// Call sends a request to a peer's service (chain.Node.Call).
	Call func(ctx context.Context, peer, service string, body []byte) ([]byte, error)
	// Sync, when set, runs before a request is served: a read barrier, so
	// that the asker's job.start is applied here too.
	Sync func(ctx context.Context) error
	// Poll is how often committed jobs are looked at; Wait how long an
	// executor waits for the owners' parts before it fails the job.
	Poll, Wait time.Duration
	// ListWait is how long a runner waits for an enterprise's list
	// (ListWait when 0).
	ListWait time.Duration
	// ShipChunk is the largest chunk of a shipment this node sends in one
	// node-to-node message (DefaultShipChunk when 0; chain's messages are
	// at most 64 MiB).
	ShipChunk int
	Limits    Limits
	Logger    *slog.Logger
	// HE is the node's multiparty side for joins in mode he (the
	// collective keys, the threshold release); nil: they fail with the
	// reason.
	HE HEService
}

// Joiner runs a node's part of joins across agencies (DESIGN.md): as an
// owner, it draws or opens the per-job key and ships tags and columns to
// the job's runner (Serve); as an executor (a node holding none of the
// job's datasets), it claims join jobs, gathers the parts, runs them and
// forgets what was shipped. Shipped data is held in memory only.
type Joiner struct {
	cfg   JoinerConfig
	store *Store
	node  Appender
	state JoinState
	log   *slog.Logger
	me    policies.Address

	mu     sync.Mutex
	hpkeOK bool
	lists  listInbox // enterprises' lists received for the jobs it runs
	// sending holds the shipments being sent in chunks (memory only),
	// until the last chunk is asked for or the job ends.
	sending map[string]sending
}

// NewJoiner makes a node's joiner.
func NewJoiner(cfg JoinerConfig, store *Store, node Appender, state JoinState) *Joiner {
	if cfg.Poll == 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Wait == 0 {
		cfg.Wait = 2 * time.Minute
	}
	if cfg.ListWait == 0 {
		cfg.ListWait = ListWait
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Joiner{cfg: cfg, store: store, node: node, state: state, log: cfg.Logger.With("component", "joiner"), me: policies.Address(cfg.Key.Address())}
}

// Run works on join jobs until ctx ends.
func (jn *Joiner) Run(ctx context.Context) {
	t := time.NewTicker(jn.cfg.Poll)
	defer t.Stop()
	n, notifies := jn.state.(Notifier)
	for {
		var moved <-chan struct{}
		if notifies {
			moved = n.Changed()
		}
		jn.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-moved:
		}
	}
}

func (jn *Joiner) pass(ctx context.Context) {
	jn.forgetKeys()
	jn.lists.forget(func(job string) bool {
		j, ok := jn.state.Job(job)
		return ok && j.Status == policies.JobRunning && j.Runner == jn.me
	})
	jn.forgetSending()
	jobs := jn.state.Jobs(func(j policies.Job) bool {
		return j.IsJoin() && (j.Status == policies.JobAuthorised || j.Status == policies.JobRunning)
	})
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		owner := false
		for _, ds := range j.Plan.Datasets(j.Dataset) {
			if d, ok := jn.state.Dataset(ds); ok && d.Node == jn.me {
				owner = true
			}
		}
		if owner {
			// An owner's HPKE key goes on the ledger when a join first
			// needs it (the key holder seals to it), not before: a
			// consortium without joins has no such entries.
			if !jn.publishHPKE(ctx) {
				continue
			}
			if err := jn.drawKey(ctx, j); err != nil {
				jn.log.Warn("job key not committed", "job", j.ID, "err", err)
			}
			continue
		}
		if jn.eligible(j) && (j.Status == policies.JobAuthorised || j.Runner == jn.me ||
			time.Since(j.Claimed) > jn.lease()) {
			jn.execute(ctx, j)
		}
	}
}

// lease is the consortium's join lease (policies.JoinLease unless its
// genesis set another).
func (jn *Joiner) lease() time.Duration {
	if l, ok := jn.state.(interface{ JoinLease() time.Duration }); ok {
		return l.JoinLease()
	}
	return policies.JoinLease
}

// publishHPKE commits the node's HPKE key if the ledger does not hold it;
// it reports whether the ledger holds it.
func (jn *Joiner) publishHPKE(ctx context.Context) bool {
	jn.mu.Lock()
	ok := jn.hpkeOK
	jn.mu.Unlock()
	if ok {
		return true
	}
	acc, found := jn.state.Account(jn.me)
	if found && slices.Equal(acc.HPKE, jn.cfg.Crypto.Public()) {
		jn.mu.Lock()
		jn.hpkeOK = true
		jn.mu.Unlock()
		return true
	}
	if !found {
		return false
	}
	if err := jn.commit(ctx, policies.KindNodeHPKE, policies.NodeHPKEDoc{PublicKey: jn.cfg.Crypto.Public()}); err != nil {
		jn.log.Warn("node.hpke not committed", "err", err)
	}
	return false
}

// eligible mirrors the state machine's rule (which decides): a node that
// holds none of the job's datasets and is not of their organisations.
func (jn *Joiner) eligible(j policies.Job) bool {
	acc, ok := jn.state.Account(jn.me)
	if !ok {
		return false
	}
	for _, name := range j.Plan.Datasets(j.Dataset) {
		if j.IsList(name) {
			continue
		}
		d, ok := jn.state.Dataset(name)
		if !ok || d.Node == jn.me || (acc.Org != "" && acc.Org == d.Org) {
			return false
		}
		if h, ok := jn.state.Account(d.Node); ok && acc.Org != "" && h.Org == acc.Org {
			return false
		}
	}
	return true
}

func (jn *Joiner) commit(ctx context.Context, kind string, doc any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	raw, err := jn.cfg.Key.NewEntry(kind, jn.cfg.Nonces.Next(), time.Now(), b)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rc, err := jn.node.Append(actx, raw)
	if err != nil {
		return err
	}
	return jn.node.WaitApplied(actx, rc.Index)
}

// keyHolder is the owner node that draws the job key: the lowest address
// among the nodes holding the job's datasets (as the state machine says).
func (jn *Joiner) keyHolder(j policies.Job) (policies.Address, []policies.Address) {
	var owners []policies.Address
	for _, name := range j.Plan.Datasets(j.Dataset) {
		if d, ok := jn.state.Dataset(name); ok && !slices.Contains(owners, d.Node) {
			owners = append(owners, d.Node)
		}
	}
	slices.SortFunc(owners, func(a, b policies.Address) int { return compareAddr(a, b) })
	if len(owners) == 0 {
		return policies.Address{}, nil
	}
	return owners[0], owners[1:]
}

func compareAddr(a, b policies.Address) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

func (jn *Joiner) keyPath(job string) string {
	return filepath.Join(jn.store.dir, "joinkeys", job)
}

// drawKey: the key holder draws k_job, keeps it, and commits it sealed to
// the other owner nodes.
func (jn *Joiner) drawKey(ctx context.Context, j policies.Job) error {
	holder, others := jn.keyHolder(j)
	if holder != jn.me || j.KeyFrom != (policies.Address{}) {
		return nil
	}
	k, err := os.ReadFile(jn.keyPath(j.ID))
	if errors.Is(err, os.ErrNotExist) {
		k = make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(jn.keyPath(j.ID)), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(jn.keyPath(j.ID), k, 0o600); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	doc := policies.JobKeyDoc{Job: j.ID, Sealed: map[string][]byte{}}
	for _, o := range others {
		s, err := jn.cfg.Crypto.SealJobKey(j.ID, o, k)
		if err != nil {
			return err
		}
		doc.Sealed[o.String()] = s
	}
	if err := jn.sealToList(j, k, &doc); err != nil {
		return err
	}
	return jn.commit(ctx, policies.KindJobKey, doc)
}

// forgetKeys deletes the job keys this node drew for jobs that ended:
// nothing is shipped for them again, so the tags they made cannot be
// recomputed.
func (jn *Joiner) forgetKeys() {
	dir := filepath.Dir(jn.keyPath("x"))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if j, ok := jn.state.Job(e.Name()); !ok || (j.Status != policies.JobAuthorised && j.Status != policies.JobRunning) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				jn.log.Warn("deleting a job key", "job", e.Name(), "err", err)
			}
		}
	}
}

// jobKey returns this owner node's copy of the job key.
func (jn *Joiner) jobKey(j policies.Job) ([]byte, error) {
	if j.KeyFrom == (policies.Address{}) {
		return nil, fmt.Errorf("%w: job %s has no key on the ledger yet", ErrNoData, j.ID)
	}
	if j.KeyFrom == jn.me {
		return os.ReadFile(jn.keyPath(j.ID))
	}
	sealed, ok := j.KeySealed[jn.me.String()]
	if !ok {
		return nil, fmt.Errorf("%w: job %s's key is not sealed to this node", ErrRefused, j.ID)
	}
	return jn.cfg.Crypto.OpenJobKey(j.ID, j.KeyFrom, sealed)
}

// shipRequest asks an owner for its part of a job.
type shipRequest struct {
	Job     string `json:"job"`
	Dataset string `json:"dataset"`
	// Offset asks for the shipment's bytes from there (ship_chunks.go).
	Offset int64 `json:"offset,omitempty"`
}

// Serve answers an executor's request for this owner's part of a join
// (ServiceShip): it checks on its own committed ledger that the job is a
// running join that reads the dataset, that the asker is its runner, and
// that this node holds the dataset; commits job.flow (what it ships, to
// whom, with the digest of the whole shipment); then returns the chunk of
// the shipment from the offset asked for (ship_chunks.go).
func (jn *Joiner) Serve(ctx context.Context, service string, body []byte) ([]byte, error) {
	if service == ServiceList {
		return jn.serveList(ctx, body)
	}
	if service != ServiceShip {
		return nil, fmt.Errorf("sandbox: unknown service %q", service)
	}
	if jn.cfg.Sync != nil {
		if err := jn.cfg.Sync(ctx); err != nil {
			return nil, err
		}
	}
	var req shipRequest
	asker, err := jn.cfg.Crypto.Open(ServiceShip, body, &req)
	if err != nil {
		return nil, err
	}
	j, ok := jn.state.Job(req.Job)
	switch {
	case !ok || !j.IsJoin():
		return nil, fmt.Errorf("%w: job %q is not a join", ErrRefused, clipVal(req.Job))
	case j.Status != policies.JobRunning || j.Runner != asker:
		return nil, fmt.Errorf("%w: job %s is %s, run by %s: %s is not its runner", ErrRefused, j.ID, j.Status, j.Runner, asker)
	}
	var side *policies.JoinSide
	for i := range j.Plan.Join {
		if j.Plan.Join[i].Dataset == req.Dataset {
			side = &j.Plan.Join[i]
		}
	}
	if side == nil {
		return nil, fmt.Errorf("%w: job %s does not read %q", ErrRefused, j.ID, clipVal(req.Dataset))
	}
	if d, ok := jn.state.Dataset(side.Dataset); !ok || d.Node != jn.me || !jn.store.Has(side.Dataset) {
		return nil, fmt.Errorf("%w: this node does not hold %s", ErrNoData, side.Dataset)
	}
	ckey := j.ID + "/" + side.Dataset + "/" + asker.String()
	snd, ok := jn.takeSending(ckey)
	if !ok {
		if snd, err = jn.buildShipment(ctx, j, *side); err != nil {
			return nil, err
		}
	}
	b, sum := snd.b, snd.sum
	shipped := false
	for _, f := range j.Flows {
		if f.Dataset == side.Dataset && f.To == asker {
			same := f.BLAKE3 == sum
			if f.BLAKE3 == "" { // committed before BLAKE3: its SHA-256
				_, got := digestOf(b, FlowDigest(f))
				same = got == FlowDigest(f)
			}
			if !same {
				return nil, fmt.Errorf("%w: job %s: %s was shipped to %s with another digest", ErrRefused, j.ID, side.Dataset, asker)
			}
			shipped = true
		}
	}
	if !shipped {
		doc := policies.JobFlowDoc{Job: j.ID, Dataset: side.Dataset, Columns: side.Columns, BLAKE3: sum, Rows: int64(snd.rows), To: asker}
		if err := jn.commit(ctx, policies.KindJobFlow, doc); err != nil {
			return nil, err
		}
	}
	out, err := shipChunk(b, req.Offset, jn.cfg.ShipChunk)
	if err != nil {
		return nil, err
	}
	if req.Offset+int64(len(out)-chunkHeader) < int64(len(b)) {
		jn.keepSending(ckey, snd)
	} else {
		jn.log.Info("join part shipped", "job", j.ID, "dataset", side.Dataset, "to", asker.String(), "rows", snd.rows, "bytes", len(b), "blake3", sum)
	}
	return out, nil
}

// execute claims a join job and runs it: gathers every owner's part
// (waiting up to Wait for owners that do not answer), joins, releases,
// and completes; or fails it with the reason (the budgets are refunded).
func (jn *Joiner) execute(ctx context.Context, j policies.Job) {
	log := jn.log.With("job", j.ID)
	if j.Status == policies.JobAuthorised || j.Runner != jn.me {
		if err := jn.commit(ctx, policies.KindJobStart, policies.JobResultDoc{Job: j.ID, Node: jn.cfg.Name}); err != nil {
			log.Debug("job.start not committed", "err", err)
			return
		}
	}
	if b, ok := jn.store.Result(j.ID); ok {
		var res Result
		if json.Unmarshal(b, &res) == nil {
			jn.complete(ctx, j, &res)
			return
		}
	}
	// Renew the lease while the job runs, so that a slow job is not taken
	// over from a live runner.
	rctx, stop := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(jn.lease() / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if err := jn.commit(rctx, policies.KindJobStart, policies.JobResultDoc{Job: j.ID, Node: jn.cfg.Name}); err != nil {
					log.Warn("lease not renewed", "err", err)
				}
			}
		}
	}()
	res, err := jn.run(ctx, j)
	stop()
	<-renewed
	if err != nil {
		reason := err.Error()
		if !errors.Is(err, ErrRefused) && !errors.Is(err, ErrLimit) && !errors.Is(err, ErrBadData) && !errors.Is(err, errOwnerAbsent) {
			log.Error("join failed", "err", err)
			reason = "the executor failed; its log has the details"
		}
		if err := jn.commit(ctx, policies.KindJobFail, policies.JobResultDoc{Job: j.ID, Reason: reason}); err != nil {
			log.Warn("job.fail not committed", "err", err)
		}
		return
	}
	b, err := json.Marshal(res)
	if err == nil {
		err = jn.store.PutResult(j.ID, b)
	}
	if err != nil {
		log.Error("keeping the result", "err", err)
		return
	}
	jn.complete(ctx, j, res)
}

func (jn *Joiner) complete(ctx context.Context, j policies.Job, res *Result) {
	doc := policies.JobResultDoc{Job: j.ID, ResultHash: res.ResultSHA256, Epsilon: res.EpsilonSpent, Suppressed: res.Suppressed, Engine: "join/" + j.Mode}
	if err := jn.commit(ctx, policies.KindJobComplete, doc); err != nil {
		jn.log.Warn("job.complete not committed", "job", j.ID, "err", err)
		return
	}
	jn.log.Info("join completed", "job", j.ID, "suppressed", res.Suppressed, "result_sha256", res.ResultSHA256)
}

var errOwnerAbsent = errors.New("sandbox: an owner did not ship its part")

func (jn *Joiner) run(ctx context.Context, j policies.Job) (*Result, error) {
	q, err := ParseQuery(j.Query)
	if err != nil {
		return nil, err
	}
	ctl := Control{}
	parts := make([]JoinPart, 0, len(j.Parts))
	var ships []*Shipment
	var schemas []*policies.Schema
	deadline := time.Now().Add(jn.cfg.Wait)
	for i, pt := range j.Parts {
		p, ok := jn.state.Policy(pt.Policy)
		if !ok {
			return nil, fmt.Errorf("%w: policy %s is gone", ErrRefused, pt.Policy)
		}
		// Output control is the strictest of the policies.
		ctl.MinGroupSize = max(ctl.MinGroupSize, p.MinGroupSize)
		if i == 0 || p.DP.EpsilonPerQuery < ctl.Epsilon {
			ctl.Epsilon, ctl.Delta, ctl.Mechanism = p.DP.EpsilonPerQuery, p.DP.Delta, p.DP.Mechanism
		}
		if ctl.Dominance == nil {
			ctl.Dominance = p.Dominance
		}
	}
	// The owners ship at once; each part is checked as it arrives, and
	// the first that fails stops the others.
	ships, schemas = make([]*Shipment, len(j.Parts)), make([]*policies.Schema, len(j.Parts))
	parts = make([]JoinPart, len(j.Parts))
	errs := make([]error, len(j.Parts))
	fetchCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for i, pt := range j.Parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ships[i], schemas[i], errs[i] = jn.fetch(fetchCtx, j, pt, deadline); errs[i] != nil {
				stop()
			} else if j.Mode != policies.ModeHE {
				parts[i] = ships[i].Part(schemas[i], pt.MaxRows)
			}
		}()
	}
	wg.Wait()
	if err := firstCause(ctx, errs); err != nil {
		return nil, err
	}

	if j.List != nil {
		part, err := jn.listPart(ctx, j, time.Now().Add(jn.cfg.ListWait))
		if err != nil {
			return nil, err
		}
		parts = append(parts, part)
	}
	sel := make([]byte, 32)
	if _, err := rand.Read(sel); err != nil {
		return nil, err
	}
	if j.Mode == policies.ModeHE {
		return jn.runHE(ctx, j, q, ctl, ships, schemas, sel)
	}
	res, err := ExecuteJoin(ctx, q, parts, ctl, jn.cfg.Limits, sel)
	if err != nil {
		return nil, err
	}
	res.Job = j.ID
	return res, res.Seal()
}

// firstCause is the first of errs that is not a part stopped because
// another failed (ctx is the job's: its own end is a cause).
func firstCause(ctx context.Context, errs []error) error {
	var first error
	for _, err := range errs {
		if err != nil && (!errors.Is(err, context.Canceled) || ctx.Err() != nil) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first // every failure a cancellation (none reported its cause): still a failure
}

// fetch asks the owner of one dataset for its part until it answers with
// the shipment its job.flow committed, or the deadline passes.
func (jn *Joiner) fetch(ctx context.Context, j policies.Job, pt policies.JobPart, deadline time.Time) (*Shipment, *policies.Schema, error) {
	d, ok := jn.state.Dataset(pt.Dataset)
	if !ok {
		return nil, nil, fmt.Errorf("%w: dataset %s is gone", ErrRefused, pt.Dataset)
	}
	owner, _ := jn.state.Account(d.Node)
	var side policies.JoinSide
	for _, s := range j.Plan.Join {
		if s.Dataset == pt.Dataset {
			side = s
		}
	}
	get := func(off int64) ([]byte, error) {
		req, err := jn.cfg.Crypto.Sign(ServiceShip, shipRequest{Job: j.ID, Dataset: pt.Dataset, Offset: off})
		if err != nil {
			return nil, err
		}
		return jn.cfg.Call(ctx, owner.Name, ServiceShip, req)
	}
	var last error
	for {
		b, chunks, err := gatherChunks(get, jn.cfg.Limits.MaxMemory)
		if err == nil {
			var s *Shipment
			if s, err = jn.checkShipment(ctx, j.ID, side, d, b); err == nil {
				jn.log.Info("join part received", "job", j.ID, "dataset", pt.Dataset, "bytes", len(b), "chunks", chunks)
				return s, &d.Schema, nil
			}
			if errors.Is(err, ErrBadData) {
				return nil, nil, err
			}
		}
		last = err
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%w: node %s did not ship dataset %s within %s: %v", errOwnerAbsent, owner.Name, pt.Dataset, jn.cfg.Wait, last)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(jn.cfg.Poll):
		}
	}
}

// checkShipment parses a shipment against the digest its owner committed
// in job.flow (waiting briefly for that entry to be applied here).
func (jn *Joiner) checkShipment(ctx context.Context, job string, side policies.JoinSide, d policies.Dataset, b []byte) (*Shipment, error) {
	for range 50 {
		j, _ := jn.state.Job(job)
		for _, f := range j.Flows {
			if f.Dataset == side.Dataset && f.To == jn.me && f.From == d.Node {
				return ParseShipment(b, FlowDigest(f), job, side, &d.Schema)
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("%w: no job.flow of %s to this node on the ledger", ErrBadData, side.Dataset)
}
