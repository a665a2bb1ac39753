package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
)

func cmdHealth(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var h api.HealthResponse
	if err := newClient(g).Do(ctx, "GET", "/v1/health", nil, &h); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, h)
	}
	fmt.Fprintf(g.stdout, "node %s: %s, leader %s, ledger size %d\n", h.Node, h.Status, h.Leader, h.LedgerSize)
	return nil
}

func cmdLedgerAppend(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	kind := fs.String("kind", "", "entry kind, e.g. demo.note")
	payload := fs.String("payload", "{}", "payload (JSON)")
	nonce := fs.Uint64("nonce", 0, "nonce (default: the current time in nanoseconds, which grows)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *kind == "" {
		return errors.New("ledger append: --kind is required")
	}
	if !json.Valid([]byte(*payload)) {
		return errors.New("ledger append: --payload must be valid JSON")
	}
	k, err := loadKey(g)
	if err != nil {
		return err
	}
	now := time.Now()
	n := *nonce
	if n == 0 {
		n = uint64(now.UnixNano())
	}
	raw, err := k.NewEntry(*kind, n, now, []byte(*payload))
	if err != nil {
		return err
	}
	var resp api.AppendResponse
	if err := newClient(g).Do(ctx, "POST", "/v1/ledger/entries", api.AppendRequest{Entry: base64.StdEncoding.EncodeToString(raw)}, &resp); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, resp)
	}
	fmt.Fprintf(g.stdout, "committed %s entry at index %d (leaf %s)\n", *kind, resp.Index, resp.LeafHash)
	return nil
}

func cmdLedgerCheckpoint(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var cp api.CheckpointResponse
	if err := newClient(g).Do(ctx, "GET", "/v1/ledger/checkpoint", nil, &cp); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, cp)
	}
	fmt.Fprint(g.stdout, cp.Note)
	return nil
}

func cmdLedgerEntries(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	start := fs.Uint64("start", 0, "first index")
	end := fs.Uint64("end", 0, "index after the last (default: one page)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	path := fmt.Sprintf("/v1/ledger/entries?start=%d", *start)
	if *end > 0 {
		path += fmt.Sprintf("&end=%d", *end)
	}
	var er api.EntriesResponse
	if err := newClient(g).Do(ctx, "GET", path, nil, &er); err != nil {
		return err
	}
	out := entriesDoc{Entries: []decodedEntry{}}
	for _, ie := range er.Entries {
		d, err := decodeEntry(ie)
		if err != nil {
			return err
		}
		out.Entries = append(out.Entries, d)
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	fmt.Fprintf(g.stdout, "%-6s %-22s %-40s %-40s %-20s %s\n", "INDEX", "KIND", "ACCOUNT", "NODE (signer)", "NONCE", "TIME")
	for _, d := range out.Entries {
		node := "-"
		if d.Relayed {
			node = d.Author
		}
		fmt.Fprintf(g.stdout, "%-6d %-22s %-40s %-40s %-20d %s\n", d.Index, d.Kind, d.Actor, node, d.Nonce, d.Time)
	}
	return nil
}

// entriesDoc is what "ledger entries --json" prints: each entry as the
// node sent it (entry, base64) and decoded beside it.
type entriesDoc struct {
	Entries []decodedEntry `json:"entries"`
}

// decodedEntry is one ledger entry, decoded. Author is the key that signed
// the entry; for an act a node relays for an account, that is the node,
// and Actor is the account whose signed request the entry carries.
type decodedEntry struct {
	Index   uint64 `json:"index"`
	Entry   string `json:"entry"`
	Kind    string `json:"kind"`
	Author  string `json:"author"`
	Actor   string `json:"actor"`
	Relayed bool   `json:"relayed"`
	Nonce   uint64 `json:"nonce"`
	Time    string `json:"time"`
	// Payload is the entry's payload when it is JSON (PayloadBase64
	// otherwise); Document is a relayed request's body, when it is JSON.
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 string          `json:"payload_base64,omitempty"`
	Document      json.RawMessage `json:"document,omitempty"`
}

func decodeEntry(ie api.IndexedEntry) (decodedEntry, error) {
	raw, err := base64.StdEncoding.DecodeString(ie.Entry)
	if err != nil {
		return decodedEntry{}, fmt.Errorf("entry %d: not base64", ie.Index)
	}
	e, err := chain.ParseEntry(raw)
	if err != nil {
		return decodedEntry{}, fmt.Errorf("entry %d: %w", ie.Index, err)
	}
	d := decodedEntry{Index: ie.Index, Entry: ie.Entry, Kind: e.Kind, Author: e.Author().String(), Nonce: e.Nonce, Time: e.Time.Format(time.RFC3339)}
	d.Actor = d.Author
	if !json.Valid(e.Payload) {
		d.PayloadBase64 = base64.StdEncoding.EncodeToString(e.Payload)
		return d, nil
	}
	d.Payload = json.RawMessage(e.Payload)
	// A relayed act: {"relay": {"actor": "<address>", "request": {..., "body": "<base64>"}}}.
	var p struct {
		Relay *struct {
			Actor   string `json:"actor"`
			Request *struct {
				Body []byte `json:"body"`
			} `json:"request"`
		} `json:"relay"`
	}
	if json.Unmarshal(e.Payload, &p) == nil && p.Relay != nil && p.Relay.Actor != "" && p.Relay.Request != nil {
		rel := p.Relay
		d.Actor, d.Relayed = rel.Actor, true
		if json.Valid(rel.Request.Body) {
			d.Document = json.RawMessage(rel.Request.Body)
		}
	}
	return d, nil
}

// trustKeys loads checkpoint verifier keys from --trust, SANDBOX_TRUST, or
// trust.vkeys in the directory above the key file (where sandboxd dev puts
// it). It returns the file it used.
func trustKeys(g *globals, flagValue string) ([]*chain.CheckpointVerifier, string, error) {
	path := flagValue
	if path == "" {
		path = os.Getenv("SANDBOX_TRUST")
	}
	if path == "" && g.key != "" {
		p := filepath.Join(filepath.Dir(filepath.Dir(g.key)), "trust.vkeys")
		if _, err := os.Stat(p); err == nil {
			path = p
		}
	}
	if path == "" {
		return nil, "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	out, err := chain.ParseVerifierList(path, b)
	return out, path, err
}

func cmdLedgerProof(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	index := fs.Int64("index", -1, "entry index")
	job := fs.String("job", "", "a job id: prove its submission entry")
	trustFile := fs.String("trust", "", "file of trusted checkpoint keys (default: SANDBOX_TRUST, or trust.vkeys beside the key's folder)")
	insecure := fs.Bool("insecure", false, "accept the node's checkpoint without checking its signature (the proof then only shows what the node claims)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *job != "" {
		// A job's id is the index of the entry that submitted it.
		n, err := strconv.ParseInt(strings.TrimPrefix(*job, "job-"), 10, 64)
		if err != nil || !strings.HasPrefix(*job, "job-") || n < 0 {
			return fmt.Errorf("ledger proof: %q is not a job id (job-N)", *job)
		}
		*index = n
	}
	if *index < 0 {
		return errors.New("ledger proof: --index or --job is required")
	}
	trust, _, err := trustKeys(g, *trustFile)
	if err != nil {
		return err
	}
	if len(trust) == 0 && !*insecure {
		return errors.New("ledger proof: no trusted checkpoint keys, so the proof would only show what this node claims: give --trust FILE (or SANDBOX_TRUST), or --insecure to go on anyway")
	}
	c := newClient(g)
	cp, err := c.Checkpoint(ctx, trust)
	if err != nil {
		return err
	}
	i := uint64(*index)
	if i >= cp.Size {
		return fmt.Errorf("ledger proof: entry %d is not in the checkpoint (size %d)", i, cp.Size)
	}
	var er api.EntriesResponse
	if err := c.Do(ctx, "GET", fmt.Sprintf("/v1/ledger/entries?start=%d&end=%d", i, i+1), nil, &er); err != nil {
		return err
	}
	if len(er.Entries) != 1 || er.Entries[0].Index != i {
		return fmt.Errorf("ledger proof: the node did not return entry %d", i)
	}
	raw, err := base64.StdEncoding.DecodeString(er.Entries[0].Entry)
	if err != nil {
		return err
	}
	proven := map[uint64][]byte{i: raw}
	if *job != "" {
		// The job's later entries (approvals, start, completion) that the
		// caller may read: those whose action names the job.
		pager := client.NewEntryReader(c)
		for k := i + 1; k < cp.Size; k++ {
			e, err := pager.GetFiltered(ctx, k)
			if err != nil {
				return err
			}
			if e != nil && mentionsJob(e, *job) {
				proven[k] = e
			}
		}
	}
	var indexes []uint64
	for k := range proven {
		indexes = append(indexes, k)
	}
	sort.Slice(indexes, func(a, b int) bool { return indexes[a] < indexes[b] })
	for _, k := range indexes {
		var ip api.InclusionResponse
		if err := c.Do(ctx, "GET", fmt.Sprintf("/v1/ledger/proof/inclusion?index=%d&size=%d", k, cp.Size), nil, &ip); err != nil {
			return err
		}
		hashes, err := client.DecodeHashes(ip.Hashes)
		if err != nil {
			return err
		}
		if err := chain.VerifyInclusion(k, cp.Size, chain.LeafHash(proven[k]), hashes, cp.Root); err != nil {
			return fmt.Errorf("ledger proof: entry %d: %w", k, err)
		}
		if !g.json {
			kind := "?"
			if e, err := chain.ParseEntry(proven[k]); err == nil {
				kind = e.Kind
			}
			fmt.Fprintf(g.stdout, "entry %d (%s) is included in the checkpoint of size %d (root %s), %d proof hashes verified\n", k, kind, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]), len(hashes))
		}
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"indexes": indexes, "size": cp.Size, "root": base64.StdEncoding.EncodeToString(cp.Root[:]), "verified": true, "signed_by": cp.Signer, "trusted": len(trust) > 0})
	}
	if len(trust) == 0 {
		fmt.Fprintln(g.stdout, "warning: no trusted checkpoint keys (--trust); the checkpoint's signature was not checked")
	}
	return nil
}

// mentionsJob reports whether an entry acts on the job: a node's
// job.start/complete/fail naming it, or a relayed approval or rejection.
func mentionsJob(raw []byte, job string) bool {
	e, err := chain.ParseEntry(raw)
	return err == nil && audit.JobOf(e) == job
}

// cmdLedgerVerify verifies the node's ledger, or an export of it
// (client.Verify, client.VerifyExport), writes the reports asked for and
// prints the verdict: exit 0 only if every check holds.
func cmdLedgerVerify(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	trustFile := fs.String("trust", "", "file of trusted checkpoint keys (default: SANDBOX_TRUST, or trust.vkeys beside the key's folder)")
	out := fs.String("out", "", "write the JSON report here")
	stateFile := fs.String("state", "", "where the last verified checkpoint is kept (default: user config dir)")
	file := fs.String("file", "", "verify an exported ledger (ledger export) instead of a node")
	htmlOut := fs.String("html", "", "write a self-contained HTML report here")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	trust, _, err := trustKeys(g, *trustFile)
	if err != nil {
		return err
	}
	v, err := verifyLedger(ctx, g, *file, client.VerifyConfig{Trust: trust, StateFile: *stateFile})
	if err != nil {
		return err
	}
	if err := writeReports(v, *htmlOut, *out); err != nil {
		return err
	}
	rep := v.Report
	if g.json {
		if err := printJSON(g.stdout, rep); err != nil {
			return err
		}
	} else {
		printReport(g, rep)
	}
	return verdict(v)
}

// verdict is ledger verify's outcome: nil only if every check holds and
// the checkpoint was kept for the next run's rollback check.
func verdict(v *client.Verification) error {
	if rep := v.Report; !rep.OK {
		return fmt.Errorf("ledger verification failed at index %d: %s", rep.FirstFailure.Index, rep.FirstFailure.Reason)
	}
	if v.SaveErr != nil {
		return fmt.Errorf("every check holds, but the verified checkpoint could not be kept for the next run's rollback check (--state %s): %w", v.StateFile, v.SaveErr)
	}
	return nil
}

// verifyLedger runs the verification of the node, or of the export file
// when one is given, with a progress bar on stderr.
func verifyLedger(ctx context.Context, g *globals, file string, cfg client.VerifyConfig) (*client.Verification, error) {
	var bar *progress
	cfg.Progress = func(done, total int64) {
		if bar == nil {
			bar = newProgress(g.stderr, "verifying entries", total, false)
		}
		bar.Add(done - bar.done)
	}
	defer func() {
		if bar != nil {
			bar.Done()
		}
	}()
	if file != "" {
		return client.VerifyExport(ctx, file, cfg)
	}
	return client.Verify(ctx, newClient(g), cfg)
}

// writeReports writes the HTML report and the JSON report, when asked for.
func writeReports(v *client.Verification, htmlFile, jsonFile string) error {
	if htmlFile != "" {
		var buf bytes.Buffer
		if err := audit.WriteHTML(&buf, v.View(), "Ledger audit of "+v.Report.Source, v.Report.Checks); err != nil {
			return err
		}
		if err := os.WriteFile(htmlFile, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if jsonFile != "" {
		b, _ := json.MarshalIndent(v.Report, "", "  ")
		if err := os.WriteFile(jsonFile, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// prefix is the first n bytes of s, or all of it when shorter (a server's
// state hash is untrusted input).
func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func printReport(g *globals, rep *client.Report) {
	w := g.stdout
	fmt.Fprintf(w, "ledger of %s\n", rep.Source)
	fmt.Fprintf(w, "  checkpoint     size %d, signed by %s (%s)\n", rep.Checkpoint.Size, strings.Join(rep.Checkpoint.Signers, ", "), map[bool]string{true: "trusted key", false: "signature NOT checked"}[rep.Checkpoint.Trusted])
	fmt.Fprintf(w, "  entries        %d verified (signatures, Merkle root), %d accounts acting\n", rep.Entries, rep.Actors)
	fmt.Fprintf(w, "  blocks         %d linked by hash, each root checked\n", rep.Blocks)
	fmt.Fprintf(w, "  consistency    %s\n", rep.Consistency)
	fmt.Fprintf(w, "  state replay   hash %s (%s)\n", prefix(rep.StateHash, 16), rep.NodeState)
	fmt.Fprintf(w, "  jobs           %s\n", countsLine(rep.Jobs))
	if rep.ResultsChecked > 0 {
		fmt.Fprintf(w, "  results        %d delivered results hash to the committed hashes\n", rep.ResultsChecked)
	}
	if len(rep.Refusals) > 0 {
		fmt.Fprintf(w, "  refusals       %s\n", countsLine(rep.Refusals))
	}
	for _, req := range slices.Sorted(maps.Keys(rep.Epsilon)) {
		for _, ds := range slices.Sorted(maps.Keys(rep.Epsilon[req])) {
			fmt.Fprintf(w, "  epsilon        %s on %s: %g\n", req, ds, rep.Epsilon[req][ds])
		}
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintf(w, "  warning        %s\n", wn)
	}
	if rep.OK {
		fmt.Fprintf(w, "OK: all checks hold (%s)\n", rep.Elapsed)
	}
}

func countsLine(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
