package chain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Receipt says where an appended entry is in the log.
type Receipt struct {
	Index     uint64
	LeafHash  Hash
	Duplicate bool // the entry was already committed (a retry); Index is where
}

// pending is one entry waiting for a batch.
type pending struct {
	raw  []byte
	e    *Entry // parsed from raw; its signature is checked with its batch
	ctx  context.Context
	done chan outcome
}

type outcome struct {
	r   Receipt
	err error
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

func (n *Node) outcomeOf(err error, results []Result, i int) outcome {
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
		return outcome{r: Receipt{Index: res.Index, LeafHash: res.leaf, Duplicate: res.Outcome == Duplicate}}
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
