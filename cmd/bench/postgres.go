package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/datasandbox/datasandbox/sandbox"
)

// pgQuery is the masked engine's benchmark query, in PostgreSQL.
const pgQuery = "SELECT region, COUNT(*), AVG(income) FROM tax GROUP BY region"

// postgresBaseline loads the same 10M generated rows into a throwaway
// PostgreSQL (Debian's postgresql package, started on a Unix socket in a
// temporary directory) and times the same GROUP BY, median of runs.
// It returns rows per second.
func postgresBaseline(ctx context.Context, rows, runs int) (float64, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		return 0, errors.New("no PostgreSQL server (apt-get install postgresql)")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "bench-pg-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	// PostgreSQL refuses to run as root: run it as the postgres user.
	var prefix []string
	if u, _ := user.Current(); u != nil && u.Uid == "0" {
		pg, err := user.Lookup("postgres")
		if err != nil {
			return 0, errors.New("running as root and there is no postgres user")
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return 0, err
		}
		prefix = []string{"runuser", "-u", "postgres", "--"}
	}
	command := func(name string, args ...string) *exec.Cmd {
		full := append(append(append([]string{}, prefix...), filepath.Join(bin, name)), args...)
		return exec.CommandContext(ctx, full[0], full[1:]...)
	}
	data := filepath.Join(dir, "data")
	if out, err := command("initdb", "-D", data, "-A", "trust", "-U", "bench").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("initdb: %v: %s", err, out)
	}
	srv := command("postgres", "-D", data, "-k", dir, "-c", "listen_addresses=", "-p", "55432",
		"-c", "shared_buffers=1GB", "-c", "max_parallel_workers_per_gather=2", "-c", "work_mem=256MB")
	var srvLog bytes.Buffer
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() {
		// runuser does not pass signals on: stop the server with pg_ctl.
		stop := command("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
		if out, err := stop.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "pg_ctl stop: %v: %s\n", err, out)
			srv.Process.Kill()
		}
		srv.Wait()
	}()
	psql := func(stdin io.Reader, args ...string) ([]byte, error) {
		c := command("psql", append([]string{"-h", dir, "-p", "55432", "-U", "bench", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-X", "-q"}, args...)...)
		c.Stdin = stdin
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		err := c.Run()
		return out.Bytes(), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := psql(nil, "-c", "SELECT 1"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("postgres did not start: %s", srvLog.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := psql(nil, "-c", `CREATE TABLE tax (person_id text, age int, sex text, region text, household_size int, income float8, benefits float8, year int)`); err != nil {
		return 0, fmt.Errorf("create: %v: %s", err, out)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sandbox.GenerateDemo(pw, rows, 1)) }()
	if out, err := psql(pr, "-c", "COPY tax FROM STDIN WITH (FORMAT csv, HEADER true)"); err != nil {
		return 0, fmt.Errorf("copy: %v: %s", err, out)
	}
	if out, err := psql(nil, "-c", "VACUUM ANALYZE tax"); err != nil {
		return 0, fmt.Errorf("vacuum: %v: %s", err, out)
	}
	timing := regexp.MustCompile(`Time: ([0-9.]+) ms`)
	var rates []float64
	for i := 0; i <= runs; i++ { // the first run warms the cache
		out, err := psql(nil, "-c", `\timing on`, "-c", pgQuery)
		if err != nil {
			return 0, fmt.Errorf("query: %v: %s", err, out)
		}
		m := timing.FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("no timing in psql output: %s", out)
		}
		ms, _ := strconv.ParseFloat(string(m[1]), 64)
		if i > 0 {
			rates = append(rates, float64(rows)/(ms/1000))
		}
	}
	return median(rates), nil
}
