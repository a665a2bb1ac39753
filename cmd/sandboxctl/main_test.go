package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
)

type env struct {
	c     *apitest.Consortium
	dir   string
	url   string
	trust string
}

func newEnv(t *testing.T) *env { return newEnvWith(t, apitest.Options{}) }

func newEnvWith(t *testing.T, o apitest.Options) *env {
	t.Helper()
	c := apitest.NewWith(t, o)
	dir := t.TempDir()
	for name, k := range c.Keys {
		if err := k.WriteKeyFile(filepath.Join(dir, name+".key")); err != nil {
			t.Fatal(err)
		}
	}
	var vkeys []string
	for i, k := range c.C.Keys {
		v, _ := chain.NewCheckpointVerifier(c.C.Peers[i].ID, k.PublicKey())
		vkeys = append(vkeys, v.VerifierKey())
	}
	trust := filepath.Join(dir, "trust.vkeys")
	os.WriteFile(trust, []byte(strings.Join(vkeys, "\n")+"\n"), 0o644)
	return &env{c: c, dir: dir, url: c.Srv[0].URL, trust: trust}
}

// ctl runs sandboxctl as the named account ("" = no key).
func (e *env) ctl(t *testing.T, who string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	full := []string{"--server", e.url}
	if who != "" {
		full = append(full, "--key", filepath.Join(e.dir, who+".key"))
	}
	err := run(context.Background(), append(full, args...), &out, io.Discard)
	return out.String(), err
}

func (e *env) file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) registerAndPublish(t *testing.T, approval string) {
	t.Helper()
	schema := e.file(t, "tax.json", string(apitest.TaxSchema))
	data := e.file(t, "tax.csv", string(apitest.TaxCSV(400)))
	out, err := e.ctl(t, "agency1", "dataset", "register", "--name", "tax2025", "--schema", schema, "--file", data)
	if err != nil || !strings.Contains(out, "400 rows") {
		t.Fatalf("dataset register: %q %v", out, err)
	}
	p := apitest.TaxPolicy()
	if approval == "manual" {
		p["approval"] = map[string]any{"mode": approval, "approvers": 1}
	}
	b, _ := json.Marshal(p)
	out, err = e.ctl(t, "agency1", "policy", "publish", e.file(t, "policy.json", string(b)))
	if err != nil || !strings.Contains(out, "published") {
		t.Fatalf("policy publish: %q %v", out, err)
	}
}

func TestDomainCommands(t *testing.T) {
	e := newEnv(t)
	e.registerAndPublish(t, "manual")
	// Approvals are needed for each job under this policy; the runner
	// picks jobs up once authorised.
	out, err := e.ctl(t, "bank", "dataset", "list")
	if err != nil || !strings.Contains(out, "income (sensitive)") || strings.Contains(out, "P000001") {
		t.Fatalf("dataset list: %q %v", out, err)
	}
	out, err = e.ctl(t, "bank", "policy", "list")
	if err != nil || !strings.Contains(out, "credit risk statistics") {
		t.Fatalf("policy list: %q %v", out, err)
	}
	out, err = e.ctl(t, "bank", "--json", "job", "submit", "--mode", "masked", "--purpose", "credit risk statistics",
		"--query", "SELECT region, AVG(income) FROM tax2025 GROUP BY region")
	var j api.JobResponse
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.Status != "pending" {
		t.Fatalf("job submit: %q %v", out, err)
	}
	if _, err := e.ctl(t, "agency2", "job", "approve", j.Job); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("another agency approved: %v", err)
	}
	if _, err := e.ctl(t, "shop", "job", "status", j.Job); err == nil || !strings.Contains(err.Error(), "belongs to another account") {
		t.Fatalf("another enterprise read the job: %v", err)
	}
	out, err = e.ctl(t, "agency1", "job", "approve", j.Job)
	if err != nil || !(strings.Contains(out, "authorised") || strings.Contains(out, "running") || strings.Contains(out, "completed")) {
		t.Fatalf("approve: %q %v", out, err)
	}
	// The runner on the data's node runs it; the result prints as a table
	// and as the contract's JSON, whose hash is the one on the ledger.
	var res struct {
		Job          string   `json:"job"`
		Columns      []string `json:"columns"`
		Rows         [][]any  `json:"rows"`
		Suppressed   *int     `json:"suppressed"`
		EpsilonSpent *float64 `json:"epsilon_spent"`
		ResultSHA256 string   `json:"result_sha256"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		out, err = e.ctl(t, "bank", "--json", "job", "result", j.Job)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || len(res.Rows) != 4 || res.Suppressed == nil || res.EpsilonSpent == nil || len(res.ResultSHA256) != 64 {
		t.Fatalf("job result --json: %q %v", out, err)
	}
	out, err = e.ctl(t, "bank", "job", "status", j.Job)
	if err != nil || !strings.Contains(out, "completed") {
		t.Fatalf("status: %q %v", out, err)
	}

	// A refused job exits non-zero with the reason, and is on the ledger.
	_, err = e.ctl(t, "bank", "job", "submit", "--purpose", "marketing", "--query", "SELECT SUM(income) FROM tax2025")
	if err == nil || !strings.Contains(err.Error(), `purpose "marketing" does not match`) {
		t.Fatalf("refused job: %v", err)
	}
	out, err = e.ctl(t, "bank", "job", "list")
	if err != nil || strings.Count(out, "job-") != 2 {
		t.Fatalf("job list: %q %v", out, err)
	}
	// Reject needs a reason; takes the flag after the id.
	e.ctl(t, "bank", "job", "submit", "--purpose", "credit risk statistics", "--query", "SELECT COUNT(*) FROM tax2025")
	out, _ = e.ctl(t, "bank", "--json", "job", "list")
	var list struct{ Jobs []api.JobResponse }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Jobs) == 0 {
		t.Fatalf("job list --json: %q %v", out, err)
	}
	last := list.Jobs[len(list.Jobs)-1].Job
	if _, err := e.ctl(t, "agency1", "job", "reject", last); err == nil {
		t.Fatal("reject without reason")
	}
	out, err = e.ctl(t, "agency1", "job", "reject", last, "--reason", "not this quarter")
	if err != nil || !strings.Contains(out, "not this quarter") {
		t.Fatalf("reject: %q %v", out, err)
	}
	// Accounts: a new key registers, the admin grants it a role.
	if _, err := e.ctl(t, "", "key", "new", "--out", filepath.Join(e.dir, "newco.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl(t, "newco", "account", "register", "--name", "NewCo"); err != nil {
		t.Fatal(err)
	}
	k, _ := chain.LoadKeyFile(filepath.Join(e.dir, "newco.key"))
	if _, err := e.ctl(t, "admin", "account", "grant", "--address", k.Address().String(), "--role", "enterprise", "--org", "newco"); err != nil {
		t.Fatal(err)
	}
	out, err = e.ctl(t, "newco", "account", "show")
	if err != nil || !strings.Contains(out, "roles=enterprise") {
		t.Fatalf("account show: %q %v", out, err)
	}
	if _, err := e.ctl(t, "bank", "account", "grant", "--address", k.Address().String(), "--role", "admin"); err == nil || !strings.Contains(err.Error(), "lacks permission grant") {
		t.Fatalf("enterprise granted a role: %v", err)
	}
}

func TestSubmitWait(t *testing.T) {
	e := newEnv(t)
	e.registerAndPublish(t, "")
	out, err := e.ctl(t, "bank", "job", "submit", "--wait", "--purpose", "credit risk statistics", "--query", "SELECT region, COUNT(*) AS people FROM tax2025 WHERE age >= 30 GROUP BY region")
	if err != nil || !strings.Contains(out, "REGION") || !strings.Contains(out, "PEOPLE") || !strings.Contains(out, "north") {
		t.Fatalf("submit --wait: %q %v", out, err)
	}
}

func TestLedgerCommands(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"1", "2", "3"} {
		out, err := e.ctl(t, "agency1", "ledger", "append", "--kind", "note.demo", "--nonce", n, "--payload", `{"n":`+n+`}`)
		if err != nil || !strings.Contains(out, "committed") {
			t.Fatalf("append: %q %v", out, err)
		}
	}
	if _, err := e.ctl(t, "agency1", "ledger", "append", "--kind", "note.demo", "--nonce", "2"); err == nil || !strings.Contains(err.Error(), "already applied") {
		t.Fatalf("replayed nonce: %v", err)
	}
	if _, err := e.ctl(t, "bank", "ledger", "append", "--kind", "note.demo"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("enterprise wrote a note: %v", err)
	}
	if _, err := e.ctl(t, "agency1", "ledger", "append", "--kind", "note.demo", "--payload", "{not json"); err == nil {
		t.Fatal("bad payload accepted")
	}
	state := filepath.Join(e.dir, "state.json")
	out, err := e.ctl(t, "auditor", "ledger", "verify", "--trust", e.trust, "--state", state, "--out", filepath.Join(e.dir, "r.json"), "--html", filepath.Join(e.dir, "r.html"))
	if page, _ := os.ReadFile(filepath.Join(e.dir, "r.html")); !bytes.Contains(page, []byte("OK: all checks hold")) || !bytes.Contains(page, []byte("Use of each budget over time")) || bytes.Contains(page, []byte("<script")) {
		t.Fatalf("html report: %.300s", page)
	}
	if err != nil || !strings.Contains(out, "OK: all checks hold") || !strings.Contains(out, "matches the node's state hash") {
		t.Fatalf("verify: %q %v", out, err)
	}
	var rep client.Report
	b, _ := os.ReadFile(filepath.Join(e.dir, "r.json"))
	if err := json.Unmarshal(b, &rep); err != nil || !rep.OK || rep.Entries != 4 || !rep.Checkpoint.Trusted {
		t.Fatalf("report %+v %v", rep, err)
	}
	out, err = e.ctl(t, "agency1", "ledger", "proof", "--index", "2", "--trust", e.trust)
	if err != nil || !strings.Contains(out, "entry 2 (note.demo) is included") {
		t.Fatalf("proof: %q %v", out, err)
	}
	// Without trusted checkpoint keys a proof shows only what the node
	// claims: refused unless the user says --insecure.
	if _, err := e.ctl(t, "agency1", "ledger", "proof", "--index", "2"); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("proof without trusted keys: %v", err)
	}
	out, err = e.ctl(t, "agency1", "ledger", "proof", "--index", "2", "--insecure")
	if err != nil || !strings.Contains(out, "entry 2 (note.demo) is included") || !strings.Contains(out, "signature was not checked") {
		t.Fatalf("proof --insecure: %q %v", out, err)
	}
	if _, err := e.ctl(t, "bank", "ledger", "proof", "--index", "2", "--trust", e.trust); err == nil || !strings.Contains(err.Error(), "did not return entry 2") {
		t.Fatalf("enterprise proved another account's entry: %v", err)
	}
	if _, err := e.ctl(t, "auditor", "ledger", "proof", "--index", "9", "--trust", e.trust); err == nil {
		t.Fatal("proof of a missing entry")
	}
	// An enterprise cannot verify: it may not read every entry.
	if _, err := e.ctl(t, "bank", "ledger", "verify", "--trust", e.trust, "--state", filepath.Join(e.dir, "b.json")); err == nil || !strings.Contains(err.Error(), "read.all") {
		t.Fatalf("enterprise verify: %v", err)
	}

	// A history rewritten since the last verification is detected.
	var st audit.LastVerified
	b, _ = os.ReadFile(state)
	json.Unmarshal(b, &st)
	st.Root = base64.StdEncoding.EncodeToString(make([]byte, 32))
	st.Size = 2
	b, _ = json.Marshal(st)
	os.WriteFile(state, b, 0o600)
	if _, err := e.ctl(t, "auditor", "ledger", "verify", "--trust", e.trust, "--state", state); err == nil || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("fork not detected: %v", err)
	}
	// A checkpoint signed by an unknown key is refused.
	other := filepath.Join(e.dir, "other.vkeys")
	k, _ := chain.GenerateKey(chain.Ed25519)
	v, _ := chain.NewCheckpointVerifier("node1", k.PublicKey())
	os.WriteFile(other, []byte(v.VerifierKey()+"\n"), 0o644)
	if _, err := e.ctl(t, "auditor", "ledger", "verify", "--trust", other, "--state", filepath.Join(e.dir, "s2.json")); err == nil {
		t.Fatal("checkpoint signed by an unknown key accepted")
	}
}

// A node that serves a tampered entry is caught, with the entry's index.
func TestVerifyCatchesTamperedEntry(t *testing.T) {
	// The lying proxy is where the auditor sends its (signed) requests, so
	// the node answers to the proxy's name too.
	liar := httptest.NewUnstartedServer(nil)
	e := newEnvWith(t, apitest.Options{API: func(c *api.Config) { c.Aliases = append(c.Aliases, liar.Listener.Addr().String()) }})
	for _, n := range []string{"1", "2", "3"} {
		if _, err := e.ctl(t, "agency1", "ledger", "append", "--kind", "note.demo", "--nonce", n); err != nil {
			t.Fatal(err)
		}
	}
	real := e.c.Srv[0].Config.Handler
	liar.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		real.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if r.URL.Path == "/v1/ledger/entries" {
			var er api.EntriesResponse
			json.Unmarshal(body, &er)
			for i := range er.Entries {
				if er.Entries[i].Index == 2 {
					raw, _ := base64.StdEncoding.DecodeString(er.Entries[i].Entry)
					raw[len(raw)-80] ^= 1 // inside the payload or signature
					er.Entries[i].Entry = base64.StdEncoding.EncodeToString(raw)
				}
			}
			body, _ = json.Marshal(er)
		}
		w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
	liar.Start()
	defer liar.Close()
	e.url = liar.URL
	_, err := e.ctl(t, "auditor", "ledger", "verify", "--trust", e.trust, "--state", filepath.Join(e.dir, "s.json"))
	if err == nil || !strings.Contains(err.Error(), "index 2") {
		t.Fatalf("tampered entry not caught at index 2: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"ledger"}, {"key", "new"}, {"ledger", "append"}, {"job", "status"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
				t.Errorf("%v: no error", args)
			}
		})
	}
	t.Setenv("SANDBOX_KEY", "")
	err := run(context.Background(), []string{"ledger", "append", "--kind", "x"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "set --key FILE or SANDBOX_KEY") {
		t.Errorf("missing key: %v", err)
	}
}

// An auditor exports the ledger and verifies it offline; a tampered export
// is caught with its index; the access view lists the dataset's jobs.
func TestExportAuditOffline(t *testing.T) {
	e := newEnv(t)
	e.registerAndPublish(t, "")
	if _, err := e.ctl(t, "bank", "job", "submit", "--wait", "--purpose", "credit risk statistics", "--query", "SELECT region, COUNT(*) FROM tax2025 GROUP BY region"); err != nil {
		t.Fatal(err)
	}
	e.ctl(t, "bank", "job", "submit", "--purpose", "marketing", "--query", "SELECT COUNT(*) FROM tax2025")
	exp := filepath.Join(e.dir, "ledger.zst")
	out, err := e.ctl(t, "auditor", "ledger", "export", "--out", exp)
	if err != nil || !strings.Contains(out, "exported") {
		t.Fatalf("export: %q %v", out, err)
	}
	out, err = e.ctl(t, "auditor", "ledger", "verify", "--trust", e.trust, "--state", filepath.Join(e.dir, "on.json"), "--html", filepath.Join(e.dir, "jobs.html"))
	if err != nil || !strings.Contains(out, "1 delivered results hash to the committed hashes") {
		t.Fatalf("online verify with results: %q %v", out, err)
	}
	if page, _ := os.ReadFile(filepath.Join(e.dir, "jobs.html")); !bytes.Contains(page, []byte("<svg")) || !bytes.Contains(page, []byte("marketing")) {
		t.Fatalf("html report with jobs: %.300s", page)
	}
	out, err = e.ctl(t, "", "ledger", "verify", "--file", exp, "--trust", e.trust, "--state", filepath.Join(e.dir, "off.json"))
	if err != nil || !strings.Contains(out, "OK: all checks hold") || !strings.Contains(out, "completed 1") || !strings.Contains(out, "purpose 1") {
		t.Fatalf("offline verify: %q %v", out, err)
	}
	// Tamper with one entry of the export: decompress, flip, recompress.
	bad := tamperExport(t, exp, 3)
	_, err = e.ctl(t, "", "ledger", "verify", "--file", bad, "--trust", e.trust, "--state", filepath.Join(e.dir, "off2.json"))
	if err == nil || !strings.Contains(err.Error(), "index 2") {
		t.Fatalf("tampered export: %v", err)
	}
	// The auditor proves every entry of the completed job; the enterprise
	// proves them too: entries acting on its own jobs are its to read.
	var list struct{ Jobs []api.JobResponse }
	o, _ := e.ctl(t, "bank", "--json", "job", "list")
	json.Unmarshal([]byte(o), &list)
	done := list.Jobs[0].Job
	out, err = e.ctl(t, "auditor", "ledger", "proof", "--job", done, "--trust", e.trust)
	if err != nil || !strings.Contains(out, "(job.submit)") || !strings.Contains(out, "(job.start)") || !strings.Contains(out, "(job.complete)") {
		t.Fatalf("auditor proof --job: %q %v", out, err)
	}
	out, err = e.ctl(t, "bank", "ledger", "proof", "--job", done, "--trust", e.trust)
	if err != nil || strings.Count(out, "is included") != 3 || !strings.Contains(out, "(job.complete)") {
		t.Fatalf("enterprise proof --job: %q %v", out, err)
	}
	out, err = e.ctl(t, "auditor", "audit", "access", "--dataset", "tax2025")
	if err != nil || strings.Count(out, "job-") != 2 || !strings.Contains(out, "marketing") {
		t.Fatalf("audit access: %q %v", out, err)
	}
	if _, err := e.ctl(t, "bank", "audit", "access", "--dataset", "tax2025"); err == nil || !strings.Contains(err.Error(), "read.all") {
		t.Fatalf("enterprise audit access: %v", err)
	}
}

// Over its rate, the client waits as the node's Retry-After asks and
// tries again: every command succeeds, later.
func TestClientHonoursRetryAfter(t *testing.T) {
	e := newEnvWith(t, apitest.Options{API: func(c *api.Config) { c.RateLimit, c.RateBurst = 2, 2 }})
	start := time.Now()
	for i := range 5 {
		if out, err := e.ctl(t, "bank", "dataset", "list"); err != nil {
			t.Fatalf("request %d: %q %v", i, out, err)
		}
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("5 requests at 2/s took %s: the limit was not met", d)
	}
}

// TestWaitPending: --wait on a job that needs manual approval says who
// must approve and how many, and gives up after --wait-timeout with a
// non-zero exit naming the job to check later.
func TestWaitPending(t *testing.T) {
	e := newEnv(t)
	e.registerAndPublish(t, "manual")
	var out, errOut bytes.Buffer
	args := []string{"--server", e.url, "--key", filepath.Join(e.dir, "bank.key"), "job", "submit", "--wait", "--wait-timeout", "1s",
		"--mode", "masked", "--purpose", "credit risk statistics", "--query", "SELECT region, COUNT(*) FROM tax2025 GROUP BY region"}
	start := time.Now()
	err := run(context.Background(), args, &out, &errOut)
	if err == nil {
		t.Fatalf("--wait on a pending job returned without error: %s", out.String())
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("gave up after %s, not about 1s", d)
	}
	id := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(out.String(), ":", 2)[0], "job "))
	if !strings.HasPrefix(id, "job-") {
		t.Fatalf("stdout %q names no job", out.String())
	}
	if want := "waits for approval by agency tax (owner of dataset tax2025): 0 of 1 approvals so far; waiting up to 1s"; !strings.Contains(errOut.String(), want) {
		t.Fatalf("stderr %q, want %q", errOut.String(), want)
	}
	if want := "job " + id + " still pending approval (0 of 1) after 1s; check it later with: sandboxctl job status " + id; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestPlural(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0 cells"}, {1, "1 cell"}, {2, "2 cells"}} {
		t.Run(tc.want, func(t *testing.T) {
			if got := plural(tc.n, "cell"); got != tc.want {
				t.Errorf("plural(%d) = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
}

// ledger verify keeps the last verified checkpoint for the next run's
// rollback check; when it cannot, it says so and exits non-zero instead of
// silently disabling that check.
func TestVerifyReportsUnsavedCheckpoint(t *testing.T) {
	e := newEnv(t)
	blocker := e.file(t, "not-a-dir", "x")
	_, err := e.ctl(t, "auditor", "ledger", "verify", "--trust", e.trust, "--state", filepath.Join(blocker, "state.json"))
	if err == nil || !strings.Contains(err.Error(), "could not be kept for the next run's rollback check") {
		t.Fatalf("unsaved checkpoint: %v", err)
	}
}

// A node answering a state hash shorter than a hash is reported as a
// mismatch, not a crash.
func TestVerifyShortStateHash(t *testing.T) {
	liar := httptest.NewUnstartedServer(nil)
	e := newEnvWith(t, apitest.Options{API: func(c *api.Config) { c.Aliases = append(c.Aliases, liar.Listener.Addr().String()) }})
	real := e.c.Srv[0].Config.Handler
	liar.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/ledger/state" {
			real.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		real.ServeHTTP(rec, r)
		var st map[string]any
		json.Unmarshal(rec.Body.Bytes(), &st)
		st["state_hash"] = "ab"
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	liar.Start()
	defer liar.Close()
	e.url = liar.URL
	_, err := e.ctl(t, "auditor", "ledger", "verify", "--trust", e.trust, "--state", filepath.Join(e.dir, "short.json"))
	if err == nil || !strings.Contains(err.Error(), "differs from the node's ab") {
		t.Fatalf("a short state hash: %v", err)
	}
}
