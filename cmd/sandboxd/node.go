package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/mpc"
	"github.com/datasandbox/datasandbox/sandbox"
)

// nodeSpec is everything needed to start one node.
type nodeSpec struct {
	ID        string
	Dir       string
	Key       *chain.Key
	HTTP      string
	Raft      string
	Advertise string
	Origin    string
	Bootstrap []chain.Peer
	Join      string
	Trust     []*chain.CheckpointVerifier
	Logger    *slog.Logger
	Fast      bool // shorter Raft timeouts (local dev cluster)
	// HTTPTLS serves the API over HTTPS; PeerTLS protects the
	// node-to-node port with mutual TLS (chain.NodeTLS). nil: plain.
	HTTPTLS, PeerTLS *tls.Config
	// RateLimit and RateBurst override the API's per-account limits (0:
	// the defaults; a negative RateLimit: none).
	RateLimit float64
	RateBurst int
	// PublicURL is how clients reach the API (api.Config.PublicURL).
	PublicURL string
}

// liveNode is a started node: ledger, state machine and HTTP server.
type liveNode struct {
	spec  nodeSpec
	chain *chain.Node
	sm    audit.StateMachine
	store *sandbox.Store
	api   *api.Server
	he    *api.HE
	ps    *api.Pseudonym
	ln    net.Listener
	done  chan error
	stop  context.CancelFunc

	runnerDone chan struct{}
}

func startNode(ctx context.Context, s nodeSpec) (*liveNode, error) {
	sm := audit.NewStateMachine()
	sm.Plan = sandbox.DerivePlan // a relayed plan must be its query's
	store, err := sandbox.OpenStore(filepath.Join(s.Dir, "data"))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", s.ID, err)
	}
	svc := &nodeServices{ready: make(chan struct{})} // wired below: the transport starts before the wiring exists
	n, err := chain.NewNode(newChainConfig(s, sm, store, svc))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", s.ID, err)
	}
	nonces := chain.NewNonces()
	srv, err := api.New(newAPIConfig(s, nonces), n, sm.M, s.Key, store)
	if err != nil {
		n.Close()
		return nil, err
	}
	if err := svc.wire(s, n, sm, store, nonces, srv); err != nil {
		n.Close()
		return nil, err
	}
	ln, err := listenHTTP(s)
	if err != nil {
		n.Close()
		return nil, err
	}
	live := serveNode(s, n, sm, store, nonces, srv, svc, ln)
	if s.Join != "" {
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := n.Join(jctx, s.Join)
		cancel()
		if err != nil {
			live.close()
			return nil, err
		}
	}
	s.Logger.Info("node started", "node", s.ID, "http", ln.Addr().String(), "raft", n.Addr())
	return live, nil
}

// nodeServices routes the node-to-node services to the HE, pseudonym and
// join parties, which exist only once the node runs: calls wait for ready.
type nodeServices struct {
	he     *api.HE
	ps     *api.Pseudonym
	joiner *sandbox.Joiner
	ready  chan struct{}
}

// serve answers one node-to-node service call, once the parties are wired.
func (v *nodeServices) serve(ctx context.Context, service string, body []byte) ([]byte, error) {
	select {
	case <-v.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if mpc.IsPseudonymService(service) {
		return v.ps.Party.Serve(ctx, service, body)
	}
	if service == sandbox.ServiceShip || service == sandbox.ServiceList {
		return v.joiner.Serve(ctx, service, body)
	}
	return v.he.Party.Serve(ctx, service, body)
}

// wire creates the HE, pseudonym and join parties on a new node, opens the service calls to them and hands them to the API.
func (v *nodeServices) wire(s nodeSpec, n *chain.Node, sm audit.StateMachine, store *sandbox.Store, nonces *chain.Nonces, srv *api.Server) error {
	var err error
	if v.he, err = api.NewHE(s.ID, filepath.Join(s.Dir, "mpc"), s.Key, n, sm.M, nonces, srv.ObservePhase); err != nil {
		return fmt.Errorf("node %s: %w", s.ID, err)
	}
	if v.ps, err = api.NewPseudonym(s.ID, filepath.Join(s.Dir, "mpc"), s.Key, n, sm.M, nonces); err != nil {
		return fmt.Errorf("node %s: %w", s.ID, err)
	}
	jk, err := mpc.NewJoinKeys(filepath.Join(s.Dir, "mpc"), s.Key, sm.M)
	if err != nil {
		return fmt.Errorf("node %s: %w", s.ID, err)
	}
	v.joiner = sandbox.NewJoiner(sandbox.JoinerConfig{Name: s.ID, Key: s.Key, Nonces: nonces, Crypto: jk, Call: n.Call, Sync: n.ReadBarrier, Logger: s.Logger, HE: v.he}, store, n, sm.M)
	close(v.ready)
	srv.SetHE(v.he)
	srv.SetPseudonym(v.ps)
	srv.SetLists(v.joiner)
	return nil
}

// newChainConfig is the ledger's configuration for a node.
func newChainConfig(s nodeSpec, sm audit.StateMachine, store *sandbox.Store, svc *nodeServices) chain.Config {
	cfg := chain.DefaultConfig()
	cfg.Blobs = store.Blob
	cfg.ID, cfg.Dir, cfg.RaftAddr, cfg.Advertise, cfg.Key = s.ID, s.Dir, s.Raft, s.Advertise, s.Key
	cfg.TLS = s.PeerTLS
	if s.Origin != "" {
		cfg.Origin = s.Origin
	}
	cfg.StateMachine = sm
	cfg.Bootstrap = s.Bootstrap
	cfg.Verifiers = s.Trust
	cfg.Logger = s.Logger
	// A node may join if its account holds the join permission on the
	// committed ledger.
	cfg.Admit = sm.Admit
	cfg.Services = svc.serve
	if s.Fast {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = 300*time.Millisecond, 300*time.Millisecond
	}
	return cfg
}

// newAPIConfig is the API's configuration for a node.
func newAPIConfig(s nodeSpec, nonces *chain.Nonces) api.Config {
	acfg := api.DefaultConfig()
	acfg.Addr = s.HTTP
	acfg.PublicURL = s.PublicURL
	acfg.Logger = s.Logger
	acfg.Nonces = nonces
	switch {
	case s.RateLimit < 0:
		acfg.RateLimit = 0
	case s.RateLimit > 0:
		acfg.RateLimit = s.RateLimit
	}
	if s.RateBurst > 0 {
		acfg.RateBurst = s.RateBurst
	}
	return acfg
}

// listenHTTP opens the node's HTTP listener, under TLS if the spec has it.
func listenHTTP(s nodeSpec) (net.Listener, error) {
	ln, err := net.Listen("tcp", s.HTTP)
	if err != nil {
		return nil, fmt.Errorf("node %s: HTTP listen on %s: %w", s.ID, s.HTTP, err)
	}
	if s.HTTPTLS != nil {
		ln = tls.NewListener(ln, s.HTTPTLS)
	}
	return ln, nil
}

// serveNode starts the node's HTTP server, job runner and joiner; liveNode.close stops them.
func serveNode(s nodeSpec, n *chain.Node, sm audit.StateMachine, store *sandbox.Store, nonces *chain.Nonces, srv *api.Server, svc *nodeServices, ln net.Listener) *liveNode {
	sctx, stop := context.WithCancel(context.Background())
	live := &liveNode{spec: s, chain: n, sm: sm, store: store, api: srv, he: svc.he, ps: svc.ps, ln: ln, done: make(chan error, 1), stop: stop}
	go func() { live.done <- srv.Serve(sctx, ln) }()
	runner := sandbox.NewRunner(sandbox.RunnerConfig{Name: s.ID, Key: s.Key, Nonces: nonces, Logger: s.Logger, HE: svc.he, Observe: srv.ObservePhase, ObserveJob: srv.ObserveJob}, store, n, sm.M)
	live.runnerDone = make(chan struct{})
	joinerDone := make(chan struct{})
	go func() {
		defer close(joinerDone)
		svc.joiner.Run(sctx)
	}()
	go func() {
		defer close(live.runnerDone)
		runner.Run(sctx)
		<-joinerDone
	}()
	return live
}

// close stops the HTTP server (letting requests finish), then the node.
func (l *liveNode) close() error {
	l.stop()
	err := <-l.done
	<-l.runnerDone
	return errors.Join(err, l.chain.Close())
}

func loadTrust(path string) ([]*chain.CheckpointVerifier, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return chain.ParseVerifierList(filepath.Base(path), b)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
