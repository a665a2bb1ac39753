package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

func table(g *globals) *tabwriter.Writer {
	return tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
}

func needArgs(fs *flag.FlagSet, n int, what string) error {
	if fs.NArg() != n {
		return fmt.Errorf("%s: expected %s", fs.Name(), what)
	}
	return nil
}

func cmdAccountRegister(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	name := fs.String("name", "", "display name")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	k, err := loadKey(g)
	if err != nil {
		return err
	}
	var w api.WriteResponse
	if err := newClient(g).do(ctx, "POST", "/v1/accounts", policies.RegisterDoc{PublicKey: k.PublicKey(), Algorithm: k.Algorithm().String(), Name: *name}, &w); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, w)
	}
	fmt.Fprintf(g.stdout, "registered account %s (entry %d)\n", k.Address(), w.Index)
	return nil
}

func cmdAccountGrant(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	return grantOrRevoke(ctx, g, fs, args, "/v1/accounts/grants", "granted")
}

func cmdAccountRevoke(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	return grantOrRevoke(ctx, g, fs, args, "/v1/accounts/revocations", "revoked")
}

func grantOrRevoke(ctx context.Context, g *globals, fs *flag.FlagSet, args []string, path, did string) error {
	addr := fs.String("address", "", "the account's 40-hex address")
	role := fs.String("role", "", "admin, agency, enterprise, auditor or node")
	org := fs.String("org", "", "organisation (grant only)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *addr == "" || *role == "" {
		return fmt.Errorf("%s: --address and --role are required", fs.Name())
	}
	if _, err := policies.ParseAddress(*addr); err != nil {
		return err
	}
	doc := policies.GrantDoc{Address: *addr, Role: *role, Org: *org}
	var w api.WriteResponse
	if err := newClient(g).do(ctx, "POST", path, doc, &w); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, w)
	}
	fmt.Fprintf(g.stdout, "%s role %s for %s (entry %d)\n", did, *role, *addr, w.Index)
	return nil
}

func cmdAccountShow(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	addr := fs.String("address", "", "account address (default: the key's)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *addr == "" {
		k, err := loadKey(g)
		if err != nil {
			return err
		}
		*addr = k.Address().String()
	}
	var a api.AccountResponse
	if err := newClient(g).do(ctx, "GET", "/v1/accounts/"+*addr, nil, &a); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, a)
	}
	fmt.Fprintf(g.stdout, "%s  name=%s org=%s roles=%s\n", a.Address, a.Name, a.Org, strings.Join(a.Roles, ","))
	return nil
}

// cmdGenesis writes the signed genesis entry for "sandboxd run --genesis".
func cmdGenesis(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	in := fs.String("accounts", "", `JSON {"consortium": "...", "accounts": [{"public_key": "<b64>", "algorithm": "ed25519", "name", "org", "roles": [...]}], "table": {...}}; the table defaults to DESIGN.md's`)
	out := fs.String("out", "", "file to write (base64 of the signed entry)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		return errors.New("genesis: --accounts and --out are required")
	}
	k, err := loadKey(g)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	var gen policies.Genesis
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&gen); err != nil {
		return fmt.Errorf("genesis: %s: %w", *in, err)
	}
	if gen.Table == nil {
		gen.Table = policies.DefaultTable()
	}
	raw, err := audit.GenesisEntry(k, gen, time.Now())
	if err != nil {
		return err
	}
	// Check it the way the ledger will.
	sm := audit.NewStateMachine()
	e, _ := chain.ParseEntry(raw)
	if err := sm.Apply(e, 0, e.Time); err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	if err := os.WriteFile(*out, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o644); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"file": *out, "accounts": len(gen.Accounts)})
	}
	fmt.Fprintf(g.stdout, "genesis with %d accounts written to %s\n", len(gen.Accounts), *out)
	return nil
}

func cmdDatasetRegister(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	name := fs.String("name", "", "dataset name, e.g. tax2025")
	schemaFile := fs.String("schema", "", "schema JSON (CONTRACT.md)")
	file := fs.String("file", "", "the data (CSV, UTF-8, with a header row)")
	regMode := fs.String("mode", "masked", "masked, or he: sensitive columns encrypted under the consortium's collective key")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *name == "" || *schemaFile == "" || *file == "" {
		return errors.New("dataset register: --name, --schema and --file are required")
	}
	sb, err := os.ReadFile(*schemaFile)
	if err != nil {
		return err
	}
	schema, err := policies.ParseSchema(sb)
	if err != nil {
		return fmt.Errorf("%s: %w", *schemaFile, err)
	}
	canon, _ := json.Marshal(schema)
	c := newClient(g)
	// 1. The data goes to the agency's node, which masks and stores it.
	var up api.UploadResponse
	label := "uploading (the node masks as it reads)"
	if *regMode == policies.ModeHE {
		label = "uploading (the node encrypts as it reads)"
	}
	// dataset: the name consortium pseudonym batches are committed for.
	if err := c.upload(ctx, "/v1/uploads?mode="+url.QueryEscape(*regMode)+"&dataset="+url.QueryEscape(*name)+"&schema="+base64.RawURLEncoding.EncodeToString(canon), *file, "text/csv", label, &up); err != nil {
		return err
	}
	// 2. Its digest, rows and schema go on the ledger, signed by the agency.
	doc := policies.DatasetDoc{Name: *name, Schema: *schema, SHA256: up.SHA256, Rows: up.Rows}
	var w api.WriteResponse
	if err := c.do(ctx, "POST", "/v1/datasets", doc, &w); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"id": *name, "rows": up.Rows, "sha256": up.SHA256, "index": w.Index})
	}
	fmt.Fprintf(g.stdout, "dataset %s registered: %d rows, sha256 %s (entry %d)\n", *name, up.Rows, up.SHA256, w.Index)
	return nil
}

func cmdDatasetList(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var out struct {
		Datasets []api.DatasetResponse `json:"datasets"`
	}
	if err := newClient(g).do(ctx, "GET", "/v1/datasets", nil, &out); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	w := table(g)
	fmt.Fprintln(w, "NAME\tOWNER\tORG\tROWS\tCOLUMNS (class)")
	for _, d := range out.Datasets {
		var cols []string
		for _, c := range d.Schema.Columns {
			cols = append(cols, c.Name+" ("+c.Class+")")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", d.Name, d.Owner, d.Org, d.Rows, strings.Join(cols, ", "))
	}
	return w.Flush()
}

func cmdPolicyPublish(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "one policy file"); err != nil {
		return err
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	if _, err := policies.ParsePolicy(b); err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	var w api.WriteResponse
	if err := newClient(g).do(ctx, "POST", "/v1/policies", json.RawMessage(b), &w); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, w)
	}
	fmt.Fprintf(g.stdout, "policy %s published (entry %d)\n", w.ID, w.Index)
	return nil
}

func cmdPolicyList(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var out struct {
		Policies []policies.Policy `json:"policies"`
	}
	if err := newClient(g).do(ctx, "GET", "/v1/policies", nil, &out); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	w := table(g)
	fmt.Fprintln(w, "ID\tDATASET\tPURPOSE\tMODES\tGRANTEES\tEPSILON\tAPPROVAL\tEXPIRES\tSTATE")
	for _, p := range out.Policies {
		state := "active"
		if p.Revoked {
			state = "revoked"
		}
		appr := p.Approval.Mode
		if p.Approval.Mode == "manual" {
			appr = fmt.Sprintf("manual %d", p.Approval.Approvers)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%g/%g\t%s\t%s\t%s\n", p.ID, p.Dataset, p.Purpose, strings.Join(p.Modes, ","),
			strings.Join(p.Grantees, ","), p.DP.EpsilonPerQuery, p.DP.EpsilonBudget, appr, p.Expires.Format("2006-01-02"), state)
	}
	return w.Flush()
}

func cmdPolicyRevoke(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "a policy id"); err != nil {
		return err
	}
	var w api.WriteResponse
	if err := newClient(g).do(ctx, "POST", "/v1/policies/"+fs.Arg(0)+"/revoke", nil, &w); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, w)
	}
	fmt.Fprintf(g.stdout, "policy %s revoked (entry %d)\n", fs.Arg(0), w.Index)
	return nil
}

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
	return nil
}

func cmdJobSubmit(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	mode := fs.String("mode", "masked", "masked or he")
	query := fs.String("query", "", "the SQL query")
	purpose := fs.String("purpose", "", "the purpose, as the policy states it")
	wait := fs.Bool("wait", false, "wait for the job to finish and print its result")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *query == "" {
		return errors.New("job submit: --query is required")
	}
	c := newClient(g)
	if *mode == policies.ModeHE {
		if err := ensureHEKey(ctx, c); err != nil {
			return err
		}
	}
	var j api.JobResponse
	if err := c.do(ctx, "POST", "/v1/jobs", policies.JobDoc{Query: *query, Mode: *mode, Purpose: *purpose}, &j); err != nil {
		return err
	}
	if err := printJob(g, j); err != nil {
		return err
	}
	if j.Status == policies.JobRejected {
		return fmt.Errorf("job %s refused: %s", j.Job, j.Reason)
	}
	if !*wait {
		return nil
	}
	deadline := time.Now().Add(10 * time.Minute)
	for j.Status != policies.JobCompleted {
		switch j.Status {
		case policies.JobFailed, policies.JobRejected:
			return fmt.Errorf("job %s %s: %s", j.Job, j.Status, j.Reason)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("job %s still %s after 10 minutes", j.Job, j.Status)
		}
		// The node answers as soon as the job ends (long poll).
		if err := c.do(ctx, "GET", "/v1/jobs/"+j.Job+"?wait=30s", nil, &j); err != nil {
			return err
		}
	}
	return showResult(ctx, g, c, j.Job)
}

// showResult fetches a result and prints it as a table, or as the
// contract's JSON.
func showResult(ctx context.Context, g *globals, c *client, id string) error {
	var raw json.RawMessage
	if err := c.do(ctx, "GET", "/v1/jobs/"+id+"/result", nil, &raw); err != nil {
		return err
	}
	var res sandbox.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return err
	}
	if res.HE != nil {
		// An he result is encrypted to this account: decrypt it here.
		k, err := c.signer()
		if err != nil {
			return err
		}
		if err := sandbox.DecryptHEResult(&res, k.Seed()); err != nil {
			return fmt.Errorf("decrypting the he result: %w", err)
		}
		res.HE = nil
		if raw, err = json.Marshal(res); err != nil {
			return err
		}
	}
	if g.json {
		_, err := g.stdout.Write(append(raw, '\n'))
		return err
	}
	w := table(g)
	fmt.Fprintln(w, strings.ToUpper(strings.Join(res.Columns, "\t")))
	for _, row := range res.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			switch x := v.(type) {
			case float64:
				cells[i] = strconv.FormatFloat(x, 'f', -1, 64)
			case nil:
				cells[i] = "-"
			default:
				b, _ := json.Marshal(x)
				cells[i] = strings.Trim(string(b), `"`)
			}
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "(%d rows, %d cells suppressed, epsilon %g spent, result sha256 %s)\n", len(res.Rows), res.Suppressed, res.EpsilonSpent, res.ResultSHA256)
	return nil
}

func cmdJobStatus(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "a job id"); err != nil {
		return err
	}
	var j api.JobResponse
	if err := newClient(g).do(ctx, "GET", "/v1/jobs/"+fs.Arg(0), nil, &j); err != nil {
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
	if err := newClient(g).do(ctx, "GET", "/v1/jobs", nil, &out); err != nil {
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
	if err := newClient(g).do(ctx, "POST", "/v1/jobs/"+fs.Arg(0)+"/approve", nil, &j); err != nil {
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
	if err := newClient(g).do(ctx, "POST", "/v1/jobs/"+fs.Arg(0)+"/reject", map[string]string{"reason": *reason}, &j); err != nil {
		return err
	}
	return printJob(g, j)
}

// ensureHEKey registers the account's CKKS public key (derived from its key
// file) the first time it submits an he job.
func ensureHEKey(ctx context.Context, c *client) error {
	k, err := c.signer()
	if err != nil {
		return err
	}
	var a api.AccountResponse
	if err := c.do(ctx, "GET", "/v1/accounts/"+k.Address().String(), nil, &a); err != nil {
		return err
	}
	if a.HEKey != "" {
		return nil
	}
	pk, err := sandbox.RequesterPublicKey(k.Seed())
	if err != nil {
		return err
	}
	return c.do(ctx, "POST", "/v1/accounts/hekey", policies.HEKeyDoc{Params: sandbox.HEParamsName, PublicKey: pk}, nil)
}

func cmdHEStatus(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var c policies.HECeremony
	if err := newClient(g).do(ctx, "GET", "/v1/he", nil, &c); err != nil {
		return err
	}
	return printCeremony(g, c)
}

func cmdHECeremony(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	threshold := fs.Int("threshold", 2, "how many nodes must cooperate to decrypt")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var c policies.HECeremony
	if err := newClient(g).do(ctx, "POST", "/v1/he/ceremony", api.CeremonyRequest{Threshold: *threshold}, &c); err != nil {
		return err
	}
	return printCeremony(g, c)
}

func printCeremony(g *globals, c policies.HECeremony) error {
	if g.json {
		return printJSON(g.stdout, c)
	}
	nodes := make([]string, len(c.Participants))
	for i, p := range c.Participants {
		nodes[i] = p.Node
	}
	fmt.Fprintf(g.stdout, "HE key ceremony %s: any %d of %s can decrypt together, none alone\n", c.ID, c.Threshold, strings.Join(nodes, ", "))
	fmt.Fprintf(g.stdout, "  parameters           %s\n  public key sha256    %s\n  galois keys sha256   %s\n  transcript sha256    %s\n",
		c.Params, c.PublicKey, c.GaloisKeys, c.Transcript)
	return nil
}
