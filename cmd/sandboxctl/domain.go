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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

func table(g *globals) *tabwriter.Writer {
	return tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
}

// plural counts things in English: "1 cell", "2 cells".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
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
	if err := newClient(g).Do(ctx, "POST", "/v1/accounts", policies.RegisterDoc{PublicKey: k.PublicKey(), Algorithm: k.Algorithm().String(), Name: *name}, &w); err != nil {
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
	if err := newClient(g).Do(ctx, "POST", path, doc, &w); err != nil {
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
	if err := newClient(g).Do(ctx, "GET", "/v1/accounts/"+*addr, nil, &a); err != nil {
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
	in := fs.String("accounts", "", `JSON {"consortium": "...", "accounts": [{"public_key": "<b64>", "algorithm": "ed25519", "name", "org", "roles": [...]}], "table": {...}, "limits": {"max_epsilon_per_query": 1, "max_epsilon_budget": 10, "max_delta": 1e-5}}; the table defaults to the one in docs/permissions.md, the limits to these (docs/configuration.md shows a file)`)
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
	schemaFile := fs.String("schema", "", "schema JSON (docs/schema.md)")
	file := fs.String("file", "", "the data (CSV, UTF-8, with a header row)")
	regMode := fs.String("mode", "masked", "masked, or he: sensitive columns encrypted under the consortium's collective key")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *name == "" || *schemaFile == "" || *file == "" {
		return errors.New("dataset register: --name, --schema and --file are required")
	}
	// What can be checked before the upload is, so that a mistake costs
	// no streaming: the name, the mode, the schema, the file, the key, and
	// whether the name is taken. (The node checks them again, and the
	// caller's permission, before it reads the data.)
	if err := policies.CheckDatasetName(*name); err != nil {
		return fmt.Errorf("dataset register: %w", err)
	}
	if *regMode != policies.ModeMasked && *regMode != policies.ModeHE {
		return fmt.Errorf("dataset register: --mode must be masked or he, not %q", *regMode)
	}
	sb, err := os.ReadFile(*schemaFile)
	if err != nil {
		return err
	}
	schema, err := policies.ParseSchema(sb)
	if err != nil {
		return fmt.Errorf("%s: %w", *schemaFile, err)
	}
	if fi, err := os.Stat(*file); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", *file)
	}
	canon, _ := json.Marshal(schema)
	c := newClient(g)
	if _, err := c.Signer(); err != nil {
		return err
	}
	var existing api.DatasetResponse
	switch err := c.Do(ctx, "GET", "/v1/datasets/"+*name, nil, &existing); {
	case err == nil:
		return fmt.Errorf("dataset register: dataset %q is already registered (owner %s); choose another name", *name, existing.Owner)
	case !errors.Is(err, client.ErrNotFound):
		return err
	}
	// 1. The data goes to the agency's node, which masks and stores it.
	var up api.UploadResponse
	label := "uploading (the node masks as it reads)"
	if *regMode == policies.ModeHE {
		label = "uploading (the node encrypts as it reads)"
	}
	// dataset: the name the upload will be registered as; the node checks
	// it before reading any data, and commits consortium pseudonym batches
	// for it.
	if err := upload(ctx, g, c, "/v1/uploads?mode="+url.QueryEscape(*regMode)+"&dataset="+url.QueryEscape(*name)+"&schema="+base64.RawURLEncoding.EncodeToString(canon), *file, "text/csv", label, &up); err != nil {
		return err
	}
	// 2. Its digest, rows and schema go on the ledger, signed by the agency.
	doc := policies.DatasetDoc{Name: *name, Schema: *schema, SHA256: up.SHA256, Rows: up.Rows}
	var w api.WriteResponse
	if err := c.Do(ctx, "POST", "/v1/datasets", doc, &w); err != nil {
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
	if err := newClient(g).Do(ctx, "GET", "/v1/datasets", nil, &out); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	w := table(g)
	fmt.Fprintln(w, "NAME\tOWNER\tORG\tROWS\tBUDGET POPULATION\tCOLUMNS (class)")
	for _, d := range out.Datasets {
		var cols []string
		for _, c := range d.Schema.Columns {
			cols = append(cols, c.Name+" ("+c.Class+")")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", d.Name, d.Owner, d.Org, d.Rows, d.Population, strings.Join(cols, ", "))
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
	if err := newClient(g).Do(ctx, "POST", "/v1/policies", json.RawMessage(b), &w); err != nil {
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
	if err := newClient(g).Do(ctx, "GET", "/v1/policies", nil, &out); err != nil {
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
	if err := newClient(g).Do(ctx, "POST", "/v1/policies/"+fs.Arg(0)+"/revoke", nil, &w); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, w)
	}
	fmt.Fprintf(g.stdout, "policy %s revoked (entry %d)\n", fs.Arg(0), w.Index)
	return nil
}

func cmdHEStatus(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var c policies.HECeremony
	if err := newClient(g).Do(ctx, "GET", "/v1/he", nil, &c); err != nil {
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
	if err := newClient(g).Do(ctx, "POST", "/v1/he/ceremony", api.CeremonyRequest{Threshold: *threshold}, &c); err != nil {
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

func cmdLimitsShow(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var l policies.Limits
	if err := newClient(g).Do(ctx, "GET", "/v1/limits", nil, &l); err != nil {
		return err
	}
	return printLimits(g, l)
}

func cmdLimitsSet(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	eps := fs.Float64("max-epsilon-per-query", 0, "the largest dp.epsilon_per_query a policy may set (unset: as now)")
	budget := fs.Float64("max-epsilon-budget", 0, "the largest dp.epsilon_budget a policy may set (unset: as now)")
	delta := fs.Float64("max-delta", 0, "the ceiling of dp.delta (unset: as now)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	c := newClient(g)
	var l policies.Limits
	if err := c.Do(ctx, "GET", "/v1/limits", nil, &l); err != nil {
		return err
	}
	set := 0
	fs.Visit(func(f *flag.Flag) {
		set++
		switch f.Name {
		case "max-epsilon-per-query":
			l.MaxEpsilonPerQuery = *eps
		case "max-epsilon-budget":
			l.MaxEpsilonBudget = *budget
		case "max-delta":
			l.MaxDelta = *delta
		default:
			set--
		}
	})
	if set == 0 {
		return errors.New("limits set: name at least one of --max-epsilon-per-query, --max-epsilon-budget, --max-delta")
	}
	if err := l.Validate(); err != nil {
		return err
	}
	if err := c.Do(ctx, "POST", "/v1/limits", l, nil); err != nil {
		return err
	}
	return printLimits(g, l)
}

func printLimits(g *globals, l policies.Limits) error {
	if g.json {
		return printJSON(g.stdout, l)
	}
	fmt.Fprintf(g.stdout, "consortium limits: epsilon per query <= %g, epsilon budget <= %g, delta <= %g\n",
		l.MaxEpsilonPerQuery, l.MaxEpsilonBudget, l.MaxDelta)
	return nil
}

func cmdBudgetShow(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var out struct {
		Holder  string               `json:"holder"`
		Budgets []api.BudgetResponse `json:"budgets"`
	}
	if err := newClient(g).Do(ctx, "GET", "/v1/budgets", nil, &out); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	fmt.Fprintf(g.stdout, "budget holder: %s (every account of an organisation draws on its budgets)\n", out.Holder)
	w := table(g)
	fmt.Fprintln(w, "POPULATION\tDATASETS\tHOLDER\tSPENT\tBUDGET")
	for _, b := range out.Budgets {
		fmt.Fprintf(w, "%s\t%s\t%s\t%g\t%g\n", b.Population, strings.Join(b.Datasets, ","), b.Holder, b.Spent, b.Budget)
	}
	return w.Flush()
}
