package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/datasandbox/datasandbox/api/apitest"
)

// TestMain lets the scripts run "sandboxctl" as a real command: the test
// binary re-executes itself as sandboxctl's main.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"sandboxctl": main})
}

// TestScripts runs the CLI's golden scripts (testdata/script/*.txtar), one
// story per user, each command's success and its most likely error,
// against one consortium. Before them, agency1 registered tax2025 (400
// rows) with a policy whose budget the scripts cannot exhaust. Each
// script's directory holds tax.json, tax.csv and accounts.json (a genesis
// accounts file for the admin's key); $KEYS holds every
// account's key file and $TRUST the nodes' checkpoint keys.
func TestScripts(t *testing.T) {
	e := newEnv(t)
	// A budget the scripts cannot exhaust needs the admin to raise the
	// consortium's limit first.
	if out, err := e.ctl(t, "admin", "limits", "set", "--max-epsilon-budget", "1000"); err != nil || !strings.Contains(out, "epsilon budget <= 1000") {
		t.Fatalf("limits set: %s %v", out, err)
	}
	p := apitest.TaxPolicy()
	p["dp"] = map[string]any{"epsilon_per_query": 0.5, "epsilon_budget": 1000.0, "delta": 1e-6}
	schema := e.file(t, "tax.json", string(apitest.TaxSchema))
	data := e.file(t, "tax.csv", string(apitest.TaxCSV(400)))
	if out, err := e.ctl(t, "agency1", "dataset", "register", "--name", "tax2025", "--schema", schema, "--file", data); err != nil {
		t.Fatalf("%s %v", out, err)
	}
	b, _ := json.Marshal(p)
	if out, err := e.ctl(t, "agency1", "policy", "publish", e.file(t, "policy.json", string(b))); err != nil {
		t.Fatalf("%s %v", out, err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("SANDBOX_SERVER", e.url)
			env.Setenv("SANDBOX_SERVER2", e.c.Srv[1].URL)
			env.Setenv("KEYS", e.dir)
			env.Setenv("TRUST", e.trust)
			// A genesis accounts file naming this consortium's admin (genesis
			// must be signed by one of its admins).
			accounts, _ := json.Marshal(map[string]any{"consortium": "gov.example/sandbox", "accounts": []map[string]any{
				{"public_key": e.c.Keys["admin"].PublicKey(), "algorithm": "ed25519", "name": "admin", "roles": []string{"admin"}},
				{"public_key": e.c.Keys["bank"].PublicKey(), "algorithm": "ed25519", "name": "node1", "roles": []string{"node"}},
			}})
			for name, content := range map[string][]byte{"tax.json": apitest.TaxSchema, "tax.csv": apitest.TaxCSV(400), "accounts.json": accounts} {
				if err := os.WriteFile(filepath.Join(env.WorkDir, name), content, 0o644); err != nil {
					return err
				}
			}
			// The documentation's examples, as a user copies them.
			examples, err := filepath.Glob("../../docs/examples/*")
			if err != nil || len(examples) == 0 {
				return fmt.Errorf("docs/examples: %v", err)
			}
			for _, p := range examples {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(env.WorkDir, filepath.Base(p)), b, 0o644); err != nil {
					return err
				}
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"grab": grab},
	})
}

// grab NAME REGEXP sets $NAME to the first group of REGEXP in the last
// command's stdout (a job or policy id, to use in the next commands).
func grab(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: grab NAME REGEXP")
	}
	m := regexp.MustCompile(args[1]).FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("grab: %q not in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}
