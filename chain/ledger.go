package chain

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// StateMachine is the domain's state machine: chain calls it for every
// entry it is about to commit, in log order, on every node.
//
// Apply must be deterministic: its outcome may depend only on the state,
// the entry, its index and the block time, never on the clock, randomness
// or local configuration. If it returns an error the entry is not committed
// (it never reaches the log) and Apply must have left the state unchanged;
// the error's message is reported to the entry's submitter.
//
// Reset discards all state; chain then replays the log from the first
// entry. Apply and Reset are never called concurrently with each other.
type StateMachine interface {
	Apply(e *Entry, index uint64, blockTime time.Time) error
	Reset()
}

// Refuser is a StateMachine whose refusals wrap sentinel errors of its
// own. A refusal then carries which one to the node that proposed the
// entry, across the network too, so that errors.Is finds both ErrRejected
// and the sentinel there. Refusals must list the same errors, in the same
// order, on every node; at most 64.
type Refuser interface {
	Refusals() []error
}

// MaxClockSkew bounds how far an entry's own time may be from the time of
// the block that commits it. It is a constant, not a setting, because it
// decides which entries are committed and every node must agree.
const MaxClockSkew = 10 * time.Minute

// Outcome says what became of one entry of a proposal.
type Outcome uint8

const (
	Committed Outcome = iota // appended at Index
	Duplicate                // already in the log at Index
	Rejected                 // refused by chain or the state machine; see Reason
)

// Result is the fate of one proposed entry.
type Result struct {
	Outcome Outcome
	Index   uint64
	Reason  string
	// Refusal is 1 + the index in the state machine's Refusals of the
	// sentinel a refusal wraps (0: none).
	Refusal uint8
	leaf    Hash // the entry's leaf hash (Committed, Duplicate), for the receipt
}

// Ledger is the committed history of one node: the store on disk, the
// Merkle tree over it, the block headers, and the state machine fed from it.
// Reads are safe for concurrent use; writes come only from the Raft FSM.
type Ledger struct {
	log *slog.Logger
	sm  StateMachine
	// refusals are the state machine's sentinels (Refuser), if any.
	refusals []error
	// moved is closed, and replaced, whenever entries are applied or the
	// ledger stops: waiters (WaitApplied) select on it instead of polling.
	moved  chan struct{}
	key    *Key   // node key, signs checkpoints
	name   string // node name in checkpoint signatures
	origin string

	mu      sync.RWMutex
	st      *store
	tree    Tree
	blocks  []Block         // blocks[h-1] is the block of height h
	seen    map[Hash]uint64 // leaf hash -> index, to make appends idempotent
	next    uint64          // index of the next entry to apply to the state machine
	applied uint64          // height of the last block applied to the state machine
	failed  error           // set when the store diverges or a write fails; the ledger stops

	cpMu       sync.Mutex
	lastSigned *Checkpoint
	verifiers  []*CheckpointVerifier
}

// LedgerConfig configures OpenLedger.
type LedgerConfig struct {
	Dir          string
	StateMachine StateMachine
	Key          *Key   // the node's Ed25519 key
	Name         string // the node's name (checkpoint signer name)
	Origin       string // the log's origin line
	// Verifiers are other nodes' checkpoint keys, accepted for stored
	// checkpoints; the node's own key is always accepted.
	Verifiers []*CheckpointVerifier
	Logger    *slog.Logger
}

// OpenLedger opens the store in dir, checks it end to end (record checksums,
// block chain, every block's Merkle root, every stored checkpoint's signature
// and root) and builds the tree. A store that fails any check is refused with
// ErrCorruptStore and the index of the first failure. A torn tail (a record
// cut short, or entries past the last block) is cut off.
//
// The state machine is not fed here: the Raft FSM replays it.
func OpenLedger(cfg LedgerConfig) (*Ledger, error) {
	if cfg.Key == nil || cfg.Key.Algorithm() != Ed25519 {
		return nil, fmt.Errorf("%w: a node needs an Ed25519 key", ErrBadKey)
	}
	if cfg.StateMachine == nil {
		return nil, errors.New("chain: no state machine")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := openStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	own, err := NewCheckpointVerifier(cfg.Name, cfg.Key.PublicKey())
	if err != nil {
		st.close()
		return nil, err
	}
	l := &Ledger{
		log: cfg.Logger.With("component", "ledger"), sm: cfg.StateMachine,
		key: cfg.Key, name: cfg.Name, origin: cfg.Origin,
		st: st, seen: make(map[Hash]uint64),
		verifiers: []*CheckpointVerifier{own}, moved: make(chan struct{}),
	}
	if r, ok := cfg.StateMachine.(Refuser); ok {
		l.refusals = r.Refusals()
		if len(l.refusals) > maxRefusals {
			st.close()
			return nil, fmt.Errorf("chain: the state machine lists %d refusals, at most %d", len(l.refusals), maxRefusals)
		}
	}
	for _, v := range cfg.Verifiers {
		if v.Name() != own.Name() || v.KeyHash() != own.KeyHash() {
			l.verifiers = append(l.verifiers, v)
		}
	}
	if err := l.load(); err != nil {
		st.close()
		return nil, err
	}
	return l, nil
}

func (l *Ledger) load() error {
	var prev Hash
	var want uint64
	for h := 0; h < l.st.blocks.count(); h++ {
		raw, err := l.st.blocks.read(h)
		if err != nil {
			return err
		}
		if len(raw) < ed25519.SignatureSize {
			return fmt.Errorf("%w: block %d: record too short", ErrCorruptStore, h+1)
		}
		hdr, seal := raw[:len(raw)-ed25519.SignatureSize], raw[len(raw)-ed25519.SignatureSize:]
		b, err := ParseBlock(hdr)
		if err != nil {
			return fmt.Errorf("%w: block %d: %v", ErrCorruptStore, h+1, err)
		}
		if !ed25519.Verify(ed25519.PublicKey(l.key.PublicKey()), sealMessage(b.Hash()), seal) {
			return fmt.Errorf("%w: block %d: header does not match this node's seal", ErrCorruptStore, h+1)
		}
		if b.Height != uint64(h+1) || b.Prev != prev || b.FirstIndex != want || b.Count == 0 {
			return fmt.Errorf("%w: block %d does not link to block %d", ErrCorruptStore, h+1, h)
		}
		if b.TreeSize() > uint64(l.st.entries.count()) {
			// Its entries were lost: only possible if the header was written
			// after a torn entries file, which appendBlock's order forbids.
			return fmt.Errorf("%w: block %d covers entries up to %d but the store has %d", ErrCorruptStore, h+1, b.TreeSize(), l.st.entries.count())
		}
		for i := b.FirstIndex; i < b.TreeSize(); i++ {
			raw, err := l.st.entries.read(int(i))
			if err != nil {
				return err
			}
			if _, err := ParseEntry(raw); err != nil {
				return fmt.Errorf("%w: entry %d: %v", ErrCorruptStore, i, err)
			}
			lh := LeafHash(raw)
			l.tree.AppendLeafHash(lh)
			l.seen[lh] = i
		}
		root, _ := l.tree.Root(b.TreeSize())
		if root != b.Root {
			return fmt.Errorf("%w: block %d: %s", ErrCorruptStore, h+1, l.locateBadEntry(b))
		}
		l.blocks = append(l.blocks, *b)
		prev = b.Hash()
		want = b.TreeSize()
	}
	if n := l.st.entries.count(); uint64(n) > want {
		l.log.Warn("cutting off entries past the last block (torn write)", "entries", n, "kept", want)
		if err := l.st.entries.truncate(int(want)); err != nil {
			return err
		}
	}
	for i := 0; i < l.st.checkpoints.count(); i++ {
		raw, err := l.st.checkpoints.read(i)
		if err != nil {
			return err
		}
		cp, err := ParseCheckpoint(raw, l.verifiers...)
		if err != nil {
			return fmt.Errorf("%w: checkpoint %d: %v", ErrCorruptStore, i, err)
		}
		if cp.Size > l.tree.Size() {
			return fmt.Errorf("%w: checkpoint %d signs size %d but the store holds %d entries", ErrCorruptStore, i, cp.Size, l.tree.Size())
		}
		if root, _ := l.tree.Root(cp.Size); root != cp.Root {
			return fmt.Errorf("%w: checkpoint %d: root of size %d does not match the signed root", ErrCorruptStore, i, cp.Size)
		}
		if l.lastSigned != nil && cp.Size < l.lastSigned.Size {
			return fmt.Errorf("%w: checkpoint %d goes back from size %d to %d", ErrCorruptStore, i, l.lastSigned.Size, cp.Size)
		}
		l.lastSigned = cp
	}
	return nil
}

// locateBadEntry names the first entry of a block whose root does not
// match: the first one whose signature fails, if any.
func (l *Ledger) locateBadEntry(b *Block) string {
	for i := b.FirstIndex; i < b.TreeSize(); i++ {
		raw, err := l.st.entries.read(int(i))
		if err != nil {
			return fmt.Sprintf("entry %d: %v", i, err)
		}
		if _, err := ParseAndVerify(raw); err != nil {
			return fmt.Sprintf("entry %d: %v", i, err)
		}
	}
	return fmt.Sprintf("Merkle root of entries %d..%d does not match the header", b.FirstIndex, b.TreeSize()-1)
}

// Close syncs and closes the store.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.close()
}

// Size is the number of committed entries.
func (l *Ledger) Size() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tree.Size()
}

// Height is the number of blocks.
func (l *Ledger) Height() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return uint64(len(l.blocks))
}

// Moved returns a channel closed when the ledger next applies entries or
// stops.
func (l *Ledger) Moved() <-chan struct{} {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.moved
}

// signal wakes the waiters on Moved; l.mu is held.
func (l *Ledger) signal() {
	close(l.moved)
	l.moved = make(chan struct{})
}

// Applied is the number of entries the state machine has applied.
func (l *Ledger) Applied() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.next
}

// Err reports why the ledger stopped, or nil.
func (l *Ledger) Err() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.failed
}

// Block returns the header of block h (1-based).
func (l *Ledger) Block(h uint64) (Block, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if h == 0 || h > uint64(len(l.blocks)) {
		return Block{}, fmt.Errorf("chain: no block %d (height %d)", h, len(l.blocks))
	}
	return l.blocks[h-1], nil
}

// Entry returns the bytes of entry i.
func (l *Ledger) Entry(i uint64) ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if i >= l.tree.Size() {
		return nil, fmt.Errorf("chain: no entry %d (size %d)", i, l.tree.Size())
	}
	return l.st.entries.read(int(i))
}

// Entries returns entries [start, end), at most max of them.
func (l *Ledger) Entries(start, end uint64, max int) ([][]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if end > l.tree.Size() {
		end = l.tree.Size()
	}
	var out [][]byte
	for i := start; i < end && len(out) < max; i++ {
		b, err := l.st.entries.read(int(i))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Root returns the Merkle root of the first size entries.
func (l *Ledger) Root(size uint64) (Hash, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tree.Root(size)
}

// InclusionProof returns the audit path of entry index in the tree of size.
func (l *Ledger) InclusionProof(index, size uint64) ([]Hash, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tree.InclusionProof(index, size)
}

// ConsistencyProof proves the tree of size second extends that of first.
func (l *Ledger) ConsistencyProof(first, second uint64) ([]Hash, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tree.ConsistencyProof(first, second)
}

// LeafIndex returns the index of the entry with this leaf hash.
func (l *Ledger) LeafIndex(h Hash) (uint64, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i, ok := l.seen[h]
	return i, ok && i < l.tree.Size()
}

// Verifier returns the checkpoint verifier of this node's key.
func (l *Ledger) Verifier() *CheckpointVerifier { return l.verifiers[0] }

// Checkpoint returns a checkpoint of the current tree signed by this node.
// The store is synced before signing, so a signed size is always durable,
// and the node refuses to sign a size smaller than one it signed before.
func (l *Ledger) Checkpoint() (*Checkpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	l.mu.RLock()
	size := l.tree.Size()
	root, _ := l.tree.Root(size)
	l.mu.RUnlock()
	if last := l.lastSigned; last != nil && last.Size >= size {
		if last.Size > size {
			return nil, fmt.Errorf("%w: asked to sign size %d below signed size %d", ErrCorruptStore, size, last.Size)
		}
		return last, nil
	}
	l.mu.Lock()
	err := l.st.entries.sync()
	if err == nil {
		err = l.st.blocks.sync()
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	signed, err := SignCheckpoint(l.key, l.name, l.origin, size, root, time.Now())
	if err != nil {
		return nil, err
	}
	cp, err := ParseCheckpoint(signed, l.verifiers[0])
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	err = l.st.checkpoints.appendRecords([][]byte{signed})
	if err == nil {
		err = l.st.checkpoints.sync()
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	l.lastSigned = cp
	return cp, nil
}

// apply commits a proposal: each entry is parsed, de-duplicated, checked
// against the block time and given to the state machine; the accepted ones
// form the next block. When the store already holds that block (a replay
// after restart), the recomputed block must match it byte for byte.
func (l *Ledger) apply(p *proposal) []Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	res := make([]Result, len(p.Entries))
	if l.failed != nil {
		for i := range res {
			res[i] = Result{Outcome: Rejected, Reason: ErrStopped.Error()}
		}
		return res
	}
	replay := l.applied < uint64(len(l.blocks))
	var prev Block
	if l.applied > 0 {
		prev = l.blocks[l.applied-1]
	}
	t := p.Time
	if t.Before(prev.Time) {
		t = prev.Time // block times never go back, whatever the proposer's clock
	}
	first := l.next
	accepted := make([][]byte, 0, len(p.Entries))
	hashes := make([]Hash, 0, len(p.Entries))
	for i, raw := range p.Entries {
		lh := LeafHash(raw)
		if idx, ok := l.seen[lh]; ok && idx < l.next {
			res[i] = Result{Outcome: Duplicate, Index: idx, leaf: lh}
			continue
		}
		e, err := ParseEntry(raw)
		if err != nil {
			res[i] = Result{Outcome: Rejected, Reason: err.Error()}
			continue
		}
		if d := e.Time.Sub(t); d > MaxClockSkew || d < -MaxClockSkew {
			res[i] = Result{Outcome: Rejected, Reason: fmt.Sprintf("chain: entry time %s is more than %s from block time %s", e.Time.Format(time.RFC3339), MaxClockSkew, t.Format(time.RFC3339))}
			continue
		}
		if err := l.sm.Apply(e, l.next, t); err != nil {
			res[i] = Result{Outcome: Rejected, Reason: err.Error(), Refusal: l.refusalOf(err)}
			continue
		}
		if replay {
			if l.next >= l.tree.Size() || l.tree.LeafHashAt(l.next) != lh {
				l.fail(fmt.Errorf("%w: replayed entry %d differs from the stored one", ErrCorruptStore, l.next))
				return res
			}
		} else {
			l.seen[lh] = l.next
			accepted = append(accepted, raw)
			hashes = append(hashes, lh)
		}
		res[i] = Result{Outcome: Committed, Index: l.next, leaf: lh}
		l.next++
	}
	if l.next == first {
		return res // nothing accepted: no block
	}
	if replay {
		b := l.blocks[l.applied]
		if b.FirstIndex != first || b.TreeSize() != l.next || !b.Time.Equal(t) || b.Proposer != p.Proposer {
			l.fail(fmt.Errorf("%w: replayed block %d differs from the stored one", ErrCorruptStore, b.Height))
			return res
		}
		l.applied++
		l.signal()
		return res
	}
	for _, lh := range hashes {
		l.tree.AppendLeafHash(lh)
	}
	root, _ := l.tree.Root(l.tree.Size())
	var prevHash Hash
	if l.applied > 0 {
		prevHash = prev.Hash()
	}
	b := Block{Height: l.applied + 1, Prev: prevHash, FirstIndex: first, Count: uint32(len(accepted)), Root: root, Time: t, Proposer: p.Proposer}
	if err := l.st.appendBlock(&b, accepted, l.seal(&b)); err != nil {
		l.fail(fmt.Errorf("chain: writing block %d: %w", b.Height, err))
		for i := range res {
			if res[i].Outcome == Committed {
				res[i] = Result{Outcome: Rejected, Reason: ErrStopped.Error()}
			}
		}
		return res
	}
	l.blocks = append(l.blocks, b)
	l.applied++
	l.signal()
	return res
}

// refusalOf finds the state machine's sentinel an error wraps.
func (l *Ledger) refusalOf(err error) uint8 {
	for i, r := range l.refusals {
		if errors.Is(err, r) {
			return uint8(i + 1)
		}
	}
	return 0
}

// seal signs a block header with the node's key before it is stored, so
// that a header altered on disk (even the last one, which no later block
// links to) is caught when the store is opened. Seals are local to a node.
func (l *Ledger) seal(b *Block) []byte {
	return ed25519.Sign(l.key.Ed25519(), sealMessage(b.Hash()))
}

func sealMessage(h Hash) []byte {
	return append([]byte("datasandbox/block-seal/v1\x00"), h[:]...)
}

// fail stops the ledger; l.mu is held.
func (l *Ledger) fail(err error) {
	defer l.signal()
	l.failed = err
	l.log.Error("ledger stopped", "err", err)
}

// replayTo resets the state machine and feeds it the stored blocks up to
// height h. It runs on Raft restore.
func (l *Ledger) replayTo(ctx context.Context, h uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sm.Reset()
	l.next, l.applied = 0, 0
	for l.applied < h {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := l.blocks[l.applied]
		for i := b.FirstIndex; i < b.TreeSize(); i++ {
			raw, err := l.st.entries.read(int(i))
			if err != nil {
				return err
			}
			e, err := ParseEntry(raw)
			if err != nil {
				return fmt.Errorf("%w: entry %d: %v", ErrCorruptStore, i, err)
			}
			if err := l.sm.Apply(e, i, b.Time); err != nil {
				return fmt.Errorf("%w: entry %d no longer applies: %v", ErrCorruptStore, i, err)
			}
		}
		l.next = b.TreeSize()
		l.applied++
	}
	l.signal()
	return nil
}

// appendVerifiedBlock adds a block received in a snapshot after checking
// it links to the last one and its root covers its entries.
func (l *Ledger) appendVerifiedBlock(b *Block, entries [][]byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := uint64(len(l.blocks))
	if b.Height <= h {
		if l.blocks[b.Height-1].Hash() != b.Hash() {
			return fmt.Errorf("%w: snapshot block %d differs from the stored one", ErrCorruptStore, b.Height)
		}
		return nil
	}
	var prev Hash
	if h > 0 {
		prev = l.blocks[h-1].Hash()
	}
	if b.Height != h+1 || b.Prev != prev || b.FirstIndex != l.tree.Size() || int(b.Count) != len(entries) || b.Count == 0 {
		return fmt.Errorf("%w: snapshot block %d does not link to block %d", ErrCorruptStore, b.Height, h)
	}
	for _, raw := range entries {
		if _, err := ParseEntry(raw); err != nil {
			return fmt.Errorf("%w: snapshot block %d: %v", ErrCorruptStore, b.Height, err)
		}
	}
	size := l.tree.Size()
	for _, raw := range entries {
		l.tree.AppendLeafHash(LeafHash(raw))
	}
	if root, _ := l.tree.Root(l.tree.Size()); root != b.Root {
		l.tree.Truncate(size)
		return fmt.Errorf("%w: snapshot block %d: root does not match its entries", ErrCorruptStore, b.Height)
	}
	if err := l.st.appendBlock(b, entries, l.seal(b)); err != nil {
		l.tree.Truncate(size)
		return err
	}
	for i, raw := range entries {
		l.seen[LeafHash(raw)] = b.FirstIndex + uint64(i)
	}
	l.blocks = append(l.blocks, *b)
	return nil
}

// VerifyStore re-reads every stored entry and checks its signature, on top
// of the checks OpenLedger made. It reports the first failing index.
func (l *Ledger) VerifyStore(ctx context.Context) error {
	n := l.Size()
	for i := uint64(0); i < n; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		raw, err := l.Entry(i)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		lh := LeafHash(raw)
		l.mu.RLock()
		stored := l.tree.LeafHashAt(i)
		l.mu.RUnlock()
		if !bytes.Equal(lh[:], stored[:]) {
			return fmt.Errorf("%w: entry %d changed on disk", ErrCorruptStore, i)
		}
		if _, err := ParseAndVerify(raw); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}
