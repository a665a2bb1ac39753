//go:build linux

package main

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/datasandbox/datasandbox/api"
)

// A node whose disk fills up (its file-size limit lowered to nothing, so
// every write that grows a file fails as on a full disk) reports it in its
// health, refuses writes and reads with 503 rather than acknowledging
// what it cannot store, while the two others go on; restarted with room,
// it comes back with the same log as the others, nothing lost or torn.
func TestFullDiskNodeStopsAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	c := startProcCluster(t)
	appendNote := func(node int) (api.AppendResponse, error) {
		raw, _ := c.keys["agency1"].NewEntry("note.disk", uint64(time.Now().UnixNano()), time.Now(), []byte(`{}`))
		body, _ := json.Marshal(map[string]string{"entry": base64.StdEncoding.EncodeToString(raw)})
		var ar api.AppendResponse
		return ar, c.call(node, "agency1", "POST", "/v1/ledger/entries", "application/json", body, &ar)
	}
	// The full node is a follower, so that the others keep a quorum.
	full := -1
	for i := range 3 {
		if h, err := c.health(i); err == nil && h.Leader != h.Node {
			full = i
			break
		}
	}
	if full < 0 {
		t.Fatal("no follower")
	}
	other := (full + 1) % 3
	if err := unix.Prlimit(c.cmds[full].Process.Pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 1, Max: unix.RLIM_INFINITY}, nil); err != nil {
		t.Skipf("cannot lower a child's file-size limit here: %v", err)
	}
	var acked []uint64
	for range 20 {
		ar, err := appendNote(other)
		if err != nil {
			t.Fatalf("the healthy majority refused a write: %v", err)
		}
		acked = append(acked, ar.Index)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := c.health(full)
		if err == nil && h.Status == "failed" {
			if !strings.Contains(h.Error, "could not be written") {
				t.Fatalf("health does not say why: %q", h.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node%d does not report its full disk: %+v %v", full+1, h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := appendNote(full); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("the full node answered a write with %v, not 503", err)
	}
	if err := c.call(full, "auditor", "GET", "/v1/ledger/state", "", nil, nil); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("the full node answered a read with %v, not 503", err)
	}
	t.Logf("node%d reports its full disk and answers 503; the others committed %d entries meanwhile", full+1, len(acked))

	// Room again: restart it; it catches up to the same log.
	c.kill(full)
	c.start(full)
	c.waitHealthy(full)
	want := c.allEntries(other)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got := c.allEntries(full)
		if len(got) == len(want) {
			for k := range got {
				if got[k] != want[k] {
					t.Fatalf("node%d differs at index %d after recovery", full+1, k)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node%d holds %d entries after recovery, node%d %d", full+1, len(got), other+1, len(want))
		}
	}
}
