package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/sandbox"
)

func cmdHealth(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	var h api.HealthResponse
	if err := newClient(g).do(ctx, "GET", "/v1/health", nil, &h); err != nil {
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
	if err := newClient(g).do(ctx, "POST", "/v1/ledger/entries", api.AppendRequest{Entry: base64.StdEncoding.EncodeToString(raw)}, &resp); err != nil {
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
	if err := newClient(g).do(ctx, "GET", "/v1/ledger/checkpoint", nil, &cp); err != nil {
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
	if err := newClient(g).do(ctx, "GET", path, nil, &er); err != nil {
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

// fetchCheckpoint gets the node's checkpoint and checks it.
func fetchCheckpoint(ctx context.Context, c *client, trust []*chain.CheckpointVerifier) (*chain.Checkpoint, error) {
	var resp api.CheckpointResponse
	if err := c.do(ctx, "GET", "/v1/ledger/checkpoint", nil, &resp); err != nil {
		return nil, err
	}
	return checkCheckpoint(resp, trust)
}

// checkCheckpoint checks a checkpoint's signature against the trusted keys
// (when there are any) and its JSON fields against the signed note.
func checkCheckpoint(resp api.CheckpointResponse, trust []*chain.CheckpointVerifier) (*chain.Checkpoint, error) {
	var cp *chain.Checkpoint
	var err error
	if len(trust) > 0 {
		cp, err = chain.ParseCheckpoint([]byte(resp.Note), trust...)
	} else {
		cp, err = chain.ParseUnverifiedCheckpoint([]byte(resp.Note))
	}
	if err != nil {
		return nil, err
	}
	if cp.Size != resp.Size || base64.StdEncoding.EncodeToString(cp.Root[:]) != resp.Root {
		return nil, errors.New("checkpoint: size or root differ from the signed note")
	}
	return cp, nil
}

func decodeHashes(in []string) ([]chain.Hash, error) {
	out := make([]chain.Hash, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("proof hash %d is not base64 of 32 bytes", i)
		}
		copy(out[i][:], b)
	}
	return out, nil
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
	cp, err := fetchCheckpoint(ctx, c, trust)
	if err != nil {
		return err
	}
	i := uint64(*index)
	if i >= cp.Size {
		return fmt.Errorf("ledger proof: entry %d is not in the checkpoint (size %d)", i, cp.Size)
	}
	var er api.EntriesResponse
	if err := c.do(ctx, "GET", fmt.Sprintf("/v1/ledger/entries?start=%d&end=%d", i, i+1), nil, &er); err != nil {
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
		pager := &entryPager{c: c, ctx: ctx}
		for k := i + 1; k < cp.Size; k++ {
			e, err := pager.getFiltered(k)
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
		if err := c.do(ctx, "GET", fmt.Sprintf("/v1/ledger/proof/inclusion?index=%d&size=%d", k, cp.Size), nil, &ip); err != nil {
			return err
		}
		hashes, err := decodeHashes(ip.Hashes)
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

// Report is what ledger verify finds; --out writes it as JSON.
type Report struct {
	audit.Report
	Source      string          `json:"source"`
	Checkpoint  *ReportCheckpt  `json:"checkpoint"`
	Consistency string          `json:"consistency"`
	NodeState   string          `json:"node_state"`
	Warnings    []string        `json:"warnings,omitempty"`
	Elapsed     string          `json:"elapsed"`
	Checks      map[string]bool `json:"checks"`
	// ResultsChecked counts delivered results re-hashed against the ledger.
	ResultsChecked int `json:"results_checked"`
}

// ReportCheckpt is the checkpoint the ledger was verified against.
type ReportCheckpt struct {
	Size    uint64   `json:"size"`
	Root    string   `json:"root"`
	Signers []string `json:"signers"`
	Trusted bool     `json:"trusted"`
	Time    string   `json:"time"`
}

// entryPager fetches entries a page at a time for a streaming reader.
type entryPager struct {
	c        *client
	ctx      context.Context
	start    uint64
	end      uint64
	page     [][]byte
	filtered map[uint64][]byte
}

func (p *entryPager) get(i uint64) ([]byte, error) {
	if i < p.start || i >= p.start+uint64(len(p.page)) {
		var er api.EntriesResponse
		if err := p.c.do(p.ctx, "GET", fmt.Sprintf("/v1/ledger/entries?start=%d", i), nil, &er); err != nil {
			return nil, err
		}
		p.start, p.page = i, nil
		for k, ie := range er.Entries {
			if ie.Index != i+uint64(k) {
				return nil, fmt.Errorf("the node returned entry %d where %d was expected (verification needs permission read.all)", ie.Index, i+uint64(k))
			}
			raw, err := base64.StdEncoding.DecodeString(ie.Entry)
			if err != nil {
				return nil, fmt.Errorf("entry %d is not base64", ie.Index)
			}
			p.page = append(p.page, raw)
		}
		if len(p.page) == 0 {
			return nil, fmt.Errorf("the node returned no entry %d (verification needs permission read.all)", i)
		}
	}
	return p.page[i-p.start], nil
}

// getFiltered returns entry i if the caller may read it, nil otherwise
// (filtered pages skip what the caller may not see).
func (p *entryPager) getFiltered(i uint64) ([]byte, error) {
	if p.filtered == nil || i < p.start || i >= p.end {
		// A short explicit range, so that the range the node scanned is
		// known even when the filter leaves nothing in it.
		const scan = 50
		var er api.EntriesResponse
		if err := p.c.do(p.ctx, "GET", fmt.Sprintf("/v1/ledger/entries?start=%d&end=%d", i, i+scan), nil, &er); err != nil {
			return nil, err
		}
		p.filtered = map[uint64][]byte{}
		p.start, p.end = i, i+scan
		for _, ie := range er.Entries {
			raw, err := base64.StdEncoding.DecodeString(ie.Entry)
			if err != nil {
				return nil, fmt.Errorf("entry %d is not base64", ie.Index)
			}
			p.filtered[ie.Index] = raw
		}
	}
	return p.filtered[i], nil
}

// httpSource streams blocks and entries from a node's API.
type httpSource struct {
	c      *client
	ents   *entryPager
	blocks []api.BlockResponse
	next   uint64 // height of the next block
}

func newHTTPSource(ctx context.Context, c *client) *httpSource {
	return &httpSource{c: c, ents: &entryPager{c: c, ctx: ctx}, next: 1}
}

func (s *httpSource) Next(ctx context.Context) (*chain.Block, [][]byte, error) {
	if len(s.blocks) == 0 {
		var br struct {
			Blocks []api.BlockResponse `json:"blocks"`
		}
		if err := s.c.do(ctx, "GET", fmt.Sprintf("/v1/ledger/blocks?start=%d&end=%d", s.next, s.next+1000), nil, &br); err != nil {
			return nil, nil, err
		}
		if len(br.Blocks) == 0 {
			return nil, nil, io.EOF
		}
		s.blocks = br.Blocks
	}
	b := s.blocks[0]
	s.blocks = s.blocks[1:]
	s.next = b.Height + 1
	blk, err := blockOf(b)
	if err != nil {
		return nil, nil, fmt.Errorf("block %d: %w", b.Height, err)
	}
	entries := make([][]byte, 0, blk.Count)
	for i := uint64(0); i < uint64(blk.Count); i++ {
		raw, err := s.ents.get(blk.FirstIndex + i)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, raw)
	}
	return blk, entries, nil
}

// blockOf rebuilds a block header from the API's answer and checks its
// hash.
func blockOf(b api.BlockResponse) (*chain.Block, error) {
	blk := &chain.Block{Height: b.Height, FirstIndex: b.FirstIndex, Count: b.Count, Proposer: b.Proposer}
	for _, f := range []struct {
		in  string
		out *chain.Hash
	}{{b.Prev, &blk.Prev}, {b.Root, &blk.Root}} {
		raw, err := base64.StdEncoding.DecodeString(f.in)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("a hash is not base64 of 32 bytes")
		}
		copy(f.out[:], raw)
	}
	t, err := time.Parse(time.RFC3339Nano, b.Time)
	if err != nil {
		return nil, fmt.Errorf("bad time %q", b.Time)
	}
	blk.Time = t.UTC()
	h := blk.Hash()
	if base64.StdEncoding.EncodeToString(h[:]) != b.Hash {
		return nil, fmt.Errorf("its hash does not match its header")
	}
	return blk, nil
}

type verifiedState struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   string `json:"root"`
	Note   string `json:"note"`
}

func statePath(flagValue, origin string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(origin))
	return filepath.Join(dir, "sandboxctl", "verified", hex.EncodeToString(sum[:8])+".json"), nil
}

func cmdLedgerVerify(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) error {
	trustFile := fs.String("trust", "", "file of trusted checkpoint keys (default: SANDBOX_TRUST, or trust.vkeys beside the key's folder)")
	out := fs.String("out", "", "write the JSON report here")
	stateFile := fs.String("state", "", "where the last verified checkpoint is kept (default: user config dir)")
	file := fs.String("file", "", "verify an exported ledger (ledger export) instead of a node")
	htmlOut := fs.String("html", "", "write a self-contained HTML report here")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	start := time.Now()
	trust, _, err := trustKeys(g, *trustFile)
	if err != nil {
		return err
	}
	var src audit.Source
	var cp *chain.Checkpoint
	var c *client
	source := g.server
	if *file != "" {
		ex, err := openExport(*file)
		if err != nil {
			return err
		}
		defer ex.Close()
		if cp, err = checkCheckpoint(ex.checkpoint, trust); err != nil {
			return err
		}
		src, source = ex, *file
	} else {
		c = newClient(g)
		if cp, err = fetchCheckpoint(ctx, c, trust); err != nil {
			return err
		}
		src = newHTTPSource(ctx, c)
	}
	bar := newProgress(g.stderr, "verifying entries", int64(cp.Size), false)
	// Every job's plan is derived again from its SQL and compared with
	// the plan the policy was checked against.
	sm := audit.NewStateMachine()
	sm.Plan = sandbox.DerivePlan
	blocks := &audit.BlockLog{Source: &progressSource{src: src, p: bar}}
	ar, _, err := audit.VerifyWith(ctx, sm, blocks, cp)
	bar.Done()
	if err != nil {
		return err
	}
	rep := &Report{Report: *ar, Source: source, Checks: map[string]bool{}}
	fail := func(index int64, format string, a ...any) {
		if rep.FirstFailure == nil {
			rep.FirstFailure = &audit.Failure{Index: index, Reason: fmt.Sprintf(format, a...)}
		}
	}
	rep.Checkpoint = &ReportCheckpt{Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]), Signers: cp.Signer, Trusted: len(trust) > 0, Time: cp.Time.Format(time.RFC3339)}
	rep.Checks["checkpoint_signature"] = len(trust) > 0
	if len(trust) == 0 {
		rep.Warnings = append(rep.Warnings, "no trusted checkpoint keys: the checkpoint's signature was not checked (use --trust)")
	}
	ok := rep.FirstFailure == nil
	for _, k := range []string{"entry_signatures", "block_chain", "merkle_root", "state_replay", "invariants"} {
		rep.Checks[k] = ok
	}
	rep.NodeState = "not compared (offline)"
	if c != nil && ok {
		var st api.StateResponse
		switch err := c.do(ctx, "GET", "/v1/ledger/state", nil, &st); {
		case err != nil:
			rep.NodeState = "not compared: " + err.Error()
		case st.Applied != cp.Size:
			rep.NodeState = fmt.Sprintf("not compared: the node has applied %d entries since the checkpoint of %d", st.Applied, cp.Size)
		case st.StateHash != rep.StateHash:
			rep.NodeState = "DIFFERS"
			fail(int64(cp.Size), "the replayed state hash %s differs from the node's %s", prefix(rep.StateHash, 16), prefix(st.StateHash, 16))
		default:
			rep.NodeState = "matches the node's state hash"
			rep.Checks["node_state"] = true
		}
	}

	// Consistency with the last checkpoint verified from this origin.
	sp, err := statePath(*stateFile, cp.Origin)
	if err != nil {
		return err
	}
	rep.Consistency = "first run: nothing to compare"
	if b, err := os.ReadFile(sp); err == nil && rep.FirstFailure == nil {
		var prev verifiedState
		if err := json.Unmarshal(b, &prev); err != nil {
			return fmt.Errorf("%s: %w", sp, err)
		}
		prevRoot, _ := base64.StdEncoding.DecodeString(prev.Root)
		var pr chain.Hash
		copy(pr[:], prevRoot)
		switch {
		case prev.Size > cp.Size:
			rep.Consistency = fmt.Sprintf("not checked: this ledger is behind the checkpoint of size %d verified earlier", prev.Size)
			rep.Warnings = append(rep.Warnings, rep.Consistency)
		case prev.Size == 0:
		default:
			// The verified ledger itself proves consistency: recompute the
			// earlier root from the entries when offline, or ask the node.
			var err error
			if c != nil {
				var cr api.ConsistencyResponse
				if err = c.do(ctx, "GET", fmt.Sprintf("/v1/ledger/proof/consistency?first=%d&second=%d", prev.Size, cp.Size), nil, &cr); err != nil {
					return err
				}
				var hs []chain.Hash
				if hs, err = decodeHashes(cr.Hashes); err == nil {
					err = chain.VerifyConsistency(prev.Size, cp.Size, hs, pr, cp.Root)
				}
			} else if root, rerr := exportRoot(*file, prev.Size); rerr != nil {
				err = rerr
			} else if root != pr {
				err = errors.New("roots differ")
			}
			rep.Checks["consistency"] = err == nil
			if err != nil {
				rep.Consistency = "FAILED: " + err.Error()
				fail(int64(prev.Size), "the ledger is not an extension of the checkpoint of size %d verified earlier: history was rewritten", prev.Size)
			} else {
				rep.Consistency = fmt.Sprintf("extends the checkpoint of size %d verified earlier", prev.Size)
			}
		}
	}
	// Each completed job's result, as the node delivers it, must hash to
	// what the ledger holds (the auditor may read every result).
	if c != nil && rep.FirstFailure == nil {
		checked := 0
		for _, ev := range rep.Timeline {
			if ev.Status != "completed" {
				continue
			}
			var raw json.RawMessage
			if err := c.do(ctx, "GET", "/v1/jobs/"+ev.Job+"/result", nil, &raw); err != nil {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("result of %s not checked: %v", ev.Job, err))
				continue
			}
			var res sandbox.Result
			if err := json.Unmarshal(raw, &res); err != nil || res.Seal() != nil || res.ResultSHA256 != ev.ResultHash {
				fail(int64(cp.Size), "the result the node delivers for %s does not hash to the committed %s", ev.Job, ev.ResultHash)
				break
			}
			checked++
		}
		rep.Checks["result_hashes"] = rep.FirstFailure == nil
		rep.ResultsChecked = checked
	}
	rep.OK = rep.FirstFailure == nil
	// The last verified checkpoint is what the next run checks for a
	// rollback: failing to keep it is reported, not swallowed.
	var saveErr error
	if rep.OK && len(trust) > 0 {
		b, _ := json.Marshal(verifiedState{Origin: cp.Origin, Size: cp.Size, Root: rep.Checkpoint.Root, Note: string(cp.Note)})
		if err := os.MkdirAll(filepath.Dir(sp), 0o700); err != nil {
			saveErr = err
		} else if err := os.WriteFile(sp, b, 0o600); err != nil {
			saveErr = err
		}
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	if *htmlOut != "" {
		var buf bytes.Buffer
		if err := audit.WriteHTML(&buf, audit.NewView(&rep.Report, sm.M, cp, len(trust) > 0, blocks.Blocks), "Ledger audit of "+rep.Source, rep.Checks); err != nil {
			return err
		}
		if err := os.WriteFile(*htmlOut, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if g.json {
		if err := printJSON(g.stdout, rep); err != nil {
			return err
		}
	} else {
		printReport(g, rep)
	}
	if !rep.OK {
		return fmt.Errorf("ledger verification failed at index %d: %s", rep.FirstFailure.Index, rep.FirstFailure.Reason)
	}
	if saveErr != nil {
		return fmt.Errorf("every check holds, but the verified checkpoint could not be kept for the next run's rollback check (--state %s): %w", sp, saveErr)
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

func printReport(g *globals, rep *Report) {
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
