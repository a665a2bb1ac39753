package main

// The job commands: submit (waiting for the result), status, list, result
// (an he result decrypted here, with the key file), approve and reject.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

func printJob(g *globals, j api.JobResponse) error {
	if g.json {
		return printJSON(g.stdout, j)
	}
	fmt.Fprintf(g.stdout, "job %s: %s\n", j.Job, j.Status)
	if j.Reason != "" {
		fmt.Fprintf(g.stdout, "  reason:   %s\n", j.Reason)
	}
	if j.Policy != "" {
		fmt.Fprintf(g.stdout, "  dataset:  %s (mode %s, policy %s, epsilon %g)\n", j.Dataset, j.Mode, j.Policy, j.Epsilon)
	} else {
		fmt.Fprintf(g.stdout, "  dataset:  %s (mode %s)\n", j.Dataset, j.Mode)
	}
	fmt.Fprintf(g.stdout, "  query:    %s\n", j.Query)
	if j.Needed > 0 {
		fmt.Fprintf(g.stdout, "  approvals: %d of %d\n", len(j.Approvals), j.Needed)
	}
	if c := j.Charge; c != nil {
		fmt.Fprintf(g.stdout, "  budget:   %g charged to %s on %s\n", c.Epsilon, c.Holder, strings.Join(c.Populations, ", "))
	}
	return nil
}

func cmdJobSubmit(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	mode := fs.String("mode", "masked", "masked or he")
	query := fs.String("query", "", "the SQL query")
	purpose := fs.String("purpose", "", "the purpose, as the policy states it")
	wait := fs.Bool("wait", false, "wait for the job to finish and print its result")
	waitTimeout := fs.Duration("wait-timeout", 10*time.Minute, "with --wait: give up after this long (the job goes on; check it later with job status)")
	list := fs.String("list", "", "NAME=FILE.csv:COLUMN: join your own ids as the table NAME; the file never leaves this machine (sandboxctl stays until the job ends)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *query == "" {
		return errors.New("job submit: --query is required")
	}
	doc := policies.JobDoc{Query: *query, Mode: *mode, Purpose: *purpose}
	var lj *listJob
	if *list != "" {
		var err error
		if lj, err = newListJob(*query, *list); err != nil {
			return err
		}
		doc.List = lj.doc
	}
	c := newClient(g)
	if *mode == policies.ModeHE {
		if err := ensureHEKey(ctx, c); err != nil {
			return err
		}
	}
	var j api.JobResponse
	if err := c.Do(ctx, "POST", "/v1/jobs", doc, &j); err != nil {
		return err
	}
	// With --wait --json, the one document printed is the result with the
	// job's fields beside it (or the job alone if it ends without one).
	jsonLater := *wait && g.json
	if !jsonLater {
		if err := printJob(g, j); err != nil {
			return err
		}
	}
	if j.Status == policies.JobRejected {
		if jsonLater {
			printJob(g, j)
		}
		return fmt.Errorf("job %s refused: %s", j.Job, j.Reason)
	}
	if lj != nil {
		var err error
		if j, err = shipList(ctx, g, c, j, lj.key, lj.file, *waitTimeout); err != nil {
			return err
		}
	}
	if !*wait {
		return nil
	}
	j, err := waitJob(ctx, g, c, j, *waitTimeout)
	if err != nil {
		if jsonLater && j.Job != "" {
			printJob(g, j) // the job as it ended (or still is): one document
		}
		return err
	}
	if jsonLater {
		return printJobResult(ctx, g, c, j)
	}
	return showResult(ctx, g, c, j.Job)
}

// waitJob follows a submitted job until it completes, fails or is
// rejected, or until timeout. While it waits for manual approvals it says
// so on stderr (by whom, how many) each time the count changes; on timeout
// it fails with the job id to check later. It returns the job as last seen.
func waitJob(ctx context.Context, g *globals, c *client.Client, j api.JobResponse, timeout time.Duration) (api.JobResponse, error) {
	deadline := time.Now().Add(timeout)
	said := -1
	for j.Status != policies.JobCompleted {
		switch j.Status {
		case policies.JobFailed, policies.JobRejected:
			return j, fmt.Errorf("job %s %s: %s", j.Job, j.Status, j.Reason)
		case policies.JobPending:
			if len(j.Approvals) != said {
				said = len(j.Approvals)
				fmt.Fprintf(g.stderr, "job %s waits for approval by %s: %d of %d approvals so far; waiting up to %s (--wait-timeout)\n",
					j.Job, approverOf(ctx, c, j.Dataset), len(j.Approvals), j.Needed, timeout)
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			what := j.Status
			if j.Status == policies.JobPending {
				what = fmt.Sprintf("pending approval (%d of %d)", len(j.Approvals), j.Needed)
			}
			return j, fmt.Errorf("job %s still %s after %s; check it later with: sandboxctl job status %s", j.Job, what, timeout, j.Job)
		}
		// The node answers as soon as the job moves (long poll).
		w := min(left, 30*time.Second).Round(time.Millisecond)
		if err := c.Do(ctx, "GET", "/v1/jobs/"+j.Job+"?wait="+w.String(), nil, &j); err != nil {
			return j, err
		}
	}
	return j, nil
}

// approverOf names who approves jobs on a dataset: its owner's agency.
func approverOf(ctx context.Context, c *client.Client, dataset string) string {
	var d api.DatasetResponse
	if err := c.Do(ctx, "GET", "/v1/datasets/"+url.PathEscape(dataset), nil, &d); err != nil || d.Org == "" {
		return "the agency owning dataset " + dataset
	}
	return fmt.Sprintf("agency %s (owner of dataset %s)", d.Org, dataset)
}

// printJobResult prints a completed job's result as one JSON document: the
// result's fields (job result --json) with the job's fields beside them.
func printJobResult(ctx context.Context, g *globals, c *client.Client, j api.JobResponse) error {
	raw, _, err := fetchResult(ctx, c, j.Job)
	if err != nil {
		return err
	}
	doc := map[string]json.RawMessage{}
	jb, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(jb, &doc); err != nil {
		return err
	}
	var res map[string]json.RawMessage
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("job %s: bad result: %w", j.Job, err)
	}
	for k, v := range res {
		doc[k] = v // the result's own fields win (they are the same job)
	}
	return printJSON(g.stdout, doc)
}

// fetchResult fetches a result, decrypting an he result with the key file,
// and returns it as the contract's JSON and decoded.
func fetchResult(ctx context.Context, c *client.Client, id string) (json.RawMessage, *sandbox.Result, error) {
	var raw json.RawMessage
	if err := c.Do(ctx, "GET", "/v1/jobs/"+id+"/result", nil, &raw); err != nil {
		return nil, nil, err
	}
	var res sandbox.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, nil, err
	}
	if res.HE != nil {
		// An he result is encrypted to this account: decrypt it here.
		k, err := c.Signer()
		if err != nil {
			return nil, nil, err
		}
		if err := sandbox.DecryptHEResult(&res, k.Seed()); err != nil {
			return nil, nil, fmt.Errorf("decrypting the he result: %w", err)
		}
		res.HE = nil
		if raw, err = json.Marshal(res); err != nil {
			return nil, nil, err
		}
	}
	return raw, &res, nil
}

// showResult fetches a result and prints it as a table, or as the
// contract's JSON.
func showResult(ctx context.Context, g *globals, c *client.Client, id string) error {
	raw, res, err := fetchResult(ctx, c, id)
	if err != nil {
		return err
	}
	if g.json {
		_, err := g.stdout.Write(append(raw, '\n'))
		return err
	}
	w := table(g)
	fmt.Fprintln(w, strings.ToUpper(strings.Join(res.Columns, "\t")))
	for r, row := range res.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			var nz *sandbox.Noise
			if r < len(res.Noise) && i < len(res.Noise[r]) {
				nz = res.Noise[r][i]
			}
			cells[i] = formatCell(v, nz)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "(%s, %s suppressed, epsilon %g spent, result sha256 %s)\n", plural(len(res.Rows), "row"), plural(res.Suppressed, "cell"), res.EpsilonSpent, res.ResultSHA256)
	if res.TooNoisy > 0 {
		fmt.Fprintf(g.stdout, "(%s withheld as too noisy to release, by the policy's max_interval_ratio)\n", plural(res.TooNoisy, "value"))
	}
	if len(res.Noise) > 0 {
		fmt.Fprintln(g.stdout, "(± is the 95% interval's half-width, from the noise mechanism and the columns' bounds; --json gives each interval)")
	}
	return nil
}

// formatCell prints a released value, with "± h" when its noise is known:
// h is the larger distance from the value to an end of its 95% interval,
// and both are rounded to h's second significant digit.
func formatCell(v any, nz *sandbox.Noise) string {
	switch x := v.(type) {
	case float64:
		if nz == nil || nz.CI95 == nil {
			if nz != nil {
				return strconv.FormatFloat(x, 'f', -1, 64) + " ± ∞"
			}
			return strconv.FormatFloat(x, 'f', -1, 64)
		}
		h := math.Max(x-nz.CI95[0], nz.CI95[1]-x)
		d := 0
		if h > 0 {
			d = max(0, 1-int(math.Floor(math.Log10(h))))
		}
		return groupDigits(strconv.FormatFloat(x, 'f', d, 64)) + " ± " + groupDigits(strconv.FormatFloat(h, 'f', d, 64))
	case nil:
		if nz != nil && nz.TooNoisy {
			return "too noisy"
		}
		return "-"
	default:
		b, _ := json.Marshal(x)
		s := strings.Trim(string(b), `"`)
		if nz != nil && len(nz.CI95Bins) > 0 {
			h := 0.0
			for _, ci := range nz.CI95Bins {
				h = math.Max(h, (ci[1]-ci[0])/2)
			}
			s += " (each ± " + groupDigits(strconv.FormatFloat(h, 'f', 0, 64)) + ")"
		}
		return s
	}
}

// groupDigits puts thousands separators into a formatted number.
func groupDigits(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		return sign + b.String() + "." + frac
	}
	return sign + b.String()
}

func cmdJobStatus(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "a job id"); err != nil {
		return err
	}
	var j api.JobResponse
	if err := newClient(g).Do(ctx, "GET", "/v1/jobs/"+fs.Arg(0), nil, &j); err != nil {
		return err
	}
	return printJob(g, j)
}

func cmdJobList(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var out struct {
		Jobs []api.JobResponse `json:"jobs"`
	}
	if err := newClient(g).Do(ctx, "GET", "/v1/jobs", nil, &out); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	w := table(g)
	fmt.Fprintln(w, "JOB\tSTATUS\tDATASET\tMODE\tEPSILON\tREASON")
	for _, j := range out.Jobs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%g\t%s\n", j.Job, j.Status, j.Dataset, j.Mode, j.Epsilon, j.Reason)
	}
	return w.Flush()
}

func cmdJobResult(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "a job id"); err != nil {
		return err
	}
	return showResult(ctx, g, newClient(g), fs.Arg(0))
}

func cmdJobApprove(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "a job id"); err != nil {
		return err
	}
	var j api.JobResponse
	if err := newClient(g).Do(ctx, "POST", "/v1/jobs/"+fs.Arg(0)+"/approve", nil, &j); err != nil {
		return err
	}
	return printJob(g, j)
}

func cmdJobReject(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	reason := fs.String("reason", "", "why (recorded on the ledger)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "a job id"); err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return errors.New("job reject: --reason is required")
	}
	var j api.JobResponse
	if err := newClient(g).Do(ctx, "POST", "/v1/jobs/"+fs.Arg(0)+"/reject", map[string]string{"reason": *reason}, &j); err != nil {
		return err
	}
	return printJob(g, j)
}

// ensureHEKey registers the account's CKKS public key (derived from its key
// file) the first time it submits an he job.
func ensureHEKey(ctx context.Context, c *client.Client) error {
	k, err := c.Signer()
	if err != nil {
		return err
	}
	var a api.AccountResponse
	if err := c.Do(ctx, "GET", "/v1/accounts/"+k.Address().String(), nil, &a); err != nil {
		return err
	}
	if a.HEKey != "" {
		return nil
	}
	pk, err := heparams.RequesterPublicKey(k.Seed())
	if err != nil {
		return err
	}
	return c.Do(ctx, "POST", "/v1/accounts/hekey", policies.HEKeyDoc{Params: heparams.Name, PublicKey: pk}, nil)
}
