package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/chain/chaintest"
)

type fixture struct {
	c   *chaintest.Cluster
	srv *httptest.Server
	key *chain.Key
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := chaintest.NewCluster(t, 3, nil)
	follower := (c.WaitLeader() + 1) % 3
	cfg := DefaultConfig()
	cfg.MaxPage = 4
	s, err := New(cfg, c.Nodes[follower])
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	k, _ := chain.GenerateKey(chain.Ed25519)
	return &fixture{c: c, srv: srv, key: k}
}

func (f *fixture) do(t *testing.T, method, path string, body any, out any) (int, http.Header) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, resp.Header
}

func (f *fixture) appendN(t *testing.T, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		raw, _ := f.key.NewEntry(chaintest.KindNote, uint64(i), time.Now(), []byte(fmt.Sprintf(`{"i":%d}`, i)))
		var resp AppendResponse
		if code, _ := f.do(t, "POST", "/v1/ledger/entries", AppendRequest{Entry: base64.StdEncoding.EncodeToString(raw)}, &resp); code != http.StatusCreated {
			t.Fatalf("append %d: status %d", i, code)
		}
		if resp.Index != uint64(i-1) {
			t.Fatalf("append %d at index %d", i, resp.Index)
		}
	}
}

func TestLedgerEndpoints(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 7)
	f.c.WaitConverged(7)

	var h HealthResponse
	if code, _ := f.do(t, "GET", "/v1/health", nil, &h); code != 200 || h.Status != "ok" || h.LedgerSize != 7 || h.Leader == "" || h.Node == "" {
		t.Fatalf("health %d %+v", code, h)
	}

	var cp CheckpointResponse
	f.do(t, "GET", "/v1/ledger/checkpoint", nil, &cp)
	if cp.Size != 7 || !strings.HasPrefix(cp.Note, "datasandbox/ledger\n7\n"+cp.Root+"\n\n") {
		t.Fatalf("checkpoint %+v", cp)
	}
	root, _ := base64.StdEncoding.DecodeString(cp.Root)

	// Page through the entries (page size 4) and recompute the root.
	var leaves [][]byte
	for start := 0; ; {
		var er EntriesResponse
		f.do(t, "GET", fmt.Sprintf("/v1/ledger/entries?start=%d&end=100", start), nil, &er)
		if len(er.Entries) == 0 {
			break
		}
		for _, e := range er.Entries {
			if e.Index != uint64(start) {
				t.Fatalf("index %d at position %d", e.Index, start)
			}
			raw, _ := base64.StdEncoding.DecodeString(e.Entry)
			leaves = append(leaves, raw)
			start++
		}
	}
	var tr chain.Tree
	for _, l := range leaves {
		tr.AppendLeafHash(chain.LeafHash(l))
	}
	if got, _ := tr.Root(7); !bytes.Equal(got[:], root) {
		t.Fatal("root recomputed from entries differs from the checkpoint")
	}

	// Proofs, checked by an independent verifier.
	var ip InclusionResponse
	f.do(t, "GET", "/v1/ledger/proof/inclusion?index=3&size=7", nil, &ip)
	lh := chain.LeafHash(leaves[3])
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 3, 7, lh[:], decode(t, ip.Hashes), root); err != nil {
		t.Fatal(err)
	}
	var cpr ConsistencyResponse
	f.do(t, "GET", "/v1/ledger/proof/consistency?first=3&second=7", nil, &cpr)
	r3, _ := tr.Root(3)
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 3, 7, decode(t, cpr.Hashes), r3[:], root); err != nil {
		t.Fatal(err)
	}

	var doc map[string]any
	if code, _ := f.do(t, "GET", "/v1/openapi.json", nil, &doc); code != 200 || doc["openapi"] != "3.0.3" {
		t.Fatalf("openapi %d", code)
	}
}

func decode(t *testing.T, in []string) [][]byte {
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

func TestLedgerErrors(t *testing.T) {
	f := newFixture(t)
	f.appendN(t, 2)
	raw, _ := f.key.NewEntry(chaintest.KindNote, 1, time.Now().Add(time.Second), nil) // nonce replay
	bad, _ := f.key.NewEntry(chaintest.KindNote, 9, time.Now(), nil)
	bad[len(bad)-3] ^= 1
	cases := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"GET", "/v1/ledger/entries", nil, 400, "missing-parameter"},
		{"GET", "/v1/ledger/entries?start=x", nil, 400, "bad-parameter"},
		{"GET", "/v1/ledger/entries?start=5&end=2", nil, 400, "bad-range"},
		{"GET", "/v1/ledger/proof/inclusion?index=2&size=2", nil, 400, "bad-proof-request"},
		{"GET", "/v1/ledger/proof/inclusion?index=0&size=99", nil, 400, "bad-proof-request"},
		{"GET", "/v1/ledger/proof/inclusion?index=0", nil, 400, "missing-parameter"},
		{"GET", "/v1/ledger/proof/consistency?first=0&second=2", nil, 400, "bad-proof-request"},
		{"GET", "/v1/ledger/proof/consistency?first=-1&second=2", nil, 400, "bad-parameter"},
		{"POST", "/v1/ledger/entries", map[string]string{"entry": "!!"}, 400, "bad-body"},
		{"POST", "/v1/ledger/entries", map[string]string{"x": "y"}, 400, "bad-body"},
		{"POST", "/v1/ledger/entries", AppendRequest{Entry: b64([]byte("DSE1junk"))}, 400, "malformed-entry"},
		{"POST", "/v1/ledger/entries", AppendRequest{Entry: b64(bad)}, 400, "bad-entry-signature"},
		{"POST", "/v1/ledger/entries", AppendRequest{Entry: b64(raw)}, 422, "rejected"},
		{"GET", "/v1/nope", nil, 404, "http-404"},
	}
	for _, c := range cases {
		t.Run(c.method+c.path, func(t *testing.T) {
			var p Problem
			code, hdr := f.do(t, c.method, c.path, c.body, &p)
			if code != c.status || p.Code != c.code || p.Status != c.status || p.Detail == "" {
				t.Fatalf("got %d %+v, want %d %s", code, p, c.status, c.code)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q", ct)
			}
		})
	}
	// Entries past the end: an empty page, not an error.
	var er EntriesResponse
	if code, _ := f.do(t, "GET", "/v1/ledger/entries?start=50", nil, &er); code != 200 || len(er.Entries) != 0 {
		t.Fatalf("past the end: %d %+v", code, er)
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add("0", "10")
	f.Add("18446744073709551615", "")
	f.Add("-1", "x")
	f.Fuzz(func(t *testing.T, a, b string) {
		s, e, err := parseRange(a, b, 1000)
		if err == nil && (e < s || e-s > 1000) {
			t.Fatalf("range [%d,%d) from %q %q", s, e, a, b)
		}
		_, _, _ = parseProofQuery("index", a, "size", b)
	})
}

func FuzzParseAppendRequest(f *testing.F) {
	f.Add([]byte(`{"entry":"RFNFMQ=="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, err := parseAppendRequest(bytes.NewReader(b))
		if err == nil && len(raw) == 0 {
			t.Fatal("empty entry accepted")
		}
	})
}
