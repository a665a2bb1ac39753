package chain

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
)

// Peer is a member of the Raft configuration.
type Peer struct {
	ID   string // node name, unique in the consortium
	Addr string // host:port of its Raft (and chain RPC) listener
}

// AdmitFunc decides whether the account of a node that asks to join holds
// the join permission recorded on the ledger. It is declared here, where it
// is used, and provided by the domain (policies) when the node is wired.
type AdmitFunc func(ctx context.Context, account Address) error

// Config configures a Node. Zero fields take DefaultConfig's values.
type Config struct {
	ID       string // this node's name (Raft server ID, checkpoint signer)
	Dir      string // data directory: ledger/, raft/, snapshots/
	RaftAddr string // listen address for Raft and node-to-node requests
	// Advertise is the address peers dial; defaults to RaftAddr.
	Advertise string
	// TLS, when set, protects the node-to-node port with mutual TLS: the
	// listener requires a client certificate from ClientCAs, and dials
	// present Certificates and check the peer's against RootCAs and the
	// dialled host (see NodeTLS). Without it the port is plain TCP, for
	// loopback and private networks.
	TLS *tls.Config
	// WrapConn, when set, wraps every node-to-node connection this node
	// dials or accepts (after TLS). Fault tests cut links through it.
	WrapConn func(net.Conn) net.Conn
	Key      *Key   // the node's account key (Ed25519)
	Origin   string // the log's origin line in checkpoints

	StateMachine StateMachine
	// Bootstrap, when set on a fresh node, forms a new cluster of these
	// peers (this node among them). Ignored when the node has Raft state.
	Bootstrap []Peer
	// Admit checks a joining node's account; nil refuses every join.
	Admit AdmitFunc
	// Verifiers are the checkpoint keys of the other nodes.
	Verifiers []*CheckpointVerifier
	// Blobs, when set, serves peers' Fetch requests (job results kept on
	// the node that ran the job). Nodes trust each other's requests here:
	// the API node checks the caller's right to the blob before fetching.
	Blobs func(key string) ([]byte, error)
	// Services, when set, serves peers' Call requests. Like Blobs, the
	// transport does not authenticate callers: services sign and check
	// their own messages.
	Services func(ctx context.Context, service string, body []byte) ([]byte, error)

	MaxBlockEntries int           // entries per block (one Raft log entry)
	MaxBlockBytes   int           // bytes per block
	MaxInflight     int           // blocks proposed and not yet applied
	ApplyTimeout    time.Duration // upper bound on one proposal when ctx has none

	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64

	Logger    *slog.Logger
	RaftLog   io.Writer // where hashicorp/raft writes its own log; default stderr at warn level
	RaftLevel string    // hclog level for RaftLog
}

// DefaultConfig returns the defaults for everything but identity and paths.
func DefaultConfig() Config {
	return Config{
		Origin:            "datasandbox/ledger",
		MaxBlockEntries:   256,
		MaxBlockBytes:     256 << 10,
		MaxInflight:       2,
		ApplyTimeout:      10 * time.Second,
		HeartbeatTimeout:  1000 * time.Millisecond,
		ElectionTimeout:   1000 * time.Millisecond,
		SnapshotInterval:  2 * time.Minute,
		SnapshotThreshold: 8192,
		TrailingLogs:      10240,
		RaftLevel:         "warn",
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Origin == "" {
		c.Origin = d.Origin
	}
	if c.MaxBlockEntries == 0 {
		c.MaxBlockEntries = d.MaxBlockEntries
	}
	if c.MaxBlockBytes == 0 {
		c.MaxBlockBytes = d.MaxBlockBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = d.ApplyTimeout
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = d.ElectionTimeout
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.RaftLevel == "" {
		c.RaftLevel = d.RaftLevel
	}
	if c.Advertise == "" {
		c.Advertise = c.RaftAddr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RaftLog == nil {
		c.RaftLog = os.Stderr
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.ID == "" || len(c.ID) > 255:
		return errors.New("chain: config: ID must be 1-255 bytes")
	case c.Dir == "":
		return errors.New("chain: config: Dir is required")
	case c.RaftAddr == "":
		return errors.New("chain: config: RaftAddr is required")
	case c.Key == nil || c.Key.Algorithm() != Ed25519:
		return errors.New("chain: config: Key must be an Ed25519 key")
	case c.StateMachine == nil:
		return errors.New("chain: config: StateMachine is required")
	case c.MaxBlockEntries < 0 || c.MaxBlockBytes < 0 || c.MaxInflight < 0:
		return errors.New("chain: config: block limits must not be negative")
	}
	if _, err := net.ResolveTCPAddr("tcp", c.Advertise); err != nil && c.Advertise != "" {
		return fmt.Errorf("chain: config: advertise address %q: %v", c.Advertise, err)
	}
	return nil
}

// Receipt says where an appended entry is in the log.
type Receipt struct {
	Index     uint64
	LeafHash  Hash
	Duplicate bool // the entry was already committed (a retry); Index is where
}

// pending is one entry waiting for a batch.
type pending struct {
	raw  []byte
	e    *Entry // parsed; its signature is checked with its batch
	ctx  context.Context
	done chan outcome
}

type outcome struct {
	r   Receipt
	err error
}

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
	go n.proposeLoop()
	go n.forwardLoop()
	return n, nil
}

func (n *Node) startRaft() error {
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
	w, err := wal.Open(raftDir, wal.WithMetaStore(n.meta))
	if err != nil {
		n.meta.Close()
		return fmt.Errorf("chain: opening raft log in %s: %w", raftDir, err)
	}
	n.wal = w
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "snapshots"), 2, rc.Logger)
	if err != nil {
		w.Close()
		n.meta.Close()
		return err
	}
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		w.Close()
		n.meta.Close()
		return fmt.Errorf("chain: listening on %s: %w", cfg.RaftAddr, err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		ln.Close()
		w.Close()
		n.meta.Close()
		return err
	}
	if adv.Port == 0 { // listening on :0 in tests
		adv = ln.Addr().(*net.TCPAddr)
		n.cfg.Advertise = adv.String()
	}
	n.layer = newMuxLayer(ln, adv, n.serveRPC, cfg.TLS, cfg.WrapConn)
	n.rpc.tls, n.rpc.wrap = cfg.TLS, cfg.WrapConn
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: n.layer, MaxPool: 4, Timeout: 10 * time.Second, Logger: rc.Logger,
	})
	hasState, err := raft.HasExistingState(w, w, snaps)
	if err != nil {
		n.trans.Close()
		w.Close()
		n.meta.Close()
		return err
	}
	if !hasState && len(cfg.Bootstrap) > 0 {
		var servers []raft.Server
		for _, p := range cfg.Bootstrap {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := raft.BootstrapCluster(rc, w, w, snaps, n.trans, raft.Configuration{Servers: servers}); err != nil {
			n.trans.Close()
			w.Close()
			n.meta.Close()
			return fmt.Errorf("chain: bootstrap: %w", err)
		}
	}
	n.logs = &storeGuard{LogStore: w, stable: w, failed: n.storeFailed}
	r, err := raft.NewRaft(rc, &fsm{l: n.ledger}, n.logs, n.logs, snaps, n.trans)
	if err != nil {
		n.trans.Close()
		w.Close()
		n.meta.Close()
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

// Append verifies a signed entry and commits it through the leader. It
// returns once the entry is in a committed block (on the leader; followers
// apply it moments later), or fails with a specific error: malformed,
// bad signature, rejected by the state machine, no leader, or ctx's.
// Appending the same bytes twice is safe: the second call reports the first
// one's index with Duplicate set.
func (n *Node) Append(ctx context.Context, raw []byte) (Receipt, error) {
	e, err := ParseEntry(raw)
	if err != nil {
		return Receipt{}, err
	}
	var r Receipt
	err = n.whileNoLeader(ctx, func() error {
		var err error
		// Retrying is safe because appends are idempotent.
		if n.IsLeader() {
			r, err = n.enqueue(ctx, n.propose, raw, e)
		} else {
			r, err = n.enqueue(ctx, n.fwd, raw, e)
		}
		return err
	})
	return r, err
}

// whileNoLeader runs f until it succeeds or fails with something other
// than ErrNoLeader. Between tries it waits for Raft to report a leader
// change, or, when the leader stays the same but could not be reached (a
// forward that failed), for a short back-off.
func (n *Node) whileNoLeader(ctx context.Context, f func() error) error {
	for {
		changed := n.leaderChanged()
		err := f()
		if !errors.Is(err, ErrNoLeader) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", err, ctx.Err())
		case <-n.ctx.Done():
			return ErrStopped
		case <-changed:
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// appendLocal proposes through this node only; forwarded requests use it.
func (n *Node) appendLocal(ctx context.Context, raw []byte) (Receipt, error) {
	e, err := ParseEntry(raw)
	if err != nil {
		return Receipt{}, err
	}
	if !n.IsLeader() {
		return Receipt{}, fmt.Errorf("%w: %s is not the leader", ErrNoLeader, n.cfg.ID)
	}
	return n.enqueue(ctx, n.propose, raw, e)
}

func (n *Node) enqueue(ctx context.Context, q chan *pending, raw []byte, e *Entry) (Receipt, error) {
	if err := n.Err(); err != nil {
		return Receipt{}, fmt.Errorf("%w: %v", ErrStopped, err)
	}
	p := &pending{raw: raw, e: e, ctx: ctx, done: make(chan outcome, 1)}
	select {
	case q <- p:
	case <-ctx.Done():
		return Receipt{}, ctx.Err()
	case <-n.ctx.Done():
		return Receipt{}, ErrStopped
	}
	select {
	case o := <-p.done:
		return o.r, o.err
	case <-ctx.Done():
		// The entry may still commit; a retry will find it (Duplicate).
		return Receipt{}, ctx.Err()
	case <-n.ctx.Done():
		return Receipt{}, ErrStopped
	}
}

// collect takes one pending entry and as many more as are waiting, within
// the block limits. Entries whose callers gave up are dropped.
func (n *Node) collect(q chan *pending) []*pending {
	var batch []*pending
	size := 0
	take := func(p *pending) {
		if p.ctx.Err() != nil {
			return
		}
		batch = append(batch, p)
		size += len(p.raw)
	}
	select {
	case p := <-q:
		take(p)
	case <-n.ctx.Done():
		return nil
	}
	for len(batch) < n.cfg.MaxBlockEntries && size < n.cfg.MaxBlockBytes {
		select {
		case p := <-q:
			take(p)
		default:
			return batch
		}
	}
	return batch
}

func (n *Node) proposeLoop() {
	defer n.wg.Done()
	slots := make(chan struct{}, n.cfg.MaxInflight)
	for {
		select {
		case slots <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		batch := n.collect(n.propose)
		if n.ctx.Err() != nil {
			return
		}
		if len(batch) == 0 {
			<-slots
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() { <-slots }()
			batch := n.verified(batch)
			if len(batch) == 0 {
				return
			}
			prop := &proposal{Time: time.Now().UTC(), Proposer: n.cfg.ID, Entries: make([][]byte, len(batch))}
			for i, p := range batch {
				prop.Entries[i] = p.raw
			}
			f := n.raft.Apply(prop.marshal(), n.cfg.ApplyTimeout)
			// A future queued just before Raft shuts down may never be
			// answered: wait for it, or for the node to stop.
			done := make(chan error, 1)
			go func() { done <- f.Error() }()
			var err error
			select {
			case err = <-done:
			case <-n.ctx.Done():
				err = raft.ErrRaftShutdown
			}
			var results []Result
			if err == nil {
				results, _ = f.Response().([]Result)
			}
			for i, p := range batch {
				p.done <- n.outcomeOf(p.raw, err, results, i)
			}
		}()
	}
}

// verified checks a batch's signatures together, answers the entries that
// fail, and returns the rest.
func (n *Node) verified(batch []*pending) []*pending {
	entries := make([]*Entry, len(batch))
	for i, p := range batch {
		entries[i] = p.e
	}
	errs := VerifyBatch(entries)
	ok := batch[:0:0]
	for i, p := range batch {
		if errs[i] != nil {
			p.done <- outcome{err: errs[i]}
			continue
		}
		ok = append(ok, p)
	}
	return ok
}

func (n *Node) outcomeOf(raw []byte, err error, results []Result, i int) outcome {
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrEnqueueTimeout) {
			return outcome{err: fmt.Errorf("%w: %v", ErrNoLeader, err)}
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return outcome{err: ErrStopped}
		}
		return outcome{err: fmt.Errorf("chain: commit failed: %w", err)}
	}
	if i >= len(results) {
		return outcome{err: fmt.Errorf("%w: proposal was not applied", ErrStopped)}
	}
	res := results[i]
	switch res.Outcome {
	case Committed, Duplicate:
		return outcome{r: Receipt{Index: res.Index, LeafHash: LeafHash(raw), Duplicate: res.Outcome == Duplicate}}
	}
	if res.Reason == ErrStopped.Error() {
		return outcome{err: ErrStopped}
	}
	var refusal error
	if res.Refusal > 0 && int(res.Refusal) <= len(n.ledger.refusals) {
		refusal = n.ledger.refusals[res.Refusal-1]
	}
	return outcome{err: &remoteError{sentinel: ErrRejected, refusal: refusal, msg: res.Reason}}
}

func (n *Node) forwardLoop() {
	defer n.wg.Done()
	slots := make(chan struct{}, n.cfg.MaxInflight)
	for {
		select {
		case slots <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		batch := n.collect(n.fwd)
		if n.ctx.Err() != nil {
			return
		}
		if len(batch) == 0 {
			<-slots
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() { <-slots }()
			batch := n.verified(batch)
			if len(batch) == 0 {
				return
			}
			_, addr := n.Leader()
			if addr == "" || addr == n.cfg.Advertise {
				for _, p := range batch {
					p.done <- outcome{err: fmt.Errorf("%w: no leader known", ErrNoLeader)}
				}
				return
			}
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
			defer cancel()
			raws := make([][]byte, len(batch))
			for i, p := range batch {
				raws[i] = p.raw
			}
			receipts, errs, err := n.forward(ctx, addr, raws)
			for i, p := range batch {
				switch {
				case err != nil:
					p.done <- outcome{err: err}
				case errs[i] != nil:
					p.done <- outcome{err: errs[i]}
				default:
					p.done <- outcome{r: receipts[i]}
				}
			}
		}()
	}
}

// Join asks a member of an existing cluster (at addr) to add this node as
// a voter. The request is signed with the node's key; the leader admits it
// only if the AdmitFunc finds the join permission for its account.
func (n *Node) Join(ctx context.Context, addr string) error {
	j := &joinRequest{ID: n.cfg.ID, Addr: n.cfg.Advertise, Time: time.Now()}
	e := &Entry{Kind: "node.join", Time: j.Time, Payload: j.message()}
	if err := n.cfg.Key.Sign(e); err != nil {
		return err
	}
	j.Algorithm, j.PublicKey, j.Signature = e.Algorithm, e.PublicKey, e.Signature
	status, resp, err := n.rpc.call(ctx, addr, opJoin, j.marshal())
	if err != nil {
		return fmt.Errorf("chain: join via %s: %w", addr, err)
	}
	return n.decodeErr(status, string(resp))
}

// admit handles a join request: on the leader, check the account and add
// the voter; elsewhere, pass the request to the leader.
func (n *Node) admit(ctx context.Context, j *joinRequest) error {
	if !n.IsLeader() {
		_, addr := n.Leader()
		if addr == "" {
			return fmt.Errorf("%w: no leader to admit the node", ErrNoLeader)
		}
		status, resp, err := n.rpc.call(ctx, addr, opJoin, j.marshal())
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNoLeader, err)
		}
		return n.decodeErr(status, string(resp))
	}
	account := AddressOf(j.PublicKey)
	if n.cfg.Admit == nil {
		return fmt.Errorf("%w: %s: this cluster has no admission policy", ErrNotAdmitted, account)
	}
	if err := n.cfg.Admit(ctx, account); err != nil {
		return fmt.Errorf("%w: account %s: %v", ErrNotAdmitted, account, err)
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := n.raft.AddVoter(raft.ServerID(j.ID), raft.ServerAddress(j.Addr), 0, timeout).Error(); err != nil {
		return fmt.Errorf("chain: adding voter %s: %w", j.ID, err)
	}
	n.log.Info("node admitted", "peer", j.ID, "addr", j.Addr, "account", account.String())
	return nil
}

// WaitApplied blocks until this node's state machine has applied the entry
// at index (so that reads here see its effect), or ctx ends.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for {
		moved := n.ledger.Moved()
		if n.ledger.Applied() > index {
			return nil
		}
		if err := n.ledger.Err(); err != nil {
			return fmt.Errorf("%w: %v", ErrStopped, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrStopped
		case <-moved:
		}
	}
}

// ReadBarrier waits until this node has applied every entry the leader had
// applied when it was called, so that a read here sees every write any
// node acknowledged before (linearizable reads). On the leader it costs a
// round of heartbeats (see leaderSynced).
func (n *Node) ReadBarrier(ctx context.Context) error {
	return n.whileNoLeader(ctx, func() error { return n.readBarrier(ctx) })
}

func (n *Node) readBarrier(ctx context.Context) error {
	if err := n.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrStopped, err)
	}
	if n.IsLeader() {
		return n.leaderSynced(ctx)
	}
	_, addr := n.Leader()
	if addr == "" {
		return fmt.Errorf("%w: no leader to read from", ErrNoLeader)
	}
	status, resp, err := n.rpc.call(ctx, addr, opReadIndex, nil)
	if err != nil {
		return fmt.Errorf("%w: asking the leader: %v", ErrNoLeader, err)
	}
	if status != 0 {
		return n.decodeErr(status, string(resp))
	}
	if len(resp) != 8 {
		return fmt.Errorf("chain: malformed read-index answer")
	}
	applied := binary.BigEndian.Uint64(resp)
	if applied == 0 {
		return nil
	}
	return n.WaitApplied(ctx, applied-1)
}

// leaderSynced makes sure this node still leads (a majority answers its
// heartbeats: a leader cut off from the others must not serve stale
// reads) and has applied every entry committed before its term began: a
// new leader knows which entries are committed only once an entry of its
// own term is, so it waits once per term for a Raft barrier (which also
// waits for the state machine).
func (n *Node) leaderSynced(ctx context.Context) error {
	term := n.raft.CurrentTerm()
	if n.syncedTerm.Load() != term {
		timeout := 10 * time.Second
		if d, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(d), time.Millisecond)
		}
		if err := n.raft.Barrier(timeout).Error(); err != nil {
			return n.outcomeOf(nil, err, nil, 0).err
		}
		n.syncedTerm.Store(term)
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return n.outcomeOf(nil, err, nil, 0).err
	}
	return nil
}

// Fetch asks the peer with that ID for a blob (see Config.Blobs).
func (n *Node) Fetch(ctx context.Context, peerID, key string) ([]byte, error) {
	return n.callPeer(ctx, peerID, opFetch, []byte(key))
}

// Call sends a request to a service on the peer with that ID (see
// Config.Services) and returns its answer.
func (n *Node) Call(ctx context.Context, peerID, service string, body []byte) ([]byte, error) {
	return n.callPeer(ctx, peerID, opCall, append(appendString(nil, service), body...))
}

// callPeer sends one node-to-node request to the peer with that ID.
func (n *Node) callPeer(ctx context.Context, peerID string, op byte, payload []byte) ([]byte, error) {
	peers, err := n.Peers()
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		if p.ID != peerID {
			continue
		}
		status, resp, err := n.rpc.call(ctx, p.Addr, op, payload)
		if err != nil {
			return nil, fmt.Errorf("chain: calling %s: %w", peerID, err)
		}
		if status != 0 {
			return nil, fmt.Errorf("chain: %s: %s", peerID, resp)
		}
		return resp, nil
	}
	return nil, fmt.Errorf("chain: no peer %q", peerID)
}

// Nonces hands out unique, growing nonces for the entries one key signs
// from several places in one process (the API's relays, the job runner).
type Nonces struct{ n atomic.Uint64 }

// NewNonces starts from the current time in nanoseconds, so that nonces
// keep growing across restarts.
func NewNonces() *Nonces {
	ns := &Nonces{}
	ns.n.Store(uint64(time.Now().UnixNano()))
	return ns
}

// Next returns a nonce never returned before by this source.
func (ns *Nonces) Next() uint64 { return ns.n.Add(1) }

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
