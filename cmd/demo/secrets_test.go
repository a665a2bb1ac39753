package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/datasandbox/datasandbox/chain"
)

// A full demo run leaks nothing: its output (which includes every error
// body sandboxctl received), the nodes' logs, the auditor's report and
// every ledger entry hold no key material (account and node key seeds,
// the pseudonymisation keys, the nodes' HE key shares) and none of the demo records' raw values
// (person ids, incomes, benefits).
func TestNoSecretsInLogsLedgerOrErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs the demo")
	}
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "../sandboxd", "../sandboxctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // loaded 2-core machines
	defer cancel()
	var story bytes.Buffer
	if err := run(ctx, []string{"--bin", bin, "--dir", dir}, &story); err != nil {
		t.Fatalf("demo: %v\n%s", err, story.String())
	}

	// What anyone outside the nodes' data directories can see.
	texts := map[string][]byte{"demo output": story.Bytes()}
	for _, name := range []string{"sandboxd.log", "report.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		texts[name] = b
	}
	entries := exportedEntries(t, filepath.Join(dir, "ledger.zst"))
	if len(entries) < 10 {
		t.Fatalf("only %d ledger entries exported", len(entries))
	}
	var ledger bytes.Buffer
	for _, e := range entries {
		ledger.Write(e.Payload)
		ledger.WriteByte('\n')
	}
	texts["ledger entries"] = ledger.Bytes()

	// The secrets, in the encodings a leak would take.
	secrets := map[string]string{}
	add := func(what string, b []byte) {
		secrets[hex.EncodeToString(b)] = what
		secrets[base64.StdEncoding.EncodeToString(b)] = what
		secrets[base64.RawURLEncoding.EncodeToString(b)] = what
	}
	err := filepath.WalkDir(filepath.Join(dir, "consortium"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case filepath.Base(p) == "pseudonym.key":
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			add("a node's pseudonymisation key", b)
		case strings.HasSuffix(p, ".key"):
			k, err := chain.LoadKeyFile(p)
			if err != nil {
				return err
			}
			if k.Ed25519() != nil {
				add("the key in "+filepath.Base(p), k.Ed25519().Seed())
			}
		case filepath.Base(p) == "share.bin":
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			// Any 48 bytes of the share, at three offsets (base64 aligns
			// every 3 bytes).
			for off := 0; off+48 <= len(b) && off < 3*48; off += 48 {
				add("an HE key share", b[off:off+48])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) < 3*7 {
		t.Fatalf("found only %d secret encodings to look for", len(secrets))
	}
	// The scan would see a leaked key file.
	if kf, _ := os.ReadFile(filepath.Join(dir, "consortium", "keys", "enterprise.key")); !containsAny(string(kf), secrets) {
		t.Fatal("the scan does not recognise the enterprise's own key file")
	}
	for where, text := range texts {
		s := string(text)
		for secret, what := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("%s contains %s", where, what)
			}
		}
	}

	// Raw values of the records: ids, and incomes and benefits of at
	// least 100 (written with two decimals, as in the CSV).
	raw := map[string]bool{}
	f, err := os.Open(filepath.Join(dir, "tax2025.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	header, _ := r.Read()
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for {
		rec, err := r.Read()
		if err != nil {
			break
		}
		raw[rec[col["person_id"]]] = true
		for _, c := range []string{"income", "benefits"} {
			if v := rec[col[c]]; len(v) >= 6 {
				raw[v] = true
			}
		}
	}
	if len(raw) < 50000 {
		t.Fatalf("only %d raw values to look for", len(raw))
	}
	token := regexp.MustCompile(`P\d{8}|\d+\.\d+`)
	if head, _ := os.ReadFile(filepath.Join(dir, "tax2025.csv")); !slices.ContainsFunc(token.FindAllString(string(head[:2000]), -1), func(s string) bool { return raw[s] }) {
		t.Fatal("the scan does not recognise the records' own values")
	}
	for where, text := range texts {
		for _, tok := range token.FindAllString(string(text), -1) {
			if raw[tok] {
				t.Errorf("%s contains the raw record value %q", where, tok)
				break
			}
		}
	}
	t.Logf("scanned %d bytes of output, logs and report and %d ledger entries for %d secret encodings and %d raw values", len(story.Bytes())+len(texts["sandboxd.log"])+len(texts["report.json"]), len(entries), len(secrets), len(raw))
}

func containsAny(s string, set map[string]string) bool {
	for k := range set {
		if strings.Contains(s, k) {
			return true
		}
	}
	return false
}

// exportedEntries reads a ledger export (sandboxctl ledger export).
func exportedEntries(t *testing.T, path string) []*chain.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var out []*chain.Entry
	sc := bufio.NewScanner(z)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var line struct {
			Entries []string `json:"entries"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		for _, s := range line.Entries {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				t.Fatal(err)
			}
			e, err := chain.ParseEntry(b)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
