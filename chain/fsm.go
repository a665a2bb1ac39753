package chain

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/zstd"
)

// fsm adapts the Ledger to raft.FSM. Each Raft log entry is one proposal;
// applying it yields at most one block.
type fsm struct {
	l *Ledger
}

var _ raft.FSM = (*fsm)(nil)

func (f *fsm) Apply(lg *raft.Log) interface{} {
	if lg.Type != raft.LogCommand {
		return nil
	}
	p, err := parseProposal(lg.Data)
	if err != nil {
		// A malformed proposal can only come from a broken leader; every
		// node skips it identically.
		f.l.log.Error("skipping malformed proposal", "raft_index", lg.Index, "err", err)
		return []Result(nil)
	}
	return f.l.apply(p)
}

// Snapshot captures the current height. The snapshot holds every block and
// entry up to it, so a follower far behind can rebuild its store (Raft's
// log is compacted; the ledger never is). The store is append-only, so
// Persist can read it while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.l.mu.RLock()
	defer f.l.mu.RUnlock()
	if f.l.failed != nil {
		return nil, f.l.failed
	}
	return &snapshot{l: f.l, height: f.l.applied}, nil
}

// Restore brings the store up to the snapshot's height (verifying every
// block it adds) and replays the state machine from the first entry.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	zr, err := zstd.NewReader(rc)
	if err != nil {
		return err
	}
	defer zr.Close()
	br := bufio.NewReader(zr)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("chain: snapshot header: %w", err)
	}
	if string(hdr[:4]) != "DSS1" {
		return fmt.Errorf("chain: not a ledger snapshot")
	}
	height := binary.BigEndian.Uint64(hdr[4:])
	for h := uint64(1); h <= height; h++ {
		braw, err := readFrame(br, maxBlockRecord)
		if err != nil {
			return fmt.Errorf("chain: snapshot block %d: %w", h, err)
		}
		b, err := ParseBlock(braw)
		if err != nil {
			return err
		}
		entries := make([][]byte, b.Count)
		for i := range entries {
			if entries[i], err = readFrame(br, MaxEntrySize); err != nil {
				return fmt.Errorf("chain: snapshot block %d: %w", h, err)
			}
		}
		if err := f.l.appendVerifiedBlock(b, entries); err != nil {
			return err
		}
	}
	if err := f.l.st.sync(); err != nil {
		return err
	}
	return f.l.replayTo(context.Background(), height)
}

type snapshot struct {
	l      *Ledger
	height uint64
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := s.write(sink)
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) write(w io.Writer) error {
	// The store must be durable up to the snapshot before Raft drops the
	// log entries it covers.
	s.l.mu.Lock()
	err := s.l.st.sync()
	blocks := s.l.blocks[:s.height:s.height]
	s.l.mu.Unlock()
	if err != nil {
		return err
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(zw, 1<<16)
	hdr := append([]byte("DSS1"), binary.BigEndian.AppendUint64(nil, s.height)...)
	if _, err := bw.Write(hdr); err != nil {
		return err
	}
	for _, b := range blocks {
		if err := writeFrame(bw, b.Marshal()); err != nil {
			return err
		}
		for i := b.FirstIndex; i < b.TreeSize(); i++ {
			raw, err := s.l.Entry(i)
			if err != nil {
				return err
			}
			if err := writeFrame(bw, raw); err != nil {
				return err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

func (s *snapshot) Release() {}

func writeFrame(w io.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r io.Reader, max int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if int64(size) > int64(max) {
		return nil, fmt.Errorf("frame of %d bytes exceeds %d", size, max)
	}
	b := make([]byte, size)
	_, err := io.ReadFull(r, b)
	return b, err
}
