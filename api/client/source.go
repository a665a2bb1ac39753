package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
)

// Checkpoint gets the node's latest checkpoint and checks it: its
// signature against the trusted keys (when there are any; without, it is
// only what the node claims) and its JSON fields against the signed note.
func (c *Client) Checkpoint(ctx context.Context, trust []*chain.CheckpointVerifier) (*chain.Checkpoint, error) {
	var resp api.CheckpointResponse
	if err := c.Do(ctx, "GET", "/v1/ledger/checkpoint", nil, &resp); err != nil {
		return nil, err
	}
	return CheckCheckpoint(resp, trust)
}

// CheckCheckpoint checks a checkpoint's signature against the trusted keys
// (when there are any) and its JSON fields against the signed note.
func CheckCheckpoint(resp api.CheckpointResponse, trust []*chain.CheckpointVerifier) (*chain.Checkpoint, error) {
	var cp *chain.Checkpoint
	var err error
	if len(trust) > 0 {
		cp, err = chain.ParseCheckpoint([]byte(resp.Note), trust...)
	} else {
		cp, err = chain.ParseUnverifiedCheckpoint([]byte(resp.Note))
	}
	if err != nil {
		return nil, err
	}
	if cp.Size != resp.Size || base64.StdEncoding.EncodeToString(cp.Root[:]) != resp.Root {
		return nil, errors.New("checkpoint: size or root differ from the signed note")
	}
	return cp, nil
}

// DecodeHashes decodes a proof's base64 hashes.
func DecodeHashes(in []string) ([]chain.Hash, error) {
	out := make([]chain.Hash, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("proof hash %d is not base64 of 32 bytes", i)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// VerifyConsistency asks the node for the RFC 6962 proof that the log of
// size first and root firstRoot is a prefix of the checkpoint's, and
// verifies it: a proof that fails is audit.ErrNotExtension; a node that
// cannot answer, its own error (an audit.ProveFunc).
func (c *Client) VerifyConsistency(ctx context.Context, first uint64, firstRoot chain.Hash, cp *chain.Checkpoint) error {
	var cr api.ConsistencyResponse
	if err := c.Do(ctx, "GET", fmt.Sprintf("/v1/ledger/proof/consistency?first=%d&second=%d", first, cp.Size), nil, &cr); err != nil {
		return err
	}
	hs, err := DecodeHashes(cr.Hashes)
	if err == nil {
		err = chain.VerifyConsistency(first, cp.Size, hs, firstRoot, cp.Root)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", audit.ErrNotExtension, err)
	}
	return nil
}

// EntryReader reads ledger entries by index, a page at a time. It is not
// safe for concurrent use.
type EntryReader struct {
	c        *Client
	start    uint64
	end      uint64
	page     [][]byte
	filtered map[uint64][]byte
}

// NewEntryReader reads entries through c.
func NewEntryReader(c *Client) *EntryReader { return &EntryReader{c: c} }

// Get returns entry i; a caller who may not read every entry (permission
// read.all) gets an error naming the gap.
func (p *EntryReader) Get(ctx context.Context, i uint64) ([]byte, error) {
	if i < p.start || i >= p.start+uint64(len(p.page)) {
		var er api.EntriesResponse
		if err := p.c.Do(ctx, "GET", fmt.Sprintf("/v1/ledger/entries?start=%d", i), nil, &er); err != nil {
			return nil, err
		}
		p.start, p.page, p.filtered = i, nil, nil
		for k, ie := range er.Entries {
			if ie.Index != i+uint64(k) {
				return nil, fmt.Errorf("the node returned entry %d where %d was expected (verification needs permission read.all)", ie.Index, i+uint64(k))
			}
			raw, err := base64.StdEncoding.DecodeString(ie.Entry)
			if err != nil {
				return nil, fmt.Errorf("entry %d is not base64", ie.Index)
			}
			p.page = append(p.page, raw)
		}
		if len(p.page) == 0 {
			return nil, fmt.Errorf("the node returned no entry %d (verification needs permission read.all)", i)
		}
	}
	return p.page[i-p.start], nil
}

// GetFiltered returns entry i if the caller may read it, nil otherwise
// (the node's filtered pages skip what the caller may not see).
func (p *EntryReader) GetFiltered(ctx context.Context, i uint64) ([]byte, error) {
	if p.filtered == nil || i < p.start || i >= p.end {
		// A short explicit range, so that the range the node scanned is
		// known even when the filter leaves nothing in it.
		const scan = 50
		var er api.EntriesResponse
		if err := p.c.Do(ctx, "GET", fmt.Sprintf("/v1/ledger/entries?start=%d&end=%d", i, i+scan), nil, &er); err != nil {
			return nil, err
		}
		p.filtered = map[uint64][]byte{}
		p.start, p.end, p.page = i, i+scan, nil
		for _, ie := range er.Entries {
			raw, err := base64.StdEncoding.DecodeString(ie.Entry)
			if err != nil {
				return nil, fmt.Errorf("entry %d is not base64", ie.Index)
			}
			p.filtered[ie.Index] = raw
		}
	}
	return p.filtered[i], nil
}

// Source streams a node's blocks and entries: an audit.Source over HTTP.
// Its caller must be able to read every entry (permission read.all).
type Source struct {
	c      *Client
	ents   *EntryReader
	blocks []api.BlockResponse
	next   uint64 // height of the next block
}

var _ audit.Source = (*Source)(nil)

// NewSource streams the ledger of c's node from its first block.
func NewSource(c *Client) *Source {
	return &Source{c: c, ents: NewEntryReader(c), next: 1}
}

// Next returns the next block, with its hash checked against its header,
// and its entries; io.EOF after the last.
func (s *Source) Next(ctx context.Context) (*chain.Block, [][]byte, error) {
	if len(s.blocks) == 0 {
		var br struct {
			Blocks []api.BlockResponse `json:"blocks"`
		}
		if err := s.c.Do(ctx, "GET", fmt.Sprintf("/v1/ledger/blocks?start=%d&end=%d", s.next, s.next+1000), nil, &br); err != nil {
			return nil, nil, err
		}
		if len(br.Blocks) == 0 {
			return nil, nil, io.EOF
		}
		s.blocks = br.Blocks
	}
	b := s.blocks[0]
	s.blocks = s.blocks[1:]
	s.next = b.Height + 1
	blk, err := BlockOf(b)
	if err != nil {
		return nil, nil, fmt.Errorf("block %d: %w", b.Height, err)
	}
	entries := make([][]byte, 0, blk.Count)
	for i := uint64(0); i < uint64(blk.Count); i++ {
		raw, err := s.ents.Get(ctx, blk.FirstIndex+i)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, raw)
	}
	return blk, entries, nil
}

// BlockOf rebuilds a block header from the API's answer and checks its
// hash.
func BlockOf(b api.BlockResponse) (*chain.Block, error) {
	blk := &chain.Block{Height: b.Height, FirstIndex: b.FirstIndex, Count: b.Count, Proposer: b.Proposer}
	for _, f := range []struct {
		in  string
		out *chain.Hash
	}{{b.Prev, &blk.Prev}, {b.Root, &blk.Root}} {
		raw, err := base64.StdEncoding.DecodeString(f.in)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("a hash is not base64 of 32 bytes")
		}
		copy(f.out[:], raw)
	}
	t, err := time.Parse(time.RFC3339Nano, b.Time)
	if err != nil {
		return nil, fmt.Errorf("bad time %q", b.Time)
	}
	blk.Time = t.UTC()
	h := blk.Hash()
	if base64.StdEncoding.EncodeToString(h[:]) != b.Hash {
		return nil, fmt.Errorf("its hash does not match its header")
	}
	return blk, nil
}

// BlockResponse is a block header as the API and the export format carry
// it.
func BlockResponse(blk *chain.Block) api.BlockResponse {
	h := blk.Hash()
	return api.BlockResponse{Height: blk.Height, Prev: b64(blk.Prev[:]), FirstIndex: blk.FirstIndex, Count: blk.Count,
		Root: b64(blk.Root[:]), Time: blk.Time.Format("2006-01-02T15:04:05.999999999Z07:00"), Proposer: blk.Proposer, Hash: b64(h[:])}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
