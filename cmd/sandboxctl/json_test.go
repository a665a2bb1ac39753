package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api/apitest"
)

// oneDocument decodes out as exactly one JSON object (what jq and
// json.tool accept), or says why it is not one.
func oneDocument(out string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(out))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one JSON document")
	}
	return doc, nil
}

// Every command prints exactly one JSON document with --json; a command
// that fails prints none (its reason goes to stderr). The test fails if a
// command is added without being run here.
func TestEveryCommandPrintsOneJSONDocument(t *testing.T) {
	e := newEnv(t)
	e.registerAndPublish(t, "") // tax2025, auto approval
	ran := map[string]bool{}
	key := func(who string) string { return filepath.Join(e.dir, who+".key") }
	// jsonRun runs one command with --json; want says whether it succeeds
	// here. It returns the document.
	jsonRun := func(name string, want bool, who string, args ...string) map[string]any {
		t.Helper()
		ran[name] = true
		full := []string{"--server", e.url, "--json"}
		if who != "" {
			full = append(full, "--key", key(who))
		}
		full = append(append(full, strings.Fields(name)...), args...)
		var out bytes.Buffer
		err := run(context.Background(), full, &out, io.Discard)
		if !want {
			if err == nil || out.Len() != 0 {
				t.Fatalf("%s: want a failure with nothing on stdout, got %v and %q", name, err, out.String())
			}
			return nil
		}
		if err != nil {
			t.Fatalf("%s: %v (stdout %q)", name, err, out.String())
		}
		doc, derr := oneDocument(out.String())
		if derr != nil {
			t.Fatalf("%s --json: %v in %q", name, derr, out.String())
		}
		return doc
	}
	str := func(doc map[string]any, k string) string {
		t.Helper()
		s, ok := doc[k].(string)
		if !ok {
			t.Fatalf("no string %q in %v", k, doc)
		}
		return s
	}

	newco := jsonRun("key new", true, "", "--out", key("newco"))
	addr := str(newco, "address")
	jsonRun("health", true, "")
	jsonRun("account register", true, "newco", "--name", "NewCo")
	jsonRun("account grant", true, "admin", "--address", addr, "--role", "enterprise", "--org", "newco")
	jsonRun("account show", true, "newco")
	jsonRun("account revoke", true, "admin", "--address", addr, "--role", "enterprise")
	pki := filepath.Join(e.dir, "pki")
	jsonRun("tls ca", true, "", "--out-dir", pki)
	jsonRun("tls cert", true, "", "--ca-dir", pki, "--name", "node1", "--host", "127.0.0.1", "--out-dir", filepath.Join(e.dir, "node1"))
	accounts, _ := json.Marshal(map[string]any{"consortium": "gov.example/sandbox", "accounts": []map[string]any{
		{"public_key": e.c.Keys["admin"].PublicKey(), "algorithm": "ed25519", "name": "admin", "roles": []string{"admin"}},
	}})
	jsonRun("genesis", true, "admin", "--accounts", e.file(t, "accounts.json", string(accounts)), "--out", filepath.Join(e.dir, "genesis.b64"))

	schema := e.file(t, "taxj.json", string(apitest.TaxSchema))
	data := e.file(t, "taxj.csv", string(apitest.TaxCSV(200)))
	jsonRun("dataset register", true, "agency1", "--name", "taxj", "--schema", schema, "--file", data)
	jsonRun("dataset list", true, "bank")
	p := apitest.TaxPolicy()
	p["dataset"], p["approval"] = "taxj", map[string]any{"mode": "manual", "approvers": 1}
	pb, _ := json.Marshal(p)
	pol := jsonRun("policy publish", true, "agency1", e.file(t, "taxj-policy.json", string(pb)))
	jsonRun("policy list", true, "bank")

	q := []string{"--mode", "masked", "--purpose", "credit risk statistics", "--query"}
	job1 := str(jsonRun("job submit", true, "bank", append(q, "SELECT COUNT(*) FROM taxj")...), "job")
	job2 := str(jsonRun("job submit", true, "bank", append(q, "SELECT region, COUNT(*) FROM taxj GROUP BY region")...), "job")
	jsonRun("job approve", true, "agency1", job1)
	jsonRun("job reject", true, "agency1", job2, "--reason", "not this quarter")
	jsonRun("policy revoke", true, "agency1", str(pol, "id"))

	// --wait --json: the result, with the job's fields beside it.
	done := jsonRun("job submit", true, "bank", append([]string{"--wait"}, append(q, "SELECT region, COUNT(*), AVG(income) FROM tax2025 GROUP BY region")...)...)
	for _, k := range []string{"job", "status", "dataset", "query", "requester", "columns", "rows", "suppressed", "epsilon_spent", "result_sha256"} {
		if _, ok := done[k]; !ok {
			t.Errorf("job submit --wait --json: no %q in %v", k, done)
		}
	}
	if done["status"] != "completed" {
		t.Errorf("job submit --wait --json: status %v", done["status"])
	}
	id := str(done, "job")
	jsonRun("job status", true, "bank", id)
	jsonRun("job list", true, "bank")
	jsonRun("job result", true, "bank", id)

	jsonRun("ledger append", true, "agency1", "--kind", "note.demo", "--payload", `{"msg":"hello"}`)
	jsonRun("ledger checkpoint", true, "auditor")
	entries := jsonRun("ledger entries", true, "auditor", "--start", "0", "--end", "50")
	checkDecodedEntries(t, entries, e.c.Keys["agency1"].Address().String())
	jsonRun("ledger verify", true, "auditor", "--trust", e.trust, "--state", filepath.Join(e.dir, "state.json"))
	jsonRun("ledger export", true, "auditor", "--out", filepath.Join(e.dir, "ledger.zst"))
	jsonRun("ledger proof", true, "bank", "--job", id, "--trust", e.trust)
	jsonRun("audit access", true, "auditor", "--dataset", "tax2025")
	jsonRun("budget show", true, "bank")
	jsonRun("limits show", true, "bank")
	jsonRun("limits set", true, "admin", "--max-epsilon-budget", "20")
	// No HE ceremony in this consortium: both fail, printing nothing.
	jsonRun("he status", false, "auditor")
	jsonRun("he ceremony", false, "admin")
	// Nor a pseudonym key ceremony.
	jsonRun("pseudonym status", false, "auditor")
	jsonRun("pseudonym ceremony", false, "admin")
	jsonRun("pseudonym ids", false, "bank", "--file", e.file(t, "ids.txt", "C001\nC002\n"), "--job", id)

	// The console serves until stopped: its document comes first, and
	// nothing follows it on stdout.
	ran["console"] = true
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	stopped := make(chan error, 1)
	go func() {
		stopped <- run(ctx, []string{"--server", e.url, "--key", key("auditor"), "--json", "console", "--listen", "127.0.0.1:0",
			"--trust", e.trust, "--state", filepath.Join(e.dir, "console-verified.json")}, out, io.Discard)
	}()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "}"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("console --json printed nothing: %q", out.String())
		}
	}
	time.Sleep(100 * time.Millisecond) // anything else it would print
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("console did not stop")
	}
	if _, err := oneDocument(out.String()); err != nil {
		t.Fatalf("console --json: %v in %q", err, out.String())
	}

	for _, c := range commands() {
		if !ran[c.name] {
			t.Errorf("%q was not run with --json", c.name)
		}
	}
}

// checkDecodedEntries checks "ledger entries --json": genesis is acted by
// the admin who signed it; a dataset registration shows the agency as the
// actor beside the node that relayed it, and its document decoded.
func checkDecodedEntries(t *testing.T, doc map[string]any, agency string) {
	t.Helper()
	list, _ := doc["entries"].([]any)
	var sawGenesis, sawRelay bool
	hex40 := regexp.MustCompile(`^[0-9a-f]{40}$`)
	for _, x := range list {
		ent := x.(map[string]any)
		if !hex40.MatchString(ent["author"].(string)) || !hex40.MatchString(ent["actor"].(string)) {
			t.Fatalf("entry without author or actor: %v", ent)
		}
		switch ent["kind"] {
		case "genesis":
			sawGenesis = ent["actor"] == ent["author"] && ent["relayed"] == false && ent["payload"] != nil
		case "dataset.register":
			d, _ := ent["document"].(map[string]any)
			sawRelay = sawRelay || ent["actor"] == agency && ent["author"] != agency && ent["relayed"] == true && d["name"] == "tax2025"
		}
	}
	if !sawGenesis || !sawRelay {
		t.Fatalf("ledger entries --json: genesis %v, relayed registration %v, in %d entries", sawGenesis, sawRelay, len(list))
	}
}
