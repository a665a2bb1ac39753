// Package apitest starts a consortium for tests: a 3-node cluster with the
// real state machine, a genesis with one account per role, and an HTTP
// server per node. For tests only.
package apitest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/chain/chaintest"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// Consortium is a 3-node cluster with the real state machine, genesis with
// one account per role (two agencies, two enterprises), and one HTTP
// server per node.
type Consortium struct {
	C      *chaintest.Cluster
	SMs    []audit.StateMachine
	Srv    []*httptest.Server
	Keys   map[string]*chain.Key
	Stores []*sandbox.Store
	mu     sync.Mutex
}

// Accounts are the genesis accounts: name, role, org.
var Accounts = []struct{ name, role, org string }{
	{"admin", "admin", ""}, {"agency1", "agency", "tax"}, {"agency1b", "agency", "tax"}, {"agency2", "agency", "health"},
	{"bank", "enterprise", "bank"}, {"shop", "enterprise", "shop"}, {"auditor", "auditor", ""},
}

// NodeOrgs are the organisations that operate node1..node3: the tax
// agency's data goes to node1, the health agency's to node2; node3 holds
// none.
var NodeOrgs = []string{"tax", "health", "registry"}

// New starts a consortium.
func New(t testing.TB) *Consortium { return NewWith(t, Options{}) }

// Options adjust a consortium's configuration.
type Options struct {
	API   func(*api.Config)   // each node's API
	Chain func(*chain.Config) // each node's ledger node (its ID tells which)
	// Pseudonyms wires each node's consortium-pseudonym service (no
	// ceremony yet: POST /v1/pseudonyms/ceremony runs it).
	Pseudonyms bool
}

// NewWith starts a consortium with adjusted configuration.
func NewWith(t testing.TB, o Options) *Consortium {
	t.Helper()
	f := &Consortium{Keys: map[string]*chain.Key{}, SMs: make([]audit.StateMachine, 3)}
	stores := map[string]*sandbox.Store{}
	for i := 0; i < 3; i++ {
		st, err := sandbox.OpenStore(filepath.Join(t.TempDir(), "data"))
		if err != nil {
			t.Fatal(err)
		}
		f.Stores = append(f.Stores, st)
		stores[fmt.Sprintf("node%d", i+1)] = st
	}
	ps := map[string]*api.Pseudonym{}
	psReady := make(chan struct{})
	tune := func(c *chain.Config) {
		c.Blobs = stores[c.ID].Blob
		if o.Pseudonyms {
			id := c.ID
			c.Services = func(ctx context.Context, service string, body []byte) ([]byte, error) {
				select {
				case <-psReady:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return ps[id].Party.Serve(ctx, service, body)
			}
		}
		if o.Chain != nil {
			o.Chain(c)
		}
	}
	f.C = chaintest.NewClusterWith(t, 3, tune, func(i int) (chain.StateMachine, chain.AdmitFunc) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.SMs[i] = audit.NewStateMachine()
		f.SMs[i].Plan = sandbox.DerivePlan
		return f.SMs[i], f.SMs[i].Admit
	})
	g := policies.Genesis{Consortium: "test", Table: policies.DefaultTable()}
	for _, a := range Accounts {
		k, _ := chain.GenerateKey(chain.Ed25519)
		f.Keys[a.name] = k
		g.Accounts = append(g.Accounts, policies.GenesisAccount{PublicKey: k.PublicKey(), Algorithm: "ed25519", Name: a.name, Org: a.org, Roles: []string{a.role}})
	}
	for i, k := range f.C.Keys {
		g.Accounts = append(g.Accounts, policies.GenesisAccount{PublicKey: k.PublicKey(), Algorithm: "ed25519", Name: f.C.Peers[i].ID, Org: NodeOrgs[i], Roles: []string{"node"}})
	}
	raw, err := audit.GenesisEntry(f.Keys["admin"], g, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.C.Nodes[f.C.WaitLeader()].Append(t.Context(), raw); err != nil {
		t.Fatal(err)
	}
	f.C.WaitConverged(1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for i := range f.C.Nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := api.DefaultConfig()
		cfg.Addr = ln.Addr().String()
		cfg.MaxPage = 50
		cfg.Nonces = chain.NewNonces()
		if o.API != nil {
			o.API(&cfg)
		}
		s, err := api.New(cfg, f.C.Nodes[i], f.SMs[i].M, f.C.Keys[i], f.Stores[i])
		if err != nil {
			t.Fatal(err)
		}
		if o.Pseudonyms {
			id := f.C.Peers[i].ID
			if ps[id], err = api.NewPseudonym(id, t.TempDir(), f.C.Keys[i], f.C.Nodes[i], f.SMs[i].M, cfg.Nonces); err != nil {
				t.Fatal(err)
			}
			s.SetPseudonym(ps[id])
		}
		r := sandbox.NewRunner(sandbox.RunnerConfig{Name: f.C.Peers[i].ID, Key: f.C.Keys[i], Nonces: cfg.Nonces, Poll: 20 * time.Millisecond, ObserveJob: s.ObserveJob}, f.Stores[i], f.C.Nodes[i], f.SMs[i].M)
		go r.Run(ctx)
		srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: s.Handler()}}
		srv.Start()
		t.Cleanup(srv.Close)
		f.Srv = append(f.Srv, srv)
	}
	close(psReady)
	return f
}

// Request builds a request to node i, signed by who ("" = unsigned).
func (f *Consortium) Request(t testing.TB, who string, node int, method, path string, body any) *http.Request {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case []byte:
		b = v
	default:
		b, _ = json.Marshal(v)
	}
	req, _ := http.NewRequest(method, f.Srv[node].URL+path, bytes.NewReader(b))
	if b != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if who != "" {
		k := f.Keys[who]
		if err := audit.SignRequestKey(req, b, k); err != nil {
			t.Fatal(err)
		}
	}
	return req
}

// Send sends a request and decodes the answer (or the problem) into out.
func Send(t testing.TB, req *http.Request, out any) (int, api.Problem) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p api.Problem
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%s %s: %d with content type %q: %s", req.Method, req.URL.Path, resp.StatusCode, ct, b)
		}
		json.Unmarshal(b, &p)
		return resp.StatusCode, p
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", req.Method, req.URL.Path, err, b)
		}
	}
	return resp.StatusCode, p
}

// Do signs and sends a request as who to node i.
func (f *Consortium) Do(t testing.TB, who string, node int, method, path string, body, out any) (int, api.Problem) {
	t.Helper()
	return Send(t, f.Request(t, who, node, method, path, body), out)
}

// Must is Do that fails the test on an error status.
func (f *Consortium) Must(t testing.TB, who string, node int, method, path string, body, out any) {
	t.Helper()
	if code, p := f.Do(t, who, node, method, path, body, out); code >= 300 {
		t.Fatalf("%s %s %s: %d %s: %s", who, method, path, code, p.Code, p.Detail)
	}
}

// TaxSchema is the contract's example schema.
var TaxSchema = json.RawMessage(`{"columns": [
  {"name": "person_id", "type": "string", "class": "identifier"},
  {"name": "age", "type": "int", "class": "quasi_identifier", "generalize": {"band": 10}},
  {"name": "region", "type": "string", "class": "public"},
  {"name": "income", "type": "float", "class": "sensitive", "bounds": [0, 1000000]}]}`)

// TaxPolicy is the contract's example policy.
func TaxPolicy() map[string]any {
	return map[string]any{
		"dataset": "tax2025", "grantees": []string{"role:enterprise"}, "purpose": "credit risk statistics",
		"modes": []string{"masked", "he"}, "aggregates": map[string][]string{"income": {"count", "sum", "avg", "var", "stddev"}},
		"group_by": []string{"region", "age"}, "filter": []string{"region", "age"}, "min_group_size": 10,
		"dominance": map[string]any{"n": 1, "k": 0.5},
		"dp":        map[string]any{"epsilon_per_query": 0.5, "epsilon_budget": 5.0, "delta": 1e-6},
		"approval":  map[string]any{"mode": "auto"}, "expires": "2027-12-31T00:00:00Z",
	}
}

// TaxCSV is n rows of data for TaxSchema: four regions, ages 20-69,
// incomes from a fixed pattern.
func TaxCSV(n int) []byte {
	var b bytes.Buffer
	b.WriteString("person_id,age,region,income\n")
	regions := []string{"north", "south", "east", "west"}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "P%06d,%d,%s,%d\n", i, 20+i%50, regions[i%4], 20000+(i*7919)%80000)
	}
	return b.Bytes()
}

// Upload sends a CSV to node i as who, signed, and returns the staged
// upload's digest and rows.
func (f *Consortium) Upload(t testing.TB, who string, node int, schema []byte, csvData []byte) (int, api.UploadResponse, api.Problem) {
	t.Helper()
	url := f.Srv[node].URL + "/v1/uploads?schema=" + base64.RawURLEncoding.EncodeToString(schema)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(csvData))
	req.Header.Set("Content-Type", "text/csv")
	k := f.Keys[who]
	if err := audit.SignRequestKey(req, csvData, k); err != nil {
		t.Fatal(err)
	}
	var up api.UploadResponse
	code, p := Send(t, req, &up)
	return code, up, p
}

// Register uploads a dataset to node i and registers it as who.
func (f *Consortium) Register(t testing.TB, who string, node int, name string, schema, csvData []byte) api.UploadResponse {
	t.Helper()
	code, up, p := f.Upload(t, who, node, schema, csvData)
	if code != http.StatusCreated {
		t.Fatalf("upload: %d %s: %s", code, p.Code, p.Detail)
	}
	f.Must(t, who, node, "POST", "/v1/datasets", map[string]any{"name": name, "schema": json.RawMessage(schema), "sha256": up.SHA256, "rows": up.Rows}, nil)
	return up
}

// WithPolicy registers tax2025 (agency1, 400 rows, on node 0) and publishes
// a policy for it.
func (f *Consortium) WithPolicy(t testing.TB, edit func(map[string]any)) string {
	t.Helper()
	f.Register(t, "agency1", 0, "tax2025", TaxSchema, TaxCSV(400))
	p := TaxPolicy()
	if edit != nil {
		edit(p)
	}
	var w api.WriteResponse
	f.Must(t, "agency1", 1, "POST", "/v1/policies", p, &w)
	return w.ID
}

// JobBody is a job request in masked mode for the policy's purpose.
func JobBody(sql string) map[string]string {
	return map[string]string{"query": sql, "mode": "masked", "purpose": "credit risk statistics"}
}

// ManualSign signs like an independent RFC 9421 implementation would,
// building the signature base by hand (RFC 9421 section 2.5), with a
// chosen created time. extra names more components to cover: header
// fields (lower case) or "@authority".
func ManualSign(req *http.Request, body []byte, key *chain.Key, created time.Time, extra ...string) {
	comps := []string{`"@method"`, `"@target-uri"`}
	lines := []string{`"@method": ` + req.Method, `"@target-uri": ` + req.URL.String()}
	if len(body) > 0 {
		sum := sha256.Sum256(body)
		d := "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
		req.Header.Set("Content-Digest", d)
		comps = append(comps, `"content-digest"`)
		lines = append(lines, `"content-digest": `+d)
	}
	for _, x := range extra {
		v := req.Header.Get(x)
		if x == "@authority" {
			v = req.URL.Host
		}
		comps = append(comps, `"`+x+`"`)
		lines = append(lines, `"`+x+`": `+v)
	}
	params := fmt.Sprintf(`(%s);created=%d;keyid="%s";alg="ed25519"`, strings.Join(comps, " "), created.Unix(), key.Address())
	base := strings.Join(lines, "\n") + "\n" + `"@signature-params": ` + params
	sig := ed25519.Sign(key.Ed25519(), []byte(base))
	req.Header.Set("Signature-Input", "sig1="+params)
	req.Header.Set("Signature", "sig1=:"+base64.StdEncoding.EncodeToString(sig)+":")
}
