// Command sandboxctl is the client of the data-sandbox consortium for
// agencies, enterprises, auditors and admins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "sandboxctl:", oneLine(err.Error()))
		os.Exit(1)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// globals are the flags every command takes.
type globals struct {
	server string
	key    string
	ca     string
	json   bool
	stdout io.Writer
	stderr io.Writer
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", g.server, "node URL (env SANDBOX_SERVER)")
	fs.StringVar(&g.key, "key", g.key, "account key file (env SANDBOX_KEY)")
	fs.StringVar(&g.ca, "ca", g.ca, "CA certificate (PEM) that signed the nodes' https certificates (env SANDBOX_CA)")
	fs.BoolVar(&g.json, "json", g.json, "print JSON for scripts")
}

type command struct {
	name, summary, usage, example string
	run                           func(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error
}

func commands() []command {
	return append([]command{
		{"key new", "create a key pair", "--out FILE [--algorithm ed25519|ml-dsa-65]", "sandboxctl key new --out me.key", cmdKeyNew},
		{"health", "a node's status", "", "sandboxctl --server http://127.0.0.1:8080 health", cmdHealth},
		{"account register", "register the key's account on the ledger", "[--name NAME]", "sandboxctl --key me.key account register --name 'Bank A'", cmdAccountRegister},
		{"account grant", "grant a role to an account (admin)", "--address A --role R [--org O]", "sandboxctl --key admin.key account grant --address 1f2e... --role enterprise --org banka", cmdAccountGrant},
		{"account revoke", "revoke a role (admin)", "--address A --role R", "sandboxctl --key admin.key account revoke --address 1f2e... --role enterprise", cmdAccountRevoke},
		{"account show", "an account's roles and organisation", "[--address A]", "sandboxctl --key me.key account show", cmdAccountShow},
		{"tls ca", "create a CA for the consortium's TLS certificates (admin)", "--out-dir DIR [--name NAME]", "sandboxctl tls ca --out-dir pki", cmdTLSCA},
		{"tls cert", "issue a node's TLS certificate from the CA (admin)", "--ca-dir DIR --name NODE --host H[,H...] --out-dir DIR", "sandboxctl tls cert --ca-dir pki --name node1 --host node1.gov.example,10.0.0.1 --out-dir node1", cmdTLSCert},
		{"genesis", "write the signed genesis entry for sandboxd run --genesis (admin)", "--accounts FILE --out FILE", "sandboxctl --key admin.key genesis --accounts accounts.json --out genesis.b64", cmdGenesis},
		{"dataset register", "register a dataset: schema, digest and rows (agency)", "--name N --schema S.json --file DATA.csv [--mode masked|he]", "sandboxctl --key agency1.key dataset register --name tax2025 --schema tax.json --file tax.csv", cmdDatasetRegister},
		{"dataset list", "the catalogue: schemas, classes, owners; never values", "", "sandboxctl dataset list", cmdDatasetList},
		{"policy publish", "publish a policy for your dataset (agency)", "FILE.json", "sandboxctl --key agency1.key policy publish policy.json", cmdPolicyPublish},
		{"policy list", "the policies", "", "sandboxctl policy list", cmdPolicyList},
		{"policy revoke", "revoke a policy (its agency)", "ID", "sandboxctl --key agency1.key policy revoke pol-7", cmdPolicyRevoke},
		{"he status", "the consortium's HE key ceremony: nodes, threshold, key digests", "", "sandboxctl --key auditor.key he status", cmdHEStatus},
		{"he ceremony", "have the node coordinate the HE key ceremony among the consortium's nodes (admin, once)", "[--threshold T]", "sandboxctl --key admin.key he ceremony --threshold 2", cmdHECeremony},
		{"budget show", "the privacy budgets your organisation spent, per population of data subjects", "", "sandboxctl --key enterprise.key budget show", cmdBudgetShow},
		{"limits show", "the consortium-wide DP limits policies must stay within", "", "sandboxctl limits show", cmdLimitsShow},
		{"limits set", "change the consortium-wide DP limits (admin)", "[--max-epsilon-per-query E] [--max-epsilon-budget B] [--max-delta D]", "sandboxctl --key admin.key limits set --max-epsilon-per-query 1 --max-epsilon-budget 10 --max-delta 1e-5", cmdLimitsSet},
		{"job submit", "submit an analysis job (enterprise)", "--mode masked|he --query SQL [--purpose TEXT] [--list NAME=FILE.csv:COLUMN] [--wait [--wait-timeout 10m]]", `sandboxctl --key enterprise.key job submit --mode masked --purpose 'credit risk statistics' --query 'SELECT region, AVG(income) FROM tax2025 GROUP BY region'`, cmdJobSubmit},
		{"job status", "a job's status", "ID", "sandboxctl job status job-12", cmdJobStatus},
		{"job list", "the jobs you may see", "", "sandboxctl job list", cmdJobList},
		{"job result", "a completed job's result", "ID", "sandboxctl job result job-12", cmdJobResult},
		{"job approve", "approve a pending job on your dataset (agency)", "ID", "sandboxctl --key agency1.key job approve job-12", cmdJobApprove},
		{"job reject", "reject a pending job on your dataset (agency)", "ID --reason TEXT", "sandboxctl --key agency1.key job reject job-12 --reason 'purpose too broad'", cmdJobReject},
		{"ledger append", "sign and submit an entry", "--kind KIND [--payload JSON] [--nonce N]", `sandboxctl --key agency1.key ledger append --kind note.demo --payload '{"msg":"hello"}'`, cmdLedgerAppend},
		{"ledger checkpoint", "the node's latest signed checkpoint", "", "sandboxctl ledger checkpoint", cmdLedgerCheckpoint},
		{"ledger entries", "list raw entries", "[--start I] [--end J]", "sandboxctl ledger entries --start 0 --end 10", cmdLedgerEntries},
		{"ledger verify", "download (or read) and verify the whole ledger", "[--trust FILE] [--out report.json] [--html report.html] [--state FILE] [--file EXPORT]", "sandboxctl --key auditor.key ledger verify --trust dev/trust.vkeys --out report.json", cmdLedgerVerify},
		{"ledger export", "write the ledger to a file for offline audit", "--out FILE", "sandboxctl --key auditor.key ledger export --out ledger.zst", cmdLedgerExport},
		{"audit access", "who used a dataset, when, for what purpose, with what result (auditor)", "--dataset D", "sandboxctl --key auditor.key audit access --dataset tax2025", cmdAuditAccess},
		{"console", "a web console on this machine for the key's account (requests signed here)", "[--listen 127.0.0.1:8090] [--trust FILE]", "sandboxctl --key agency1.key console", cmdConsole},
		{"ledger proof", "fetch and verify an entry's inclusion proof", "--index I | --job ID [--trust FILE | --insecure]", "sandboxctl --key enterprise.key ledger proof --job job-7 --trust dev/trust.vkeys", cmdLedgerProof},
	}, pseudonymCommands()...)
}

// parseArgs parses flags wherever they appear among the positional
// arguments ("job reject job-3 --reason x" as well as "--reason x job-3").
func parseArgs(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "sandboxctl: client of the data-sandbox consortium\n\nUsage: sandboxctl [--server URL] [--key FILE] [--ca FILE] [--json] COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"sandboxctl COMMAND --help\" for a command's flags and an example.")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &globals{server: os.Getenv("SANDBOX_SERVER"), key: os.Getenv("SANDBOX_KEY"), ca: os.Getenv("SANDBOX_CA"), stdout: stdout, stderr: stderr}
	if g.server == "" {
		g.server = "http://127.0.0.1:8080"
	}
	top := flag.NewFlagSet("sandboxctl", flag.ContinueOnError)
	top.SetOutput(stderr)
	top.Usage = func() { usage(stderr) }
	g.register(top)
	if err := top.Parse(args); err != nil {
		return err
	}
	rest := top.Args()
	if len(rest) == 0 {
		usage(stderr)
		return errors.New("no command given")
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(rest) < len(words) || strings.Join(rest[:len(words)], " ") != c.name {
			continue
		}
		fs := flag.NewFlagSet("sandboxctl "+c.name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		g.register(fs)
		fs.Usage = func() {
			fmt.Fprintf(stderr, "Usage: sandboxctl %s %s\n\n%s.\n\nExample:\n  %s\n\nFlags:\n", c.name, c.usage, c.summary, c.example)
			fs.PrintDefaults()
		}
		return c.run(ctx, g, fs, rest[len(words):])
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", strings.Join(rest, " "))
}
