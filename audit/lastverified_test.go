package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/chain"
)

func TestCompareNodeState(t *testing.T) {
	const h = "6f1e0c2d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"
	for _, tc := range []struct {
		name    string
		applied uint64
		node    string
		status  string
		matches bool
		fails   bool
	}{
		{"same", 10, h, "matches the node's state hash", true, false},
		{"moved on", 12, "other", "not compared: the node has applied 12 entries since the checkpoint of 10", false, false},
		{"differs", 10, "00" + h[2:], "DIFFERS", false, true},
		{"short hash from the node", 10, "ab", "DIFFERS", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := CompareNodeState(h, 10, tc.applied, tc.node)
			if ns.Status != tc.status || ns.Matches != tc.matches || (ns.Failure != nil) != tc.fails {
				t.Fatalf("CompareNodeState = %+v", ns)
			}
			if ns.Failure != nil && ns.Failure.Index != 10 {
				t.Fatalf("failure at %d, want 10", ns.Failure.Index)
			}
		})
	}
}

func TestCheckConsistency(t *testing.T) {
	root := chain.Hash{1, 2, 3}
	cp := &chain.Checkpoint{Size: 20}
	prev := &LastVerified{Size: 8, Root: base64.StdEncoding.EncodeToString(root[:])}
	holds := func(_ context.Context, size uint64, r chain.Hash, _ *chain.Checkpoint) error {
		if size != 8 || r != root {
			return fmt.Errorf("%w: asked for %d", ErrNotExtension, size)
		}
		return nil
	}
	rewritten := func(context.Context, uint64, chain.Hash, *chain.Checkpoint) error {
		return fmt.Errorf("%w: roots differ", ErrNotExtension)
	}
	offline := errors.New("cannot reach node1")
	unreachable := func(context.Context, uint64, chain.Hash, *chain.Checkpoint) error { return offline }
	for _, tc := range []struct {
		name    string
		prev    *LastVerified
		prove   ProveFunc
		status  string
		checked bool
		behind  bool
		fails   bool
		err     error
	}{
		{"first run", nil, rewritten, "first run: nothing to compare", false, false, false, nil},
		{"extends", prev, holds, "extends the checkpoint of size 8 verified earlier", true, false, false, nil},
		{"rewritten", prev, rewritten, "FAILED: ", false, false, true, nil},
		{"behind", &LastVerified{Size: 30, Root: prev.Root}, rewritten, "not checked: this ledger is behind", false, true, false, nil},
		{"node unreachable", prev, unreachable, "", false, false, false, offline},
		{"a bad stored root", &LastVerified{Size: 8, Root: "AAAA"}, holds, "", false, false, false, errors.New("any")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := CheckConsistency(t.Context(), tc.prev, cp, tc.prove)
			if tc.err != nil {
				if err == nil || (tc.err == offline && !errors.Is(err, offline)) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || !strings.HasPrefix(c.Status, tc.status) || c.Checked != tc.checked || c.Behind != tc.behind || (c.Failure != nil) != tc.fails {
				t.Fatalf("CheckConsistency = %+v, %v", c, err)
			}
			if c.Failure != nil && (c.Failure.Index != 8 || !strings.Contains(c.Failure.Reason, "rewritten")) {
				t.Fatalf("failure %+v", c.Failure)
			}
		})
	}
}

func TestLastVerifiedRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dir", "state.json")
	if lv, err := LoadLastVerified(p); lv != nil || err != nil {
		t.Fatalf("none yet: %+v %v", lv, err)
	}
	cp := &chain.Checkpoint{Origin: "test", Size: 5, Root: chain.Hash{9}, Note: []byte("note\n")}
	if err := SaveLastVerified(p, cp); err != nil {
		t.Fatal(err)
	}
	lv, err := LoadLastVerified(p)
	if err != nil || lv.Origin != "test" || lv.Size != 5 || lv.Root != base64.StdEncoding.EncodeToString(cp.Root[:]) || lv.Note != "note\n" {
		t.Fatalf("loaded %+v %v", lv, err)
	}
	if err := SaveLastVerified(filepath.Join(p, "under-a-file.json"), cp); err == nil {
		t.Fatal("saved under a file")
	}
}
