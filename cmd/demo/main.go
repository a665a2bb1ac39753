// Command demo tells the product's story end to end with the real binaries:
// it starts a local consortium (sandboxd dev), acts as its users through
// sandboxctl, verifies the ledger as an auditor, and shuts everything down.
// "make demo" runs it. It exits non-zero if any step fails.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
}

type demo struct {
	bin, dir string
	out      io.Writer
	http     []string
	step     int
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "directory holding sandboxd and sandboxctl")
	dir := fs.String("dir", "", "consortium directory (default: a new temporary one, removed afterwards)")
	keep := fs.Bool("keep", false, "keep the temporary directory")
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, `Usage: demo [--bin DIR] [--dir DIR] [--keep]

Tells the product's story with the real binaries: starts a local consortium
of three agency nodes (sandboxd dev) on 127.0.0.1, acts as each user through
sandboxctl (an agency registers data and publishes a policy, an enterprise
runs masked and he jobs, refusals), verifies the ledger as an auditor, and
stops everything. "make demo" builds the binaries and runs it. It exits
non-zero if any step fails.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	d := &demo{bin: *bin, out: out}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "sandbox-demo-")
		if err != nil {
			return err
		}
		if !*keep {
			defer os.RemoveAll(tmp)
		}
		*dir = tmp
	}
	d.dir = *dir
	base, err := freeBase(3)
	if err != nil {
		return err
	}

	d.say("A consortium of three agencies starts: one node each, a Raft-replicated signed ledger")
	logf, err := os.Create(filepath.Join(d.dir, "sandboxd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	srv := exec.Command(filepath.Join(d.bin, "sandboxd"), "dev", "--dir", filepath.Join(d.dir, "consortium"), "--nodes", "3",
		"--http", fmt.Sprintf("127.0.0.1:%d", base), "--raft", fmt.Sprintf("127.0.0.1:%d", base+100))
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		return fmt.Errorf("starting sandboxd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = srv.Process.Kill()
			<-exited
		}
	}()
	for i := 0; i < 3; i++ {
		d.http = append(d.http, fmt.Sprintf("http://127.0.0.1:%d", base+i))
	}
	for i := range d.http {
		// Each node is asked once every node knows the leader (again
		// before each: on a loaded machine an election can start between).
		if err := d.waitHealthy(ctx, exited, 30*time.Second); err != nil {
			return err
		}
		if err := d.ctl(i, "", "health"); err != nil {
			return err
		}
	}

	keys := filepath.Join(d.dir, "consortium", "keys")
	key := func(name string) string { return filepath.Join(keys, name+".key") }
	files, err := writeData(d.dir)
	if err != nil {
		return err
	}

	d.say("The tax agency registers its dataset: the schema's column classes and the file's digest go on the ledger, never the values")
	if err := d.ctl(0, key("agency1"), "dataset", "register", "--name", "tax2025", "--schema", files["schema"], "--file", files["csv"]); err != nil {
		return err
	}
	if err := d.ctl(1, key("enterprise"), "dataset", "list"); err != nil {
		return err
	}

	d.say("It publishes a policy: who may ask what, for which purpose, with which privacy budget")
	if err := d.ctl(0, key("agency1"), "policy", "publish", files["policy"]); err != nil {
		return err
	}
	if err := d.ctl(2, key("enterprise"), "policy", "list"); err != nil {
		return err
	}

	d.say("The enterprise asks for average income by region (masked mode): the policy authorises it and debits 0.5 of its epsilon budget; the tax agency's node runs it on the masked data")
	jobJSON, err := d.ctlOut(1, key("enterprise"), "--json", "job", "submit", "--mode", "masked", "--purpose", "credit risk statistics",
		"--query", "SELECT region, COUNT(*) AS people, AVG(income) AS avg_income FROM tax2025 WHERE age >= 30 GROUP BY region ORDER BY region")
	if err != nil {
		return err
	}
	var job struct{ Job, Status string }
	if err := json.Unmarshal([]byte(jobJSON), &job); err != nil || (job.Status != "authorised" && job.Status != "running" && job.Status != "completed") {
		return fmt.Errorf("job not authorised: %s", jobJSON)
	}
	if err := d.waitJob(2, key("enterprise"), job.Job); err != nil {
		return err
	}
	if err := d.ctl(2, key("enterprise"), "job", "result", job.Job); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "    (counts and averages carry differential-privacy noise; the digest is the one committed on the ledger)")

	d.say("The agency nodes hold the consortium's homomorphic key jointly: any 2 of the 3 can decrypt together, none alone")
	if err := d.waitCeremony(ctx, key("auditor")); err != nil {
		return err
	}
	if err := d.ctl(0, key("auditor"), "he", "status"); err != nil {
		return err
	}

	d.say("They hold the consortium's pseudonym key the same way (a threshold OPRF): identifiers pseudonymised with it are joinable across agencies, yet no node can compute a pseudonym alone")
	if err := d.waitFor(ctx, key("auditor"), "pseudonym key ceremony", "pseudonym", "status"); err != nil {
		return err
	}
	if err := d.ctl(2, key("auditor"), "pseudonym", "status"); err != nil {
		return err
	}

	d.say("The tax agency registers the same records in homomorphic mode: income and benefits are encrypted (CKKS) as they stream in and never exist in clear on the node; the same digest means the same people, so both datasets draw on one privacy budget")
	if err := d.ctl(0, key("agency1"), "dataset", "register", "--name", "tax2025he", "--schema", files["schema"], "--file", files["csv"], "--mode", "he"); err != nil {
		return err
	}
	if err := d.ctl(0, key("agency1"), "policy", "publish", files["policyHE"]); err != nil {
		return err
	}
	if err := d.ctl(1, key("enterprise"), "dataset", "list"); err != nil {
		return err
	}

	d.say("The enterprise asks in he mode: the node computes on ciphertexts, two nodes each re-check the job on their own ledger and re-encrypt the result to the enterprise's key, and only sandboxctl, holding that key, decrypts it")
	if err := d.ctl(1, key("enterprise"), "job", "submit", "--wait", "--mode", "he", "--purpose", "credit risk statistics",
		"--query", "SELECT region, COUNT(*) AS people, AVG(income) AS avg_income FROM tax2025he WHERE age >= 30 GROUP BY region ORDER BY region"); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "    (the same averages as the masked job up to DP noise; the ledger holds the two nodes' he.share entries, never the result)")

	d.say("The social-security agency registers benefit records for most of the same people on its own node, and the tax agency its records again: both with consortium pseudonyms, and policies that allow joining them (at most one row per person)")
	if err := d.ctl(0, key("agency1"), "dataset", "register", "--name", "taxj2025", "--schema", files["taxjSchema"], "--file", files["csv"]); err != nil {
		return err
	}
	if err := d.ctl(0, key("agency1"), "policy", "publish", files["taxjPolicy"]); err != nil {
		return err
	}
	if err := d.ctl(1, key("agency2"), "dataset", "register", "--name", "benefits2025", "--schema", files["benSchema"], "--file", files["benCSV"]); err != nil {
		return err
	}
	if err := d.ctl(1, key("agency2"), "policy", "publish", files["benPolicy"]); err != nil {
		return err
	}

	d.say("The enterprise asks a question no single agency can answer, average income by kind of benefit: node3, which holds neither dataset, runs the join on per-job tags the owners derive with a key sealed to each other, never to it; the ledger records which columns moved where")
	if err := d.ctl(1, key("enterprise"), "job", "submit", "--wait", "--mode", "masked", "--purpose", "benefit statistics",
		"--query", "SELECT b.kind, COUNT(*) AS people, AVG(t.income) AS avg_income FROM taxj2025 t JOIN benefits2025 b ON t.person_id = b.person_id GROUP BY b.kind ORDER BY 1"); err != nil {
		return err
	}
	d.say("The same question in he mode: the tax node ships the incomes as ciphertexts under the collective key, node3 sums them with the join's weights without seeing one, and two nodes re-encrypt the result to the enterprise, which alone decrypts it")
	if err := d.ctl(1, key("enterprise"), "job", "submit", "--wait", "--mode", "he", "--purpose", "benefit statistics",
		"--query", "SELECT b.kind, COUNT(*) AS people, AVG(t.income) AS avg_income FROM taxj2025 t JOIN benefits2025 b ON t.person_id = b.person_id GROUP BY b.kind ORDER BY 1"); err != nil {
		return err
	}
	if err := d.ctl(0, key("enterprise"), "job", "submit", "--mode", "masked", "--purpose", "benefit statistics",
		"--query", "SELECT COUNT(*) FROM taxj2025 t JOIN benefits2025 b ON t.region = b.kind"); err == nil {
		return errors.New("a join on a non-identifier column was accepted")
	}
	fmt.Fprintln(d.out, "    (a join on anything but the consortium pseudonyms is refused, as it must be)")

	d.say("The enterprise's own question: how many of its 2,000 loan applicants receive benefits, and their average income, by branch. Its list never leaves its machine: sandboxctl has the ids pseudonymised blinded by the consortium, opens the job key sealed to an ephemeral key of its own, and ships only per-job tags to node3")
	if err := d.ctl(2, key("enterprise"), "job", "submit", "--wait", "--mode", "masked", "--purpose", "benefit statistics", "--list", "applicants="+files["applicants"]+":id",
		"--query", "SELECT a.branch, COUNT(*) AS applicants, AVG(t.income) AS avg_income FROM taxj2025 t JOIN benefits2025 b ON t.person_id = b.person_id JOIN applicants a ON t.person_id = a.id GROUP BY a.branch ORDER BY 1"); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "    (the ledger holds the list's size and the digest of its tags, never an id; cells of fewer than 10 applicants would be withheld)")

	d.say("A finer question, by household size in one region: cells of fewer than 10 people, or where one person makes up more than half the total, are suppressed")
	if err := d.ctl(0, key("enterprise"), "job", "submit", "--wait", "--mode", "masked", "--purpose", "credit risk statistics",
		"--query", "SELECT household_size, COUNT(*) AS people, AVG(income) FROM tax2025 WHERE region = 'capital' GROUP BY household_size ORDER BY household_size"); err != nil {
		return err
	}

	d.say("An attack: the enterprise asks for row-level values; the node refuses before anything is recorded, as it refuses a careless query (a misspelt column), with the position")
	if err := d.ctl(0, key("enterprise"), "job", "submit", "--mode", "masked", "--purpose", "credit risk statistics",
		"--query", "SELECT person_id, income FROM tax2025"); err == nil {
		return errors.New("a row-level query was accepted")
	}
	if err := d.ctl(0, key("enterprise"), "job", "submit", "--mode", "masked", "--purpose", "credit risk statistics",
		"--query", "SELECT regon, COUNT(*) FROM tax2025 GROUP BY regon"); err == nil {
		return errors.New("a query on an unknown column was accepted")
	}
	fmt.Fprintln(d.out, "    (refused, as they must be; nothing was recorded and no budget spent)")

	d.say("The enterprise tries another purpose: the policy refuses, and the refusal is on the ledger for the auditor")
	if err := d.ctl(2, key("enterprise"), "job", "submit", "--mode", "he", "--purpose", "marketing",
		"--query", "SELECT AVG(income) FROM tax2025"); err == nil {
		return errors.New("a job for another purpose was accepted")
	}
	fmt.Fprintln(d.out, "    (refused, as it must be)")

	d.say("Another agency may not publish policies for the tax agency's dataset, and the enterprise may publish none")
	if err := d.ctl(1, key("agency2"), "policy", "publish", files["policy"]); err == nil {
		return errors.New("another agency published a policy for tax2025")
	}
	if err := d.ctl(1, key("enterprise"), "policy", "publish", files["policy"]); err == nil {
		return errors.New("the enterprise published a policy")
	}
	fmt.Fprintln(d.out, "    (both refused, as they must be)")

	trust := filepath.Join(d.dir, "consortium", "trust.vkeys")
	d.say("The enterprise proves its job's entries (submission, start, completion) are in the log, against a checkpoint signed by a trusted node key")
	if err := d.ctl(2, key("enterprise"), "ledger", "checkpoint"); err != nil {
		return err
	}
	if err := d.ctl(0, key("enterprise"), "ledger", "proof", "--job", job.Job, "--trust", trust); err != nil {
		return err
	}

	d.say("The auditor downloads the whole ledger and checks every signature (entries and the accounts' own request signatures), block, root and checkpoint, and replays the state")
	report := filepath.Join(d.dir, "report.json")
	if err := d.ctl(1, key("auditor"), "ledger", "verify", "--trust", trust, "--out", report, "--state", filepath.Join(d.dir, "auditor-state.json")); err != nil {
		return err
	}

	d.say("The auditor sees who used each dataset, when, for what purpose, and with what result; for a join, which columns moved to which node")
	if err := d.ctl(0, key("auditor"), "audit", "access", "--dataset", "tax2025"); err != nil {
		return err
	}
	if err := d.ctl(1, key("auditor"), "audit", "access", "--dataset", "benefits2025"); err != nil {
		return err
	}

	d.say("The auditor exports the ledger and verifies the copy offline, trusting no node")
	export := filepath.Join(d.dir, "ledger.zst")
	if err := d.ctl(2, key("auditor"), "ledger", "export", "--out", export); err != nil {
		return err
	}
	if err := d.ctl(2, "", "ledger", "verify", "--file", export, "--trust", trust, "--state", filepath.Join(d.dir, "auditor-state.json")); err != nil {
		return err
	}

	d.say("The consortium shuts down cleanly")
	_ = srv.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			return fmt.Errorf("sandboxd did not stop cleanly: %w (see %s)", err, logf.Name())
		}
	case <-time.After(20 * time.Second):
		return errors.New("sandboxd did not stop within 20s")
	}
	fmt.Fprintln(d.out, "\ndemo complete: every step held")
	return nil
}

func (d *demo) say(s string) {
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, s)
}

// ctl runs sandboxctl against node i, printing the command and its output.
func (d *demo) ctl(node int, key string, args ...string) error {
	_, err := d.run(node, key, true, args...)
	return err
}

// waitJob polls a job until it completes.
func (d *demo) waitJob(node int, key, id string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := d.ctlOut(node, key, "--json", "job", "status", id)
		if err != nil {
			return err
		}
		var j struct{ Status, Reason string }
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			return err
		}
		switch j.Status {
		case "completed":
			return nil
		case "failed", "rejected":
			return fmt.Errorf("job %s %s: %s", id, j.Status, j.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("job %s did not complete within 60s", id)
}

// ctlOut runs sandboxctl and returns its output without printing it.
func (d *demo) ctlOut(node int, key string, args ...string) (string, error) {
	return d.run(node, key, false, args...)
}

func (d *demo) run(node int, key string, show bool, args ...string) (string, error) {
	full := []string{"--server", d.http[node]}
	if key != "" {
		full = append(full, "--key", key)
	}
	full = append(full, args...)
	shown := append([]string{"sandboxctl"}, args...)
	who := ""
	if key != "" {
		who = " as " + strings.TrimSuffix(filepath.Base(key), ".key")
	}
	if show {
		fmt.Fprintf(d.out, "  $ %s   # node%d%s\n", strings.Join(quote(shown), " "), node+1, who)
	}
	cmd := exec.Command(filepath.Join(d.bin, "sandboxctl"), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if show {
		for _, line := range strings.Split(strings.TrimRight(stdout.String()+stderr.String(), "\n"), "\n") {
			fmt.Fprintf(d.out, "    %s\n", line)
		}
	} else if err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

func quote(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		switch {
		case strings.Contains(a, "'"):
			a = `"` + a + `"`
		case strings.ContainsAny(a, " {}\""):
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func (d *demo) waitHealthy(ctx context.Context, exited chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("sandboxd exited early: %v (see %s)", err, filepath.Join(d.dir, "sandboxd.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		ok := 0
		for _, u := range d.http {
			var h struct {
				Status, Leader string
				LedgerSize     uint64 `json:"ledger_size"`
			}
			resp, err := http.Get(u + "/v1/health")
			if err != nil {
				continue
			}
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Status == "ok" && h.Leader != "" && h.LedgerSize > 0 { // genesis committed
				ok++
			}
		}
		if ok == len(d.http) {
			return nil
		}
	}
	return fmt.Errorf("consortium not healthy within %s", timeout)
}

// waitCeremony waits until the consortium's HE key ceremony (run by
// sandboxd dev after genesis) is on the ledger.
func (d *demo) waitCeremony(ctx context.Context, key string) error {
	return d.waitFor(ctx, key, "HE key ceremony", "he", "status")
}

// waitFor retries a read until it succeeds (within 60 s).
func (d *demo) waitFor(ctx context.Context, key, what string, args ...string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.ctlOut(0, key, args...); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("no %s on the ledger within 60s", what)
}

// freeBase finds n consecutive free loopback ports for HTTP and the same
// n at +100 for Raft.
func freeBase(n int) (int, error) {
	for base := 18080; base < 30000; base += 10 {
		ok := true
		for _, p := range []int{base, base + 100} {
			for i := 0; i < n && ok; i++ {
				ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free ports for the demo")
}

// writeData writes the demo files where sandboxctl can read them: 50,000
// synthetic tax records from the seeded generator, their schema and the
// tax agency's policies for the masked and the he dataset.
func writeData(dir string) (map[string]string, error) {
	out := map[string]string{"csv": filepath.Join(dir, "tax2025.csv"), "schema": filepath.Join(dir, "tax2025.schema.json"),
		"policy": filepath.Join(dir, "tax2025.policy.json"), "policyHE": filepath.Join(dir, "tax2025he.policy.json")}
	f, err := os.Create(out["csv"])
	if err != nil {
		return nil, err
	}
	if err := sandbox.GenerateDemo(f, 50000, 2025); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	schema, _ := json.MarshalIndent(sandbox.DemoSchema(), "", "  ")
	if err := os.WriteFile(out["schema"], schema, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(out["policyHE"], sandbox.DemoPolicy("tax2025he"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(out["policy"], sandbox.DemoPolicy("tax2025"), 0o644); err != nil {
		return nil, err
	}
	return out, writeJoinData(dir, out)
}

// writeJoinData writes the join's files: the tax records' schema with
// consortium pseudonyms, the social-security agency's benefit records for
// four in five of the same people, and both policies (joinable).
func writeJoinData(dir string, out map[string]string) error {
	for k, v := range map[string]string{"taxjSchema": "taxj2025.schema.json", "taxjPolicy": "taxj2025.policy.json",
		"benCSV": "benefits2025.csv", "benSchema": "benefits2025.schema.json", "benPolicy": "benefits2025.policy.json",
		"applicants": "applicants.csv"} {
		out[k] = filepath.Join(dir, v)
	}
	tax := sandbox.DemoSchema()
	tax.Columns[0].Pseudonym = policies.PseudonymConsortium
	ben := policies.Schema{Columns: []policies.Column{
		{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
		{Name: "kind", Type: policies.TypeString, Class: policies.Public},
		{Name: "amount", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 50000}},
	}}
	var p map[string]any
	if err := json.Unmarshal(sandbox.DemoPolicy("taxj2025"), &p); err != nil {
		return err
	}
	p["purpose"], p["modes"] = "benefit statistics", []string{"masked", "he"}
	p["join"] = map[string]any{"datasets": []string{"benefits2025"}, "lists": true, "max_rows_per_person": 1}
	benPolicy := map[string]any{"dataset": "benefits2025", "grantees": []string{"role:enterprise"}, "purpose": "benefit statistics",
		"modes": []string{"masked", "he"}, "aggregates": map[string][]string{"amount": {"count", "sum", "avg"}}, "group_by": []string{"kind"}, "filter": []string{"kind"},
		"min_group_size": 10, "dp": map[string]any{"epsilon_per_query": 0.5, "epsilon_budget": 5.0, "delta": 1e-6},
		"approval": map[string]any{"mode": "auto"}, "expires": "2030-12-31T00:00:00Z",
		"join": map[string]any{"datasets": []string{"*"}, "lists": true, "max_rows_per_person": 1}}
	for k, v := range map[string]any{"taxjSchema": tax, "benSchema": ben, "taxjPolicy": p, "benPolicy": benPolicy} {
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(out[k], b, 0o644); err != nil {
			return err
		}
	}
	in, err := os.ReadFile(out["csv"])
	if err != nil {
		return err
	}
	var b, a bytes.Buffer
	b.WriteString("person_id,kind,amount\n")
	// The enterprise's applicants: 1,800 people of the records (every
	// 25th) and 200 the agencies do not hold, each at one of its branches.
	a.WriteString("id,branch,amount_requested\n")
	branches := []string{"east", "north", "south"}
	kinds := []string{"unemployment", "housing", "child"}
	for i, line := range strings.Split(strings.TrimSpace(string(in)), "\n")[1:] {
		id, _, _ := strings.Cut(line, ",")
		if i%25 == 0 && i/25 < 1800 {
			fmt.Fprintf(&a, "%s,%s,%d\n", id, branches[(i/25)%3], 5000+(i%40)*1000)
		}
		if i%5 == 4 {
			continue
		}
		fmt.Fprintf(&b, "%s,%s,%d\n", id, kinds[i%3], 200+(i*37)%1800)
	}
	for i := range 200 {
		fmt.Fprintf(&a, "X%09d,%s,%d\n", i, branches[i%3], 10000)
	}
	if err := os.WriteFile(out["applicants"], a.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(out["benCSV"], b.Bytes(), 0o644)
}
