package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/mpc"
	"github.com/datasandbox/datasandbox/mpc/pseudonym"
	"github.com/datasandbox/datasandbox/policies"
	"github.com/datasandbox/datasandbox/sandbox"
)

// A list join from the enterprise's side (CONTRACT.md: job submit --list
// NAME=FILE.csv:COLUMN; DESIGN.md, "Joining across agencies, and with the
// enterprise's own ids"). The file is read here and never sent: its
// distinct ids go out blinded (the consortium's threshold VOPRF, a
// pseudonym batch for the job on the ledger), and then only as per-job
// tags HMAC(k_job, P(id)) to the job's runner, with the further columns of
// the list the query uses. k_job reaches this process sealed to an
// ephemeral key that lives in its memory only.

// listSpec is a parsed --list NAME=FILE.csv:COLUMN.
type listSpec struct{ name, file, column string }

func parseListSpec(v string) (listSpec, error) {
	name, rest, ok := strings.Cut(v, "=")
	i := strings.LastIndex(rest, ":")
	if !ok || i <= 0 || i == len(rest)-1 || name == "" {
		return listSpec{}, fmt.Errorf("--list %q: want NAME=FILE.csv:COLUMN (the table name the query joins, the file, its id column)", v)
	}
	return listSpec{name: name, file: rest[:i], column: rest[i+1:]}, nil
}

// listFile is a list's distinct ids and, per further column the query
// uses, each id's value.
type listFile struct {
	ids  [][]byte
	cols map[string][]string
}

// maxListFile bounds the list file sandboxctl reads (bytes).
const maxListFile = 1 << 30

// readList reads a CSV list with a header: the id column and the further
// columns named. Ids are de-duplicated (a repeated id must repeat its
// further columns too); an empty or malformed id, or none at all, is
// refused with its line.
func readList(r io.Reader, file, column string, further []string) (*listFile, error) {
	cr := csv.NewReader(io.LimitReader(r, maxListFile))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file (want a header line naming column %s, then one id per line)", file, column)
		}
		return nil, fmt.Errorf("%s: line 1: %v", file, err)
	}
	cr.FieldsPerRecord = len(header)
	pos := map[string]int{}
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		pos[strings.ToLower(strings.TrimSpace(h))] = i
	}
	want := append([]string{column}, further...)
	for _, c := range want {
		if _, ok := pos[strings.ToLower(c)]; !ok {
			return nil, fmt.Errorf("%s: line 1: the header (%s) has no column %q", file, strings.Join(header, ","), c)
		}
	}
	out := &listFile{cols: map[string][]string{}}
	first := map[string]int{} // id -> its index in out.ids
	line := 1
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line++
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		id := rec[pos[strings.ToLower(column)]]
		switch {
		case id == "":
			return nil, fmt.Errorf("%s: line %d: empty id in column %s", file, line, column)
		case !utf8.ValidString(id):
			return nil, fmt.Errorf("%s: line %d: the id in column %s is not valid UTF-8", file, line, column)
		case strings.TrimSpace(id) != id:
			return nil, fmt.Errorf("%s: line %d: the id in column %s has leading or trailing spaces (agencies pseudonymise ids exactly as written)", file, line, column)
		}
		if k, dup := first[id]; dup {
			for _, c := range further {
				if v := rec[pos[strings.ToLower(c)]]; v != out.cols[c][k] {
					return nil, fmt.Errorf("%s: line %d: id repeated with %s %q, first given %q", file, line, c, v, out.cols[c][k])
				}
			}
			continue
		}
		first[id] = len(out.ids)
		out.ids = append(out.ids, []byte(id))
		for _, c := range further {
			out.cols[c] = append(out.cols[c], rec[pos[strings.ToLower(c)]])
		}
	}
	if len(out.ids) == 0 {
		return nil, fmt.Errorf("%s: no ids under the header", file)
	}
	return out, nil
}

// prepareList reads the list the query joins as spec.name: the plan names
// its key (which must be spec.column) and its further columns.
func prepareList(query string, spec listSpec) (*listFile, error) {
	_, plan, err := sandbox.DerivePlan(query)
	if err != nil {
		return nil, err
	}
	for _, sd := range plan.Join {
		if sd.Dataset != spec.name {
			continue
		}
		if !strings.EqualFold(sd.Key, spec.column) {
			return nil, fmt.Errorf("--list %s: the query joins %s on its column %s, the list's ids are in column %s", spec.name, spec.name, sd.Key, spec.column)
		}
		f, err := os.Open(spec.file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readList(f, spec.file, spec.column, sd.Columns)
	}
	return nil, fmt.Errorf("--list %s: the query joins no table %s (FROM dataset t JOIN %s a ON t.id_column = a.%s)", spec.name, spec.name, spec.name, spec.column)
}

// listJob is a list join being submitted: the list read, its ephemeral
// key, and what the submission says of it.
type listJob struct {
	file *listFile
	key  *mpc.ListKey
	doc  *policies.ListDoc
}

func newListJob(query, flag string) (*listJob, error) {
	spec, err := parseListSpec(flag)
	if err != nil {
		return nil, err
	}
	lf, err := prepareList(query, spec)
	if err != nil {
		return nil, err
	}
	lk, err := mpc.NewListKey()
	if err != nil {
		return nil, err
	}
	return &listJob{file: lf, key: lk, doc: &policies.ListDoc{Name: spec.name, Size: int64(len(lf.ids)), HPKE: lk.Public()}}, nil
}

// pseudonymiseForJob obtains the consortium pseudonyms of ids for job,
// through the threshold VOPRF (the ids leave this machine blinded only).
// It returns the ceremony's id and the pseudonyms, in the order of ids.
func pseudonymiseForJob(ctx context.Context, c *client.Client, job string, ids [][]byte, batch int) (string, [][]byte, error) {
	var cer policies.PseudonymCeremony
	if err := c.Do(ctx, "GET", "/v1/pseudonyms", nil, &cer); err != nil {
		return "", nil, err
	}
	pc, err := api.PseudonymClient(cer)
	if err != nil {
		return "", nil, err
	}
	doc := policies.PseudonymBatchDoc{Purpose: policies.PurposeJob, Job: job}
	ps, err := pc.PseudonymiseAll(ctx, httpTransport{c}, doc, ids, min(max(batch, 1), pseudonym.MaxBatch), 2)
	return cer.ID, ps, err
}

// shipList does the enterprise's part of a submitted list join: the ids'
// pseudonyms, then, once the job runs and its key is sealed to lk, the
// tags to the runner; again to a new runner that takes the job over,
// until the job ends or timeout. It returns the job as last seen.
func shipList(ctx context.Context, g *globals, c *client.Client, j api.JobResponse, lk *mpc.ListKey, lf *listFile, timeout time.Duration) (api.JobResponse, error) {
	start := time.Now()
	_, ps, err := pseudonymiseForJob(ctx, c, j.Job, lf.ids, 4096)
	if err != nil {
		return j, fmt.Errorf("job %s: pseudonymising the list: %w", j.Job, err)
	}
	fmt.Fprintf(g.stderr, "job %s: %d ids pseudonymised through the consortium in %s\n", j.Job, len(ps), time.Since(start).Round(time.Millisecond))
	deadline := time.Now().Add(timeout)
	shippedTo := ""
	for {
		switch j.Status {
		case policies.JobCompleted, policies.JobFailed, policies.JobRejected:
			return j, nil
		case policies.JobRunning:
			if j.Runner != shippedTo && j.List != nil && len(j.List.Sealed) > 0 && j.KeyFrom != "" {
				if err := sendList(ctx, c, j, lk, lf, ps); err != nil {
					return j, err
				}
				shippedTo = j.Runner
				fmt.Fprintf(g.stderr, "job %s: %d tags shipped to its runner %s (no id, no pseudonym)\n", j.Job, len(ps), j.Runner)
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return j, fmt.Errorf("job %s still %s after %s; its list was not taken by a runner", j.Job, j.Status, timeout)
		}
		w := min(left, 30*time.Second).Round(time.Millisecond)
		if err := c.Do(ctx, "GET", "/v1/jobs/"+j.Job+"?wait="+w.String(), nil, &j); err != nil {
			return j, err
		}
	}
}

// sendList opens the job key, derives the tags and ships them to the
// job's runner: first the commitment (job.list), then the shipment.
func sendList(ctx context.Context, c *client.Client, j api.JobResponse, lk *mpc.ListKey, lf *listFile, ps [][]byte) error {
	from, err := policies.ParseAddress(j.KeyFrom)
	if err != nil {
		return err
	}
	to, err := policies.ParseAddress(j.Runner)
	if err != nil {
		return err
	}
	k, err := lk.Open(j.Job, j.List.Name, from, j.List.Sealed)
	if err != nil {
		return err
	}
	defer clear(k)
	tags, err := sandbox.ListTags(k, ps)
	if err != nil {
		return err
	}
	s, err := sandbox.ShipList(j.Job, *j.List, tags, lf.cols)
	if err != nil {
		return err
	}
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	doc := policies.JobListDoc{Job: j.Job, To: to, Rows: int64(s.Rows), BLAKE3: sandbox.ShipmentDigest(b)}
	if err := c.Do(ctx, "POST", "/v1/jobs/"+j.Job+"/list", doc, nil); err != nil {
		return fmt.Errorf("job %s: committing the list's shipment: %w", j.Job, err)
	}
	if err := c.Do(ctx, "PUT", "/v1/jobs/"+j.Job+"/list", api.ListShipment{Shipment: b}, nil); err != nil {
		return fmt.Errorf("job %s: shipping the list's tags: %w", j.Job, err)
	}
	return nil
}
