package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdResult is what "peers etcd" prints.
type etcdResult struct {
	Version    string  `json:"version"`
	PutsPerSec float64 `json:"puts_per_s"`
	Runs       int     `json:"runs"`
	Note       string  `json:"note"`
}

// etcdPeer starts a 3-member etcd cluster on loopback (Debian's
// etcd-server) and measures put throughput through etcd's native Go
// client: clients concurrent goroutines, each put a 64-byte value acknowledged by
// a quorum (etcd's default durability: fsync on every member), over three
// clients, the median of runs. With atLeader the three clients all talk to
// the leader, as the ledger's BenchmarkClusterAppend writes to its leader;
// otherwise one talks to each member and followers forward their puts.
func etcdPeer(ctx context.Context, runs, total, clients int, atLeader bool) (*etcdResult, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, errors.New("no etcd binary: as root, apt-get install etcd-server (make bench does)")
	}
	version := "?"
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		fmt.Sscanf(string(out), "etcd Version: %s", &version)
	}
	dir, err := os.MkdirTemp("", "bench-etcd-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	const clientBase, peerBase = 23790, 23890
	cluster := ""
	for i := 0; i < 3; i++ {
		if i > 0 {
			cluster += ","
		}
		cluster += fmt.Sprintf("m%d=http://127.0.0.1:%d", i, peerBase+i)
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	var endpoints []string
	for i := 0; i < 3; i++ {
		c := fmt.Sprintf("http://127.0.0.1:%d", clientBase+i)
		p := fmt.Sprintf("http://127.0.0.1:%d", peerBase+i)
		cmd := exec.CommandContext(ctx, bin, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--listen-client-urls", c, "--advertise-client-urls", c, "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
			"--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "bench", "--log-level", "error")
		cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		procs = append(procs, cmd)
		endpoints = append(endpoints, c)
	}
	// One client per member, as a load generator spreading over the
	// cluster would have; each multiplexes its goroutines over gRPC.
	var cls []*clientv3.Client
	defer func() {
		for _, c := range cls {
			c.Close()
		}
	}()
	for _, ep := range endpoints {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, err
		}
		cls = append(cls, c)
	}
	value := string(make([]byte, 64))
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cls[0].Put(cctx, "warmup", value)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("etcd cluster did not come up: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	where := "one client per member"
	if atLeader {
		leader := -1
		for i, c := range cls {
			st, err := c.Status(ctx, endpoints[i])
			if err != nil {
				return nil, fmt.Errorf("etcd status of %s: %v", endpoints[i], err)
			}
			if st.Header.MemberId == st.Leader {
				leader = i
			}
		}
		if leader < 0 {
			return nil, errors.New("etcd: no member says it leads")
		}
		for i := range cls {
			if i == leader {
				continue
			}
			cls[i].Close()
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoints[leader]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return nil, err
			}
			cls[i] = c
		}
		where = "three clients, all to the leader (as the ledger's writes)"
	}
	var rates []float64
	for r := 0; r < runs; r++ {
		var next, failed atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for {
					i := int(next.Add(1))
					if i > total {
						return
					}
					pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, err := cls[c%len(cls)].Put(pctx, fmt.Sprintf("k%09d", r*total+i), value)
					cancel()
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				}
			}(c)
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			return nil, fmt.Errorf("%d etcd puts failed, first: %v", n, firstErr.Load())
		}
		rates = append(rates, float64(total)/time.Since(start).Seconds())
	}
	return &etcdResult{Version: version, PutsPerSec: median(rates), Runs: runs,
		Note: fmt.Sprintf("etcd %s, 3 members on loopback, %d concurrent puts of 64 bytes through the native Go client (gRPC), %s", version, clients, where)}, nil
}
