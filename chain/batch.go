package chain

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Both write paths, the leader proposing blocks and a follower forwarding
// entries to the leader, are one pipeline of two stages:
//
//   - the verifier takes the entries waiting in the queue (within the
//     block limits), checks their signatures as one batch, split across
//     cores when it is large (VerifyBatch), answers the entries that fail
//     and hands the rest on;
//   - the dispatcher sends verified entries (send: a block proposed to
//     Raft, or a batch forwarded to the leader) with at most MaxInflight
//     sends running at once. Verified entries that wait for a free slot are
//     sent together, so blocks grow with the load while a lone entry still
//     goes out at once.
//
// The verifier checks the next batch while blocks are in flight: as soon as
// a quarter block's worth of entries is waiting (aheadFill), in chunks of
// at least minBatchChunk signatures (one core for fewer than two chunks),
// so that a verified batch is ready when a slot frees and the other core
// stays free for Raft; or, with fewer waiting, when the dispatcher has a
// free slot and nothing to send, on every core, since a send then waits
// for it. Waiting for a quarter block keeps batches (a batch check costs
// less per signature the more it holds) and blocks (each costs a Raft round,
// fsyncs and a seal) from splitting into many small ones. Each entry is
// verified once on the node it reached, and a forwarded entry once more by
// the leader, which trusts no one.

// runBatcher runs the pipeline over q until the node stops. send must
// answer every entry of its batch.
func (n *Node) runBatcher(q <-chan *pending, send func(batch []*pending)) {
	verified := make(chan []*pending, 1)
	idle := make(chan struct{}, 1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.verifyLoop(q, idle, verified)
	}()
	n.dispatchLoop(verified, idle, send)
}

// verifyLoop checks the signatures of the entries waiting in q, a batch at
// a time, and passes the valid ones to out. It checks a batch once a
// quarter block has arrived (ahead of the dispatcher's need), or as soon as
// the dispatcher is idle (a free slot and nothing to send).
func (n *Node) verifyLoop(q <-chan *pending, idle <-chan struct{}, out chan<- []*pending) {
	// waiting holds from the dispatcher's idle signal until the verifier
	// hands it a batch: a batch whose every entry failed leaves it waiting.
	waiting := false
	for {
		var b blockFill
		n.collect(q, &b)
		for !b.aheadFull(&n.cfg) && !waiting {
			select {
			case p := <-q:
				b.add(p)
			case <-idle:
				waiting = true
			case <-n.ctx.Done():
				return
			}
		}
		if n.ctx.Err() != nil {
			return
		}
		chunk := minBatchChunk
		if waiting {
			chunk = latencyChunk // a send waits for this batch: use every core
		}
		batch := n.verified(b.batch, chunk)
		if len(batch) == 0 {
			continue
		}
		select {
		case out <- batch:
			waiting = false
		case <-n.ctx.Done():
			return // enqueue answers the callers ErrStopped
		}
	}
}

// collect waits for one pending entry and adds it and as many more as are
// waiting to b, within the block limits. Entries whose callers gave up are
// dropped.
func (n *Node) collect(q <-chan *pending, b *blockFill) {
	select {
	case p := <-q:
		b.add(p)
	case <-n.ctx.Done():
		return
	}
	for !b.full(&n.cfg) {
		select {
		case p := <-q:
			b.add(p)
		default:
			return
		}
	}
}

// blockFill accumulates pending entries within a block's limits.
type blockFill struct {
	batch []*pending
	size  int
}

func (b *blockFill) add(p *pending) {
	if p.ctx.Err() != nil {
		return // its caller gave up
	}
	b.batch = append(b.batch, p)
	b.size += len(p.raw)
}

func (b *blockFill) full(cfg *Config) bool {
	return len(b.batch) >= cfg.MaxBlockEntries || b.size >= cfg.MaxBlockBytes
}

// aheadFill is the share of a block (a quarter) worth verifying before the
// dispatcher asks for it.
const aheadFill = 4

// aheadFull reports whether b holds enough to verify ahead: a quarter block
// by entries or bytes.
func (b *blockFill) aheadFull(cfg *Config) bool {
	return len(b.batch) >= max(1, cfg.MaxBlockEntries/aheadFill) || b.size >= max(1, cfg.MaxBlockBytes/aheadFill)
}

// verified checks a batch's signatures together (in chunks of at least
// chunk signatures), answers the entries that fail, and returns the rest.
func (n *Node) verified(batch []*pending, chunk int) []*pending {
	entries := make([]*Entry, len(batch))
	raws := make([][]byte, len(batch))
	for i, p := range batch {
		entries[i], raws[i] = p.e, p.raw
	}
	errs := verifyBatch(entries, raws, chunk)
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

// dispatchLoop sends the verified entries from in, at most MaxInflight
// sends at a time, merging what waits for a slot up to the block limits.
// It tells the verifier through idle when it has a free slot and nothing to
// send.
func (n *Node) dispatchLoop(in <-chan []*pending, idle chan struct{}, send func([]*pending)) {
	slots := make(chan struct{}, n.cfg.MaxInflight)
	var carry []*pending // verified entries past the last block's limits
	for {
		select {
		case slots <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		var b blockFill
		for len(carry) > 0 && !b.full(&n.cfg) {
			b.add(carry[0])
			carry = carry[1:]
		}
		if len(b.batch) == 0 && len(carry) == 0 {
			select {
			case idle <- struct{}{}:
			default: // already said
			}
			select {
			case more := <-in:
				carry = more
			case <-n.ctx.Done():
				return
			}
			select {
			case <-idle: // no longer true, if the verifier has not seen it
			default:
			}
		}
	merge:
		for !b.full(&n.cfg) {
			if len(carry) == 0 {
				select {
				case carry = <-in:
				default:
					break merge
				}
			}
			for len(carry) > 0 && !b.full(&n.cfg) {
				b.add(carry[0])
				carry = carry[1:]
			}
		}
		if len(b.batch) == 0 { // every caller gave up
			<-slots
			continue
		}
		n.wg.Add(1)
		go func(batch []*pending) {
			defer n.wg.Done()
			defer func() { <-slots }()
			send(batch)
		}(b.batch)
	}
}

// proposeBlock commits a verified batch as one block through Raft and answers
// each entry with its fate.
func (n *Node) proposeBlock(batch []*pending) {
	prop := &proposal{Time: time.Now().UTC(), Proposer: n.cfg.ID, Entries: make([][]byte, len(batch))}
	for i, p := range batch {
		prop.Entries[i] = p.raw
	}
	f := n.raft.Apply(prop.marshal(), n.cfg.ApplyTimeout)
	// A future queued just before Raft shuts down may never be answered:
	// wait for it, or for the node to stop.
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
		p.done <- n.outcomeOf(err, results, i)
	}
}

// forwardBatch sends a verified batch to the leader and answers each entry
// with the leader's answer.
func (n *Node) forwardBatch(batch []*pending) {
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
}
