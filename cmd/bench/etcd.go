package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// etcdBaseline starts a 3-member etcd cluster on loopback and measures put
// throughput with 256 concurrent clients, 64-byte values, the median of
// several runs.
func etcdBaseline(ctx context.Context, runs int) (float64, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return 0, errNoEtcd
	}
	dir, err := os.MkdirTemp("", "bench-etcd-")
	if err != nil {
		return 0, err
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
	for i := 0; i < 3; i++ {
		c := fmt.Sprintf("http://127.0.0.1:%d", clientBase+i)
		p := fmt.Sprintf("http://127.0.0.1:%d", peerBase+i)
		cmd := exec.CommandContext(ctx, bin, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--listen-client-urls", c, "--advertise-client-urls", c, "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
			"--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "bench", "--log-level", "error")
		cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		procs = append(procs, cmd)
	}
	urls := []string{}
	for i := 0; i < 3; i++ {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/v3/kv/put", clientBase+i))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}, Timeout: 10 * time.Second}
	put := func(url string, i int) error {
		body, _ := json.Marshal(map[string]string{
			"key":   base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("k%09d", i))),
			"value": base64.StdEncoding.EncodeToString(make([]byte, 64)),
		})
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("etcd put: %s", resp.Status)
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if put(urls[0], -1) == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("etcd cluster did not come up")
		}
		time.Sleep(200 * time.Millisecond)
	}
	const total, clients = 40000, 256
	var results []float64
	for r := 0; r < runs; r++ {
		var next, failed atomic.Int64
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
					if put(urls[c%3], r*total+i) != nil {
						failed.Add(1)
					}
				}
			}(c)
		}
		wg.Wait()
		if failed.Load() > 0 {
			return 0, fmt.Errorf("%d etcd puts failed", failed.Load())
		}
		results = append(results, float64(total)/time.Since(start).Seconds())
	}
	return median(results), nil
}
