package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
)

// freeBase finds a port p such that p..p+2 and p+1000..p+1002 look free.
func freeBase(t testing.TB) int {
	t.Helper()
	for try := 0; try < 200; try++ {
		// Below the kernel's ephemeral range, so that p+1000 is also free
		// of outgoing connections.
		p := 20000 + rand.IntN(9000)
		ok := true
		for _, q := range []int{p, p + 1, p + 2, p + 3, p + 1000, p + 1001, p + 1002, p + 1003} { // up to 4 nodes
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free ports")
	return 0
}

type health struct {
	Status     string `json:"status"`
	Node       string `json:"node"`
	Leader     string `json:"leader"`
	LedgerSize uint64 `json:"ledger_size"`
	Error      string `json:"error"`
}

func getHealth(url string) (health, error) {
	var h health
	resp, err := http.Get(url + "/v1/health")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, err
}

// hasCeremony tells whether the node serves the committed HE and
// pseudonym key ceremonies (asked as the dev auditor).
func hasCeremony(dir, url string) bool {
	return hasDoc(dir, url+"/v1/he") && hasDoc(dir, url+"/v1/pseudonyms")
}

func hasDoc(dir, url string) bool {
	k, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "auditor.key"))
	if err != nil {
		return false
	}
	req, _ := http.NewRequest("GET", url, nil)
	if audit.SignRequest(req, nil, k.Ed25519(), k.Address().String()) != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startDev runs "sandboxd dev" in this process (HTTP from base, Raft from
// base+1000) until every node is healthy and the key ceremony is on the
// ledger; stop shuts it down.
func startDev(t testing.TB, dir string, base int) (stop func() error) {
	t.Helper()
	return startDevLogs(t, dir, base, io.Discard, "error")
}

// startDevLogs is startDev with the consortium's log (at level) to logs.
func startDevLogs(t testing.TB, dir string, base int, logs io.Writer, level string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--dir", dir, "--http", fmt.Sprintf("127.0.0.1:%d", base), "--raft", fmt.Sprintf("127.0.0.1:%d", base+1000), "--log-level", level}, io.Discard, logs)
	}()
	// Two key ceremonies: about 32 s under -race on a loaded 2-core
	// machine (measured), under a second without.
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok := 0
		for i := 0; i < 3; i++ {
			url := fmt.Sprintf("http://127.0.0.1:%d", base+i)
			if h, err := getHealth(url); err == nil && h.Status == "ok" && h.Leader != "" && h.LedgerSize >= 1 && hasCeremony(dir, url) {
				ok++
			}
		}
		if ok == 3 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("dev exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("dev consortium not healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return fmt.Errorf("dev did not stop")
		}
	}
}

func TestDevConsortiumResumes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	base := freeBase(t)
	stop := startDev(t, dir, base)
	for _, name := range []string{"admin", "agency1", "agency2", "agency3", "enterprise", "auditor"} {
		st, err := os.Stat(filepath.Join(dir, "keys", name+".key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key %s: %v", name, err)
		}
	}
	k, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "agency1.key"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := k.NewEntry("note.demo", 1, time.Now(), []byte(`{}`))
	if code, err := signedPost(fmt.Sprintf("http://127.0.0.1:%d/v1/ledger/entries", base+2), fmt.Sprintf(`{"entry":%q}`, b64(raw)), k); err != nil || code != 201 {
		t.Fatalf("append: %d %v", code, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("clean shutdown: %v", err)
	}
	stop = startDev(t, dir, base)
	defer stop()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 3; i++ {
		for {
			h, err := getHealth(fmt.Sprintf("http://127.0.0.1:%d", base+i))
			if err == nil && h.LedgerSize == 6 { // genesis, the HE and pseudonym key ceremonies with their approvals, and the note
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d after resume: %+v %v", i+1, h, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestDevFlagErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{
		{"dev without --dir", []string{"dev"}},
		{"no nodes", []string{"dev", "--dir", t.TempDir(), "--nodes", "0"}},
		{"bad --http", []string{"dev", "--dir", t.TempDir(), "--http", "nonsense"}},
		{"unknown command", []string{"bogus"}},
		{"run without --dir and --key", []string{"run", "--id", "n1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := run(context.Background(), c.args, io.Discard, io.Discard); err == nil {
				t.Errorf("%v: no error", c.args)
			}
		})
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// signedPost posts JSON signed by the account key, as sandboxctl does.
func signedPost(url, body string, k *chain.Key) (int, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := audit.SignRequest(req, []byte(body), k.Ed25519(), k.Address().String()); err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestDevDemoData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	base := freeBase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--dir", dir, "--http", fmt.Sprintf("127.0.0.1:%d", base), "--demo-data", "--log-level", "error"}, io.Discard, io.Discard)
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d", base+1)
	// 100,000 rows masked and encrypted under -race on a loaded 2-core
	// machine take a while; the bound is for a hung start, not speed.
	deadline := time.Now().Add(120 * time.Second)
	for {
		// genesis, the two key ceremonies and their approvals, dataset, policy
		if h, err := getHealth(url); err == nil && h.LedgerSize >= 7 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("dev exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("demo data not loaded")
		}
		time.Sleep(50 * time.Millisecond)
	}
	k, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "enterprise.key"))
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Name       string `json:"name"`
		Rows       int64  `json:"rows"`
		Population string `json:"population"`
	}
	if err := signedCall(context.Background(), k, "GET", url+"/v1/datasets/tax2025", "", nil, &ds); err != nil || ds.Rows != demoRows {
		t.Fatalf("dataset: %+v %v", ds, err)
	}
	// The same records registered again encrypted are the same people: one
	// population, one budget.
	var twin = ds
	twin.Population = ""
	for deadline := time.Now().Add(90 * time.Second); ; {
		err := signedCall(context.Background(), k, "GET", url+"/v1/datasets/tax2025he", "", nil, &twin)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tax2025he not registered: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if twin.Population == "" || twin.Population != ds.Population {
		t.Fatalf("tax2025 is in population %q, tax2025he in %q", ds.Population, twin.Population)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A first start that fails (node 2's HTTP port is taken) says why and
// leaves no half-initialised directory behind, so the next start is a
// fresh one; in an existing directory it removes only what it made.
func TestDevFailedStartLeavesNoDirectory(t *testing.T) {
	base := freeBase(t)
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+1))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name  string
		dir   string
		exist bool
	}{
		{"new directory", filepath.Join(t.TempDir(), "dev"), false},
		{"existing directory", t.TempDir(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.exist {
				os.WriteFile(filepath.Join(tc.dir, "notes.txt"), []byte("mine"), 0o644)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := run(ctx, []string{"dev", "--dir", tc.dir, "--http", fmt.Sprintf("127.0.0.1:%d", base), "--log-level", "error"}, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", base+1)) {
				t.Fatalf("dev with a port taken: %v", err)
			}
			if !tc.exist {
				if _, err := os.Stat(tc.dir); !os.IsNotExist(err) {
					t.Fatalf("%s left behind: %v", tc.dir, err)
				}
				return
			}
			ents, _ := os.ReadDir(tc.dir)
			if len(ents) != 1 || ents[0].Name() != "notes.txt" {
				t.Fatalf("left in the existing directory: %v", ents)
			}
		})
	}
}

// A resumed consortium keeps its Raft addresses: --raft naming others is
// refused with the reason, before any node starts. (--raft naming the same
// ones is honoured: startDev passes it, and TestDevConsortiumResumes
// resumes with it.)
func TestDevResumeRaftFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	base := freeBase(t)
	if _, err := loadOrCreateConsortium(dir, 3, fmt.Sprintf("127.0.0.1:%d", base), fmt.Sprintf("127.0.0.1:%d", base+1000)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"dev", "--dir", dir, "--http", fmt.Sprintf("127.0.0.1:%d", base), "--raft", fmt.Sprintf("127.0.0.1:%d", base+1500), "--log-level", "error"}, io.Discard, io.Discard)
	want := fmt.Sprintf("uses Raft address 127.0.0.1:%d; Raft addresses are part of its replicated configuration and cannot change when it resumes", base+1000)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("resume with another --raft: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "consortium.json")); err != nil {
		t.Fatalf("a refused resume harmed the consortium: %v", err)
	}
}
