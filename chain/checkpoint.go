package chain

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a signed statement of the log's size and root, in the C2SP
// tlog-checkpoint format (origin, size, base64 root; no extension lines)
// wrapped in a C2SP signed note. Each node signs with a C2SP cosignature/v1
// Ed25519 signature, which binds a timestamp: that is the checkpoint's time.
// Several nodes may sign one checkpoint body; their lines are simply joined.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
	Time   time.Time // the earliest verified signature's time
	Note   []byte    // the full signed note
	Signer []string  // names of the verified signers
}

// checkpointBody formats the unsigned checkpoint text.
func checkpointBody(origin string, size uint64, root Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
}

const cosignatureType = 0x04

func cosignKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', cosignatureType})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func cosignMessage(t uint64, body []byte) []byte {
	return append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), body...)
}

// cosigner signs a note body with a cosignature/v1 signature.
type cosigner struct {
	name string
	key  ed25519.PrivateKey
	now  func() time.Time
}

var _ note.Signer = (*cosigner)(nil)

func (s *cosigner) Name() string { return s.name }
func (s *cosigner) KeyHash() uint32 {
	return cosignKeyHash(s.name, s.key.Public().(ed25519.PublicKey))
}
func (s *cosigner) Sign(msg []byte) ([]byte, error) {
	t := uint64(s.now().Unix())
	sig := ed25519.Sign(s.key, cosignMessage(t, msg))
	return append(binary.BigEndian.AppendUint64(nil, t), sig...), nil
}

// CheckpointVerifier verifies one node's checkpoint signatures.
type CheckpointVerifier struct {
	name string
	pub  ed25519.PublicKey
	hash uint32
}

var _ note.Verifier = (*CheckpointVerifier)(nil)

// NewCheckpointVerifier makes a verifier for a node's name and Ed25519 key.
func NewCheckpointVerifier(name string, pub []byte) (*CheckpointVerifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: checkpoint key must be Ed25519", ErrBadKey)
	}
	return &CheckpointVerifier{name: name, pub: pub, hash: cosignKeyHash(name, pub)}, nil
}

// ParseCheckpointVerifier reads a verifier key in the signed-note vkey form
// "name+hash+base64(0x04 || key)", as VerifierKey writes it.
func ParseCheckpointVerifier(vkey string) (*CheckpointVerifier, error) {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: vkey %q is not name+hash+key", ErrBadKey, Clip(vkey, 80))
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != cosignatureType {
		return nil, fmt.Errorf("%w: vkey %q: key is not a cosignature/v1 Ed25519 key", ErrBadKey, parts[0])
	}
	v, err := NewCheckpointVerifier(parts[0], raw[1:])
	if err != nil {
		return nil, err
	}
	if fmt.Sprintf("%08x", v.hash) != parts[1] {
		return nil, fmt.Errorf("%w: vkey %q: hash does not match key", ErrBadKey, parts[0])
	}
	return v, nil
}

// VerifierKey returns the vkey string of this verifier.
func (v *CheckpointVerifier) VerifierKey() string {
	return fmt.Sprintf("%s+%08x+%s", v.name, v.hash, base64.StdEncoding.EncodeToString(append([]byte{cosignatureType}, v.pub...)))
}

func (v *CheckpointVerifier) Name() string    { return v.name }
func (v *CheckpointVerifier) KeyHash() uint32 { return v.hash }
func (v *CheckpointVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	return ed25519.Verify(v.pub, cosignMessage(t, msg), sig[8:])
}

// SignCheckpoint produces a signed checkpoint note for (origin, size, root).
func SignCheckpoint(key *Key, name, origin string, size uint64, root Hash, now time.Time) ([]byte, error) {
	if key.Algorithm() != Ed25519 {
		return nil, fmt.Errorf("%w: checkpoints are signed with Ed25519 node keys", ErrBadKey)
	}
	s := &cosigner{name: name, key: key.Ed25519(), now: func() time.Time { return now }}
	return note.Sign(&note.Note{Text: checkpointBody(origin, size, root)}, s)
}

// CosignCheckpoint adds this node's signature to an existing note after
// checking the note's body is well formed.
func CosignCheckpoint(key *Key, name string, signed []byte, now time.Time) ([]byte, error) {
	text, sigs, err := splitNote(signed)
	if err != nil {
		return nil, err
	}
	if _, _, _, err := parseCheckpointBody(text); err != nil {
		return nil, err
	}
	s := &cosigner{name: name, key: key.Ed25519(), now: func() time.Time { return now }}
	mine, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		return nil, err
	}
	return append([]byte(text+"\n"+sigs), mine[len(text)+1:]...), nil
}

func splitNote(signed []byte) (text, sigs string, err error) {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return "", "", fmt.Errorf("%w: no signature block", ErrBadCheckpoint)
	}
	return string(signed[:i+1]), string(signed[i+2:]), nil
}

func parseCheckpointBody(text string) (origin string, size uint64, root Hash, err error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return "", 0, root, fmt.Errorf("%w: body must be exactly origin, size and root lines", ErrBadCheckpoint)
	}
	if lines[0] == "" {
		return "", 0, root, fmt.Errorf("%w: empty origin", ErrBadCheckpoint)
	}
	size, err = strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return "", 0, root, fmt.Errorf("%w: size %q is not a decimal number", ErrBadCheckpoint, Clip(lines[1], 40))
	}
	r, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(r) != len(root) {
		return "", 0, root, fmt.Errorf("%w: root is not base64 of 32 bytes", ErrBadCheckpoint)
	}
	copy(root[:], r)
	return lines[0], size, root, nil
}

// ParseCheckpoint verifies a signed checkpoint against the known node keys;
// it needs at least one valid signature from them. Signatures by unknown
// keys are ignored, as the signed-note format prescribes.
func ParseCheckpoint(signed []byte, known ...*CheckpointVerifier) (*Checkpoint, error) {
	vs := make([]note.Verifier, len(known))
	for i, k := range known {
		vs[i] = k
	}
	n, err := note.Open(signed, note.VerifierList(vs...))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return nil, fmt.Errorf("%w: no signature by a known node key", ErrBadCheckpoint)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	origin, size, root, err := parseCheckpointBody(n.Text)
	if err != nil {
		return nil, err
	}
	// note.Open decodes base64 leniently (ignoring the spare bits of the
	// last character); insist on the canonical form, so that one signed
	// checkpoint has exactly one text.
	for _, s := range append(n.Sigs, n.UnverifiedSigs...) {
		if _, err := base64.StdEncoding.Strict().DecodeString(s.Base64); err != nil {
			return nil, fmt.Errorf("%w: signature of %s is not canonical base64", ErrBadCheckpoint, s.Name)
		}
	}
	c := &Checkpoint{Origin: origin, Size: size, Root: root, Note: signed}
	for _, s := range n.Sigs {
		c.Signer = append(c.Signer, s.Name)
		raw, _ := base64.StdEncoding.DecodeString(s.Base64)
		if len(raw) >= 12 {
			t := time.Unix(int64(binary.BigEndian.Uint64(raw[4:12])), 0).UTC()
			if c.Time.IsZero() || t.Before(c.Time) {
				c.Time = t
			}
		}
	}
	return c, nil
}

// ParseUnverifiedCheckpoint reads a checkpoint note without checking any
// signature, for clients that hold no trusted key yet. Its Signer field
// lists the names the note claims; nothing vouches for them.
func ParseUnverifiedCheckpoint(signed []byte) (*Checkpoint, error) {
	text, sigs, err := splitNote(signed)
	if err != nil {
		return nil, err
	}
	origin, size, root, err := parseCheckpointBody(text)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{Origin: origin, Size: size, Root: root, Note: signed}
	for _, line := range strings.Split(strings.TrimSuffix(sigs, "\n"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "—" {
			c.Signer = append(c.Signer, f[1])
		}
	}
	return c, nil
}

// ParseVerifierList reads a file of checkpoint verifier keys: one vkey per
// line; blank lines and lines starting with # are skipped. name is used in
// error messages.
func ParseVerifierList(name string, b []byte) ([]*CheckpointVerifier, error) {
	var out []*CheckpointVerifier
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := ParseCheckpointVerifier(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
		}
		out = append(out, v)
	}
	return out, nil
}
