package api_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/policies"
)

// 50 concurrent clients for LOAD_SECONDS (default 5; "make soak" runs
// longer) mix job submissions, status polls and ledger reads on the three
// nodes. Nothing fails but what is meant to: 429 when an account goes over
// its rate. Prints p50/p99 latency per kind of request.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test")
	}
	secs := 5
	if s, err := strconv.Atoi(os.Getenv("LOAD_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	// Few accounts share the 50 clients: their rate limits are raised so
	// that the requests do work (TestRateLimitPerAccount covers the limit).
	f := apitest.NewWith(t, apitest.Options{API: func(c *Config) { c.RateLimit, c.RateBurst = 2000, 2000 }})
	// A budget the load cannot exhaust: beyond the default limits, which
	// the admin raises first.
	f.Must(t, "admin", 0, "POST", "/v1/limits", policies.Limits{MaxEpsilonPerQuery: 1, MaxEpsilonBudget: 1e6, MaxDelta: 1e-5}, nil)
	f.WithPolicy(t, func(p map[string]any) {
		p["dp"] = map[string]any{"epsilon_per_query": 0.001, "epsilon_budget": 1e6}
	})
	type sample struct {
		kind   string
		status int
		d      time.Duration
	}
	var mu sync.Mutex
	var samples []sample
	var jobs []string
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	for client := range 50 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(client), 7))
			who := []string{"bank", "shop"}[client%2]
			for time.Now().Before(deadline) {
				node := r.IntN(3)
				var req *http.Request
				kind := ""
				switch x := r.IntN(10); {
				case x < 3:
					kind = "job submit"
					req = f.Request(t, who, node, "POST", "/v1/jobs", apitest.JobBody("SELECT region, COUNT(*), AVG(income) FROM tax2025 GROUP BY region"))
				case x < 7:
					mu.Lock()
					var id string
					if len(jobs) > 0 {
						id = jobs[r.IntN(len(jobs))]
					}
					mu.Unlock()
					if id == "" {
						continue
					}
					kind = "job status"
					req = f.Request(t, "auditor", node, "GET", "/v1/jobs/"+id, nil)
				default:
					kind = "ledger read"
					req = f.Request(t, "auditor", node, "GET", fmt.Sprintf("/v1/ledger/entries?start=%d&end=%d", r.IntN(5), 5+r.IntN(20)), nil)
				}
				start := time.Now()
				var j JobResponse
				code, _ := apitest.Send(t, req, &j)
				d := time.Since(start)
				mu.Lock()
				samples = append(samples, sample{kind, code, d})
				if kind == "job submit" && code == 201 {
					jobs = append(jobs, j.Job)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	byKind := map[string][]time.Duration{}
	codes := map[string]int{}
	for _, s := range samples {
		codes[fmt.Sprintf("%s %d", s.kind, s.status)]++
		switch {
		case s.status == http.StatusTooManyRequests: // intended: an account over its rate
		case s.status >= 300:
			t.Errorf("%s answered %d", s.kind, s.status)
		default:
			byKind[s.kind] = append(byKind[s.kind], s.d)
		}
	}
	t.Logf("%d requests in %ds from 50 clients (%.0f/s); answers: %v", len(samples), secs, float64(len(samples))/float64(secs), codes)
	for _, k := range []string{"job submit", "job status", "ledger read"} {
		ds := byKind[k]
		if len(ds) == 0 {
			t.Errorf("no successful %s", k)
			continue
		}
		slices.Sort(ds)
		t.Logf("%-12s n=%-6d p50 %-10s p99 %s", k, len(ds), ds[len(ds)/2].Round(10*time.Microsecond), ds[len(ds)*99/100].Round(10*time.Microsecond))
	}
	// Every job acknowledged was recorded, with a decision (after the
	// auditor's rate budget refilled).
	time.Sleep(time.Second)
	for _, id := range jobs[:min(len(jobs), 50)] {
		var j JobResponse
		if code, _ := f.Do(t, "auditor", 0, "GET", "/v1/jobs/"+id, nil, &j); code != 200 || j.Status == "" {
			t.Fatalf("job %s: %d %+v", id, code, j)
		}
	}
}
