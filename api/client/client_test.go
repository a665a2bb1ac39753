package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// newClient is a client of node 0 acting as who.
func newClient(t *testing.T, f *apitest.Consortium, who string) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Server = f.Srv[0].URL
	if who != "" {
		cfg.KeyFile = filepath.Join(t.TempDir(), who+".key")
		if err := f.Keys[who].WriteKeyFile(cfg.KeyFile); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := client.New(cfg)
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

func trust(f *apitest.Consortium) []*chain.CheckpointVerifier {
	var out []*chain.CheckpointVerifier
	for i, k := range f.C.Keys {
		v, _ := chain.NewCheckpointVerifier(f.C.Peers[i].ID, k.PublicKey())
		out = append(out, v)
	}
	return out
}

// A consortium that ran a job verifies, online and from an export, with
// each delivered result re-hashed; the next run checks it extends the
// first; a tampered export fails at the tampered entry.
func TestVerify(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	f := apitest.New(t)
	f.WithPolicy(t, nil)
	bank := newClient(t, f, "bank")
	var job api.JobResponse
	if err := bank.Do(ctx, "POST", "/v1/jobs", apitest.JobBody("SELECT region, COUNT(*) FROM tax2025 GROUP BY region"), &job); err != nil {
		t.Fatal(err)
	}
	for job.Status != policies.JobCompleted {
		if ctx.Err() != nil {
			t.Fatalf("job %s stays %s", job.Job, job.Status)
		}
		time.Sleep(50 * time.Millisecond)
		if err := bank.Do(ctx, "GET", "/v1/jobs/"+job.Job, nil, &job); err != nil {
			t.Fatal(err)
		}
	}
	auditor := newClient(t, f, "auditor")
	cfg := client.VerifyConfig{Trust: trust(f), StateFile: filepath.Join(t.TempDir(), "state.json")}
	var calls atomic.Int64
	cfg.Progress = func(done, total int64) { calls.Add(1) }
	v, err := client.Verify(ctx, auditor, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep := v.Report
	if !rep.OK || rep.ResultsChecked != 1 || !rep.Checks["result_hashes"] || rep.Consistency != "first run: nothing to compare" || calls.Load() == 0 || v.SaveErr != nil {
		t.Fatalf("first verification: %+v (progress calls %d, save %v)", rep, calls.Load(), v.SaveErr)
	}
	if v.View() == nil {
		t.Fatal("no view")
	}
	exp := filepath.Join(t.TempDir(), "ledger.zst")
	out, err := os.Create(exp)
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.WriteExport(ctx, auditor, out, nil)
	if err != nil || out.Close() != nil {
		t.Fatal(err)
	}
	if st.Entries != st.CheckpointSize || st.Blocks == 0 {
		t.Fatalf("export %+v", st)
	}
	ve, err := client.VerifyExport(ctx, exp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !ve.Report.OK || ve.Report.NodeState != "not compared (offline)" || !strings.HasPrefix(ve.Report.Consistency, "extends the checkpoint") {
		t.Fatalf("export verification: %+v", ve.Report)
	}
	// The node's answers as errors callers can test.
	if err := bank.Do(ctx, "GET", "/v1/jobs/job-999999", nil, nil); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("missing job: %v", err)
	}
	if err := newClient(t, f, "").Do(ctx, "GET", "/v1/jobs", nil, nil); !errors.Is(err, client.ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	var se *client.StatusError
	if err := bank.Do(ctx, "GET", "/v1/audit/access?dataset=tax2025", nil, nil); !errors.As(err, &se) || se.Status != http.StatusForbidden {
		t.Fatalf("forbidden: %v", err)
	}
}

// A request the node turned away for now is sent again after the
// Retry-After it asked for; a problem answer quotes the node's reason.
func TestDoRetriesAndQuotesProblems(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/health" && n.Add(1) == 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case r.URL.Path == "/v1/health":
			w.Write([]byte(`{"status":"ok","node":"node1"}`))
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"status":409,"code":"no-result","detail":"job job-3 is running"}`))
		}
	}))
	defer srv.Close()
	cfg := client.DefaultConfig()
	cfg.Server = srv.URL
	c := client.New(cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var h api.HealthResponse
	if err := c.Do(ctx, "GET", "/v1/health", nil, &h); err != nil || h.Node != "node1" || n.Load() != 2 {
		t.Fatalf("health after a 429: %+v %v (%d requests)", h, err, n.Load())
	}
	err := c.Do(ctx, "GET", "/v1/openapi.json", nil, nil)
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusConflict || se.Code != "no-result" || !strings.Contains(err.Error(), "job job-3 is running") || errors.Is(err, client.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server string
		ok     bool
	}{
		{"http", "http://127.0.0.1:8080", true},
		{"https", "https://node1.example", true},
		{"no scheme", "127.0.0.1:8080", false},
		{"other scheme", "ftp://node1.example", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := client.DefaultConfig()
			cfg.Server = tc.server
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate(%q) = %v", tc.server, err)
			}
		})
	}
}

// A key file others may read is refused (as ssh refuses one).
func TestLoadKeyFileRefusesReadableKeys(t *testing.T) {
	k, _ := chain.GenerateKey(chain.Ed25519)
	p := filepath.Join(t.TempDir(), "k.key")
	if err := k.WriteKeyFile(p); err != nil {
		t.Fatal(err)
	}
	if _, err := client.LoadKeyFile(p); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o644)
	if _, err := client.LoadKeyFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("readable key: %v", err)
	}
}

var _ audit.Source = (*client.Source)(nil)
