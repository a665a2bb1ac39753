package chain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"
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
