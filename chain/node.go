package chain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
)

// Node is one member of the consortium's replicated ledger.
//
// Append is safe for concurrent use and may be called on any node: a
// follower forwards to the leader. The leader batches concurrent appends
// into blocks, one Raft log entry each, with up to MaxInflight blocks in
// flight, so throughput grows with concurrency while a lone append still
// commits in one round trip.
type Node struct {
	cfg    Config
	log    *slog.Logger
	ledger *Ledger
	raft   *raft.Raft
	wal    *wal.WAL
	meta   *metadb.BoltMetaDB
	layer  *muxLayer
	trans  *raft.NetworkTransport
	rpc    rpcClient

	propose chan *pending
	fwd     chan *pending

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	rpcConns sync.WaitGroup
	closed   sync.Once

	// ready is closed once raft is set (chain's own requests wait for it).
	ready chan struct{}
	// stores holds the first failed write to the Raft stores (Err).
	stores storeFailure
	logs   *storeGuard // the Raft log and stable stores, as Raft sees them

	// syncedTerm is the term in which this node, as leader, last saw a
	// Raft barrier applied: from then on everything committed before its
	// leadership is in its state (see leaderSynced).
	syncedTerm atomic.Uint64

	// leaderMu guards leaderMoved, closed and replaced whenever Raft
	// reports a new leader (or none): WaitLeader and retries while no
	// leader is known wait on it.
	leaderMu    sync.Mutex
	leaderMoved chan struct{}
}

// NewNode opens the node's stores, starts Raft and the batchers.
func NewNode(cfg Config) (*Node, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "chain", "node", cfg.ID)
	ledger, err := OpenLedger(LedgerConfig{
		Dir: filepath.Join(cfg.Dir, "ledger"), StateMachine: cfg.StateMachine,
		Key: cfg.Key, Name: cfg.ID, Origin: cfg.Origin, Verifiers: cfg.Verifiers, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, ledger: ledger,
		propose: make(chan *pending, 8192), fwd: make(chan *pending, 8192), ready: make(chan struct{}), leaderMoved: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.startRaft(); err != nil {
		n.cancel()
		ledger.Close()
		return nil, err
	}
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.runBatcher(n.propose, n.proposeBlock) }()
	go func() { defer n.wg.Done(); n.runBatcher(n.fwd, n.forwardBatch) }()
	return n, nil
}

// logCacheBlocks is how many recent Raft log entries (blocks) each node
// keeps in memory, at most MaxBlockBytes each.
const logCacheBlocks = 64

// startRaft opens the Raft stores and transport and starts Raft. On error
// it closes whatever it had opened (one deferred cleanup, in reverse order).
func (n *Node) startRaft() (err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	cfg := n.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.MaxAppendEntries = 1024
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft/" + cfg.ID, Level: hclog.LevelFromString(cfg.RaftLevel), Output: cfg.RaftLog})

	raftDir := filepath.Join(cfg.Dir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return err
	}
	// raft-wal's Close leaves its metadata DB (and its file lock) open, so
	// the node owns the DB and closes it itself.
	n.meta = &metadb.BoltMetaDB{}
	undo = append(undo, func() { n.meta.Close() })
	w, err := wal.Open(raftDir, wal.WithMetaStore(n.meta), wal.WithSegmentFiler(segment.NewFiler(raftDir, newWALVFS())))
	if err != nil {
		return fmt.Errorf("chain: opening raft log in %s: %w", raftDir, err)
	}
	n.wal = w
	undo = append(undo, func() { w.Close() })
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "snapshots"), 2, rc.Logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("chain: listening on %s: %w", cfg.RaftAddr, err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		ln.Close()
		return err
	}
	if adv.Port == 0 { // listening on :0 in tests
		adv = ln.Addr().(*net.TCPAddr)
		n.cfg.Advertise = adv.String()
	}
	n.layer = newMuxLayer(ln, adv, n.serveRPC, cfg.TLS, cfg.WrapConn)
	n.rpc.tls, n.rpc.wrap = cfg.TLS, cfg.WrapConn
	// MaxRPCsInFlight 1: no pipelined replication. hashicorp/raft's
	// pipeline can deadlock when a follower refuses an append: the decoder
	// stops reading responses, the next send waits for it forever, and the
	// pipeline is only closed once that send returns, so Shutdown hangs
	// (seen in TestPipelineStress's goroutine dump; grafana/pyroscope#5518
	// traces the same cycle). Blocks carry many entries each, so one
	// append in flight per follower costs no measurable throughput here.
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: n.layer, MaxPool: 4, Timeout: 10 * time.Second, Logger: rc.Logger, MaxRPCsInFlight: 1,
	})
	undo = append(undo, func() { n.trans.Close() }) // closes the layer and its listener
	hasState, err := raft.HasExistingState(w, w, snaps)
	if err != nil {
		return err
	}
	if !hasState && len(cfg.Bootstrap) > 0 {
		var servers []raft.Server
		for _, p := range cfg.Bootstrap {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := raft.BootstrapCluster(rc, w, w, snaps, n.trans, raft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("chain: bootstrap: %w", err)
		}
	}
	n.logs = &storeGuard{LogStore: w, stable: w, failed: n.storeFailed}
	// The last blocks stay in memory: the leader replicates them and every
	// node applies them moments after writing them, and reading them back
	// from the WAL cost a read and a decode each time.
	cached, err := raft.NewLogCache(logCacheBlocks, n.logs)
	if err != nil {
		return err
	}
	r, err := raft.NewRaft(rc, &fsm{l: n.ledger}, cached, n.logs, snaps, n.trans)
	if err != nil {
		return err
	}
	n.raft = r
	obs := make(chan raft.Observation, 16)
	r.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	n.wg.Add(1)
	go n.watchLeader(obs)
	close(n.ready)
	return nil
}

// watchLeader wakes the waiters on leader changes until the node closes.
func (n *Node) watchLeader(obs chan raft.Observation) {
	defer n.wg.Done()
	for {
		select {
		case <-obs:
			n.leaderMu.Lock()
			close(n.leaderMoved)
			n.leaderMoved = make(chan struct{})
			n.leaderMu.Unlock()
		case <-n.ctx.Done():
			return
		}
	}
}

// leaderChanged returns a channel closed when Raft next reports a leader
// change.
func (n *Node) leaderChanged() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderMoved
}

// storeFailed records the first failed write to the Raft stores; a leader
// hands its leadership over, since it can no longer commit.
func (n *Node) storeFailed(err error) {
	if !n.stores.set(err) {
		return
	}
	n.log.Error("node stopped: it cannot write its stores", "err", err)
	select {
	case <-n.ready:
		if n.IsLeader() {
			go n.raft.LeadershipTransfer()
		}
	default:
	}
}

// Err reports why this node stopped taking writes and serving reads: its
// Raft stores or its ledger store could not be written. nil when healthy.
func (n *Node) Err() error {
	if err := n.stores.get(); err != nil {
		return err
	}
	return n.ledger.Err()
}

// Ledger returns the node's committed history for reads and proofs.
func (n *Node) Ledger() *Ledger { return n.ledger }

// ID returns the node's name.
func (n *Node) ID() string { return n.cfg.ID }

// Addr returns the address peers reach this node's Raft port at.
func (n *Node) Addr() string { return n.cfg.Advertise }

// IsLeader reports whether this node leads the cluster now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's ID and address, empty when unknown.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// State returns the Raft state name (Leader, Follower, Candidate, Shutdown).
func (n *Node) State() string { return n.raft.State().String() }

// Peers returns the current Raft configuration.
func (n *Node) Peers() ([]Peer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Peer
	for _, s := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(s.ID), Addr: string(s.Address)})
	}
	return out, nil
}

// WaitLeader blocks until some leader is known or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		changed := n.leaderChanged()
		if id, _ := n.Leader(); id != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrNoLeader, ctx.Err())
		case <-n.ctx.Done():
			return ErrStopped
		case <-changed:
		}
	}
}

// Snapshot forces a Raft snapshot (tests and operators).
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Barrier waits until every committed entry is applied on this node.
func (n *Node) Barrier(ctx context.Context) error {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return n.raft.Barrier(timeout).Error()
}

// Close stops the node: pending appends fail with ErrStopped, Raft shuts
// down, stores are synced and closed. Safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.closed.Do(func() {
		n.cancel()
		err = n.raft.Shutdown().Error()
		if n.logs != nil {
			n.logs.close() // before the stores close under a late heartbeat (storeGuard)
		}
		n.wg.Wait()
		n.layer.Close()
		n.trans.Close()
		n.rpc.closeAll()
		err = errors.Join(err, n.wal.Close(), n.meta.Close(), n.ledger.Close())
	})
	return err
}
