package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
	"github.com/datasandbox/datasandbox/sandbox/heparams"
)

// TestMain lets the tests run this package's main in child processes (real
// processes, killed with SIGKILL): the test binary re-executes itself with
// SANDBOXD_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("SANDBOXD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	if benchConsortium.stop != nil {
		benchConsortium.stop()
	}
	os.Exit(code)
}

// procCluster is a consortium of three "sandboxd run" processes, as in
// production: HTTPS for the API and mutual TLS between nodes, with
// certificates from the consortium's CA (per-account rate limits raised:
// the fault tests drive more load per account than any client would).
type procCluster struct {
	t      *testing.T
	dir    string
	keys   map[string]*chain.Key
	urls   []string
	cmds   []*exec.Cmd
	exits  []chan error
	client *http.Client // trusts the consortium's CA
}

// startProcCluster writes keys, a genesis and a node.toml per node, and
// starts the three nodes as child processes (logs in dir/nodeI.log).
func startProcCluster(t *testing.T) *procCluster { return startProcClusterWith(t, 3, nil) }

// startProcClusterWith starts nodes nodes (node4 and later of
// organisations ops4, ...), with edit applied to the genesis when not nil.
// Besides the nodes, the accounts are admin, agency1 (tax), agency2
// (health), enterprise, auditor.
func startProcClusterWith(t *testing.T, nodes int, edit func(*policies.Genesis)) *procCluster {
	t.Helper()
	c := &procCluster{t: t, dir: t.TempDir(), keys: map[string]*chain.Key{}}
	// Limits in genesis: the fault tests run many jobs on one budget.
	g := policies.Genesis{Consortium: "proc", Table: policies.DefaultTable(),
		Limits: &policies.Limits{MaxEpsilonPerQuery: 1, MaxEpsilonBudget: 1e6, MaxDelta: 1e-5}}
	accounts := []struct{ name, role, org string }{
		{"admin", "admin", ""}, {"agency1", "agency", "tax"}, {"agency2", "agency", "health"}, {"enterprise", "enterprise", "bank"}, {"auditor", "auditor", ""},
		{"node1", "node", "tax"}, {"node2", "node", "health"}, {"node3", "node", "registry"},
	}
	for i := 4; i <= nodes; i++ {
		accounts = append(accounts, struct{ name, role, org string }{fmt.Sprintf("node%d", i), "node", fmt.Sprintf("ops%d", i)})
	}
	for _, a := range accounts {
		k, err := chain.GenerateKey(chain.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		c.keys[a.name] = k
		if err := k.WriteKeyFile(filepath.Join(c.dir, a.name+".key")); err != nil {
			t.Fatal(err)
		}
		g.Accounts = append(g.Accounts, policies.GenesisAccount{PublicKey: k.PublicKey(), Algorithm: "ed25519", Name: a.name, Org: a.org, Roles: []string{a.role}})
	}
	if edit != nil {
		edit(&g)
	}
	graw, err := audit.GenesisEntry(c.keys["admin"], g, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	genesis := filepath.Join(c.dir, "genesis.b64")
	if err := os.WriteFile(genesis, []byte(b64(graw)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ca, err := chain.NewCA("proc consortium")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _, err := ca.PEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "ca.pem"), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	c.client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	base := freeBase(t)
	var bootstrap []string
	for i := 0; i < nodes; i++ {
		bootstrap = append(bootstrap, fmt.Sprintf("%q", fmt.Sprintf("node%d=127.0.0.1:%d", i+1, base+1000+i)))
	}
	for i := 0; i < nodes; i++ {
		id := fmt.Sprintf("node%d", i+1)
		certPEM, keyPEM, err := ca.Issue(id, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(c.dir, id+".pem"), filepath.Join(c.dir, id+"-tls.key")
		if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("id = %q\ndir = %q\nkey = %q\nhttp = \"127.0.0.1:%d\"\nraft = \"127.0.0.1:%d\"\norigin = \"proc\"\nbootstrap = [%s]\ngenesis = %q\nlog_level = \"warn\"\ntls_cert = %q\ntls_key = %q\ntls_ca = %q\nrate_limit = 5000\nrate_burst = 5000\n",
			id, filepath.Join(c.dir, id), filepath.Join(c.dir, id+".key"), base+i, base+1000+i, strings.Join(bootstrap, ", "), genesis,
			certFile, keyFile, filepath.Join(c.dir, "ca.pem"))
		if err := os.WriteFile(filepath.Join(c.dir, id+".toml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		c.urls = append(c.urls, fmt.Sprintf("https://127.0.0.1:%d", base+i))
		c.cmds = append(c.cmds, nil)
		c.exits = append(c.exits, nil)
		c.start(i)
	}
	t.Cleanup(func() {
		c.stopAll()
		if t.Failed() {
			c.dumpLogs()
		}
	})
	all := make([]int, nodes)
	for i := range all {
		all[i] = i
	}
	c.waitHealthy(all...)
	return c
}

// start starts node i (again).
func (c *procCluster) start(i int) {
	c.t.Helper()
	id := fmt.Sprintf("node%d", i+1)
	logf, err := os.OpenFile(filepath.Join(c.dir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "--config", filepath.Join(c.dir, id+".toml"))
	cmd.Env = append(os.Environ(), "SANDBOXD_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	exit := make(chan error, 1)
	go func() { exit <- cmd.Wait(); logf.Close() }()
	c.cmds[i], c.exits[i] = cmd, exit
}

// kill stops node i with SIGKILL: no shutdown code runs.
func (c *procCluster) kill(i int) {
	c.t.Helper()
	if err := c.cmds[i].Process.Kill(); err != nil {
		c.t.Fatal(err)
	}
	<-c.exits[i]
	c.cmds[i] = nil
}

// dumpLogs prints the end of every node's log (after a failure).
func (c *procCluster) dumpLogs() {
	for i := range c.urls {
		b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", i+1)))
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.Contains(l, "raft/") || strings.Contains(l, "ERROR") { // Raft's chatter is not the story, its errors are
				keep = append(keep, l)
			}
		}
		c.t.Logf("node%d log (last lines):\n%s", i+1, strings.Join(keep[max(0, len(keep)-30):], "\n"))
	}
}

func (c *procCluster) stopAll() {
	for i, cmd := range c.cmds {
		if cmd == nil {
			continue
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-c.exits[i]:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-c.exits[i]
			c.t.Errorf("node%d did not stop within 20s on SIGINT", i+1)
		}
	}
}

// waitHealthy waits until the given nodes serve health with a leader and
// genesis committed.
func (c *procCluster) waitHealthy(nodes ...int) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, i := range nodes {
		for {
			h, err := c.health(i)
			if err == nil && h.Status == "ok" && h.Leader != "" && h.LedgerSize >= 1 {
				break
			}
			select {
			case err := <-c.exits[i]:
				c.t.Fatalf("node%d exited: %v (log %s)", i+1, err, filepath.Join(c.dir, fmt.Sprintf("node%d.log", i+1)))
			default:
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node%d not healthy: %+v %v", i+1, h, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// registerDemo has agency1 upload rows demo records to node1 (in mode
// masked or he), register them as name and publish policy; it returns the
// CSV.
func (c *procCluster) registerDemo(name, mode string, rows int, seed uint64, policy []byte) []byte {
	c.t.Helper()
	var data bytes.Buffer
	if err := sandbox.GenerateDemo(&data, rows, seed); err != nil {
		c.t.Fatal(err)
	}
	schema, _ := json.Marshal(sandbox.DemoSchema())
	var up api.UploadResponse
	if err := c.call(0, "agency1", "POST", "/v1/uploads?mode="+mode+"&schema="+base64.RawURLEncoding.EncodeToString(schema), "text/csv", data.Bytes(), &up); err != nil {
		c.t.Fatal(err)
	}
	c.mustJSON(0, "agency1", "POST", "/v1/datasets", policies.DatasetDoc{Name: name, Schema: sandbox.DemoSchema(), SHA256: up.SHA256, Rows: up.Rows}, nil)
	if err := c.call(0, "agency1", "POST", "/v1/policies", "application/json", policy, nil); err != nil {
		c.t.Fatal(err)
	}
	return data.Bytes()
}

// health is node i's GET /v1/health.
func (c *procCluster) health(i int) (health, error) {
	var h health
	resp, err := c.client.Get(c.urls[i] + "/v1/health")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, err
}

// call sends a request to node i signed by the named account.
func (c *procCluster) call(i int, who, method, path, contentType string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return signedCallWith(ctx, c.client, c.keys[who], method, c.urls[i]+path, contentType, body, out)
}

func (c *procCluster) mustJSON(i int, who, method, path string, body, out any) {
	c.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	if err := c.call(i, who, method, path, "application/json", b, out); err != nil {
		c.t.Fatalf("%s %s as %s on node%d: %v", method, path, who, i+1, err)
	}
}

// An admin starts the HE key ceremony on a production consortium (HTTPS,
// mutual TLS between nodes); an he
// job then completes although one of the two nodes the owner would ask
// for a decryption share is killed (SIGKILL) while the job runs: the owner
// falls back to the third node, t=2 of 3. The enterprise decrypts the
// result, which matches the records.
func TestRunHEJobSurvivesNodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	c := startProcCluster(t)

	// Before the ceremony there is no he mode; only an admin may start it.
	if err := c.call(0, "auditor", "GET", "/v1/he", "", nil, nil); err == nil {
		t.Fatal("GET /v1/he answered before any ceremony")
	}
	if err := c.call(0, "agency1", "POST", "/v1/he/ceremony", "application/json", []byte(`{}`), nil); err == nil {
		t.Fatal("an agency started the key ceremony")
	}
	if err := c.call(0, "admin", "POST", "/v1/he/ceremony", "application/json", []byte(`{"threshold":4}`), nil); err == nil {
		t.Fatal("a threshold above the number of nodes was accepted")
	}
	var cer policies.HECeremony
	c.mustJSON(0, "admin", "POST", "/v1/he/ceremony", api.CeremonyRequest{Threshold: 2}, &cer)
	if cer.Threshold != 2 || len(cer.Participants) != 3 || len(cer.PublicKey) != 64 {
		t.Fatalf("ceremony: %+v", cer)
	}
	var again policies.HECeremony
	c.mustJSON(2, "auditor", "GET", "/v1/he", nil, &again)
	if again.ID != cer.ID || again.PublicKey != cer.PublicKey {
		t.Fatalf("node3 sees ceremony %+v, node1 committed %+v", again, cer)
	}

	// The agency uploads encrypted records to node1, registers, publishes.
	const rows = 100000
	data := c.registerDemo("taxhe", "he", rows, 7, sandbox.DemoPolicy("taxhe"))

	// The enterprise registers the CKKS key derived from its key file.
	seed := c.keys["enterprise"].Ed25519().Seed()
	pk, err := heparams.RequesterPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	c.mustJSON(1, "enterprise", "POST", "/v1/accounts/hekey", policies.HEKeyDoc{Params: heparams.Name, PublicKey: pk}, nil)

	// It submits; node2 is killed as soon as the job runs.
	var job api.JobResponse
	c.mustJSON(0, "enterprise", "POST", "/v1/jobs", map[string]string{"mode": "he", "purpose": "credit risk statistics",
		"query": "SELECT COUNT(*) AS people, AVG(income) AS avg_income FROM taxhe"}, &job)
	killed := false
	deadline := time.Now().Add(90 * time.Second)
	for job.Status != "completed" {
		if job.Status == "running" && !killed {
			c.kill(1)
			killed = true
		}
		if job.Status == "failed" || job.Status == "rejected" {
			t.Fatalf("job %s %s: %s", job.Job, job.Status, job.Reason)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not completed: %+v", job)
		}
		time.Sleep(5 * time.Millisecond)
		c.mustJSON(0, "enterprise", "GET", "/v1/jobs/"+job.Job, nil, &job)
	}
	if !killed {
		t.Fatal("the job completed before node2 could be killed while it ran")
	}
	var res sandbox.Result
	c.mustJSON(0, "enterprise", "GET", "/v1/jobs/"+job.Job+"/result", nil, &res)
	if res.HE == nil || !slices.Equal(res.HE.Active, []string{"node1", "node3"}) {
		t.Fatalf("result not re-encrypted by node1 and node3: %+v", res.HE)
	}
	if err := sandbox.DecryptHEResult(&res, seed); err != nil {
		t.Fatal(err)
	}
	// Against the records: the policy's DP noise (epsilon 0.5 per query,
	// income bounded by 1e6, a full draw from each of the 2 nodes) moves
	// the sum of ~5e9 by ~3e7 at the 99.9% level: 2% is far outside it.
	want := incomeStats(t, data)
	if len(res.Rows) != 1 {
		t.Fatalf("rows: %v", res.Rows)
	}
	gotN, _ := res.Rows[0][0].(float64)
	gotAvg, _ := res.Rows[0][1].(float64)
	if math.Abs(gotN-rows)/rows > 0.02 || math.Abs(gotAvg-want)/want > 0.02 {
		t.Fatalf("decrypted COUNT %v AVG %v, records: %d, %.2f", gotN, gotAvg, rows, want)
	}
	// The requester's decoding states each value's noise: one draw per
	// decrypting node, and a 95% interval that holds the value.
	for c, nz := range res.Noise[0] {
		v, _ := res.Rows[0][c].(float64)
		if nz == nil || nz.Draws != 2 || nz.CI95 == nil || v < nz.CI95[0] || v > nz.CI95[1] {
			t.Fatalf("column %d: value %v, noise %+v", c, v, nz)
		}
	}
	t.Logf("he job with node2 killed mid-job: COUNT %.0f (records %d), AVG %.2f (records %.2f), shares from %v", gotN, rows, gotAvg, want, res.HE.Active)

	// The killed node restarts and catches up with the job's entries.
	c.start(1)
	c.waitHealthy(1)
	var st api.JobResponse
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := c.call(1, "enterprise", "GET", "/v1/jobs/"+job.Job, "", nil, &st); err == nil && st.Status == "completed" && st.ResultSHA256 == res.ResultSHA256 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node2 sees job %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// incomeStats is the mean income of the demo CSV.
func incomeStats(t *testing.T, data []byte) float64 {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(data))
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := slices.Index(recs[0], "income")
	var sum float64
	for _, rec := range recs[1:] {
		v, err := strconv.ParseFloat(rec[col], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum / float64(len(recs)-1)
}
