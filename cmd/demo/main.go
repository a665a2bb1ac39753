// Command demo tells the product's story end to end with the real binaries:
// it starts a local consortium (sandboxd dev), acts as its users through
// sandboxctl, verifies the ledger as an auditor, and shuts everything down.
// "make demo" runs it. It exits non-zero if any step fails.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
}

type demo struct {
	bin, dir string
	out      io.Writer
	http     []string
	step     int
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "directory holding sandboxd and sandboxctl")
	dir := fs.String("dir", "", "consortium directory (default: a new temporary one, removed afterwards)")
	keep := fs.Bool("keep", false, "keep the temporary directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d := &demo{bin: *bin, out: out}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "sandbox-demo-")
		if err != nil {
			return err
		}
		if !*keep {
			defer os.RemoveAll(tmp)
		}
		*dir = tmp
	}
	d.dir = *dir
	base, err := freeBase(3)
	if err != nil {
		return err
	}

	d.say("A consortium of three agencies starts: one node each, a Raft-replicated signed ledger")
	logf, err := os.Create(filepath.Join(d.dir, "sandboxd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	srv := exec.Command(filepath.Join(d.bin, "sandboxd"), "dev", "--dir", filepath.Join(d.dir, "consortium"), "--nodes", "3",
		"--http", fmt.Sprintf("127.0.0.1:%d", base), "--raft", fmt.Sprintf("127.0.0.1:%d", base+100))
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		return fmt.Errorf("starting sandboxd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = srv.Process.Kill()
			<-exited
		}
	}()
	for i := 0; i < 3; i++ {
		d.http = append(d.http, fmt.Sprintf("http://127.0.0.1:%d", base+i))
	}
	if err := d.waitHealthy(ctx, exited, 30*time.Second); err != nil {
		return err
	}
	for i := range d.http {
		if err := d.ctl(i, "", "health"); err != nil {
			return err
		}
	}

	keys := filepath.Join(d.dir, "consortium", "keys")
	d.say("Each agency signs an entry with its own key and submits it to its own node; followers forward to the leader")
	for i := 0; i < 3; i++ {
		payload := fmt.Sprintf(`{"agency":"agency%d","note":"dataset catalogue updated"}`, i+1)
		if err := d.ctl(i, filepath.Join(keys, fmt.Sprintf("agency%d.key", i+1)), "ledger", "append", "--kind", "demo.note", "--nonce", "1", "--payload", payload); err != nil {
			return err
		}
	}

	d.say("An attacker replays agency1's nonce with a new entry: the ledger's state machine refuses it")
	err = d.ctl(1, filepath.Join(keys, "agency1.key"), "ledger", "append", "--kind", "demo.note", "--nonce", "1", "--payload", `{"forged":true}`)
	if err == nil {
		return errors.New("the replayed nonce was accepted")
	}
	fmt.Fprintln(d.out, "    (refused, as it must be)")

	d.say("The entries, as any node serves them")
	if err := d.ctl(2, "", "ledger", "entries"); err != nil {
		return err
	}

	d.say("Node 3 signs a checkpoint of the log (C2SP signed note)")
	if err := d.ctl(2, "", "ledger", "checkpoint"); err != nil {
		return err
	}

	trust := filepath.Join(d.dir, "consortium", "trust.vkeys")
	d.say("The enterprise proves entry 0 is in the log, against a checkpoint signed by a trusted node key")
	if err := d.ctl(0, filepath.Join(keys, "enterprise.key"), "ledger", "proof", "--index", "0", "--trust", trust); err != nil {
		return err
	}

	d.say("The auditor downloads the whole ledger and verifies signatures, Merkle root, checkpoint signature, and replays the state")
	report := filepath.Join(d.dir, "report.json")
	if err := d.ctl(1, filepath.Join(keys, "auditor.key"), "ledger", "verify", "--trust", trust, "--out", report, "--state", filepath.Join(d.dir, "auditor-state.json")); err != nil {
		return err
	}

	d.say("The consortium shuts down cleanly")
	_ = srv.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			return fmt.Errorf("sandboxd did not stop cleanly: %w (see %s)", err, logf.Name())
		}
	case <-time.After(20 * time.Second):
		return errors.New("sandboxd did not stop within 20s")
	}
	fmt.Fprintln(d.out, "\ndemo complete: every step held")
	return nil
}

func (d *demo) say(s string) {
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, s)
}

// ctl runs sandboxctl against node i, printing the command and its output.
func (d *demo) ctl(node int, key string, args ...string) error {
	full := []string{"--server", d.http[node]}
	if key != "" {
		full = append(full, "--key", key)
	}
	full = append(full, args...)
	shown := append([]string{"sandboxctl"}, args...)
	who := ""
	if key != "" {
		who = " as " + strings.TrimSuffix(filepath.Base(key), ".key")
	}
	fmt.Fprintf(d.out, "  $ %s   # node%d%s\n", strings.Join(quote(shown), " "), node+1, who)
	cmd := exec.Command(filepath.Join(d.bin, "sandboxctl"), full...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		fmt.Fprintf(d.out, "    %s\n", line)
	}
	return err
}

func quote(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " {}\"'") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func (d *demo) waitHealthy(ctx context.Context, exited chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("sandboxd exited early: %v (see %s)", err, filepath.Join(d.dir, "sandboxd.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		ok := 0
		for _, u := range d.http {
			var h struct{ Status, Leader string }
			resp, err := http.Get(u + "/v1/health")
			if err != nil {
				continue
			}
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Status == "ok" && h.Leader != "" {
				ok++
			}
		}
		if ok == len(d.http) {
			return nil
		}
	}
	return fmt.Errorf("consortium not healthy within %s", timeout)
}

// freeBase finds n consecutive free loopback ports for HTTP and the same
// n at +100 for Raft.
func freeBase(n int) (int, error) {
	for base := 18080; base < 30000; base += 10 {
		ok := true
		for _, p := range []int{base, base + 100} {
			for i := 0; i < n && ok; i++ {
				ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free ports for the demo")
}
