package chain_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/chain/chaintest"
)

func note(t testing.TB, k *chain.Key, nonce uint64) []byte {
	t.Helper()
	raw, err := k.NewEntry(chaintest.KindNote, nonce, time.Now(), []byte(fmt.Sprintf(`{"n":%d}`, nonce)))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestAppendOnFollowerIsForwarded(t *testing.T) {
	c := chaintest.NewCluster(t, 3, nil)
	leader := c.WaitLeader()
	follower := (leader + 1) % 3
	k, _ := chain.GenerateKey(chain.Ed25519)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	raw := note(t, k, 1)
	r, err := c.Nodes[follower].Append(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != 0 || r.Duplicate {
		t.Fatalf("receipt %+v", r)
	}
	// Again: idempotent.
	r2, err := c.Nodes[leader].Append(ctx, raw)
	if err != nil || !r2.Duplicate || r2.Index != 0 {
		t.Fatalf("retry: %+v %v", r2, err)
	}
	// State machine refusal travels back with its reason.
	_, err = c.Nodes[follower].Append(ctx, note(t, k, 1)) // same nonce, new bytes (new time)
	if !errors.Is(err, chain.ErrRejected) || err.Error() == "" {
		t.Fatalf("replayed nonce: %v", err)
	}
	// Malformed and wrongly signed entries never reach the log.
	bad := append([]byte(nil), raw...)
	bad[len(bad)-1] ^= 1
	if _, err := c.Nodes[follower].Append(ctx, bad); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	if _, err := c.Nodes[leader].Append(ctx, []byte("nonsense")); !errors.Is(err, chain.ErrMalformedEntry) {
		t.Fatalf("malformed: %v", err)
	}
	if n := c.WaitConverged(1); n != 1 {
		t.Fatalf("log has %d entries, want 1", n)
	}
}

func TestAppendHonoursDeadline(t *testing.T) {
	c := chaintest.NewCluster(t, 3, nil)
	c.Stop() // no node left: nothing can commit
	c.Start(0)
	k, _ := chain.GenerateKey(chain.Ed25519)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Nodes[0].Append(ctx, note(t, k, 1))
	if err == nil {
		t.Fatal("append committed without a majority")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("append returned after %v, deadline was 300ms", d)
	}
}

// Kill the leader during a stream of appends from concurrent clients: every
// acknowledged append is on every node (survivors and the restarted one),
// once, in the same order, and the roots agree. Then restart a node from a
// snapshot: same root, same state.
func TestKillLeaderMidStream(t *testing.T) {
	c := chaintest.NewCluster(t, 3, func(cfg *chain.Config) { cfg.SnapshotThreshold = 64; cfg.TrailingLogs = 32 })
	const writers = 8
	var (
		mu    sync.Mutex
		acked = map[chain.Hash]uint64{} // leaf hash -> index returned
	)
	var nodesMu sync.RWMutex
	pick := func(r *rand.Rand) *chain.Node {
		nodesMu.RLock()
		defer nodesMu.RUnlock()
		for {
			if n := c.Nodes[r.IntN(len(c.Nodes))]; n != nil {
				return n
			}
		}
	}
	stop := make(chan struct{})
	var failures atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			k, _ := chain.GenerateKey(chain.Ed25519)
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for nonce := uint64(1); ; nonce++ {
				select {
				case <-stop:
					return
				default:
				}
				raw := note(t, k, nonce)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				rc, err := pick(r).Append(ctx, raw)
				cancel()
				if err != nil {
					failures.Add(1) // not acknowledged: may or may not be in the log
					continue
				}
				mu.Lock()
				acked[rc.LeafHash] = rc.Index
				mu.Unlock()
			}
		}(w)
	}
	time.Sleep(700 * time.Millisecond)
	leader := c.WaitLeader()
	nodesMu.Lock()
	c.Kill(leader)
	nodesMu.Unlock()
	time.Sleep(900 * time.Millisecond)
	nodesMu.Lock()
	c.Start(leader)
	nodesMu.Unlock()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	size := c.WaitConverged(uint64(len(acked)))
	t.Logf("%d acknowledged, %d unacknowledged attempts, log size %d", len(acked), failures.Load(), size)
	if len(acked) < 50 {
		t.Fatalf("only %d appends acknowledged", len(acked))
	}
	ref := c.Nodes[0].Ledger()
	root, _ := ref.Root(size)
	for i, n := range c.Nodes {
		l := n.Ledger()
		if r, _ := l.Root(size); r != root {
			t.Fatalf("node %d root differs", i+1)
		}
		seen := map[chain.Hash]bool{}
		for idx := uint64(0); idx < size; idx++ {
			raw, err := l.Entry(idx)
			if err != nil {
				t.Fatal(err)
			}
			lh := chain.LeafHash(raw)
			if seen[lh] {
				t.Fatalf("node %d: entry %d duplicated", i+1, idx)
			}
			seen[lh] = true
		}
		for lh, idx := range acked {
			got, ok := l.LeafIndex(lh)
			if !ok || got != idx {
				t.Fatalf("node %d: acknowledged entry at %d is at %d (present %v)", i+1, idx, got, ok)
			}
		}
		if c.SMs[i].StateHash() != c.SMs[0].StateHash() {
			t.Fatalf("node %d state hash differs", i+1)
		}
	}

	// Snapshot, restart, compare.
	if err := c.Nodes[1].Snapshot(); err != nil {
		t.Fatal(err)
	}
	want := c.SMs[1].StateHash()
	c.Kill(1)
	c.Start(1)
	c.WaitConverged(size)
	if r, _ := c.Nodes[1].Ledger().Root(size); r != root {
		t.Fatal("root differs after restart from snapshot")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.SMs[1].StateHash() != want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c.SMs[1].StateHash() != want {
		t.Fatal("state differs after restart from snapshot")
	}
}

// A node whose ledger store is wiped catches up from a snapshot holding
// the whole history, and verifies it.
func TestWipedNodeRebuildsFromSnapshot(t *testing.T) {
	c := chaintest.NewCluster(t, 3, func(cfg *chain.Config) { cfg.SnapshotThreshold = 16; cfg.TrailingLogs = 4 })
	k, _ := chain.GenerateKey(chain.Ed25519)
	ctx := t.Context()
	leader := c.WaitLeader()
	for i := uint64(1); i <= 60; i++ {
		if _, err := c.Nodes[leader].Append(ctx, note(t, k, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Nodes[leader].Snapshot(); err != nil {
		t.Fatal(err)
	}
	victim := (leader + 1) % 3
	c.Kill(victim)
	wipe(t, c.Dirs[victim])
	c.Start(victim)
	size := c.WaitConverged(60)
	r0, _ := c.Nodes[leader].Ledger().Root(size)
	r1, _ := c.Nodes[victim].Ledger().Root(size)
	if r0 != r1 {
		t.Fatal("rebuilt node's root differs")
	}
	if err := c.Nodes[victim].Ledger().VerifyStore(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestJoinNeedsPermissionOnLedger(t *testing.T) {
	c := chaintest.NewCluster(t, 3, nil)
	leader := c.WaitLeader()
	newKey, _ := chain.GenerateKey(chain.Ed25519)
	cfg := chain.DefaultConfig()
	cfg.ID, cfg.Dir, cfg.RaftAddr, cfg.Key = "node4", t.TempDir(), chaintest.FreePort(t), newKey
	cfg.StateMachine = chaintest.NewStateMachine(c.Admin.Address())
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 150*time.Millisecond, 150*time.Millisecond
	n4, err := chain.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n4.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	follower := (leader + 1) % 3
	if err := n4.Join(ctx, c.Peers[follower].Addr); !errors.Is(err, chain.ErrNotAdmitted) {
		t.Fatalf("join without permission: %v", err)
	}
	grant, _ := c.Admin.NewEntry(chaintest.KindGrantJoin, 1, time.Now(), []byte(newKey.Address().String()))
	if _, err := c.Nodes[leader].Append(ctx, grant); err != nil {
		t.Fatal(err)
	}
	if err := n4.Join(ctx, c.Peers[follower].Addr); err != nil {
		t.Fatalf("join with permission: %v", err)
	}
	peers, _ := c.Nodes[leader].Peers()
	if len(peers) != 4 {
		t.Fatalf("peers %v", peers)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n4.Ledger().Size() != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n4.Ledger().Size() != 1 {
		t.Fatal("new node did not replicate the ledger")
	}
}

func wipe(t *testing.T, dir string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(dir, "ledger")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "raft")); err != nil {
		t.Fatal(err)
	}
}

// Call and Fetch reach a peer's hooks over the node-to-node transport and
// carry their errors back.
func TestCallAndFetchReachPeers(t *testing.T) {
	c := chaintest.NewCluster(t, 2, func(cfg *chain.Config) {
		id := cfg.ID
		cfg.Services = func(ctx context.Context, service string, body []byte) ([]byte, error) {
			if service != "echo" {
				return nil, fmt.Errorf("no service %q", service)
			}
			return append([]byte(id+":"), body...), nil
		}
		cfg.Blobs = func(key string) ([]byte, error) { return []byte(id + "/" + key), nil }
	})
	defer c.Stop()
	c.WaitLeader()
	ctx := context.Background()
	other := c.Peers[1].ID
	got, err := c.Nodes[0].Call(ctx, other, "echo", []byte("hi"))
	if err != nil || string(got) != other+":hi" {
		t.Fatalf("call: %q %v", got, err)
	}
	if _, err := c.Nodes[0].Call(ctx, other, "nope", nil); err == nil || !strings.Contains(err.Error(), `no service "nope"`) {
		t.Fatalf("unknown service: %v", err)
	}
	if got, err := c.Nodes[0].Fetch(ctx, other, "k"); err != nil || string(got) != other+"/k" {
		t.Fatalf("fetch: %q %v", got, err)
	}
	if _, err := c.Nodes[0].Call(ctx, "stranger", "echo", nil); err == nil || !strings.Contains(err.Error(), `no peer "stranger"`) {
		t.Fatalf("unknown peer: %v", err)
	}
}

// With TLS the node-to-node port speaks mutual TLS: a cluster whose
// certificates come from the consortium's CA commits (also through a
// follower, which forwards over chain's own requests), and neither a
// plain TCP client nor one holding another CA's certificate gets an
// answer.
func TestNodeToNodeMutualTLS(t *testing.T) {
	ca, err := chain.NewCA("test consortium")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tlsFor := func(ca *chain.CA, name string) *tls.Config {
		certPEM, keyPEM, err := ca.Issue(name, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return chain.NodeTLS(pair, pool)
	}
	c := chaintest.NewCluster(t, 3, func(cfg *chain.Config) { cfg.TLS = tlsFor(ca, cfg.ID) })
	leader := c.WaitLeader()
	follower := (leader + 1) % 3
	for i := uint64(1); i <= 20; i++ {
		if _, err := c.Nodes[follower].Append(t.Context(), note(t, c.Admin, i)); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitConverged(20)

	addr := c.Peers[leader].Addr
	// Plain TCP: the first byte is not a TLS ClientHello.
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte{0xD5, 0, 0, 0, 1, 0})
	if n, err := conn.Read(make([]byte, 64)); err == nil && n > 0 {
		// A TLS server answers a non-TLS client with at most an alert.
		t.Logf("plain client got %d bytes (a TLS alert)", n)
	}
	conn.Close()
	// A certificate from another CA is refused by the server.
	rogueCA, _ := chain.NewCA("rogue")
	rogue := tlsFor(rogueCA, "rogue")
	rogue.ServerName = "127.0.0.1"
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, rogue)
	if err == nil {
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Write([]byte{0xD5})
		_, err = tc.Read(make([]byte, 1))
		tc.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client with another CA's certificate was not refused: %v", err)
	}
	// And a node of the consortium does not accept a server from another CA.
	good := tlsFor(ca, "client")
	good.ServerName = "127.0.0.1"
	good.RootCAs = x509.NewCertPool()
	good.RootCAs.AddCert(rogueCA.Cert)
	if _, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, good); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server certificate from the consortium CA verified against another CA: %v", err)
	}
}
