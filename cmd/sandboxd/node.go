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
	var he *api.HE        // set below: the transport starts before the wiring exists
	var ps *api.Pseudonym // likewise
	var joiner *sandbox.Joiner
	var heReady = make(chan struct{})
	cfg.Services = func(ctx context.Context, service string, body []byte) ([]byte, error) {
		select {
		case <-heReady:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if mpc.IsPseudonymService(service) {
			return ps.Party.Serve(ctx, service, body)
		}
		if service == sandbox.ServiceShip || service == sandbox.ServiceList {
			return joiner.Serve(ctx, service, body)
		}
		return he.Party.Serve(ctx, service, body)
	}
	if s.Fast {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = 300*time.Millisecond, 300*time.Millisecond
	}
	n, err := chain.NewNode(cfg)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", s.ID, err)
	}
	nonces := chain.NewNonces()
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
	srv, err := api.New(acfg, n, sm.M, s.Key, store)
	if err != nil {
		n.Close()
		return nil, err
	}
	if he, err = api.NewHE(s.ID, filepath.Join(s.Dir, "mpc"), s.Key, n, sm.M, nonces, srv.ObservePhase); err != nil {
		n.Close()
		return nil, fmt.Errorf("node %s: %w", s.ID, err)
	}
	if ps, err = api.NewPseudonym(s.ID, filepath.Join(s.Dir, "mpc"), s.Key, n, sm.M, nonces); err != nil {
		n.Close()
		return nil, fmt.Errorf("node %s: %w", s.ID, err)
	}
	jk, err := mpc.NewJoinKeys(filepath.Join(s.Dir, "mpc"), s.Key, sm.M)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("node %s: %w", s.ID, err)
	}
	joiner = sandbox.NewJoiner(sandbox.JoinerConfig{Name: s.ID, Key: s.Key, Nonces: nonces, Crypto: jk, Call: n.Call, Sync: n.ReadBarrier, Logger: s.Logger, HE: he}, store, n, sm.M)
	close(heReady)
	srv.SetHE(he)
	srv.SetPseudonym(ps)
	srv.SetLists(joiner)
	ln, err := net.Listen("tcp", s.HTTP)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("node %s: HTTP listen on %s: %w", s.ID, s.HTTP, err)
	}
	if s.HTTPTLS != nil {
		ln = tls.NewListener(ln, s.HTTPTLS)
	}
	sctx, stop := context.WithCancel(context.Background())
	live := &liveNode{spec: s, chain: n, sm: sm, store: store, api: srv, he: he, ps: ps, ln: ln, done: make(chan error, 1), stop: stop}
	go func() { live.done <- srv.Serve(sctx, ln) }()
	runner := sandbox.NewRunner(sandbox.RunnerConfig{Name: s.ID, Key: s.Key, Nonces: nonces, Logger: s.Logger, HE: he, Observe: srv.ObservePhase, ObserveJob: srv.ObserveJob}, store, n, sm.M)
	live.runnerDone = make(chan struct{})
	joinerDone := make(chan struct{})
	go func() {
		defer close(joinerDone)
		joiner.Run(sctx)
	}()
	go func() {
		defer close(live.runnerDone)
		runner.Run(sctx)
		<-joinerDone
	}()
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
