package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// Appender commits entries (a chain.Node).
type Appender interface {
	Append(ctx context.Context, entry []byte) (chain.Receipt, error)
}

// JobSource is what the runner reads of the committed state.
type JobSource interface {
	Jobs(keep func(policies.Job) bool) []policies.Job
	Policy(id string) (policies.Policy, bool)
}

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	Name    string        // this node's name (recorded in job.start)
	Key     *chain.Key    // this node's key: it signs job.start/complete/fail
	Nonces  *chain.Nonces // shared with everything else that signs with Key
	Poll    time.Duration // how often committed jobs are looked at
	Timeout time.Duration // deadline of one job
	Limits  Limits
	Logger  *slog.Logger
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
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	me := policies.Address(r.cfg.Key.Address())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		jobs := r.state.Jobs(func(j policies.Job) bool {
			return (j.Status == policies.JobAuthorised || (j.Status == policies.JobRunning && j.Runner == me)) && r.store.Has(j.Dataset)
		})
		for _, j := range jobs {
			if ctx.Err() != nil {
				return
			}
			r.runOne(ctx, j)
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
	_, err = r.node.Append(actx, raw)
	return err
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
}

func (r *Runner) execute(ctx context.Context, j policies.Job) (*Result, error) {
	if j.Mode != policies.ModeMasked {
		return nil, fmt.Errorf("%w: mode %s is not available on this node yet", ErrRefused, j.Mode)
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
	ectx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	ctl := Control{MinGroupSize: p.MinGroupSize, Dominance: p.Dominance, Epsilon: p.DP.EpsilonPerQuery, Delta: p.DP.Delta, Mechanism: p.DP.Mechanism}
	res, err := Execute(ectx, t, q, ctl, r.cfg.Limits)
	if err != nil {
		return nil, err
	}
	res.Job = j.ID
	return res, res.Seal()
}
