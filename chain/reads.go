package chain

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

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
			return n.outcomeOf(err, nil, 0).err
		}
		n.syncedTerm.Store(term)
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return n.outcomeOf(err, nil, 0).err
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
