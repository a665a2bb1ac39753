package api_test

import (
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/chain"
)

// cut is a switch on a node's links: when on, every connection the node
// has or makes fails, in both directions (a network partition).
type cut struct {
	on    atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func (c *cut) wrap(conn net.Conn) net.Conn {
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	return &cutConn{Conn: conn, c: c}
}

func (c *cut) set(on bool) {
	c.on.Store(on)
	if on {
		c.mu.Lock()
		for _, conn := range c.conns {
			conn.Close() // blocked reads end too
		}
		c.conns = nil
		c.mu.Unlock()
	}
}

type cutConn struct {
	net.Conn
	c *cut
}

var errCut = errors.New("partitioned")

func (c *cutConn) Read(b []byte) (int, error) {
	if c.c.on.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Read(b)
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.c.on.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Write(b)
}

// Partition node3 away: the majority keeps committing; node3 answers
// writes and reads with 503 and Retry-After (never a stale read or a write
// it cannot commit); healed, it converges to the majority's log.
func TestPartitionedMinorityRefusesAndConverges(t *testing.T) {
	c := &cut{}
	f := apitest.NewWith(t, apitest.Options{
		API: func(cfg *Config) { cfg.AppendTimeout = 2 * time.Second },
		Chain: func(cfg *chain.Config) {
			if cfg.ID == "node3" {
				cfg.WrapConn = c.wrap
			}
		},
	})
	note := func(node int, nonce uint64) (int, *http.Response) {
		raw, _ := f.Keys["agency1"].NewEntry("note.partition", nonce, time.Now(), []byte(`{}`))
		req := f.Request(t, "agency1", node, "POST", "/v1/ledger/entries", map[string]string{"entry": base64.StdEncoding.EncodeToString(raw)})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp
	}
	if code, _ := note(2, 1); code != 201 {
		t.Fatalf("before the partition: %d", code)
	}
	c.set(true)
	// The majority elects (or keeps) a leader and commits.
	committed := 0
	for i := uint64(2); committed < 20; i++ {
		if code, _ := note(int(i%2), i); code == 201 {
			committed++
		} else if i > 200 {
			t.Fatalf("the majority commits nothing: %d", code)
		}
	}
	// The minority refuses, with Retry-After, within its append timeout.
	start := time.Now()
	code, resp := note(2, 1000)
	if code != 503 || resp.Header.Get("Retry-After") == "" || time.Since(start) > 10*time.Second {
		t.Fatalf("partitioned node answered a write: %d (Retry-After %q) after %s", code, resp.Header.Get("Retry-After"), time.Since(start))
	}
	if code, p := f.Do(t, "auditor", 2, "GET", "/v1/ledger/state", nil, nil); code != 503 {
		t.Fatalf("partitioned node answered a read: %d %+v", code, p)
	}
	// Healed, it catches up: the same log as the majority.
	c.set(false)
	var want StateResponse
	f.Must(t, "auditor", 0, "GET", "/v1/ledger/state", nil, &want)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var got StateResponse
		if code, _ := f.Do(t, "auditor", 2, "GET", "/v1/ledger/state", nil, &got); code == 200 && got.Applied >= want.Applied {
			r0, _ := f.C.Nodes[0].Ledger().Root(want.Applied)
			r2, _ := f.C.Nodes[2].Ledger().Root(want.Applied)
			if r0 != r2 {
				t.Fatal("healed node has another root")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node3 did not converge: %+v vs %+v", got, want)
		}
	}
	if code, _ := note(2, 2000); code != 201 {
		t.Fatalf("healed node refuses writes: %d", code)
	}
}
