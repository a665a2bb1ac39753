package chain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// recordFile is an append-only file of length-prefixed, checksummed records:
// u32 length | u32 CRC-32C of the data | data. The checksum catches disk
// corruption early; tampering is caught by the Merkle roots and block chain.
type recordFile struct {
	f       *os.File
	offsets []int64 // start of each record
	size    int64   // bytes in complete records
	buf     []byte  // appendRecords' buffer, kept for the next call
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const recordHeader = 8

// openRecordFile opens or creates path and indexes its records. A record cut
// short at the end of the file (a torn write) is truncated away; a complete
// record whose checksum fails is corruption and is reported with its index.
func openRecordFile(path string, maxRecord int) (*recordFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	rf := &recordFile{f: f}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	end := st.Size()
	var hdr [recordHeader]byte
	var off int64
	buf := make([]byte, 0, 4096)
	for off < end {
		if end-off < recordHeader {
			break // torn header
		}
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			f.Close()
			return nil, err
		}
		n := int64(binary.BigEndian.Uint32(hdr[:4]))
		if n > int64(maxRecord) {
			f.Close()
			return nil, fmt.Errorf("%w: %s: record %d at byte %d claims %d bytes", ErrCorruptStore, filepath.Base(path), len(rf.offsets), off, n)
		}
		if end-off-recordHeader < n {
			break // torn body
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, off+recordHeader); err != nil {
			f.Close()
			return nil, err
		}
		if crc32.Checksum(buf, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			f.Close()
			return nil, fmt.Errorf("%w: %s: record %d at byte %d fails its checksum", ErrCorruptStore, filepath.Base(path), len(rf.offsets), off)
		}
		rf.offsets = append(rf.offsets, off)
		off += recordHeader + n
	}
	rf.size = off
	if off < end {
		if err := rf.truncateBytes(off); err != nil {
			f.Close()
			return nil, err
		}
	}
	return rf, nil
}

func (rf *recordFile) count() int { return len(rf.offsets) }

func (rf *recordFile) read(i int) ([]byte, error) {
	if i < 0 || i >= len(rf.offsets) {
		return nil, fmt.Errorf("chain: record %d out of range", i)
	}
	off := rf.offsets[i]
	var end int64
	if i+1 < len(rf.offsets) {
		end = rf.offsets[i+1]
	} else {
		end = rf.size
	}
	buf := make([]byte, end-off)
	if _, err := rf.f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	n := binary.BigEndian.Uint32(buf[:4])
	data := buf[recordHeader : recordHeader+int(n)]
	if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(buf[4:8]) {
		return nil, fmt.Errorf("%w: record %d fails its checksum", ErrCorruptStore, i)
	}
	return data, nil
}

// appendRecords writes records in one write call.
func (rf *recordFile) appendRecords(recs [][]byte) error {
	n := 0
	for _, r := range recs {
		n += recordHeader + len(r)
	}
	if cap(rf.buf) < n {
		rf.buf = make([]byte, 0, n)
	}
	buf := rf.buf[:0]
	first := len(rf.offsets)
	off := rf.size
	for _, r := range recs {
		rf.offsets = append(rf.offsets, off)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r)))
		buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(r, castagnoli))
		buf = append(buf, r...)
		off += int64(recordHeader + len(r))
	}
	if _, err := rf.f.WriteAt(buf, rf.size); err != nil {
		// Leave the file as it was: a partial write is cut off again.
		rf.offsets = rf.offsets[:first]
		_ = rf.f.Truncate(rf.size)
		return err
	}
	rf.size = off
	if cap(buf) > 1<<20 {
		rf.buf = nil // not worth keeping for the next, usually small, call
	} else {
		rf.buf = buf
	}
	return nil
}

// truncate keeps the first n records.
func (rf *recordFile) truncate(n int) error {
	if n >= len(rf.offsets) {
		return nil
	}
	off := rf.offsets[n]
	rf.offsets = rf.offsets[:n]
	return rf.truncateBytes(off)
}

func (rf *recordFile) truncateBytes(off int64) error {
	if err := rf.f.Truncate(off); err != nil {
		return err
	}
	rf.size = off
	return rf.f.Sync()
}

func (rf *recordFile) sync() error  { return rf.f.Sync() }
func (rf *recordFile) close() error { return rf.f.Close() }

// store is the ledger's own append-only history on disk: every committed
// entry and block header, and every checkpoint the node signed. Unlike
// Raft's log it is never compacted.
type store struct {
	entries     *recordFile
	blocks      *recordFile
	checkpoints *recordFile
}

// Maximum sizes of stored records.
const (
	maxBlockRecord      = 1024
	maxCheckpointRecord = 64 << 10
)

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &store{}
	var err error
	if s.entries, err = openRecordFile(filepath.Join(dir, "entries.log"), MaxEntrySize); err != nil {
		return nil, err
	}
	if s.blocks, err = openRecordFile(filepath.Join(dir, "blocks.log"), maxBlockRecord); err != nil {
		s.entries.close()
		return nil, err
	}
	if s.checkpoints, err = openRecordFile(filepath.Join(dir, "checkpoints.log"), maxCheckpointRecord); err != nil {
		s.entries.close()
		s.blocks.close()
		return nil, err
	}
	return s, nil
}

func (s *store) sync() error {
	return errors.Join(s.entries.sync(), s.blocks.sync(), s.checkpoints.sync())
}

func (s *store) close() error {
	return errors.Join(s.sync(), s.entries.close(), s.blocks.close(), s.checkpoints.close())
}

// appendBlock writes a block's entries, then its header. A crash between the
// two leaves entries past the last block, which open cuts off.
// The header is stored with the node's seal (see Ledger.seal).
func (s *store) appendBlock(b *Block, entries [][]byte, seal []byte) error {
	if err := s.entries.appendRecords(entries); err != nil {
		return err
	}
	if err := s.blocks.appendRecords([][]byte{append(b.Marshal(), seal...)}); err != nil {
		_ = s.entries.truncate(int(b.FirstIndex))
		return err
	}
	return nil
}
