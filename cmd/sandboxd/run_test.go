package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
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
	cfg := fmt.Sprintf(`id = "solo"
dir = %q
key = %q
http = "127.0.0.1:%d"
raft = "127.0.0.1:%d"
bootstrap = ["solo=127.0.0.1:%d"]
log_level = "error"
`, filepath.Join(dir, "data"), keyFile, base, base+1000, base+1000)
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
	raw, _ := k.NewEntry("demo.note", 1, time.Now(), []byte(`{}`))
	resp, err := httpPost(url+"/v1/ledger/entries", fmt.Sprintf(`{"entry":%q}`, b64(raw)))
	if err != nil || resp != 201 {
		t.Fatalf("append: %d %v", resp, err)
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
	if err == nil || !strings.Contains(err.Error(), "corrupt store") || !strings.Contains(err.Error(), "record 0") {
		t.Fatalf("corrupted store: %v", err)
	}

	// Unknown settings are refused, not ignored.
	os.WriteFile(cfgFile, []byte(cfg+"colour = \"blue\"\n"), 0o600)
	if err := run(context.Background(), []string{"run", "--config", cfgFile}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown setting: %v", err)
	}
}

func httpPost(url, body string) (int, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
