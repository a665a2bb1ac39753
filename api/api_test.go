package api_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

func TestSignatureFailures(t *testing.T) {
	f := apitest.New(t)
	path := "/v1/jobs"
	body := []byte(`{"query":"SELECT COUNT(*) FROM tax2025","mode":"masked","purpose":"credit risk statistics"}`)
	stranger, _ := chain.GenerateKey(chain.Ed25519)

	cases := []struct {
		name string
		req  func() *http.Request
		code string
	}{
		{"unsigned", func() *http.Request { return f.Request(t, "", 0, "POST", path, body) }, "unsigned"},
		{"tampered body", func() *http.Request {
			r := f.Request(t, "bank", 0, "POST", path, body)
			r.Body = ioNop(bytes.Replace(body, []byte("masked"), []byte("he\x20\x20\x20\x20"), 1))
			return r
		}, "bad-digest"},
		{"wrong key", func() *http.Request {
			r, _ := http.NewRequest("POST", f.Srv[0].URL+path, bytes.NewReader(body))
			audit.SignRequest(r, body, stranger.Ed25519(), f.Keys["bank"].Address().String())
			return r
		}, "bad-signature"},
		{"expired created", func() *http.Request {
			r, _ := http.NewRequest("POST", f.Srv[0].URL+path, bytes.NewReader(body))
			apitest.ManualSign(r, body, f.Keys["bank"], time.Now().Add(-6*time.Minute))
			return r
		}, "stale-signature"},
		{"created in the future", func() *http.Request {
			r, _ := http.NewRequest("POST", f.Srv[0].URL+path, bytes.NewReader(body))
			apitest.ManualSign(r, body, f.Keys["bank"], time.Now().Add(6*time.Minute))
			return r
		}, "stale-signature"},
		{"unknown account", func() *http.Request {
			r, _ := http.NewRequest("POST", f.Srv[0].URL+path, bytes.NewReader(body))
			audit.SignRequest(r, body, stranger.Ed25519(), stranger.Address().String())
			return r
		}, "unknown-account"},
		{"keyid not an address", func() *http.Request {
			r, _ := http.NewRequest("POST", f.Srv[0].URL+path, bytes.NewReader(body))
			audit.SignRequest(r, body, stranger.Ed25519(), "me")
			return r
		}, "bad-signature"},
		{"target rewritten", func() *http.Request {
			r := f.Request(t, "bank", 0, "GET", "/v1/jobs", nil)
			r.URL.Path = "/v1/datasets"
			return r
		}, "bad-signature"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, p := apitest.Send(t, c.req(), nil)
			if code != 401 || p.Code != c.code || p.Detail == "" {
				t.Fatalf("got %d %+v, want 401 %s", code, p, c.code)
			}
		})
	}
	// A request signed by hand, as an independent RFC 9421 implementation
	// would, is accepted (interoperability).
	t.Run("independent signer", func(t *testing.T) {
		f.WithPolicy(t, nil)
		r, _ := http.NewRequest("POST", f.Srv[2].URL+path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		apitest.ManualSign(r, body, f.Keys["bank"], time.Now())
		var j JobResponse
		if code, p := apitest.Send(t, r, &j); code != 201 || !accepted(j.Status) {
			t.Fatalf("%d %+v %+v", code, p, j)
		}
		// Covering more than required (a header and @authority) works too,
		// on the node and in every node's replay of the relayed request.
		r, _ = http.NewRequest("POST", f.Srv[1].URL+path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Request-Id", "abc-123")
		apitest.ManualSign(r, body, f.Keys["bank"], time.Now(), "content-type", "x-request-id", "@authority")
		if code, p := apitest.Send(t, r, &j); code != 201 || !accepted(j.Status) {
			t.Fatalf("extra components: %d %+v %+v", code, p, j)
		}
	})
}

// accepted: authorised, and perhaps already picked up by the runner.
func accepted(status string) bool {
	return status == policies.JobAuthorised || status == policies.JobRunning || status == policies.JobCompleted
}

func ioNop(b []byte) *nopCloser { return &nopCloser{bytes.NewReader(b)} }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// The permission rules of the must-hold list, over real HTTP with real
// signatures.
func TestPermissions(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, func(p map[string]any) { p["approval"] = map[string]any{"mode": "manual", "approvers": 1} })
	var job JobResponse
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT region, AVG(income) FROM tax2025 GROUP BY region"), &job)
	if job.Status != policies.JobPending {
		t.Fatalf("job %+v", job)
	}
	forbidden := []struct {
		who, method, path string
		body              any
	}{
		{"bank", "POST", "/v1/policies", apitest.TaxPolicy()},
		{"bank", "POST", "/v1/jobs/" + job.Job + "/approve", nil},
		{"shop", "GET", "/v1/jobs/" + job.Job, nil},
		{"agency2", "POST", "/v1/jobs/" + job.Job + "/approve", nil},
		{"agency2", "POST", "/v1/policies", apitest.TaxPolicy()},
		{"auditor", "POST", "/v1/policies", apitest.TaxPolicy()},
		{"auditor", "POST", "/v1/jobs", apitest.JobBody("SELECT COUNT(*) FROM tax2025")},
		{"auditor", "POST", "/v1/datasets", map[string]any{"name": "x", "schema": apitest.TaxSchema, "sha256": strings.Repeat("0", 64), "rows": 1}},
		{"auditor", "POST", "/v1/accounts/grants", map[string]string{"address": f.Keys["auditor"].Address().String(), "role": "admin"}},
		{"auditor", "POST", "/v1/jobs/" + job.Job + "/approve", nil},
		{"bank", "POST", "/v1/accounts/grants", map[string]string{"address": f.Keys["bank"].Address().String(), "role": "admin"}},
	}
	for _, c := range forbidden {
		t.Run(c.who+" "+c.method+" "+c.path, func(t *testing.T) {
			code, p := f.Do(t, c.who, 1, c.method, c.path, c.body, nil)
			if code != 403 || p.Detail == "" {
				t.Errorf("%s %s %s: %d %+v, want 403", c.who, c.method, c.path, code, p)
			}
		})
	}
	// The missing permission is named.
	if _, p := f.Do(t, "bank", 0, "POST", "/v1/policies", apitest.TaxPolicy(), nil); !strings.Contains(p.Detail, "lacks permission policy.publish") {
		t.Errorf("detail %q", p.Detail)
	}
	// The auditor reads everything.
	var j2 JobResponse
	f.Must(t, "auditor", 2, "GET", "/v1/jobs/"+job.Job, nil, &j2)
	var all EntriesResponse
	f.Must(t, "auditor", 2, "GET", "/v1/ledger/entries?start=0", nil, &all)
	size := f.C.Nodes[2].Ledger().Size()
	if uint64(len(all.Entries)) != size {
		t.Fatalf("auditor sees %d of %d entries", len(all.Entries), size)
	}
	// An enterprise reads only its own entries; an agency its group's.
	var own EntriesResponse
	f.Must(t, "bank", 2, "GET", "/v1/ledger/entries?start=0", nil, &own)
	if len(own.Entries) != 1 || own.Entries[0].Index != indexHint(t, job) {
		t.Fatalf("bank sees %+v", own.Entries)
	}
	var group EntriesResponse
	f.Must(t, "agency1b", 2, "GET", "/v1/ledger/entries?start=0", nil, &group)
	if len(group.Entries) != 2 { // agency1's dataset and policy
		t.Fatalf("agency1b sees %d entries", len(group.Entries))
	}
	// The owning agency approves; the job is authorised.
	var approved JobResponse
	f.Must(t, "agency1b", 0, "POST", "/v1/jobs/"+job.Job+"/approve", nil, &approved)
	if !accepted(approved.Status) {
		t.Fatalf("%+v", approved)
	}
}

// indexHint reads the entry index out of a job id (job-<index>).
func indexHint(t *testing.T, j JobResponse) uint64 {
	var n uint64
	if _, err := fmt.Sscanf(j.Job, "job-%d", &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestJobLifecycleAndRefusals(t *testing.T) {
	f := apitest.New(t)
	pol := f.WithPolicy(t, nil)
	var j JobResponse
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT VAR(income) FROM tax2025 WHERE region = 'north'"), &j)
	if !accepted(j.Status) || j.Policy != pol || j.Epsilon != 0.5 {
		t.Fatalf("%+v", j)
	}
	// Refused by policy: committed with its reason.
	f.Must(t, "bank", 1, "POST", "/v1/jobs", apitest.JobBody("SELECT CORR(income, income) FROM tax2025"), &j)
	if j.Status != policies.JobRejected || j.Reason != "policy "+pol+": aggregate corr(income) is not allowed" {
		t.Fatalf("%+v", j)
	}
	var seen JobResponse
	f.Must(t, "bank", 2, "GET", "/v1/jobs/"+j.Job, nil, &seen)
	if seen.Reason != j.Reason {
		t.Fatalf("other node sees %+v", seen)
	}
	// Bad SQL is refused before the ledger, with its position.
	code, p := f.Do(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT * FROM tax2025"), nil)
	if code != 422 || p.Code != "refused" || !strings.Contains(p.Detail, "column 8") || p.Position != 8 {
		t.Fatalf("%d %+v", code, p)
	}
	code, p = f.Do(t, "bank", 0, "GET", "/v1/jobs/"+j.Job+"/result", nil, nil)
	if code != 409 || !strings.Contains(p.Detail, "rejected") {
		t.Fatalf("result of a rejected job: %d %+v", code, p)
	}
	var list struct{ Jobs []JobResponse }
	f.Must(t, "bank", 0, "GET", "/v1/jobs", nil, &list)
	if len(list.Jobs) != 2 {
		t.Fatalf("bank lists %d jobs", len(list.Jobs))
	}
	f.Must(t, "shop", 0, "GET", "/v1/jobs", nil, &list)
	if len(list.Jobs) != 0 {
		t.Fatalf("shop lists %d jobs", len(list.Jobs))
	}
}

// 50 concurrent submissions, spread over the three nodes, against a budget
// that allows 10: exactly 10 are authorised.
func TestBudgetUnderConcurrency(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var j JobResponse
			code, p := f.Do(t, "bank", i%3, "POST", "/v1/jobs", apitest.JobBody(fmt.Sprintf("SELECT SUM(income) FROM tax2025 WHERE age > %d", i)), &j)
			mu.Lock()
			defer mu.Unlock()
			if code != 201 {
				statuses[fmt.Sprintf("http %d %s", code, p.Detail)]++
				return
			}
			if accepted(j.Status) {
				j.Status = policies.JobAuthorised // the runner may already have picked it up
			}
			statuses[j.Status]++
		}(i)
	}
	wg.Wait()
	if statuses[policies.JobAuthorised] != 10 || statuses[policies.JobRejected] != 40 {
		t.Fatalf("statuses %v", statuses)
	}
	// The authorised jobs run (job.start, job.complete entries); wait until
	// they are done and every node has every entry.
	deadline := time.Now().Add(30 * time.Second)
	for {
		busy := f.SMs[0].M.Jobs(func(j policies.Job) bool {
			return j.Status == policies.JobAuthorised || j.Status == policies.JobRunning
		})
		if len(busy) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs still running", len(busy))
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.C.WaitConverged(f.C.Nodes[0].Ledger().Size())
	for i, sm := range f.SMs {
		if got := sm.M.Spent(policies.Address(f.Keys["bank"].Address()), "tax2025"); got != 5 {
			t.Fatalf("node %d: spent %v", i+1, got)
		}
		if sm.M.StateHash() != f.SMs[0].M.StateHash() {
			t.Fatalf("node %d state differs", i+1)
		}
	}
}

func TestAccountsOverHTTP(t *testing.T) {
	f := apitest.New(t)
	k, _ := chain.GenerateKey(chain.Ed25519)
	f.Keys["newco"] = k
	// Unknown until it registers its key; then it has no role.
	if code, p := f.Do(t, "newco", 0, "GET", "/v1/datasets", nil, nil); code != 401 || p.Code != "unknown-account" {
		t.Fatalf("%d %+v", code, p)
	}
	f.Must(t, "newco", 0, "POST", "/v1/accounts", map[string]any{"public_key": k.PublicKey(), "algorithm": "ed25519", "name": "NewCo"}, nil)
	if code, _ := f.Do(t, "newco", 1, "POST", "/v1/jobs", apitest.JobBody("SELECT COUNT(*) FROM tax2025"), nil); code != 403 {
		t.Fatalf("job before grant: %d", code)
	}
	f.Must(t, "admin", 1, "POST", "/v1/accounts/grants", map[string]string{"address": k.Address().String(), "role": "enterprise", "org": "newco"}, nil)
	var acc AccountResponse
	f.Must(t, "newco", 2, "GET", "/v1/accounts/"+k.Address().String(), nil, &acc)
	if acc.Org != "newco" || len(acc.Roles) != 1 || acc.Roles[0] != "enterprise" {
		t.Fatalf("%+v", acc)
	}
	// Registering someone else's key is refused.
	other, _ := chain.GenerateKey(chain.Ed25519)
	if code, _ := f.Do(t, "newco", 0, "POST", "/v1/accounts", map[string]any{"public_key": other.PublicKey(), "algorithm": "ed25519"}, nil); code != 400 {
		t.Fatalf("foreign key registration: %d", code)
	}
}

func TestLedgerEndpoints(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	size := f.C.WaitConverged(3)

	var h HealthResponse
	if code, _ := f.Do(t, "", 0, "GET", "/v1/health", nil, &h); code != 200 || h.Status != "ok" || h.LedgerSize != size || h.Leader == "" {
		t.Fatalf("health %d %+v", code, h)
	}
	var cp CheckpointResponse
	f.Must(t, "auditor", 0, "GET", "/v1/ledger/checkpoint", nil, &cp)
	if cp.Size != size || !strings.HasPrefix(cp.Note, "datasandbox/ledger\n") {
		t.Fatalf("checkpoint %+v", cp)
	}
	root, _ := base64.StdEncoding.DecodeString(cp.Root)
	var er EntriesResponse
	f.Must(t, "auditor", 1, "GET", "/v1/ledger/entries?start=0&end=100", nil, &er)
	var tr chain.Tree
	var leaves [][]byte
	for _, e := range er.Entries {
		raw, _ := base64.StdEncoding.DecodeString(e.Entry)
		leaves = append(leaves, raw)
		tr.AppendLeafHash(chain.LeafHash(raw))
	}
	if got, _ := tr.Root(size); !bytes.Equal(got[:], root) {
		t.Fatal("root recomputed from entries differs from the checkpoint")
	}
	var ip InclusionResponse
	f.Must(t, "bank", 2, "GET", fmt.Sprintf("/v1/ledger/proof/inclusion?index=1&size=%d", size), nil, &ip)
	lh := chain.LeafHash(leaves[1])
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 1, size, lh[:], decode64(t, ip.Hashes), root); err != nil {
		t.Fatal(err)
	}
	var cpr ConsistencyResponse
	f.Must(t, "bank", 2, "GET", fmt.Sprintf("/v1/ledger/proof/consistency?first=1&second=%d", size), nil, &cpr)
	r1, _ := tr.Root(1)
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 1, size, decode64(t, cpr.Hashes), r1[:], root); err != nil {
		t.Fatal(err)
	}
	errs := []struct {
		path   string
		status int
		code   string
	}{
		{"/v1/ledger/entries", 400, "missing-parameter"},
		{"/v1/ledger/entries?start=x", 400, "bad-parameter"},
		{"/v1/ledger/entries?start=5&end=2", 400, "bad-range"},
		{"/v1/ledger/proof/inclusion?index=0&size=999", 400, "bad-proof-request"},
		{"/v1/ledger/proof/consistency?first=0&second=2", 400, "bad-proof-request"},
		{"/v1/jobs/job-999", 404, "not-found"},
	}
	for _, c := range errs {
		t.Run(c.path, func(t *testing.T) {
			if code, p := f.Do(t, "auditor", 0, "GET", c.path, nil, nil); code != c.status || p.Code != c.code {
				t.Errorf("%s: %d %+v", c.path, code, p)
			}
		})
	}
}

func decode64(t *testing.T, in []string) [][]byte {
	t.Helper()
	out := make([][]byte, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// Every route is in the OpenAPI document, and every documented path is a
// route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f := apitest.New(t)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	f.Must(t, "", 0, "GET", "/v1/openapi.json", nil, &doc)
	s, _ := New(DefaultConfig(), f.C.Nodes[0], f.SMs[0].M, f.C.Keys[0], nil)
	n := 0
	for _, r := range s.Routes() {
		if _, ok := doc.Paths[r.Path][strings.ToLower(r.Method)]; !ok {
			t.Errorf("%s %s is not documented", r.Method, r.Path)
		}
		n++
	}
	m := 0
	for _, ops := range doc.Paths {
		m += len(ops)
	}
	if m != n {
		t.Errorf("document has %d operations, server %d routes", m, n)
	}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Each account has its own request budget per node: beyond the burst the
// node answers 429 with Retry-After and the reason; other accounts are
// unaffected, and the budget refills.
func TestRateLimitPerAccount(t *testing.T) {
	f := apitest.NewWith(t, apitest.Options{API: func(c *Config) { c.RateLimit, c.RateBurst = 5, 10 }})
	limited := 0
	var last *http.Response
	for range 15 {
		req := f.Request(t, "bank", 0, "GET", "/v1/datasets", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			last = resp
		}
	}
	if limited < 4 || limited > 6 || last.Header.Get("Retry-After") == "" {
		t.Fatalf("%d of 15 requests limited (want ~5 beyond a burst of 10), Retry-After %q", limited, last.Header.Get("Retry-After"))
	}
	var p Problem
	if code, p2 := f.Do(t, "bank", 0, "GET", "/v1/datasets", nil, &p); code != 429 || p2.Code != "rate-limited" || !strings.Contains(p2.Detail, "retry in") {
		t.Fatalf("limited request: %d %+v", code, p2)
	}
	if code, _ := f.Do(t, "shop", 0, "GET", "/v1/datasets", nil, nil); code != 200 {
		t.Fatalf("another account was limited: %d", code)
	}
	if code, _ := f.Do(t, "bank", 1, "GET", "/v1/datasets", nil, nil); code != 200 {
		t.Fatalf("another node counts separately: %d", code)
	}
	time.Sleep(400 * time.Millisecond) // 2 tokens back at 5/s
	if code, _ := f.Do(t, "bank", 0, "GET", "/v1/datasets", nil, nil); code != 200 {
		t.Fatalf("the budget did not refill: %d", code)
	}
}

// GET /v1/jobs/{id}?wait=D answers when the job ends, without polling;
// a bad wait is refused.
func TestJobWait(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	var j JobResponse
	f.Must(t, "bank", 1, "POST", "/v1/jobs", apitest.JobBody("SELECT region, COUNT(*) FROM tax2025 GROUP BY region"), &j)
	start := time.Now()
	f.Must(t, "bank", 2, "GET", "/v1/jobs/"+j.Job+"?wait=20s", nil, &j)
	if j.Status != "completed" || time.Since(start) > 10*time.Second {
		t.Fatalf("after wait: %+v in %s", j, time.Since(start))
	}
	for _, w := range []string{"forever", "-1s", "2m"} {
		t.Run("wait="+w, func(t *testing.T) {
			if code, p := f.Do(t, "bank", 0, "GET", "/v1/jobs/"+j.Job+"?wait="+w, nil, nil); code != 400 || p.Code != "bad-wait" {
				t.Fatalf("wait=%s: %d %+v", w, code, p)
			}
		})
	}
}
