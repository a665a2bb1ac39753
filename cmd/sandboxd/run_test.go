package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// A single production node from a config file bootstraps itself, serves
// health, and refuses to start again once its store is corrupted.
func TestRunFromConfig(t *testing.T) {
	dir := t.TempDir()
	k, _ := chain.GenerateKey(chain.Ed25519)
	keyFile := filepath.Join(dir, "node.key")
	if err := k.WriteKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	base := freeBase(t)
	admin, _ := chain.GenerateKey(chain.Ed25519)
	g := policies.Genesis{Consortium: "solo", Table: policies.DefaultTable(), Accounts: []policies.GenesisAccount{
		{PublicKey: admin.PublicKey(), Algorithm: "ed25519", Name: "admin", Roles: []string{"admin"}},
		{PublicKey: k.PublicKey(), Algorithm: "ed25519", Name: "solo", Roles: []string{"node"}},
	}}
	graw, err := audit.GenesisEntry(admin, g, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	genesisFile := filepath.Join(dir, "genesis.b64")
	os.WriteFile(genesisFile, []byte(b64(graw)+"\n"), 0o644)
	cfg := fmt.Sprintf(`id = "solo"
dir = %q
key = %q
http = "127.0.0.1:%d"
raft = "127.0.0.1:%d"
bootstrap = ["solo=127.0.0.1:%d"]
genesis = %q
log_level = "error"
`, filepath.Join(dir, "data"), keyFile, base, base+1000, base+1000, genesisFile)
	cfgFile := filepath.Join(dir, "node.toml")
	os.WriteFile(cfgFile, []byte(cfg), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run", "--config", cfgFile}, io.Discard, io.Discard) }()
	url := fmt.Sprintf("http://127.0.0.1:%d", base)
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := getHealth(url)
		if err == nil && h.Leader == "solo" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("single node not healthy: %+v %v", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if h, err := getHealth(url); err == nil && h.LedgerSize == 1 {
			break // genesis committed
		}
		if time.Now().After(deadline) {
			t.Fatal("genesis not committed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	raw, _ := admin.NewEntry("note.demo", 1, time.Now(), []byte(`{}`))
	if code, err := signedPost(url+"/v1/ledger/entries", fmt.Sprintf(`{"entry":%q}`, b64(raw)), admin); err != nil || code != 201 {
		t.Fatalf("append: %d %v", code, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	// Corrupt the stored entry: the node must refuse to start, saying why.
	p := filepath.Join(dir, "data", "ledger", "entries.log")
	b, _ := os.ReadFile(p)
	b[len(b)-5] ^= 0xff
	os.WriteFile(p, b, 0o600)
	err = run(context.Background(), []string{"run", "--config", cfgFile}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "corrupt store") || !strings.Contains(err.Error(), "record 1") {
		t.Fatalf("corrupted store: %v", err)
	}

	// Unknown settings are refused, not ignored.
	os.WriteFile(cfgFile, []byte(cfg+"colour = \"blue\"\n"), 0o600)
	if err := run(context.Background(), []string{"run", "--config", cfgFile}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown setting: %v", err)
	}
}
