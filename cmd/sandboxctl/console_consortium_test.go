package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// devConsortium builds sandboxd and runs "sandboxd dev" (3 nodes, with the
// HE and pseudonym key ceremonies) on free loopback ports until every node
// is healthy and both ceremonies are on the ledger. It returns an env whose
// keys are the dev consortium's demo accounts, for node i's URL see url.
func devConsortium(t *testing.T) (e *env, url func(i int) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "sandboxd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../sandboxd").CombinedOutput(); err != nil {
		t.Fatalf("building sandboxd: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "dev")
	base := freePorts(t)
	url = func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", base+i) }
	var logs syncBuffer
	cmd := exec.Command(bin, "dev", "--dir", dir, "--http", fmt.Sprintf("127.0.0.1:%d", base), "--raft", fmt.Sprintf("127.0.0.1:%d", base+1000), "--log-level", "error")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("sandboxd dev did not stop on SIGINT")
		}
	})
	e = &env{dir: filepath.Join(dir, "keys"), url: url(0), trust: filepath.Join(dir, "trust.vkeys")}
	// Two key ceremonies: seconds on an idle machine, longer under load.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("sandboxd dev exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dev consortium is not ready:\n%s", logs.String())
		}
		if !healthy(url) {
			continue
		}
		he, err1 := e.ctl(t, "auditor", "--json", "he", "status")
		ps, err2 := e.ctl(t, "auditor", "--json", "pseudonym", "status")
		if err1 == nil && err2 == nil && strings.Contains(he, "public_key") && strings.Contains(ps, "participants") {
			return e, url
		}
	}
}

// healthy reports whether the three nodes answer with a leader.
func healthy(url func(int) string) bool {
	hc := &http.Client{Timeout: 2 * time.Second}
	for i := range 3 {
		resp, err := hc.Get(url(i) + "/v1/health")
		if err != nil {
			return false
		}
		var h struct{ Status, Leader string }
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || h.Status != "ok" || h.Leader == "" {
			return false
		}
	}
	return true
}

// freePorts finds a base port with base..base+2 and base+1000..base+1002
// free on 127.0.0.1 (HTTP and Raft of three nodes).
func freePorts(t *testing.T) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(9000)
		ok := true
		for _, q := range []int{p, p + 1, p + 2, p + 1000, p + 1001, p + 1002} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free ports")
	return 0
}

// at is e acting on another node.
func (e *env) at(url string) *env { o := *e; o.url = url; return &o }

// writeJSONFile writes v as JSON in dir and returns the path.
func writeJSONFile(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A consortium that ran a join and an he job, in a real browser: the
// auditor sees the join's data flows (which columns of which dataset moved
// to which node, with digests) as a chart it can move through with the
// keyboard, in the console and in the verification's report, on a laptop
// and on a phone; the enterprise reads its he result, decrypted by
// sandboxctl: the page never gets the ciphertext, and the node's own
// answer holds no plaintext rows.
func TestConsoleJoinAndHEInBrowser(t *testing.T) {
	chromium(t) // skip before building anything without a browser
	e, url := devConsortium(t)
	data := t.TempDir()

	// Two agencies' datasets with consortium pseudonyms, on their own
	// nodes, joinable; the tax agency's records also in he mode.
	var tax, ben, demo bytes.Buffer
	tax.WriteString("person_id,income\n")
	ben.WriteString("person_id,kind\n")
	for i := range 400 {
		id := fmt.Sprintf("3101011990%08d", i)
		if i < 300 {
			fmt.Fprintf(&tax, "%s,%d\n", id, 1000*(i%50))
		}
		if i >= 100 {
			fmt.Fprintf(&ben, "%s,k%d\n", id, i%2)
		}
	}
	if err := sandbox.GenerateDemo(&demo, 300, 7); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"tax.csv": tax.Bytes(), "ben.csv": ben.Bytes(), "demo.csv": demo.Bytes(), "demo.policy.json": sandbox.DemoPolicy("taxhe")} {
		if err := os.WriteFile(filepath.Join(data, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pseud := func(cols ...policies.Column) policies.Schema {
		return policies.Schema{Columns: append([]policies.Column{{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium}}, cols...)}
	}
	policy := func(ds string, aggs map[string][]string, group []string) map[string]any {
		return map[string]any{"dataset": ds, "grantees": []string{"role:enterprise"}, "purpose": "benefit statistics", "modes": []string{"masked"},
			"aggregates": aggs, "group_by": group, "filter": group, "min_group_size": 10,
			"dp": map[string]any{"epsilon_per_query": 1.0, "epsilon_budget": 5.0}, "approval": map[string]any{"mode": "auto"},
			"expires": "2099-01-01T00:00:00Z", "join": map[string]any{"datasets": []string{"*"}, "lists": false, "max_rows_per_person": 1}}
	}
	steps := []struct {
		who  string
		node int
		args []string
	}{
		{"agency1", 0, []string{"dataset", "register", "--name", "taxj", "--file", filepath.Join(data, "tax.csv"), "--schema",
			writeJSONFile(t, data, "taxj.schema.json", pseud(policies.Column{Name: "income", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 100000}}))}},
		{"agency1", 0, []string{"policy", "publish", writeJSONFile(t, data, "taxj.policy.json", policy("taxj", map[string][]string{"income": {"sum", "avg", "count"}}, nil))}},
		{"agency2", 1, []string{"dataset", "register", "--name", "benj", "--file", filepath.Join(data, "ben.csv"), "--schema",
			writeJSONFile(t, data, "benj.schema.json", pseud(policies.Column{Name: "kind", Type: policies.TypeString, Class: policies.Public}))}},
		{"agency2", 1, []string{"policy", "publish", writeJSONFile(t, data, "benj.policy.json", policy("benj", map[string][]string{"*": {"count"}}, []string{"kind"}))}},
		{"agency1", 0, []string{"dataset", "register", "--name", "taxhe", "--mode", "he", "--file", filepath.Join(data, "demo.csv"), "--schema",
			writeJSONFile(t, data, "demo.schema.json", sandbox.DemoSchema())}},
		{"agency1", 0, []string{"policy", "publish", filepath.Join(data, "demo.policy.json")}},
	}
	for _, s := range steps {
		if out, err := e.at(url(s.node)).ctl(t, s.who, s.args...); err != nil {
			t.Fatalf("%s %v: %v (%s)", s.who, s.args, err, out)
		}
	}
	submit := func(mode, purpose, sql string) string {
		t.Helper()
		out, err := e.ctl(t, "enterprise", "--json", "job", "submit", "--wait", "--wait-timeout", "3m", "--mode", mode, "--purpose", purpose, "--query", sql)
		if err != nil {
			t.Fatalf("%s job: %v (%s)", mode, err, out)
		}
		return regexp.MustCompile(`job-[0-9]+`).FindString(out)
	}
	joinJob := submit("masked", "benefit statistics", "SELECT b.kind, COUNT(*), SUM(t.income) FROM taxj t JOIN benj b ON t.person_id = b.person_id GROUP BY b.kind")

	b := newBrowser(t)
	auditor, enterprise := e.startConsole(t, "auditor"), e.startConsole(t, "enterprise")

	// Auditor: the join's flows, in the console.
	b.do("open the auditor console", chromedp.Navigate(auditor))
	b.waitFor("the join's flows", fmt.Sprintf(`document.querySelector('#flows') && document.querySelector('#flows').innerText.includes(%s) && document.querySelectorAll('#flows svg.flows g.flow').length === 2`, js(joinJob+" joins")))
	flows := b.text("#flows")
	for _, want := range []string{"taxj", "benj", "income", "kind", "run by node3", "node1", "node2"} {
		if !strings.Contains(flows, want) {
			t.Errorf("the flows view lacks %q:\n%s", want, flows)
		}
	}
	// The keyboard reaches each shipment, and each says what moved where.
	label, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(() => { const g = document.querySelector('#flows g.flow'); g.focus(); return document.activeElement === g ? g.getAttribute('aria-label') : ''; })()`))
	if err != nil || !regexp.MustCompile(`^taxj: columns income, 300 rows, moved from node1 .* to node3 .*; blake3 [0-9a-f]{64} \(ledger entry [0-9]+\)$`).MatchString(label) && !regexp.MustCompile(`^benj: columns kind, 300 rows, moved from node2 .* to node3 .*; blake3 [0-9a-f]{64} \(ledger entry [0-9]+\)$`).MatchString(label) {
		t.Fatalf("a focused shipment says %q (%v)", label, err)
	}
	b.labelled("auditor")
	b.screenshot("console-auditor-flows.png")
	// ... and in the verification's report.
	b.do("verify", chromedp.Click("#verify-node"))
	b.waitFor("verification passes", `document.querySelector('#verify-verdict') && document.querySelector('#verify-verdict').innerText.includes('PASSED')`)
	b.waitFor("the report's flows", fmt.Sprintf(`(() => { const f = document.querySelector('iframe.report'); const d = f && f.contentDocument; return d && d.body && d.body.innerText.includes(%s) && d.querySelectorAll('svg.flows.wide g.flow').length === 2; })()`, js(joinJob+" joins taxj, benj")))
	// A phone: the narrow chart, nothing wider than the screen.
	// (The token left the address bar for sessionStorage: a reload keeps
	// it, where navigating to the URL again would only change its hash.)
	b.do("phone", chromedp.EmulateViewport(390, 844), chromedp.Reload())
	b.waitFor("flows on a phone", `document.querySelectorAll('#flows svg.flows g.flow').length === 2`)
	if w, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 400 {
		t.Fatalf("the auditor page is %d px wide on a 390 px phone", w)
	}
	if fs, _ := chromedp.Run(b.ctx, chromedp.Evaluate[float64](`parseFloat(getComputedStyle(document.querySelector('#flows svg.flows text')).fontSize) * document.querySelector('#flows svg.flows').getBoundingClientRect().width / document.querySelector('#flows svg.flows').viewBox.baseVal.width`)); fs < 10 {
		t.Fatalf("the flows' text is %.1f px on a phone", fs)
	}
	b.do("back to a laptop", chromedp.EmulateViewport(1366, 900))

	// Enterprise: an he job submitted through the console (sandboxctl
	// registers the account's HE public key first), its result decrypted
	// by sandboxctl.
	b.do("open the enterprise console", chromedp.Navigate(enterprise), chromedp.WaitVisible("#job-query"))
	b.do("fill the job form",
		chromedp.SendKeys("#job-purpose", "credit risk statistics"),
		chromedp.SendKeys("#job-query", "SELECT region, COUNT(*) AS people FROM taxhe GROUP BY region ORDER BY region"),
		chromedp.SetValue("#job-mode", "he"),
		chromedp.Click("#job-send"))
	b.waitFor("submitted", `document.querySelector('#status').innerText.includes('Submitted job-')`)
	heJob := regexp.MustCompile(`job-[0-9]+`).FindString(b.text("#status"))
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		out, err := e.ctl(t, "enterprise", "--json", "job", "status", heJob)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, `"status": "completed"`) {
			break
		}
		if strings.Contains(out, `"status": "failed"`) || strings.Contains(out, `"status": "rejected"`) || time.Now().After(deadline) {
			t.Fatalf("he job: %s", out)
		}
	}
	b.waitFor("its jobs", fmt.Sprintf(`document.querySelector('#jobs') && document.querySelector(%s)`, js(fmt.Sprintf(`button[aria-label="Show result of %s"]`, heJob))))
	if jobs := b.text("#jobs"); !strings.Contains(jobs, "taxj ⋈ benj") {
		t.Errorf("the jobs table does not name the join's datasets: %q", jobs)
	}
	b.do("show the he result", chromedp.Click(fmt.Sprintf(`button[aria-label="Show result of %s"]`, heJob)))
	b.waitFor("the decrypted result", fmt.Sprintf(`document.querySelector('#result').innerText.includes(%s) && document.querySelector('#result').innerText.includes('people') && document.querySelector('#result').innerText.includes('north') && !!document.querySelector('#he-note')`, js(heJob)))
	// What the page got holds no ciphertext; the node's answer holds no
	// row, only the ciphertext (and the public group keys of its layout),
	// so the counts shown were decrypted by sandboxctl; the page's script
	// has no decryption code.
	page, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(`api('GET', '/api/jobs/%s/result').then(r => JSON.stringify(r))`, heJob), chromedp.EvalAwaitPromise))
	if err != nil || !strings.Contains(page, `"rows":[[`) || strings.Contains(page, "ciphertext") || strings.Contains(page, `"he"`) {
		t.Fatalf("the page's result: %.300s (%v)", page, err)
	}
	var raw json.RawMessage
	err = client.New(client.Config{Server: url(0), KeyFile: filepath.Join(e.dir, "enterprise.key"), Timeout: time.Minute}).Do(context.Background(), "GET", "/v1/jobs/"+heJob+"/result", nil, &raw)
	if err != nil || !bytes.Contains(raw, []byte(`"ciphertext"`)) || !bytes.Contains(raw, []byte(`"rows":[]`)) {
		t.Fatalf("the node's he answer: %.300s (%v)", raw, err)
	}
	script, _ := consoleFiles.ReadFile("console/app.js")
	for _, bad := range []string{"ciphertext", "crypto.subtle", "ckks"} {
		if bytes.Contains(bytes.ToLower(script), []byte(strings.ToLower(bad))) {
			t.Errorf("the console's script mentions %q", bad)
		}
	}
	b.screenshot("console-enterprise-he.png")
}
