package chaintest

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
)

// Cluster is a set of in-process nodes with real TCP transports and durable
// stores in a test's temporary directory.
type Cluster struct {
	t     testing.TB
	Admin *chain.Key
	Dirs  []string
	Keys  []*chain.Key
	Peers []chain.Peer
	Nodes []*chain.Node   // nil when stopped
	SMs   []*StateMachine // the test state machines (nil entries with NewSM)
	// Domain holds each node's state machine when NewSM made it.
	Domain []chain.StateMachine
	// Tune adjusts each node's config before it starts.
	Tune func(*chain.Config)
	// NewSM, when set, makes node i's state machine and admission check
	// instead of the test state machine.
	NewSM func(i int) (chain.StateMachine, chain.AdmitFunc)
}

// FreePort returns a loopback address that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// NewCluster starts n bootstrapped nodes and waits for a leader.
func NewCluster(t testing.TB, n int, tune func(*chain.Config)) *Cluster {
	return NewClusterWith(t, n, tune, nil)
}

// NewClusterWith is NewCluster with the nodes' state machines made by newSM.
func NewClusterWith(t testing.TB, n int, tune func(*chain.Config), newSM func(i int) (chain.StateMachine, chain.AdmitFunc)) *Cluster {
	t.Helper()
	admin, err := chain.GenerateKey(chain.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Admin: admin, Tune: tune, NewSM: newSM}
	root := t.TempDir()
	// Hold every port until all are chosen, so that no two nodes get the
	// same one.
	var held []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ln)
		k, _ := chain.GenerateKey(chain.Ed25519)
		c.Keys = append(c.Keys, k)
		c.Dirs = append(c.Dirs, filepath.Join(root, fmt.Sprintf("node%d", i+1)))
		c.Peers = append(c.Peers, chain.Peer{ID: fmt.Sprintf("node%d", i+1), Addr: ln.Addr().String()})
	}
	for _, ln := range held {
		ln.Close()
	}
	c.Nodes = make([]*chain.Node, n)
	c.SMs = make([]*StateMachine, n)
	c.Domain = make([]chain.StateMachine, n)
	for i := 0; i < n; i++ {
		c.Start(i)
	}
	t.Cleanup(c.Stop)
	c.WaitLeader()
	return c
}

// Config returns node i's configuration.
func (c *Cluster) Config(i int) chain.Config {
	cfg := chain.DefaultConfig()
	cfg.ID = c.Peers[i].ID
	cfg.Dir = c.Dirs[i]
	cfg.RaftAddr = c.Peers[i].Addr
	cfg.Key = c.Keys[i]
	cfg.Bootstrap = c.Peers
	// Short enough for quick failover in tests, long enough that a loaded
	// CI machine running the race detector does not churn leaders.
	cfg.HeartbeatTimeout = 400 * time.Millisecond
	cfg.ElectionTimeout = 400 * time.Millisecond
	cfg.RaftLog = io.Discard
	for j, k := range c.Keys {
		if j != i {
			v, _ := chain.NewCheckpointVerifier(c.Peers[j].ID, k.PublicKey())
			cfg.Verifiers = append(cfg.Verifiers, v)
		}
	}
	if c.Tune != nil {
		c.Tune(&cfg)
	}
	return cfg
}

// Start (re)starts node i on its directory.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	cfg := c.Config(i)
	if c.NewSM != nil {
		cfg.StateMachine, cfg.Admit = c.NewSM(i)
		c.Domain[i] = cfg.StateMachine
	} else {
		sm := NewStateMachine(c.Admin.Address())
		cfg.StateMachine, cfg.Admit = sm, sm.Admit
		c.SMs[i] = sm
	}
	n, err := chain.NewNode(cfg)
	if err != nil {
		c.t.Fatalf("starting node %d: %v", i+1, err)
	}
	c.Nodes[i] = n
}

// Kill stops node i.
func (c *Cluster) Kill(i int) {
	if c.Nodes[i] != nil {
		_ = c.Nodes[i].Close()
		c.Nodes[i] = nil
	}
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for i := range c.Nodes {
		c.Kill(i)
	}
}

// WaitLeader waits for a leader among running nodes and returns its index.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for i, n := range c.Nodes {
			if n != nil && n.IsLeader() {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no leader within 15s")
	return -1
}

// WaitConverged waits until every running node holds the same number of
// entries, at least min, and returns it.
func (c *Cluster) WaitConverged(min uint64) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var sizes []uint64
		for _, n := range c.Nodes {
			if n != nil {
				sizes = append(sizes, n.Ledger().Size())
			}
		}
		same := true
		for _, s := range sizes {
			same = same && s == sizes[0] && s >= min
		}
		if same && len(sizes) > 0 {
			// Make sure the state machines caught up too.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			for _, n := range c.Nodes {
				if n != nil && n.IsLeader() {
					_ = n.Barrier(ctx)
				}
			}
			cancel()
			return sizes[0]
		}
		time.Sleep(25 * time.Millisecond)
	}
	c.t.Fatalf("nodes did not converge to >= %d entries", min)
	return 0
}
