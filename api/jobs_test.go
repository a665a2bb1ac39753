package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

func waitJob(t *testing.T, f *apitest.Consortium, who string, node int, id string) JobResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var j JobResponse
		f.Must(t, who, node, "GET", "/v1/jobs/"+id, nil, &j)
		if j.Status == policies.JobCompleted || j.Status == policies.JobFailed || j.Status == policies.JobRejected {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s", id, j.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A job runs on the node holding the data; its result is delivered by any
// node, only to those who may read it, and hashes to what the ledger holds.
func TestJobRunsAndResultMatchesLedger(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	var j JobResponse
	f.Must(t, "bank", 1, "POST", "/v1/jobs", apitest.JobBody("SELECT region, COUNT(*) AS n, AVG(income) FROM tax2025 GROUP BY region ORDER BY region"), &j)
	done := waitJob(t, f, "bank", 2, j.Job)
	if done.Status != policies.JobCompleted || len(done.ResultSHA256) != 64 {
		t.Fatalf("%+v", done)
	}
	var res sandbox.Result
	f.Must(t, "bank", 2, "GET", "/v1/jobs/"+j.Job+"/result", nil, &res) // node 3 fetches it from node 1
	if res.ResultSHA256 != done.ResultSHA256 || res.Job != j.Job || len(res.Rows) != 4 || res.EpsilonSpent != 0.5 {
		t.Fatalf("result %+v", res)
	}
	if strings.Join(res.Columns, ",") != "region,n,avg(income)" || res.Rows[0][0] != "east" {
		t.Fatalf("columns %v rows %v", res.Columns, res.Rows)
	}
	if code, p := f.Do(t, "shop", 0, "GET", "/v1/jobs/"+j.Job+"/result", nil, nil); code != 403 {
		t.Fatalf("another enterprise read the result: %d %+v", code, p)
	}
	// Without a key ceremony (this fixture runs none), an he job is
	// refused at submission, with the reason, before any budget is spent.
	f.Must(t, "bank", 0, "POST", "/v1/jobs", map[string]string{"query": "SELECT COUNT(*) FROM tax2025", "mode": "he", "purpose": "credit risk statistics"}, &j)
	if j.Status != policies.JobRejected || !strings.Contains(j.Reason, "HE key ceremony") || j.Epsilon != 0 {
		t.Fatalf("%+v", j)
	}
	// A refused query fails with the engine's reason.
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT COUNT(*) FROM tax2025 WHERE region = 1"), &j)
	if done := waitJob(t, f, "bank", 0, j.Job); done.Status != policies.JobFailed || !strings.Contains(done.Reason, "quote the value") {
		t.Fatalf("%+v", done)
	}
}

func TestUploadErrors(t *testing.T) {
	f := apitest.New(t)
	bad := []byte("person_id,age,region,income\nP1,30,north,100\nP2,xx,north,100\n")
	code, _, p := f.Upload(t, "agency1", 0, apitest.TaxSchema, bad)
	if code != 400 || !strings.Contains(p.Detail, `line 3, column "age"`) {
		t.Fatalf("bad CSV: %d %+v", code, p)
	}
	if code, _, _ := f.Upload(t, "bank", 0, apitest.TaxSchema, apitest.TaxCSV(10)); code != 403 {
		t.Fatalf("enterprise uploaded: %d", code)
	}
	// A body altered after signing is refused.
	data := apitest.TaxCSV(20)
	req, _ := http.NewRequest("POST", f.Srv[0].URL+"/v1/uploads?schema="+b64url(apitest.TaxSchema), bytes.NewReader(data))
	k := f.Keys["agency1"]
	audit.SignRequest(req, data, k.Ed25519(), k.Address().String())
	req.Body = ioNop(bytes.Replace(data, []byte("P000001"), []byte("P999999"), 1))
	if code, p := apitest.Send(t, req, nil); code != 401 || p.Code != "bad-digest" {
		t.Fatalf("tampered upload: %d %+v", code, p)
	}
	// Registering without the upload on this node is refused; the catalogue is unchanged.
	if code, p := f.Do(t, "agency1", 0, "POST", "/v1/datasets", map[string]any{"name": "x", "schema": apitest.TaxSchema, "sha256": strings.Repeat("ab", 32), "rows": 1}, nil); code != 409 || p.Code != "no-upload" {
		t.Fatalf("register without upload: %d %+v", code, p)
	}
	var list struct{ Datasets []DatasetResponse }
	f.Must(t, "bank", 0, "GET", "/v1/datasets", nil, &list)
	if len(list.Datasets) != 0 {
		t.Fatalf("catalogue %+v", list)
	}
	_ = json.Valid
}

func TestMetrics(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	var j JobResponse
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT COUNT(*) FROM tax2025"), &j)
	waitJob(t, f, "bank", 0, j.Job)
	f.Do(t, "bank", 0, "GET", "/v1/no/such/path/123", nil, nil)
	// The runner observes the job's time just after its job.complete is
	// applied, which is when waitJob sees it completed: read until the
	// observation is there (or 10 s).
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(f.Srv[0].URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if strings.Contains(body, `datasandbox_job_seconds_count{mode="masked"} 1`) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		`datasandbox_jobs{mode="masked",status="completed"} 1`,
		`datasandbox_job_seconds_count{mode="masked"} 1`, // node 1 holds the data and ran it
		`datasandbox_http_requests_total{method="POST",route="/v1/jobs",status="201"} 1`,
		`route="unmatched"`,
		"datasandbox_ledger_entries ",
		"datasandbox_raft_leader ",
		"datasandbox_budget_refusals 0",
	} {
		t.Run(want, func(t *testing.T) {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %q", want)
			}
		})
	}
	if strings.Contains(body, "/v1/no/such") {
		t.Error("a raw path became a label")
	}
}

// What the encrypted engine cannot evaluate is refused before the ledger
// (no entry, no budget), with the reason.
func TestHEQueryRefusedBeforeLedger(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	var before StateResponse // a signed read: caught up with every write
	f.Must(t, "auditor", 0, "GET", "/v1/ledger/state", nil, &before)
	for sql, want := range map[string]string{
		"SELECT HISTOGRAM(income, 0, 100000, 10) FROM tax2025":                     "HISTOGRAM is not available in he mode",
		"SELECT region, COUNT(*) FROM tax2025 WHERE income > 5000 GROUP BY region": "WHERE reads clear columns only; income is encrypted",
		"SELECT SUM(age) FROM tax2025":                                             `column "age" is not numeric`,
		"SELECT COUNT(*) FROM tax2025 GROUP BY CASE WHEN income > 5 THEN 1 END":    "column 49: in he mode CASE conditions read clear columns only",
	} {
		t.Run(sql, func(t *testing.T) {
			code, p := f.Do(t, "bank", 0, "POST", "/v1/jobs", map[string]string{"query": sql, "mode": "he", "purpose": "credit risk statistics"}, nil)
			if code != 422 || p.Code != "refused" || !strings.Contains(p.Detail, want) {
				t.Fatalf("%s: %d %+v", sql, code, p)
			}
		})
	}
	// Joins are checked whole before the ledger: a self-join when parsed,
	// a key without consortium pseudonyms against the committed state.
	for sql, want := range map[string]struct {
		code int
		msg  string
	}{
		"SELECT COUNT(*) FROM tax2025 AS a JOIN tax2025 AS b ON a.person_id = b.person_id":      {422, "joined with itself (self-joins are not run) (rule: join)"},
		"SELECT COUNT(*) FROM tax2025 AS a JOIN benefits2025 AS b ON a.person_id = b.person_id": {422, "tax2025.person_id is an identifier column with agency pseudonyms (not joinable); joins match only identifier columns with consortium pseudonyms (rule: join)"},
	} {
		t.Run(sql, func(t *testing.T) {
			code, p := f.Do(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody(sql), nil)
			if code != want.code || !strings.Contains(p.Detail, want.msg) {
				t.Fatalf("%s: %d %+v", sql, code, p)
			}
		})
	}
	var after StateResponse
	f.Must(t, "auditor", 0, "GET", "/v1/ledger/state", nil, &after)
	if after.Applied != before.Applied {
		t.Fatalf("refused queries reached the ledger: %d -> %d entries", before.Applied, after.Applied)
	}
}

// Queries that cannot run are refused before the ledger, whatever the
// mode, with the exact reason and its position: nothing is committed and
// no budget is spent. Only policy decisions become rejected jobs.
func TestQueryRefusedBeforeLedger(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	var before StateResponse
	f.Must(t, "auditor", 0, "GET", "/v1/ledger/state", nil, &before)
	cases := []struct {
		sql, code, want string
		pos             int
	}{
		{"SELECT regon, COUNT(*) FROM tax2025 GROUP BY regon", "refused", `unknown column "regon"`, 46},
		{"SELECT COUNT(*) FROM tax2025 WHERE regon = 'north'", "refused", `unknown column "regon"`, 36},
		{"SELECT MIN(income) FROM tax2025", "refused", `MIN of sensitive column "income" would return an individual's value`, 8},
		{"SELECT person_id, COUNT(*) FROM tax2025 GROUP BY person_id", "refused", `identifier column "person_id" may not be used in GROUP BY`, 50},
		{"SELECT income, COUNT(*) FROM tax2025 GROUP BY income", "refused", `sensitive column "income" may not be grouped by`, 47},
		{"SELECT COUNT(*) FROM tax2024", "refused", `unknown dataset "tax2024"`, 22},
		{"SELECT COUNT(*) FROM tax2025 GROUP", "bad-query", "", 0},
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			for _, mode := range []string{"masked", "he"} {
				t.Run(mode, func(t *testing.T) {
					code, p := f.Do(t, "bank", 0, "POST", "/v1/jobs", map[string]string{"query": c.sql, "mode": mode, "purpose": "credit risk statistics"}, nil)
					if code != 422 || p.Code != c.code || !strings.Contains(p.Detail, c.want) || (c.pos > 0 && p.Position != c.pos) {
						t.Fatalf("%s (%s): %d %+v", c.sql, mode, code, p)
					}
				})
			}
		})
	}
	var after StateResponse
	f.Must(t, "auditor", 0, "GET", "/v1/ledger/state", nil, &after)
	if after.Applied != before.Applied {
		t.Fatalf("refused queries reached the ledger: %d -> %d entries", before.Applied, after.Applied)
	}
}

// A policy beyond the consortium's limits is refused with the rule before
// the ledger; the admin may raise the limits, after which it is accepted.
func TestPolicyBeyondLimits(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	p := apitest.TaxPolicy()
	p["purpose"] = "research"
	p["dp"] = map[string]any{"epsilon_per_query": 1000, "epsilon_budget": 1000, "delta": 1e-6}
	code, pr := f.Do(t, "agency1", 0, "POST", "/v1/policies", p, nil)
	if code != 422 || pr.Code != "beyond-limits" || !strings.Contains(pr.Detail, "dp.epsilon_per_query 1000 exceeds the consortium's limit of 1 per query") {
		t.Fatalf("%d %+v", code, pr)
	}
	if code, _ := f.Do(t, "agency1", 0, "POST", "/v1/limits", policies.Limits{MaxEpsilonPerQuery: 1000, MaxEpsilonBudget: 1000}, nil); code != 403 {
		t.Fatalf("an agency set the limits: %d", code)
	}
	f.Must(t, "admin", 0, "POST", "/v1/limits", policies.Limits{MaxEpsilonPerQuery: 1000, MaxEpsilonBudget: 1000, MaxDelta: 1e-5}, nil)
	var l policies.Limits
	f.Must(t, "bank", 1, "GET", "/v1/limits", nil, &l)
	if l.MaxEpsilonPerQuery != 1000 {
		t.Fatalf("limits %+v", l)
	}
	f.Must(t, "agency1", 0, "POST", "/v1/policies", p, nil)
}

// A query in PostgreSQL's forms runs end to end: the plan on the ledger is
// the one derived from its text (every node derived it again when it
// applied the entry), and the result has the query's output columns.
func TestPostgresQueryRunsEndToEnd(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	sql := `SELECT t.region AS r, CASE WHEN t.age >= 50 THEN 'older' ELSE 'younger' END AS band, COUNT(*) AS n,
		ROUND(AVG(income) / 1000, 1) AS avg_k, 3 AS three
		FROM tax2025 AS t -- a comment
		GROUP BY 1, 2 HAVING COUNT(*) >= 10 ORDER BY r, band LIMIT 5;`
	var j JobResponse
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody(sql), &j)
	done := waitJob(t, f, "bank", 1, j.Job)
	if done.Status != policies.JobCompleted {
		t.Fatalf("%+v", done)
	}
	_, want, err := sandbox.DerivePlan(sql)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.SMs {
		got, ok := f.SMs[i].M.Job(j.Job)
		b1, _ := json.Marshal(got.Plan)
		b2, _ := json.Marshal(want)
		if !ok || string(b1) != string(b2) || !strings.Contains(string(b1), `"case":["age"]`) {
			t.Fatalf("node %d: plan %s, want %s", i, b1, b2)
		}
	}
	var res sandbox.Result
	f.Must(t, "bank", 2, "GET", "/v1/jobs/"+j.Job+"/result", nil, &res)
	if strings.Join(res.Columns, ",") != "r,band,n,avg_k,three" || len(res.Rows) == 0 || len(res.Rows) > 5 {
		t.Fatalf("result %+v", res)
	}
	for _, row := range res.Rows {
		if row[4] != 3.0 || row[1] != "older" && row[1] != "younger" || row[2].(float64) < 10 {
			t.Fatalf("row %v", row)
		}
	}
	// Queries over 64 KB are refused before parsing, and before the ledger.
	huge := "SELECT COUNT(*) FROM tax2025 WHERE region = '" + strings.Repeat("x", 70<<10) + "'"
	code, p := f.Do(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody(huge), nil)
	if code != 422 || p.Code != "bad-query" || !strings.Contains(p.Detail, "limit 65536") {
		t.Fatalf("huge query: %d %+v", code, p)
	}
	// A statement smuggled after a ';' is refused with its rule and position.
	code, p = f.Do(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT COUNT(*) FROM tax2025; DELETE FROM tax2025"), nil)
	if code != 422 || p.Position != 31 || !strings.Contains(p.Detail, "column 31") || !strings.Contains(p.Detail, "rule: one-statement") {
		t.Fatalf("two statements: %d %+v", code, p)
	}
}

// An authorised job says what it was charged to; GET /v1/budgets shows an
// organisation its own budgets (and every budget to read-all accounts).
func TestBudgetsVisible(t *testing.T) {
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	var j JobResponse
	f.Must(t, "bank", 0, "POST", "/v1/jobs", apitest.JobBody("SELECT COUNT(*) FROM tax2025"), &j)
	if j.Charge == nil || j.Charge.Holder != "org:bank" || len(j.Charge.Populations) != 1 || j.Charge.Epsilon != 0.5 {
		t.Fatalf("charge %+v", j.Charge)
	}
	type budgets struct {
		Holder  string           `json:"holder"`
		Budgets []BudgetResponse `json:"budgets"`
	}
	var b budgets
	f.Must(t, "bank", 1, "GET", "/v1/budgets", nil, &b)
	if b.Holder != "org:bank" || len(b.Budgets) != 1 || b.Budgets[0].Spent != 0.5 || b.Budgets[0].Budget != 5 || b.Budgets[0].Population != j.Charge.Populations[0] {
		t.Fatalf("bank's budgets %+v", b)
	}
	f.Must(t, "shop", 1, "GET", "/v1/budgets", nil, &b)
	if b.Holder != "org:shop" || len(b.Budgets) != 0 {
		t.Fatalf("shop sees %+v", b)
	}
	f.Must(t, "auditor", 1, "GET", "/v1/budgets", nil, &b)
	if len(b.Budgets) != 1 || b.Budgets[0].Holder != "org:bank" {
		t.Fatalf("auditor sees %+v", b)
	}
}
