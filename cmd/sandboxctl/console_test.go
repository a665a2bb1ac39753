package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/datasandbox/datasandbox/api"
	"github.com/klauspost/compress/zstd"
)

// syncBuffer is a bytes.Buffer a goroutine writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var consoleURL = regexp.MustCompile(`http://(127\.0\.0\.1:[0-9]+)/#token=([0-9a-f]{64})`)

// startConsole runs "sandboxctl console" as the named account on a free
// loopback port and returns the URL it prints (with its token).
func (e *env) startConsole(t *testing.T, who string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	args := []string{"--server", e.url, "--key", filepath.Join(e.dir, who+".key"), "console", "--listen", "127.0.0.1:0",
		"--trust", e.trust, "--state", filepath.Join(e.dir, who+"-verified.json")}
	go func() { done <- run(ctx, args, out, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("console of %s did not stop", who)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := consoleURL.FindString(out.String()); m != "" {
			return m
		}
		select {
		case err := <-done:
			t.Fatalf("console of %s stopped: %v (%s)", who, err, out.String())
		default:
		}
	}
	t.Fatalf("console of %s printed no URL: %q", who, out.String())
	return ""
}

// The console refuses other hosts, other origins, requests without its
// token, and non-loopback addresses unless asked; the page itself loads
// without the token and holds no data.
func TestConsoleGuards(t *testing.T) {
	e := newEnv(t)
	u := e.startConsole(t, "agency1")
	m := consoleURL.FindStringSubmatch(u)
	base, token := "http://"+m[1], m[2]
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range []struct {
		name, path, host, origin, site, token string
		want                                  int
	}{
		{"page without token", "/", "", "", "", "", 200},
		{"api with token", "/api/me", "", "", "", token, 200},
		{"api without token", "/api/me", "", "", "", "", 401},
		{"api with a wrong token", "/api/me", "", "", "", strings.Repeat("0", 64), 401},
		{"rebinding host", "/api/me", "evil.example:80", "", "", token, 421},
		{"other origin", "/api/me", "", "http://127.0.0.1:1", "", token, 403},
		{"cross-site fetch", "/api/jobs", "", "", "cross-site", token, 403},
		{"unknown endpoint", "/api/keys", "", "", "", token, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+tc.path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.site != "" {
				req.Header.Set("Sec-Fetch-Site", tc.site)
			}
			if tc.token != "" {
				req.Header.Set("X-Console-Token", tc.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want == 200 && tc.path == "/api/me" && !bytes.Contains(b, []byte(`"agency"`)) {
				t.Fatalf("me: %s", b)
			}
			if bytes.Contains(b, []byte("private_key")) {
				t.Fatalf("the key reached the browser: %s", b)
			}
		})
	}
	for _, tc := range []struct{ name, path, body, want string }{
		{"reject needs a reason", "/api/jobs/job-1/reject", `{"reason":"  "}`, "needs a reason"},
		{"a job's mode is masked or he", "/api/jobs", `{"query":"SELECT COUNT(*) FROM tax2025","mode":"plain"}`, `mode \"plain\" is neither masked nor he`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+tc.path, strings.NewReader(tc.body))
			req.Header.Set("X-Console-Token", token)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !bytes.Contains(b, []byte(tc.want)) {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
		})
	}
	t.Run("non-loopback needs a flag", func(t *testing.T) {
		_, err := e.ctl(t, "agency1", "console", "--listen", "0.0.0.0:0")
		if err == nil || !strings.Contains(err.Error(), "--listen-anywhere") {
			t.Fatalf("got %v", err)
		}
	})
}

// chromium finds the browser the console tests drive (make test installs
// Debian's chromium when it is missing).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("no chromium: run make test as root (it installs Debian's chromium), or apt-get install chromium, or set CHROMIUM")
	return ""
}

// browser is one headless Chromium tab, every step bounded in time.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	// Chromium's helper processes may still write in its profile for a
	// moment after it stops, so the profile is removed with retries, not
	// by t.TempDir (whose cleanup fails the test on "directory not empty").
	profile, err := os.MkdirTemp("", "sandboxctl-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true), chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1366, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it must not carry a timeout (that
	// would stop the browser), so a watchdog bounds it instead.
	started := make(chan error, 1)
	go func() { _, err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); started <- err }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting chromium: %v", err)
		}
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("chromium did not start within 60s")
	}
	return &browser{t: t, ctx: ctx}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage: %s", what, err, b.text("body"))
	}
}

// waitFor waits until the JavaScript expression is truthy.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	b.do(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(40*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))
}

func (b *browser) text(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{}).innerText||''`, sel)))
	return s
}

// screenshot writes the viewport to docs/ when UPDATE_SCREENSHOTS is set
// (the README's pictures), and checks it is a PNG either way.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if os.Getenv("UPDATE_SCREENSHOTS") != "" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", name), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// labelled checks that every control on the page has an accessible name
// (a label, an aria-label or its text), so a screen reader can say it.
func (b *browser) labelled(page string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('input,textarea,select,button')].filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.innerText.trim())).map(e => e.outerHTML.slice(0, 80))`))
	if err != nil || len(bad) > 0 {
		b.t.Fatalf("%s: controls without an accessible name: %v %v", page, bad, err)
	}
}

func js(s string) string { b, _ := json.Marshal(s); return string(b) }

// Each role's main task in a real browser: the enterprise submits a job,
// the agency approves it (and rejects another, with a reason) and sees it
// run, the enterprise reads the result, the auditor verifies the ledger
// and sees it pass, then fail on a tampered export.
func TestConsoleInBrowser(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t)
	e.registerAndPublish(t, "manual")
	bank, agency, auditor := e.startConsole(t, "bank"), e.startConsole(t, "agency1"), e.startConsole(t, "auditor")

	// Enterprise: submit a masked job through the form.
	b.do("open the enterprise console", chromedp.Navigate(bank), chromedp.WaitVisible("#job-query"))
	b.waitFor("catalogue", `document.querySelector('#catalogue') && document.querySelector('#catalogue').innerText.includes('tax2025')`)
	b.do("fill the job form",
		chromedp.SendKeys("#job-purpose", "credit risk statistics"),
		chromedp.SendKeys("#job-query", "SELECT region, AVG(income) FROM tax2025 GROUP BY region"),
		chromedp.Click("#job-send"))
	b.waitFor("submitted", `document.querySelector('#status').innerText.includes('Submitted job-')`)
	id := regexp.MustCompile(`job-[0-9]+`).FindString(b.text("#status"))
	if !strings.Contains(b.text("#status"), "pending") {
		t.Fatalf("submitted job: %q", b.text("#status"))
	}
	// A second job, to be rejected.
	out, err := e.ctl(t, "bank", "--json", "job", "submit", "--purpose", "credit risk statistics", "--query", "SELECT COUNT(*) FROM tax2025")
	if err != nil {
		t.Fatal(err)
	}
	other := regexp.MustCompile(`job-[0-9]+`).FindString(out)

	// Agency: the pending jobs, with who asks and the budget; approve one,
	// reject the other (a reason is required), see the first one run.
	b.do("open the agency console", chromedp.Navigate(agency))
	card := fmt.Sprintf(`article[aria-label="job %s"]`, id)
	b.waitFor("pending job card", fmt.Sprintf(`document.querySelector(%s) && document.querySelector(%s)`, js(card), js(fmt.Sprintf(`article[aria-label="job %s"]`, other))))
	if c := b.text(card); !strings.Contains(c, "bank (bank)") || !strings.Contains(c, "credit risk statistics") || !strings.Contains(c, "of 5 ε left") || !strings.Contains(c, "AVG(income)") {
		t.Fatalf("pending job card: %q", c)
	}
	b.screenshot("console-agency.png")
	b.labelled("agency page")
	otherCard := fmt.Sprintf(`article[aria-label="job %s"]`, other)
	b.do("reject without a reason", chromedp.Click(otherCard+" button.danger"))
	b.waitFor("reason asked", `document.querySelector('#status').innerText.includes('needs a reason')`)
	b.do("reject with a reason", chromedp.SendKeys("#reason-"+other, "purpose too broad"), chromedp.Click(otherCard+" button.danger"))
	b.waitFor("rejected", fmt.Sprintf(`document.querySelector('#status').innerText.includes('Rejected %s')`, other))
	// Approve with the keyboard alone: Tab to the button, press Enter.
	b.do("focus the top of the page", chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
	for i := 0; ; i++ {
		if i == 40 {
			t.Fatalf("Tab never reached the approve button of %s", id)
		}
		b.do("tab", chromedp.KeyEvent("\t"))
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		focused, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement ? document.activeElement.innerText : ''`))
		cancel()
		if focused == "Approve "+id {
			break
		}
	}
	b.do("approve", chromedp.KeyEvent("\r"))
	b.waitFor("approved", fmt.Sprintf(`document.querySelector('#status').innerText.includes('Approved %s')`, id))
	b.waitFor("the job ran", fmt.Sprintf(`[...document.querySelectorAll('#usage tr')].some(r => r.innerText.includes(%s) && r.innerText.includes('completed'))`, js(id)))
	// Another job waits: what bank has left is the state's budget, less
	// what the approved job was charged.
	var ran api.JobResponse
	if out, err := e.ctl(t, "bank", "--json", "job", "status", id); err != nil || json.Unmarshal([]byte(out), &ran) != nil || ran.Epsilon <= 0 {
		t.Fatalf("job status: %q %v", out, err)
	}
	out, err = e.ctl(t, "bank", "--json", "job", "submit", "--purpose", "credit risk statistics", "--query", "SELECT COUNT(*) FROM tax2025")
	if err != nil {
		t.Fatal(err)
	}
	third := fmt.Sprintf(`article[aria-label="job %s"]`, regexp.MustCompile(`job-[0-9]+`).FindString(out))
	left := strconv.FormatFloat(math.Round((5-ran.Epsilon)*1000)/1000, 'f', -1, 64)
	b.waitFor("the budget left, from the state", fmt.Sprintf(`document.querySelector(%s) && document.querySelector(%s).innerText.includes(%s)`, js(third), js(third), js("org:bank has "+left+" of 5 ε left on the people of tax2025")))

	// Enterprise: the result, as a table.
	b.do("back to the enterprise console", chromedp.Navigate(bank))
	btn := fmt.Sprintf(`button[aria-label="Show result of %s"]`, id)
	b.waitFor("result button", fmt.Sprintf(`document.querySelector(%s)`, js(btn)))
	b.do("show the result", chromedp.Click(btn))
	// The first table is the result's (the noise statements follow in another).
	b.waitFor("result table", `document.querySelector('#result tbody') && document.querySelector('#result tbody').querySelectorAll('tr').length === 4`)
	if r := b.text("#result"); !strings.Contains(r, "Result of "+id) || !strings.Contains(r, "region") || !strings.Contains(r, "sha256") || !strings.Contains(r, " ± ") {
		t.Fatalf("result: %q", r)
	}
	b.screenshot("console-enterprise.png")
	b.labelled("enterprise page")

	// Auditor: verify the ledger; then a tampered export.
	b.do("open the auditor console", chromedp.Navigate(auditor), chromedp.WaitVisible("#verify-node"))
	b.do("verify", chromedp.Click("#verify-node"))
	b.waitFor("verification passes", `document.querySelector('#verify-verdict') && document.querySelector('#verify-verdict').innerText.includes('PASSED')`)
	b.waitFor("report shown", `(f => f && f.contentDocument && f.contentDocument.body && f.contentDocument.body.innerText.includes('Budgets'))(document.querySelector('iframe.report'))`)
	b.waitFor("history of one verification", `document.querySelector('#history') && document.querySelector('#history').innerText.includes('passed')`)
	b.screenshot("console-auditor.png")
	b.labelled("auditor page")
	exp := filepath.Join(e.dir, "ledger.zst")
	if _, err := e.ctl(t, "auditor", "ledger", "export", "--out", exp); err != nil {
		t.Fatal(err)
	}
	bad := tamperExport(t, exp, 3)
	b.do("verify the tampered export", chromedp.SendKeys("#export-file", bad), chromedp.Click("#verify-file"))
	b.waitFor("verification fails", `document.querySelector('#verify-verdict') && document.querySelector('#verify-verdict').innerText.includes('FAILED')`)
	if v := b.text("#verify-verdict"); !strings.Contains(v, "index 2") {
		t.Fatalf("tampered export: %q", v)
	}
	b.waitFor("checkpoint history", `document.querySelectorAll('#history tbody tr').length === 2`)
	if h := b.text("#history"); !strings.Contains(h, "passed") || !strings.Contains(h, "failed") || !strings.Contains(h, "node1") {
		t.Fatalf("checkpoint history: %q", h)
	}
	// The checkpoint kept for the next rollback check is the one the
	// passing verification saved, in the console's --state file.
	if k := b.text("#kept"); !strings.Contains(k, "auditor-verified.json") || !regexp.MustCompile(`checkpoint of size [1-9][0-9]*, root \S+=`).MatchString(k) {
		t.Fatalf("kept checkpoint: %q", k)
	}
	b.do("prove the job", chromedp.SendKeys("#proof-of", id), chromedp.Click("#proof-go"))
	b.waitFor("proof", `document.querySelector('#proof-out').innerText.includes('Verified')`)

	// A phone's width: the agency page still lays out (no horizontal page
	// scroll beyond the tables' own).
	b.do("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(agency))
	b.waitFor("agency on a phone", `document.querySelector('#datasets') && document.querySelector('#datasets').innerText.includes('tax2025')`)
	if w, _ := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 400 {
		t.Fatalf("the agency page is %d px wide on a 390 px phone", w)
	}
	b.screenshot("console-agency-phone.png")
}

// tamperExport flips one bit of the first entry on line n of an export and
// returns the new file's path.
func tamperExport(t *testing.T, exp string, n int) string {
	t.Helper()
	f, err := os.Open(exp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, _ := zstd.NewReader(f)
	defer z.Close()
	var lines [][]byte
	sc := bufio.NewScanner(z)
	sc.Buffer(nil, 256<<20)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	// A block line of the export format (api/client/export.go).
	var line struct {
		Block   json.RawMessage `json:"block"`
		Entries []string        `json:"entries"`
	}
	if err := json.Unmarshal(lines[n], &line); err != nil {
		t.Fatal(err)
	}
	ent, _ := base64.StdEncoding.DecodeString(line.Entries[0])
	ent[len(ent)-70] ^= 1
	line.Entries[0] = base64.StdEncoding.EncodeToString(ent)
	lines[n], _ = json.Marshal(line)
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	zw.Write(bytes.Join(lines, []byte("\n")))
	zw.Close()
	bad := filepath.Join(filepath.Dir(exp), "tampered.zst")
	if err := os.WriteFile(bad, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return bad
}

// A verification's progress reaches the console through the bar's sink,
// every block, however fast it is drawn on a terminal.
func TestProgressSink(t *testing.T) {
	v := &verifyRun{}
	p := newProgress(v, "verifying entries", 30, false)
	for range 3 {
		p.Add(10)
	}
	p.Done()
	s := v.status()
	if s.Label != "verifying entries" || s.Done != 30 || s.Total != 30 {
		t.Fatalf("sink saw %+v", s)
	}
}
