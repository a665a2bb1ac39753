package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// Report is what a verification finds (sandboxctl ledger verify --json
// prints it): audit's report of the replay and the verifier's own checks.
type Report struct {
	audit.Report
	Source      string            `json:"source"`
	Checkpoint  *ReportCheckpoint `json:"checkpoint"`
	Consistency string            `json:"consistency"`
	NodeState   string            `json:"node_state"`
	Warnings    []string          `json:"warnings,omitempty"`
	Elapsed     string            `json:"elapsed"`
	Checks      map[string]bool   `json:"checks"`
	// ResultsChecked counts delivered results re-hashed against the ledger.
	ResultsChecked int `json:"results_checked"`
}

// ReportCheckpoint is the checkpoint the ledger was verified against.
type ReportCheckpoint struct {
	Size    uint64   `json:"size"`
	Root    string   `json:"root"`
	Signers []string `json:"signers"`
	Trusted bool     `json:"trusted"`
	Time    string   `json:"time"`
}

// fail records the first failure.
func (r *Report) fail(f *audit.Failure) {
	if f != nil && r.FirstFailure == nil {
		r.FirstFailure = f
	}
}

// VerifyConfig says what a verification trusts and where it keeps what it
// verified.
type VerifyConfig struct {
	// Trust are the checkpoint keys the checkpoint must be signed by; none:
	// the signature is not checked (the report says so).
	Trust []*chain.CheckpointVerifier
	// StateFile keeps the last verified checkpoint for the next run's
	// rollback check; empty: audit.LastVerifiedPath of the origin. It is
	// written only when every check holds against trusted keys.
	StateFile string
	// Progress, when not nil, is called with the entries verified so far
	// and the checkpoint's size.
	Progress func(done, total int64)
}

// Verification is a finished verification: its report, and what the
// report's HTML view (audit.NewView) is drawn from.
type Verification struct {
	Report     *Report
	Checkpoint *chain.Checkpoint
	// Machine is the state replayed from the ledger.
	Machine *policies.Machine
	Blocks  []audit.BlockInfo
	// StateFile is where the last verified checkpoint is kept; SaveErr why
	// it could not be written (every check held, but the next run's
	// rollback check will not see this one).
	StateFile string
	SaveErr   error
}

// View is the report's view for audit.WriteHTML.
func (v *Verification) View() *audit.View {
	return audit.NewView(&v.Report.Report, v.Machine, v.Checkpoint, v.Report.Checkpoint.Trusted, v.Blocks)
}

// Verify verifies the ledger of c's node up to its checkpoint: every check
// of audit.Verify (signatures, hash chain, Merkle roots, the replayed
// state and its invariants, each job's plan derived again from its SQL),
// then the node's state hash against the replayed one, the ledger's
// consistency with the checkpoint verified last time, and each delivered
// result's hash against the committed one. The caller must hold
// permission read.all. An error means the verification could not run; a
// check that fails is the report's FirstFailure (Report.OK false).
func Verify(ctx context.Context, c *Client, cfg VerifyConfig) (*Verification, error) {
	start := time.Now()
	cp, err := c.Checkpoint(ctx, cfg.Trust)
	if err != nil {
		return nil, err
	}
	v, err := replay(ctx, NewSource(c), cp, c.Server(), cfg)
	if err != nil {
		return nil, err
	}
	if v.Report.FirstFailure == nil {
		compareNodeState(ctx, c, v)
	}
	if err := checkConsistency(ctx, v, cfg, c.VerifyConsistency); err != nil {
		return nil, err
	}
	if v.Report.FirstFailure == nil {
		checkResults(ctx, c, v)
	}
	finish(v, cfg, start)
	return v, nil
}

// VerifyExport verifies an export file (WriteExport) as Verify verifies a
// node, offline: the node's state and results are not compared, and
// consistency with the checkpoint verified last time is checked by
// recomputing its root from the export.
func VerifyExport(ctx context.Context, path string, cfg VerifyConfig) (*Verification, error) {
	start := time.Now()
	ex, err := OpenExport(path)
	if err != nil {
		return nil, err
	}
	defer ex.Close()
	cp, err := CheckCheckpoint(ex.Checkpoint(), cfg.Trust)
	if err != nil {
		return nil, err
	}
	v, err := replay(ctx, ex, cp, path, cfg)
	if err != nil {
		return nil, err
	}
	v.Report.NodeState = "not compared (offline)"
	prove := func(_ context.Context, size uint64, root chain.Hash, _ *chain.Checkpoint) error {
		got, err := ExportRoot(path, size)
		if err == nil && got != root {
			err = errors.New("roots differ")
		}
		if err != nil {
			return fmt.Errorf("%w: %v", audit.ErrNotExtension, err)
		}
		return nil
	}
	if err := checkConsistency(ctx, v, cfg, prove); err != nil {
		return nil, err
	}
	finish(v, cfg, start)
	return v, nil
}

// replay runs audit's verification over src and starts the report.
func replay(ctx context.Context, src audit.Source, cp *chain.Checkpoint, source string, cfg VerifyConfig) (*Verification, error) {
	if cfg.Progress != nil {
		src = &countingSource{src: src, total: int64(cp.Size), progress: cfg.Progress}
	}
	// Every job's plan is derived again from its SQL and compared with
	// the plan the policy was checked against.
	sm := audit.NewStateMachine()
	sm.Plan = sandbox.DerivePlan
	blocks := &audit.BlockLog{Source: src}
	ar, _, err := audit.VerifyWith(ctx, sm, blocks, cp)
	if err != nil {
		return nil, err
	}
	trusted := len(cfg.Trust) > 0
	rep := &Report{Report: *ar, Source: source, Checks: map[string]bool{}, NodeState: "not compared (offline)"}
	rep.Checkpoint = &ReportCheckpoint{Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]), Signers: cp.Signer, Trusted: trusted, Time: cp.Time.Format(time.RFC3339)}
	rep.Checks["checkpoint_signature"] = trusted
	if !trusted {
		rep.Warnings = append(rep.Warnings, "no trusted checkpoint keys: the checkpoint's signature was not checked (use --trust)")
	}
	ok := rep.FirstFailure == nil
	for _, k := range []string{"entry_signatures", "block_chain", "merkle_root", "state_replay", "invariants"} {
		rep.Checks[k] = ok
	}
	return &Verification{Report: rep, Checkpoint: cp, Machine: sm.M, Blocks: blocks.Blocks}, nil
}

// compareNodeState compares the replayed state hash with the node's
// (audit.CompareNodeState).
func compareNodeState(ctx context.Context, c *Client, v *Verification) {
	rep := v.Report
	var st api.StateResponse
	if err := c.Do(ctx, "GET", "/v1/ledger/state", nil, &st); err != nil {
		rep.NodeState = "not compared: " + err.Error()
		return
	}
	ns := audit.CompareNodeState(rep.StateHash, v.Checkpoint.Size, st.Applied, st.StateHash)
	rep.NodeState = ns.Status
	if ns.Matches {
		rep.Checks["node_state"] = true
	}
	rep.fail(ns.Failure)
}

// checkConsistency checks the ledger extends the checkpoint verified last
// time from its origin (audit.CheckConsistency).
func checkConsistency(ctx context.Context, v *Verification, cfg VerifyConfig, prove audit.ProveFunc) error {
	rep := v.Report
	v.StateFile = cfg.StateFile
	if v.StateFile == "" {
		var err error
		if v.StateFile, err = audit.LastVerifiedPath(v.Checkpoint.Origin); err != nil {
			return err
		}
	}
	rep.Consistency = "first run: nothing to compare"
	if rep.FirstFailure != nil {
		return nil
	}
	prev, err := audit.LoadLastVerified(v.StateFile)
	if err != nil {
		return err
	}
	cons, err := audit.CheckConsistency(ctx, prev, v.Checkpoint, prove)
	if err != nil {
		return err
	}
	rep.Consistency = cons.Status
	if cons.Behind {
		rep.Warnings = append(rep.Warnings, cons.Status)
	}
	if cons.Checked || cons.Failure != nil {
		rep.Checks["consistency"] = cons.Checked
	}
	rep.fail(cons.Failure)
	return nil
}

// checkResults re-hashes each completed job's result, as the node delivers
// it, against the hash the ledger holds (sandbox.CheckResult; the auditor
// may read every result).
func checkResults(ctx context.Context, c *Client, v *Verification) {
	rep := v.Report
	checked := 0
	for _, ev := range rep.Timeline {
		if ev.Status != "completed" {
			continue
		}
		var raw json.RawMessage
		if err := c.Do(ctx, "GET", "/v1/jobs/"+ev.Job+"/result", nil, &raw); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("result of %s not checked: %v", ev.Job, err))
			continue
		}
		if _, err := sandbox.CheckResult(raw, ev.ResultHash); err != nil {
			rep.fail(&audit.Failure{Index: int64(v.Checkpoint.Size), Reason: fmt.Sprintf("the result the node delivers for %s does not hash to the committed %s", ev.Job, ev.ResultHash)})
			break
		}
		checked++
	}
	rep.Checks["result_hashes"] = rep.FirstFailure == nil
	rep.ResultsChecked = checked
}

// finish settles the verdict and keeps the checkpoint for the next run's
// rollback check when every check holds against trusted keys.
func finish(v *Verification, cfg VerifyConfig, start time.Time) {
	rep := v.Report
	rep.OK = rep.FirstFailure == nil
	if rep.OK && len(cfg.Trust) > 0 {
		v.SaveErr = audit.SaveLastVerified(v.StateFile, v.Checkpoint)
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
}

// countingSource reports the entries a verification reads.
type countingSource struct {
	src      audit.Source
	done     int64
	total    int64
	progress func(done, total int64)
}

func (s *countingSource) Next(ctx context.Context) (*chain.Block, [][]byte, error) {
	b, e, err := s.src.Next(ctx)
	s.done += int64(len(e))
	s.progress(s.done, s.total)
	return b, e, err
}
