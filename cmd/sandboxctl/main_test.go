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

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/chain/chaintest"
)

type env struct {
	dir, url, trust, key string
	handler              http.Handler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := chaintest.NewCluster(t, 3, nil)
	n := c.Nodes[c.WaitLeader()]
	s, err := api.New(api.DefaultConfig(), n)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	var vkeys []string
	for i, k := range c.Keys {
		v, _ := chain.NewCheckpointVerifier(c.Peers[i].ID, k.PublicKey())
		vkeys = append(vkeys, v.VerifierKey())
	}
	trust := filepath.Join(dir, "trust.vkeys")
	os.WriteFile(trust, []byte(strings.Join(vkeys, "\n")+"\n"), 0o644)
	e := &env{dir: dir, url: srv.URL, trust: trust, key: filepath.Join(dir, "me.key"), handler: s.Handler()}
	if _, err := e.ctl(t, "key", "new", "--out", e.key); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	full := append([]string{"--server", e.url, "--key", e.key}, args...)
	err := run(context.Background(), full, &out, io.Discard)
	return out.String(), err
}

func TestLedgerCommands(t *testing.T) {
	e := newEnv(t)
	if _, err := e.ctl(t, "key", "new", "--out", e.key); err == nil {
		t.Fatal("key new overwrote a key")
	}
	for _, n := range []string{"1", "2", "3"} {
		out, err := e.ctl(t, "ledger", "append", "--kind", chaintest.KindNote, "--nonce", n, "--payload", `{"n":`+n+`}`)
		if err != nil || !strings.Contains(out, "committed") {
			t.Fatalf("append: %q %v", out, err)
		}
	}
	if _, err := e.ctl(t, "ledger", "append", "--kind", chaintest.KindNote, "--nonce", "2"); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("replayed nonce: %v", err)
	}
	if _, err := e.ctl(t, "ledger", "append", "--kind", chaintest.KindNote, "--payload", "{not json"); err == nil {
		t.Fatal("bad payload accepted")
	}
	state := filepath.Join(e.dir, "state.json")
	out, err := e.ctl(t, "ledger", "verify", "--trust", e.trust, "--state", state, "--out", filepath.Join(e.dir, "r.json"))
	if err != nil || !strings.Contains(out, "OK: all checks hold") {
		t.Fatalf("verify: %q %v", out, err)
	}
	var rep Report
	b, _ := os.ReadFile(filepath.Join(e.dir, "r.json"))
	if err := json.Unmarshal(b, &rep); err != nil || !rep.OK || rep.Entries != 3 || !rep.Checkpoint.Trusted {
		t.Fatalf("report %+v %v", rep, err)
	}
	out, err = e.ctl(t, "ledger", "proof", "--index", "2", "--trust", e.trust)
	if err != nil || !strings.Contains(out, "entry 2 is included") {
		t.Fatalf("proof: %q %v", out, err)
	}
	if _, err := e.ctl(t, "ledger", "proof", "--index", "9"); err == nil {
		t.Fatal("proof of a missing entry")
	}

	// A history rewritten since the last verification is detected.
	var st verifiedState
	b, _ = os.ReadFile(state)
	json.Unmarshal(b, &st)
	st.Root = base64.StdEncoding.EncodeToString(make([]byte, 32))
	st.Size = 2
	b, _ = json.Marshal(st)
	os.WriteFile(state, b, 0o600)
	if _, err := e.ctl(t, "ledger", "verify", "--trust", e.trust, "--state", state); err == nil || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("fork not detected: %v", err)
	}

	// An untrusted signing key is refused.
	other := filepath.Join(e.dir, "other.vkeys")
	k, _ := chain.GenerateKey(chain.Ed25519)
	v, _ := chain.NewCheckpointVerifier("node1", k.PublicKey())
	os.WriteFile(other, []byte(v.VerifierKey()+"\n"), 0o644)
	if _, err := e.ctl(t, "ledger", "verify", "--trust", other, "--state", filepath.Join(e.dir, "s2.json")); err == nil {
		t.Fatal("checkpoint signed by an unknown key accepted")
	}
}

// A node that serves a tampered entry is caught, with the entry's index.
func TestVerifyCatchesTamperedEntry(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"1", "2", "3"} {
		if _, err := e.ctl(t, "ledger", "append", "--kind", chaintest.KindNote, "--nonce", n); err != nil {
			t.Fatal(err)
		}
	}
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		e.handler.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if r.URL.Path == "/v1/ledger/entries" {
			var er api.EntriesResponse
			json.Unmarshal(body, &er)
			for i := range er.Entries {
				if er.Entries[i].Index == 1 {
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
	}))
	defer liar.Close()
	e.url = liar.URL
	_, err := e.ctl(t, "ledger", "verify", "--trust", e.trust, "--state", filepath.Join(e.dir, "s.json"))
	if err == nil || !strings.Contains(err.Error(), "index 1") {
		t.Fatalf("tampered entry not caught at index 1: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"ledger"}, {"key", "new"}, {"ledger", "append"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	t.Setenv("SANDBOX_KEY", "")
	err := run(context.Background(), []string{"ledger", "append", "--kind", "x"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "needs an account key") {
		t.Errorf("missing key: %v", err)
	}
}
