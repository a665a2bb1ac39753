package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// consortiumFile records a dev consortium so that a second run resumes it.
// It holds only public data: addresses and checkpoint verifier keys.
type consortiumFile struct {
	Origin string           `json:"origin"`
	Nodes  []consortiumNode `json:"nodes"`
}

type consortiumNode struct {
	ID      string `json:"id"`
	HTTP    string `json:"http"`
	Raft    string `json:"raft"`
	Account string `json:"account"`
	VKey    string `json:"vkey"`
}

// demoAccounts are the accounts a dev consortium creates keys for.
func demoAccounts(nodes int) []string {
	names := []string{"admin"}
	for i := 1; i <= nodes; i++ {
		names = append(names, fmt.Sprintf("agency%d", i))
	}
	return append(names, "enterprise", "auditor")
}

// devFlags are the flags of sandboxd dev, and which of them were given.
type devFlags struct {
	dir, httpBase, raftBase, logLevel string
	nodes                             int
	demoData                          bool
	httpSet, nodesSet, raftSet        bool
}

// parseDevFlags parses and checks the flags of sandboxd dev.
func parseDevFlags(args []string, stderr io.Writer) (devFlags, error) {
	fs := flag.NewFlagSet("sandboxd dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "consortium directory (created if missing, resumed if present)")
	nodes := fs.Int("nodes", 3, "number of agency nodes")
	httpBase := fs.String("http", "127.0.0.1:8080", "HTTP address of node 1; node i uses port+i-1")
	raftBase := fs.String("raft", "", "Raft address of node 1; node i uses port+i-1 (default: HTTP port+1000)")
	demoData := fs.Bool("demo-data", false, "load the bundled demo datasets")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return devFlags{}, err
	}
	if *dir == "" {
		return devFlags{}, errors.New("dev: --dir is required")
	}
	if *nodes < 1 || *nodes > 15 {
		return devFlags{}, fmt.Errorf("dev: --nodes must be 1-15, got %d", *nodes)
	}
	f := devFlags{dir: *dir, httpBase: *httpBase, raftBase: *raftBase, logLevel: *logLevel, nodes: *nodes, demoData: *demoData}
	fs.Visit(func(fl *flag.Flag) {
		f.httpSet = f.httpSet || fl.Name == "http"
		f.nodesSet = f.nodesSet || fl.Name == "nodes"
		f.raftSet = f.raftSet || fl.Name == "raft"
	})
	return f, nil
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	f, err := parseDevFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}

	// A first start that fails (a port taken, no leader) removes what it
	// made, so that the next one starts afresh rather than resuming a
	// consortium that never was.
	ready := false
	undo, err := undoNewConsortium(f.dir)
	if err != nil {
		return err
	}
	defer func() {
		if !ready {
			undo()
		}
	}()
	cf, err := loadOrCreateConsortium(f.dir, f.nodes, f.httpBase, f.raftBase)
	if err != nil {
		return err
	}
	if err := resumeConsortium(cf, f); err != nil {
		return err
	}
	var live []*liveNode
	defer func() {
		for i := len(live) - 1; i >= 0; i-- {
			if err := live[i].close(); err != nil {
				logger.Error("shutdown", "node", live[i].spec.ID, "err", err)
			}
		}
	}()
	if err := startDevNodes(ctx, f.dir, cf, logger, &live); err != nil {
		return err
	}
	leader, err := waitLeader(ctx, live, 30*time.Second)
	if ctx.Err() != nil {
		return nil // stopped by a signal while starting: a clean shutdown
	}
	if err != nil {
		return err
	}
	if stopped, err := prepareConsortium(ctx, f, cf, live, logger); stopped || err != nil {
		return err
	}
	ready = true
	printReady(stdout, f.dir, cf, live, leader)
	<-ctx.Done()
	fmt.Fprintln(stdout, "shutting down")
	return nil
}

// resumeConsortium checks the given flags against a resumed consortium and moves its nodes to the given HTTP addresses.
func resumeConsortium(cf *consortiumFile, f devFlags) error {
	if f.nodesSet && len(cf.Nodes) != f.nodes {
		return fmt.Errorf("dev: %s holds a consortium of %d nodes; --nodes %d does not match", f.dir, len(cf.Nodes), f.nodes)
	}
	if f.raftSet {
		// Raft addresses are part of the consortium's replicated
		// configuration: a resumed consortium keeps the ones it has.
		for i := range cf.Nodes {
			want, err := offsetAddr(f.raftBase, i)
			if err != nil {
				return fmt.Errorf("dev: --raft: %w", err)
			}
			if cf.Nodes[i].Raft != want {
				return fmt.Errorf("dev: %s holds a consortium whose node 1 uses Raft address %s; Raft addresses are part of its replicated configuration and cannot change when it resumes: drop --raft (or give --raft %s), or use a new --dir", f.dir, cf.Nodes[0].Raft, cf.Nodes[0].Raft)
			}
		}
	}
	if f.httpSet {
		for i := range cf.Nodes {
			var err error
			if cf.Nodes[i].HTTP, err = offsetAddr(f.httpBase, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// startDevNodes starts every node of the consortium, appending each to *live as it starts.
func startDevNodes(ctx context.Context, dir string, cf *consortiumFile, logger *slog.Logger, live *[]*liveNode) error {
	var trust []*chain.CheckpointVerifier
	var peers []chain.Peer
	for _, n := range cf.Nodes {
		v, err := chain.ParseCheckpointVerifier(n.VKey)
		if err != nil {
			return err
		}
		trust = append(trust, v)
		peers = append(peers, chain.Peer{ID: n.ID, Addr: n.Raft})
	}
	for _, n := range cf.Nodes {
		ndir := filepath.Join(dir, "nodes", n.ID)
		key, err := chain.LoadKeyFile(filepath.Join(ndir, "node.key"))
		if err != nil {
			return err
		}
		ln, err := startNode(ctx, nodeSpec{
			ID: n.ID, Dir: ndir, Key: key, HTTP: n.HTTP, Raft: n.Raft, Origin: cf.Origin,
			Bootstrap: peers, Trust: trust, Logger: logger, Fast: true,
		})
		if err != nil {
			return err
		}
		*live = append(*live, ln)
	}
	return nil
}

// prepareConsortium commits the genesis, runs the key ceremonies and loads the demo data if asked; stopped reports a signal while it ran (a clean shutdown).
func prepareConsortium(ctx context.Context, f devFlags, cf *consortiumFile, live []*liveNode, logger *slog.Logger) (stopped bool, err error) {
	if err := writeGenesis(ctx, f.dir, cf, live[0]); err != nil {
		return false, err
	}
	if err := runCeremony(ctx, f.dir, live[0], len(live), logger); err != nil {
		if ctx.Err() != nil {
			return true, nil
		}
		return false, fmt.Errorf("dev: %w", err)
	}
	if err := runPseudonymCeremony(ctx, f.dir, live[0], len(live), logger); err != nil {
		if ctx.Err() != nil {
			return true, nil
		}
		return false, fmt.Errorf("dev: %w", err)
	}
	if f.demoData {
		if err := loadDemoData(ctx, f.dir, live[0]); err != nil {
			if ctx.Err() != nil {
				return true, nil // stopped by a signal while loading: a clean shutdown
			}
			return false, fmt.Errorf("dev: --demo-data: %w", err)
		}
	}
	return false, nil
}

// printReady tells the user where the ready consortium's nodes, keys and checkpoint keys are.
func printReady(stdout io.Writer, dir string, cf *consortiumFile, live []*liveNode, leader string) {
	fmt.Fprintf(stdout, "consortium ready in %s: %d nodes, leader %s, ledger size %d\n", dir, len(live), leader, live[0].chain.Ledger().Size())
	for _, n := range cf.Nodes {
		fmt.Fprintf(stdout, "  %-8s http://%s  raft %s\n", n.ID, n.HTTP, n.Raft)
	}
	fmt.Fprintf(stdout, "keys in %s: %s\n", filepath.Join(dir, "keys"), strings.Join(demoAccounts(len(cf.Nodes)), ", "))
	fmt.Fprintf(stdout, "checkpoint keys in %s\n", filepath.Join(dir, "trust.vkeys"))
}

// writeGenesis commits the genesis entry on a new consortium: the
// permission table and every demo account (nodes included), signed by the
// admin key.
func writeGenesis(ctx context.Context, dir string, cf *consortiumFile, n *liveNode) error {
	if n.chain.Ledger().Size() > 0 {
		return nil
	}
	keys := filepath.Join(dir, "keys")
	admin, err := chain.LoadKeyFile(filepath.Join(keys, "admin.key"))
	if err != nil {
		return err
	}
	// The limits are written out (they are the defaults) so that the
	// ledger states them.
	limits := policies.DefaultLimits()
	g := policies.Genesis{Consortium: cf.Origin, Table: policies.DefaultTable(), Limits: &limits}
	add := func(k *chain.Key, name, org, role string) {
		g.Accounts = append(g.Accounts, policies.GenesisAccount{PublicKey: k.PublicKey(), Algorithm: "ed25519", Name: name, Org: org, Roles: []string{role}})
	}
	for _, name := range demoAccounts(len(cf.Nodes)) {
		k, err := chain.LoadKeyFile(filepath.Join(keys, name+".key"))
		if err != nil {
			return err
		}
		role, org := name, name
		switch {
		case strings.HasPrefix(name, "agency"):
			role = "agency"
		case name == "admin" || name == "auditor":
			org = ""
		}
		add(k, name, org, role)
	}
	for i, nd := range cf.Nodes {
		k, err := chain.LoadKeyFile(filepath.Join(dir, "nodes", nd.ID, "node.key"))
		if err != nil {
			return err
		}
		add(k, nd.ID, fmt.Sprintf("agency%d", i+1), "node")
	}
	raw, err := audit.GenesisEntry(admin, g, time.Now())
	if err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := n.chain.Append(gctx, raw); err != nil {
		return fmt.Errorf("dev: committing genesis: %w", err)
	}
	return nil
}

// demoRows is the size of the dataset --demo-data loads.
const demoRows = 100_000

// loadDemoData acts as agency1 on node 1: it uploads the generated tax
// records, registers them as tax2025 and publishes the demo policy, over
// the API with agency1's signed requests, like sandboxctl would. It does
// nothing if tax2025 is already registered.
func loadDemoData(ctx context.Context, dir string, n *liveNode) error {
	// See every entry committed so far (the ceremony may have been
	// committed through another node than this one).
	if err := n.chain.ReadBarrier(ctx); err != nil {
		return err
	}
	_, plain := n.sm.M.Dataset("tax2025")
	_, enc := n.sm.M.Dataset("tax2025he")
	_, cer := n.sm.M.HE()
	if plain && (enc || !cer) {
		return nil
	}
	k, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "agency1.key"))
	if err != nil {
		return err
	}
	base := "http://" + n.ln.Addr().String()
	var csv bytes.Buffer
	if err := sandbox.GenerateDemo(&csv, demoRows, 2025); err != nil {
		return err
	}
	schema := sandbox.DemoSchema()
	sb, _ := json.Marshal(schema)
	if plain {
		return loadDemoHE(ctx, k, base, csv.Bytes(), sb)
	}
	var up api.UploadResponse
	if err := signedCall(ctx, k, "POST", base+"/v1/uploads?schema="+base64.RawURLEncoding.EncodeToString(sb), "text/csv", csv.Bytes(), &up); err != nil {
		return err
	}
	doc, _ := json.Marshal(policies.DatasetDoc{Name: "tax2025", Schema: schema, SHA256: up.SHA256, Rows: up.Rows})
	if err := signedCall(ctx, k, "POST", base+"/v1/datasets", "application/json", doc, nil); err != nil {
		return err
	}
	if err := signedCall(ctx, k, "POST", base+"/v1/policies", "application/json", sandbox.DemoPolicy("tax2025"), nil); err != nil {
		return err
	}
	if !cer {
		return nil
	}
	return loadDemoHE(ctx, k, base, csv.Bytes(), sb)
}

// loadDemoHE registers the same records encrypted (tax2025he): their
// sensitive columns exist only as CKKS ciphertexts under the consortium's
// collective key.
func loadDemoHE(ctx context.Context, k *chain.Key, base string, csv, schemaJSON []byte) error {
	var up api.UploadResponse
	if err := signedCall(ctx, k, "POST", base+"/v1/uploads?mode=he&schema="+base64.RawURLEncoding.EncodeToString(schemaJSON), "text/csv", csv, &up); err != nil {
		return fmt.Errorf("encrypted upload: %w", err)
	}
	doc, _ := json.Marshal(policies.DatasetDoc{Name: "tax2025he", Schema: sandbox.DemoSchema(), SHA256: up.SHA256, Rows: up.Rows})
	if err := signedCall(ctx, k, "POST", base+"/v1/datasets", "application/json", doc, nil); err != nil {
		return err
	}
	return signedCall(ctx, k, "POST", base+"/v1/policies", "application/json", sandbox.DemoPolicy("tax2025he"), nil)
}

// runCeremony has node 1 coordinate the HE key ceremony among all nodes,
// any 2 of which can decrypt; a single node runs none (he mode is then
// unavailable).
func runCeremony(ctx context.Context, dir string, n *liveNode, nodes int, logger *slog.Logger) error {
	if nodes < 2 {
		logger.Warn("a single node runs no HE key ceremony: he mode is unavailable")
		return nil
	}
	// A resumed consortium's ceremony may not be applied here yet: see
	// every committed entry before deciding (an approval committed for a
	// ceremony that exists would stay pending, open to a re-key).
	if err := n.chain.ReadBarrier(ctx); err != nil {
		return err
	}
	if _, ok := n.sm.M.HE(); ok {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := approveCeremony(cctx, dir, n, policies.KindHERotate); err != nil {
		return err
	}
	start := time.Now()
	doc, err := n.he.RunCeremony(cctx, 2)
	if err != nil {
		return fmt.Errorf("HE key ceremony: %w", err)
	}
	logger.Info("HE key ceremony committed", "participants", len(doc.Participants), "threshold", doc.Threshold,
		"public_key_sha256", doc.PublicKey, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// runPseudonymCeremony has node 1 coordinate the consortium-pseudonym
// key generation among all nodes, any 2 of which can evaluate; a single
// node runs none (consortium pseudonyms are then unavailable).
func runPseudonymCeremony(ctx context.Context, dir string, n *liveNode, nodes int, logger *slog.Logger) error {
	if nodes < 2 {
		logger.Warn("a single node runs no pseudonym key ceremony: consortium pseudonyms are unavailable")
		return nil
	}
	// A resumed consortium's ceremony may not be applied here yet: see
	// every committed entry before deciding (an approval committed for a
	// ceremony that exists would stay pending, open to a re-key).
	if err := n.chain.ReadBarrier(ctx); err != nil {
		return err
	}
	if _, ok := n.sm.M.Pseudonym(); ok {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := approveCeremony(cctx, dir, n, policies.KindPseudonymRotate); err != nil {
		return err
	}
	start := time.Now()
	doc, err := n.ps.RunCeremony(cctx, 2)
	if err != nil {
		return fmt.Errorf("pseudonym key ceremony: %w", err)
	}
	logger.Info("pseudonym key ceremony committed", "participants", len(doc.Participants), "threshold", doc.Threshold,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// approveCeremony commits the demo admin's approval of a key ceremony
// (every ceremony needs one on the ledger); one already pending is kept.
func approveCeremony(ctx context.Context, dir string, n *liveNode, kind string) error {
	admin, err := chain.LoadKeyFile(filepath.Join(dir, "keys", "admin.key"))
	if err != nil {
		return err
	}
	doc, _ := json.Marshal(policies.HERotateDoc{Reason: "the demo consortium's key ceremony"})
	raw, err := admin.NewEntry(kind, uint64(time.Now().UnixNano()), time.Now(), doc)
	if err != nil {
		return err
	}
	if _, err := n.chain.Append(ctx, raw); err != nil && !errors.Is(err, policies.ErrConflict) {
		return fmt.Errorf("approving the %s key ceremony: %w", kind, err)
	}
	return nil
}

// signedCall sends one request signed by k and decodes the JSON answer.
func signedCall(ctx context.Context, k *chain.Key, method, url, contentType string, body []byte, out any) error {
	return signedCallWith(ctx, http.DefaultClient, k, method, url, contentType, body, out)
}

// signedCallWith is signedCall through hc (e.g. one trusting a private CA).
func signedCallWith(ctx context.Context, hc *http.Client, k *chain.Key, method, url, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	if err := audit.SignRequestKey(req, body, k); err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, req.URL.Path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func waitLeader(ctx context.Context, live []*liveNode, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if id, _ := live[0].chain.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("dev: no leader elected within %s", d)
}

// offsetAddr returns host:port+i.
func offsetAddr(base string, i int) (string, error) {
	host, port, err := net.SplitHostPort(base)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", base, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p+i > 65535 {
		return "", fmt.Errorf("address %q: bad port", base)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+i)), nil
}

// undoNewConsortium returns a function that removes a consortium this run
// is about to create in dir: dir itself if it does not exist yet, or the
// files a new consortium writes into an existing one. On a consortium that
// exists already it returns a function that does nothing.
func undoNewConsortium(dir string) (func(), error) {
	if _, err := os.Stat(filepath.Join(dir, "consortium.json")); err == nil {
		return func() {}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return func() { os.RemoveAll(dir) }, nil
	}
	var made []string
	for _, name := range []string{"keys", "nodes", "trust.vkeys", "consortium.json"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
			made = append(made, filepath.Join(dir, name))
		}
	}
	return func() {
		for _, p := range made {
			os.RemoveAll(p)
		}
	}, nil
}

func loadOrCreateConsortium(dir string, nodes int, httpBase, raftBase string) (*consortiumFile, error) {
	path := filepath.Join(dir, "consortium.json")
	if b, err := os.ReadFile(path); err == nil {
		var cf consortiumFile
		if err := json.Unmarshal(b, &cf); err != nil {
			return nil, fmt.Errorf("dev: %s: %w", path, err)
		}
		if len(cf.Nodes) == 0 {
			return nil, fmt.Errorf("dev: %s lists no nodes", path)
		}
		return &cf, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if raftBase == "" {
		host, port, err := net.SplitHostPort(httpBase)
		if err != nil {
			return nil, fmt.Errorf("dev: --http %q: %w", httpBase, err)
		}
		p, _ := strconv.Atoi(port)
		raftBase = net.JoinHostPort(host, strconv.Itoa(p+1000))
	}
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	for _, name := range demoAccounts(nodes) {
		k, err := chain.GenerateKey(chain.Ed25519)
		if err != nil {
			return nil, err
		}
		if err := k.WriteKeyFile(filepath.Join(keys, name+".key")); err != nil {
			return nil, err
		}
	}
	cf := &consortiumFile{Origin: "datasandbox/dev/" + filepath.Base(dir)}
	var vkeys []string
	for i := 0; i < nodes; i++ {
		id := fmt.Sprintf("node%d", i+1)
		ndir := filepath.Join(dir, "nodes", id)
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			return nil, err
		}
		k, err := chain.GenerateKey(chain.Ed25519)
		if err != nil {
			return nil, err
		}
		if err := k.WriteKeyFile(filepath.Join(ndir, "node.key")); err != nil {
			return nil, err
		}
		h, err := offsetAddr(httpBase, i)
		if err != nil {
			return nil, err
		}
		r, err := offsetAddr(raftBase, i)
		if err != nil {
			return nil, err
		}
		v, _ := chain.NewCheckpointVerifier(id, k.PublicKey())
		cf.Nodes = append(cf.Nodes, consortiumNode{ID: id, HTTP: h, Raft: r, Account: k.Address().String(), VKey: v.VerifierKey()})
		vkeys = append(vkeys, v.VerifierKey())
	}
	b, _ := json.MarshalIndent(cf, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "trust.vkeys"), []byte(strings.Join(vkeys, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	// Written last: its presence means the directory is complete.
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return cf, nil
}
