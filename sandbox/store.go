package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/datasandbox/datasandbox/policies"
)

// Store keeps the datasets an agency's node holds: uploads staged under
// their SHA-256 until the ledger registers them, then datasets by name.
// The data never leaves this directory; only digests go on the ledger.
type Store struct {
	dir string
	key []byte // the agency's pseudonym key

	mu     sync.Mutex
	tables map[string]*Table // loaded datasets, by name

	heMu sync.Mutex
	he   map[string]*heData // loaded ciphertexts, by dataset
}

// OpenStore opens (creating) a store in dir, removing what was staged
// before (uploads never registered, ingests cut off). Its pseudonym key is
// created on first use and kept in dir with mode 0600; it never leaves the
// node.
func OpenStore(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "uploads"), filepath.Join(dir, "datasets"), filepath.Join(dir, "results")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// Whatever is staged was uploaded before this start and never
	// registered (or was cut off mid-ingest): nobody will register it now.
	if err := sweepStaged(filepath.Join(dir, "uploads")); err != nil {
		return nil, err
	}
	kp := filepath.Join(dir, "pseudonym.key")
	key, err := os.ReadFile(kp)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.WriteFile(kp, key, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("sandbox: %s must hold 32 bytes", kp)
	}
	return &Store{dir: dir, key: key, tables: map[string]*Table{}}, nil
}

// sweepStaged removes every staged upload and unfinished ingest in dir.
func sweepStaged(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("sandbox: sweeping staged uploads: %w", err)
		}
	}
	return nil
}

// Upload ingests a CSV into the staging area and returns its digest and
// row count. With pk set, sensitive columns are encrypted under it (he
// mode) and never stored in the clear. cons (nil when the node has no
// pseudonym service) pseudonymises consortium identifier columns.
func (s *Store) Upload(ctx context.Context, r io.Reader, schema *policies.Schema, pk *rlwe.PublicKey, cons Pseudonymiser) (*IngestResult, error) {
	var n [8]byte
	rand.Read(n[:])
	tmp := filepath.Join(s.dir, "uploads", fmt.Sprintf("tmp-%x", n))
	var res *IngestResult
	var err error
	if cons != nil {
		res, err = IngestConsortium(ctx, r, schema, s.key, tmp, pk, cons)
	} else if pk != nil {
		res, err = IngestEncrypted(ctx, r, schema, s.key, tmp, pk)
	} else {
		res, err = Ingest(ctx, r, schema, s.key, tmp)
	}
	if err != nil {
		return nil, err
	}
	final := filepath.Join(s.dir, "uploads", res.SHA256)
	if err := os.RemoveAll(final); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	return res, nil
}

// Discard removes a staged upload.
func (s *Store) Discard(sha string) {
	if policies.IsSHA256Hex(sha) {
		os.RemoveAll(filepath.Join(s.dir, "uploads", sha))
	}
}

// Staged returns the schema and rows of a staged upload.
func (s *Store) Staged(sha string) (*policies.Schema, int64, bool) {
	if !policies.IsSHA256Hex(sha) {
		return nil, 0, false
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "uploads", sha, "meta.json"))
	if err != nil {
		return nil, 0, false
	}
	var m tableMeta
	if json.Unmarshal(b, &m) != nil {
		return nil, 0, false
	}
	return &m.Schema, m.Rows, true
}

// Bind makes a staged upload the dataset of that name.
func (s *Store) Bind(sha, name string) error {
	if !policies.IsSHA256Hex(sha) || !validName(name) {
		return fmt.Errorf("sandbox: bad dataset name or digest")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dst := filepath.Join(s.dir, "datasets", name)
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("sandbox: dataset %q already held", name)
	}
	return os.Rename(filepath.Join(s.dir, "uploads", sha), dst)
}

func validName(n string) bool {
	if n == "" || len(n) > 63 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Has reports whether this node holds the dataset.
func (s *Store) Has(name string) bool {
	if !validName(name) {
		return false
	}
	_, err := os.Stat(filepath.Join(s.dir, "datasets", name, "meta.json"))
	return err == nil
}

// Table loads a held dataset (cached).
func (s *Store) Table(name string) (*Table, error) {
	if !s.Has(name) {
		return nil, fmt.Errorf("%w: %s", ErrNoData, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tables[name]; ok {
		return t, nil
	}
	t, err := LoadTable(filepath.Join(s.dir, "datasets", name), nil)
	if err != nil {
		return nil, err
	}
	s.tables[name] = t
	return t, nil
}

// PutResult keeps a job's result on this node. A job has one result: a
// second one is refused (ErrExist), so that a job run twice after a crash
// cannot deliver a result other than the one whose hash was committed.
func (s *Store) PutResult(job string, b []byte) error {
	if !validJob(job) {
		return fmt.Errorf("sandbox: bad job id")
	}
	p := filepath.Join(s.dir, "results", job+".json")
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	// Link fails if the result exists: first writer wins, atomically.
	return os.Link(tmp, p)
}

// Result returns a kept result.
func (s *Store) Result(job string) ([]byte, bool) {
	if !validJob(job) {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "results", job+".json"))
	return b, err == nil
}

func validJob(j string) bool {
	if len(j) < 5 || len(j) > 40 || j[:4] != "job-" {
		return false
	}
	for _, c := range j[4:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Blob serves other nodes' fetches of this node's results (chain's Blobs
// hook): "result/<job id>".
func (s *Store) Blob(key string) ([]byte, error) {
	job, ok := strings.CutPrefix(key, "result/")
	if !ok {
		return nil, fmt.Errorf("sandbox: unknown blob %q", key)
	}
	b, ok := s.Result(job)
	if !ok {
		return nil, fmt.Errorf("sandbox: no result for %s here", job)
	}
	return b, nil
}

// HEData returns a dataset's ciphertexts under the collective key pk,
// loaded once and kept (datasets are immutable once bound): those stored
// by an encrypted ingest, or, for a dataset registered in masked mode, its
// sensitive columns encrypted in memory on first use.
func (s *Store) HEData(ctx context.Context, name string, pk *rlwe.PublicKey) (*heData, error) {
	s.heMu.Lock()
	defer s.heMu.Unlock()
	if d, ok := s.he[name]; ok {
		return d, nil
	}
	if !validName(name) {
		return nil, ErrNoData
	}
	var d *heData
	var err error
	if s.Encrypted(name) {
		d, err = loadHE(filepath.Join(s.dir, "datasets", name))
	} else {
		var t *Table
		if t, err = s.Table(name); err == nil {
			d, err = encryptTable(ctx, t, pk)
		}
	}
	if err != nil {
		return nil, err
	}
	if s.he == nil {
		s.he = map[string]*heData{}
	}
	s.he[name] = d
	return d, nil
}

// Encrypted reports whether a held dataset is an encrypted (he) one.
func (s *Store) Encrypted(name string) bool {
	if !validName(name) {
		return false
	}
	_, err := os.Stat(filepath.Join(s.dir, "datasets", name, heDir, "meta.json"))
	return err == nil
}
