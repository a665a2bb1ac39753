package chain

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// Block groups the entries committed by one Raft log entry. Blocks chain by
// the hash of the previous block's header and carry the Merkle root of the
// whole log after their last entry, so a block header commits to all history.
type Block struct {
	Height     uint64 // 1 for the first block
	Prev       Hash   // hash of block Height-1; zero for the first block
	FirstIndex uint64 // log index of the block's first entry
	Count      uint32 // number of entries
	Root       Hash   // Merkle root of the log of size FirstIndex+Count
	Time       time.Time
	Proposer   string // the node that proposed the block (its Raft server ID)
}

var blockMagic = [4]byte{'D', 'S', 'B', '1'}

// TreeSize is the log size after this block.
func (b *Block) TreeSize() uint64 { return b.FirstIndex + uint64(b.Count) }

// Marshal returns the canonical header bytes.
func (b *Block) Marshal() []byte {
	out := make([]byte, 0, 4+8+32+8+4+32+8+1+len(b.Proposer))
	out = append(out, blockMagic[:]...)
	out = binary.BigEndian.AppendUint64(out, b.Height)
	out = append(out, b.Prev[:]...)
	out = binary.BigEndian.AppendUint64(out, b.FirstIndex)
	out = binary.BigEndian.AppendUint32(out, b.Count)
	out = append(out, b.Root[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(b.Time.UnixNano()))
	out = append(out, byte(len(b.Proposer)))
	return append(out, b.Proposer...)
}

// Hash is SHA-256 of the header bytes.
func (b *Block) Hash() Hash { return sha256.Sum256(b.Marshal()) }

// ParseBlock decodes a block header.
func ParseBlock(data []byte) (*Block, error) {
	r := reader{b: data}
	if m := r.next(4); r.err != nil || [4]byte(m) != blockMagic {
		return nil, fmt.Errorf("chain: malformed block: bad magic")
	}
	b := &Block{}
	b.Height = r.u64()
	copy(b.Prev[:], r.next(32))
	b.FirstIndex = r.u64()
	b.Count = r.u32()
	copy(b.Root[:], r.next(32))
	b.Time = time.Unix(0, int64(r.u64())).UTC()
	b.Proposer = string(r.next(int(r.u8())))
	if r.err != nil || r.off != len(data) {
		return nil, fmt.Errorf("chain: malformed block: bad length %d", len(data))
	}
	return b, nil
}

// proposal is what a leader puts in one Raft log entry: candidate entries
// and the block's time and proposer. The time is chosen by the proposer so
// that applying the proposal is deterministic on every node.
type proposal struct {
	Time     time.Time
	Proposer string
	Entries  [][]byte
}

var proposalMagic = [4]byte{'D', 'S', 'P', '1'}

func (p *proposal) marshal() []byte {
	n := 4 + 8 + 1 + len(p.Proposer) + 4
	for _, e := range p.Entries {
		n += 4 + len(e)
	}
	out := make([]byte, 0, n)
	out = append(out, proposalMagic[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(p.Time.UnixNano()))
	out = append(out, byte(len(p.Proposer)))
	out = append(out, p.Proposer...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(p.Entries)))
	for _, e := range p.Entries {
		out = binary.BigEndian.AppendUint32(out, uint32(len(e)))
		out = append(out, e...)
	}
	return out
}

func parseProposal(data []byte) (*proposal, error) {
	r := reader{b: data}
	if m := r.next(4); r.err != nil || [4]byte(m) != proposalMagic {
		return nil, fmt.Errorf("chain: malformed proposal")
	}
	p := &proposal{}
	p.Time = time.Unix(0, int64(r.u64())).UTC()
	p.Proposer = string(r.next(int(r.u8())))
	n := r.u32()
	if r.err == nil && uint64(n) > uint64(len(data)) {
		return nil, fmt.Errorf("chain: malformed proposal: %d entries", n)
	}
	p.Entries = make([][]byte, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		p.Entries = append(p.Entries, r.next(int(r.u32())))
	}
	if r.err != nil || r.off != len(data) {
		return nil, fmt.Errorf("chain: malformed proposal")
	}
	return p, nil
}
