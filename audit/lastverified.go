package audit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/datasandbox/datasandbox/chain"
)

// The rules a verifier applies beyond the replay (Verify): what it
// concludes from a node's state hash, and from the checkpoint it verified
// last time. They are here, not in a command, so that every verifier
// (sandboxctl, its console, another program through api/client) concludes
// the same.

// ErrNotExtension: the ledger verified now is not an extension of the one
// verified earlier from the same origin — history was rewritten. A
// consistency check wraps it around the reason a proof failed.
var ErrNotExtension = errors.New("audit: not an extension of the checkpoint verified earlier")

// LastVerified is the last checkpoint verified from an origin, kept
// between runs so that the next one can check the ledger was only
// appended to (no rollback, no rewritten history).
type LastVerified struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   string `json:"root"` // base64
	Note   string `json:"note"` // the signed checkpoint
}

// LastVerifiedPath is where the last verified checkpoint of an origin is
// kept by default: the user's config directory, one file per origin.
func LastVerifiedPath(origin string) (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(origin))
	return filepath.Join(dir, "sandboxctl", "verified", hex.EncodeToString(sum[:8])+".json"), nil
}

// LoadLastVerified reads the file SaveLastVerified wrote; nil, nil when
// there is none (the first run). A file that cannot be read counts as none:
// saving this run's checkpoint to it then fails, and that is reported.
func LoadLastVerified(path string) (*LastVerified, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil
	}
	var lv LastVerified
	if err := json.Unmarshal(b, &lv); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &lv, nil
}

// SaveLastVerified keeps cp as the last verified checkpoint (mode 0600).
// A caller must report its error: a checkpoint not kept silently disables
// the next run's rollback check.
func SaveLastVerified(path string, cp *chain.Checkpoint) error {
	b, err := json.Marshal(LastVerified{Origin: cp.Origin, Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]), Note: string(cp.Note)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// ProveFunc checks that the ledger being verified, of checkpoint cp, holds
// as its first size entries a log of root root: with an RFC 6962
// consistency proof from a node, or by recomputing the root from an
// export. It MUST wrap ErrNotExtension around a proof that fails, and
// return other errors (a node that cannot be reached) as they are.
type ProveFunc func(ctx context.Context, size uint64, root chain.Hash, cp *chain.Checkpoint) error

// Consistency is how a verified checkpoint relates to the one verified
// last time from its origin.
type Consistency struct {
	// Status is the sentence a report shows.
	Status string
	// Checked: a proof was checked and held.
	Checked bool
	// Behind: the ledger is shorter than the one verified earlier (a
	// lagging node, or a rollback): nothing could be proven; a warning.
	Behind bool
	// Failure is set when the ledger is not an extension of the earlier
	// one (ErrNotExtension): the index is the earlier size.
	Failure *Failure
}

// CheckConsistency applies the rollback rule: a ledger verified now must
// extend the one verified last time (prev; nil on a first run).
func CheckConsistency(ctx context.Context, prev *LastVerified, cp *chain.Checkpoint, prove ProveFunc) (Consistency, error) {
	switch {
	case prev == nil:
		return Consistency{Status: "first run: nothing to compare"}, nil
	case prev.Size > cp.Size:
		return Consistency{Status: fmt.Sprintf("not checked: this ledger is behind the checkpoint of size %d verified earlier", prev.Size), Behind: true}, nil
	case prev.Size == 0:
		return Consistency{Status: "first run: nothing to compare"}, nil
	}
	var root chain.Hash
	raw, err := base64.StdEncoding.DecodeString(prev.Root)
	if err != nil || len(raw) != len(root) {
		return Consistency{}, fmt.Errorf("audit: the last verified checkpoint's root is not base64 of %d bytes", len(root))
	}
	copy(root[:], raw)
	err = prove(ctx, prev.Size, root, cp)
	switch {
	case err == nil:
		return Consistency{Status: fmt.Sprintf("extends the checkpoint of size %d verified earlier", prev.Size), Checked: true}, nil
	case errors.Is(err, ErrNotExtension):
		return Consistency{Status: "FAILED: " + err.Error(), Failure: &Failure{Index: int64(prev.Size),
			Reason: fmt.Sprintf("the ledger is not an extension of the checkpoint of size %d verified earlier: history was rewritten", prev.Size)}}, nil
	default:
		return Consistency{}, err
	}
}

// NodeState is what a verifier concludes from comparing its replayed state
// hash with the one a node reports.
type NodeState struct {
	// Status is the sentence a report shows.
	Status string
	// Matches: the node applied exactly the checkpoint's entries and its
	// state hash is the replayed one.
	Matches bool
	// Failure is set when the hashes differ for the same entries: the node
	// holds a state the ledger does not give.
	Failure *Failure
}

// CompareNodeState applies the node-state rule: a node that has applied
// exactly the checkpoint's size entries must hold the replayed state hash.
// A node that has applied more (it moved on) cannot be compared. The
// node's hash is untrusted input: it is quoted, shortened, never parsed.
func CompareNodeState(replayed string, size, nodeApplied uint64, nodeHash string) NodeState {
	switch {
	case nodeApplied != size:
		return NodeState{Status: fmt.Sprintf("not compared: the node has applied %d entries since the checkpoint of %d", nodeApplied, size)}
	case nodeHash != replayed:
		return NodeState{Status: "DIFFERS", Failure: &Failure{Index: int64(size),
			Reason: fmt.Sprintf("the replayed state hash %s differs from the node's %s", prefix(replayed, 16), prefix(nodeHash, 16))}}
	default:
		return NodeState{Status: "matches the node's state hash", Matches: true}
	}
}

// prefix is the first n bytes of s, or all of it when shorter.
func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
