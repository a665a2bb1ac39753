package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// Appender commits entries (a chain.Node).
type Appender interface {
	Append(ctx context.Context, entry []byte) (chain.Receipt, error)
	// WaitApplied waits until this node's state has applied the entry at
	// index: the runner's next look at the jobs sees its own progress.
	WaitApplied(ctx context.Context, index uint64) error
}

// JobSource is what the runner reads of the committed state.
type JobSource interface {
	Jobs(keep func(policies.Job) bool) []policies.Job
	Policy(id string) (policies.Policy, bool)
}

// Notifier is a JobSource that tells when its state moves
// (policies.Machine): the runner then looks at new jobs at once instead of
// at its next poll.
type Notifier interface {
	Changed() <-chan struct{}
}

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	Name    string        // this node's name (recorded in job.start)
	Key     *chain.Key    // this node's key: it signs job.start/complete/fail
	Nonces  *chain.Nonces // shared with everything else that signs with Key
	Poll    time.Duration // how often committed jobs are looked at (and at once when the state moves, if it tells: see Notifier)
	Timeout time.Duration // deadline of one job
	Limits  Limits
	Logger  *slog.Logger
	// HE runs he jobs' threshold release; nil: he jobs fail with a reason.
	HE HEService
	// Observe, when set, is told how long an he job's evaluation on
	// ciphertexts took ("evaluate").
	Observe func(phase string, d time.Duration)
	// ObserveJob, when set, is told each completed job's mode and its time
	// from submission (the ledger's time) to completion.
	ObserveJob func(mode string, d time.Duration)
}

// HEService is what the runner needs of the multiparty side (mpc/, wired
// by the api): the collective keys, and a release of a result ciphertext
// to the job's requester by t nodes (each of which checks the job with
// AuthoriseHEShare before its share exists).
type HEService interface {
	Keys() (*HEKeys, error)
	Release(ctx context.Context, j policies.Job, ct *rlwe.Ciphertext, lay *HELayout) (out *rlwe.Ciphertext, active []string, err error)
}

// Runner runs the authorised jobs on the datasets this node holds, and
// records their start, completion (with the result's hash) or failure on
// the ledger. Results stay on this node.
type Runner struct {
	cfg   RunnerConfig
	store *Store
	node  Appender
	state JobSource
	log   *slog.Logger
}

// NewRunner builds a runner.
func NewRunner(cfg RunnerConfig, store *Store, node Appender, state JobSource) *Runner {
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Limits.MaxMemory == 0 {
		cfg.Limits = DefaultLimits()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runner{cfg: cfg, store: store, node: node, state: state, log: cfg.Logger.With("component", "runner", "node", cfg.Name)}
}

// Run works until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	// Look when the state moves, and every Poll anyway (to retry jobs
	// whose entries could not be committed).
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	n, notifies := r.state.(Notifier)
	me := policies.Address(r.cfg.Key.Address())
	for {
		// Take the channel before looking, so that a job authorised while
		// this pass runs wakes the next one.
		var moved <-chan struct{} // nil: never ready
		if notifies {
			moved = n.Changed()
		}
		jobs := r.state.Jobs(func(j policies.Job) bool {
			// A join runs on an executor, never on a node holding one of
			// its datasets (the state machine refuses it there).
			return (j.Status == policies.JobAuthorised || (j.Status == policies.JobRunning && j.Runner == me)) && r.store.Has(j.Dataset) && !j.IsJoin()
		})
		for _, j := range jobs {
			if ctx.Err() != nil {
				return
			}
			r.runOne(ctx, j)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-moved:
		}
	}
}

func (r *Runner) commit(ctx context.Context, kind string, doc policies.JobResultDoc) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	raw, err := r.cfg.Key.NewEntry(kind, r.cfg.Nonces.Next(), time.Now(), b)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rc, err := r.node.Append(actx, raw)
	if err != nil {
		return err
	}
	return r.node.WaitApplied(actx, rc.Index)
}

func (r *Runner) runOne(ctx context.Context, j policies.Job) {
	log := r.log.With("job", j.ID)
	if j.Status == policies.JobAuthorised {
		if err := r.commit(ctx, policies.KindJobStart, policies.JobResultDoc{Job: j.ID, Node: r.cfg.Name}); err != nil {
			log.Warn("job.start not committed", "err", err)
			return
		}
	}
	// A job this node already ran (the complete entry was lost, or the
	// node restarted) is completed with the result it kept: the same
	// result, never a second draw of noise.
	if b, ok := r.store.Result(j.ID); ok {
		var res Result
		if err := json.Unmarshal(b, &res); err == nil {
			r.complete(ctx, log, j, &res)
			return
		}
	}
	res, err := r.execute(ctx, j)
	if err != nil {
		reason := err.Error()
		if !errors.Is(err, ErrRefused) && !errors.Is(err, ErrLimit) && !errors.Is(err, ErrSyntax) {
			log.Error("job failed", "err", err)
			reason = "the engine failed; the node's log has the details"
		}
		if err := r.commit(ctx, policies.KindJobFail, policies.JobResultDoc{Job: j.ID, Reason: reason}); err != nil {
			log.Warn("job.fail not committed", "err", err)
		}
		return
	}
	b, err := json.Marshal(res)
	if err == nil {
		err = r.store.PutResult(j.ID, b)
	}
	if err != nil {
		log.Error("keeping the result", "err", err)
		return
	}
	r.complete(ctx, log, j, res)
}

func (r *Runner) complete(ctx context.Context, log *slog.Logger, j policies.Job, res *Result) {
	doc := policies.JobResultDoc{Job: j.ID, ResultHash: res.ResultSHA256, Epsilon: res.EpsilonSpent, Suppressed: res.Suppressed, Engine: j.Mode}
	if err := r.commit(ctx, policies.KindJobComplete, doc); err != nil {
		log.Warn("job.complete not committed", "err", err)
		return
	}
	log.Info("job completed", "rows", len(res.Rows), "suppressed", res.Suppressed, "result_sha256", res.ResultSHA256)
	if r.cfg.ObserveJob != nil {
		r.cfg.ObserveJob(j.Mode, max(time.Since(j.Submitted), 0))
	}
}

func (r *Runner) execute(ctx context.Context, j policies.Job) (*Result, error) {
	if j.Mode != policies.ModeMasked && j.Mode != policies.ModeHE {
		return nil, fmt.Errorf("%w: mode %s is not available on this node", ErrRefused, j.Mode)
	}
	if j.Mode == policies.ModeHE && r.cfg.HE == nil {
		return nil, fmt.Errorf("%w: this node has no HE keys (no key ceremony)", ErrRefused)
	}
	if j.Mode == policies.ModeMasked && r.store.Encrypted(j.Dataset) {
		return nil, fmt.Errorf("%w: dataset %s is encrypted: its sensitive columns are only computed on in mode he", ErrRefused, j.Dataset)
	}
	p, ok := r.state.Policy(j.Policy)
	if !ok {
		return nil, fmt.Errorf("%w: policy %s is gone", ErrRefused, j.Policy)
	}
	q, err := ParseQuery(j.Query)
	if err != nil {
		return nil, err
	}
	t, err := r.store.Table(j.Dataset)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	ctl := Control{MinGroupSize: p.MinGroupSize, Dominance: p.Dominance, Epsilon: p.DP.EpsilonPerQuery, Delta: p.DP.Delta, Mechanism: p.DP.Mechanism,
		MaxIntervalRatio: p.DP.MaxIntervalRatio}
	var res *Result
	if j.Mode == policies.ModeHE {
		res, err = r.executeHE(ctx, j, t, q, ctl)
	} else {
		res, err = Execute(ctx, t, q, ctl, r.cfg.Limits)
	}
	if err != nil {
		return nil, err
	}
	res.Job = j.ID
	return res, res.Seal()
}

// executeHE evaluates an he job on the ciphertexts and has t nodes
// re-encrypt the result to the requester.
func (r *Runner) executeHE(ctx context.Context, j policies.Job, t *Table, q *Query, ctl Control) (*Result, error) {
	keys, err := r.cfg.HE.Keys()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	d, err := r.store.HEData(ctx, j.Dataset, keys.PK)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	ct, lay, _, err := HEEvaluate(ctx, t, d, keys, q, ctl, r.cfg.Limits)
	if err != nil {
		return nil, err
	}
	if r.cfg.Observe != nil {
		r.cfg.Observe("evaluate", time.Since(start))
	}
	out, active, err := r.cfg.HE.Release(ctx, j, ct, lay)
	if err != nil {
		return nil, err
	}
	res := &Result{Rows: [][]any{}, Suppressed: lay.Suppressed, EpsilonSpent: ctl.Epsilon,
		HE: &HEResult{Layout: lay, Ciphertext: heparams.MarshalCiphertext(heparams.Params(), out), Active: active}}
	for _, it := range q.Select {
		res.Columns = append(res.Columns, label(it))
	}
	return res, nil
}
