package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// lockedBuffer collects the consortium's log from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// An enterprise's list joined with an agency's dataset on a real 3-node dev
// consortium, through the sandboxctl binary: the result equals the
// plaintext semi-join within the DP noise; the ledger records the list's
// size and its shipment (never its ids); `audit access` shows the join;
// no id of the list is on any node's disk (ledger included) or in the
// consortium's debug log; a dataset whose policy allows no list is refused
// before the ledger.
// listEnv is a dev consortium with agency1's tax records of people
// listID(0..rows-1) on node1 (income 100·(i%50)) as the datasets named:
// taxl's policy lets lists join, others' do not; and a built sandboxctl.
type listEnv struct {
	ctx      context.Context
	dir      string
	ctl      string
	basePort int
	logs     *lockedBuffer
	stop     func()
}

func listID(i int) string { return fmt.Sprintf("4401011985%08d", i) }

func (e *listEnv) url(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", e.basePort+i) }
func (e *listEnv) keyFile(name string) string {
	return filepath.Join(e.dir, "keys", name+".key")
}

func (e *listEnv) load(name string) *chain.Key {
	k, err := chain.LoadKeyFile(e.keyFile(name))
	if err != nil {
		panic(err)
	}
	return k
}

// sandboxctl runs the enterprise's sandboxctl against node1.
func (e *listEnv) sandboxctl(args ...string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(e.ctx, e.ctl, append([]string{"--server", e.url(0), "--key", e.keyFile("enterprise")}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%v: %s", err, stderr.String())
	}
	return out, stderr.Bytes(), err
}

func newListEnv(tb testing.TB, rows int, names ...string) *listEnv {
	tb.Helper()
	bin := tb.TempDir()
	if out, err := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "../sandboxctl").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	e := &listEnv{ctl: filepath.Join(bin, "sandboxctl"), dir: filepath.Join(tb.TempDir(), "dev"), logs: &lockedBuffer{}}
	e.basePort = freeBase(tb)
	stopDev := startDevLogs(tb, e.dir, e.basePort, e.logs, "debug")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	e.ctx = ctx
	e.stop = func() {
		cancel()
		if err := stopDev(); err != nil {
			tb.Error(err)
		}
	}
	schema := policies.Schema{Columns: []policies.Column{
		{Name: "person_id", Type: policies.TypeString, Class: policies.Identifier, Pseudonym: policies.PseudonymConsortium},
		{Name: "income", Type: policies.TypeFloat, Class: policies.Sensitive, Bounds: []float64{0, 10000}}}}
	agency := e.load("agency1")
	var csv bytes.Buffer
	csv.WriteString("person_id,income\n")
	for i := range rows {
		fmt.Fprintf(&csv, "%s,%d\n", listID(i), 100*(i%50))
	}
	for _, name := range names {
		sb, _ := json.Marshal(schema)
		var up api.UploadResponse
		if err := signedCall(ctx, agency, "POST", e.url(0)+"/v1/uploads?dataset="+name+"&schema="+base64.RawURLEncoding.EncodeToString(sb), "text/csv", csv.Bytes(), &up); err != nil {
			tb.Fatal(err)
		}
		reg, _ := json.Marshal(policies.DatasetDoc{Name: name, Schema: schema, SHA256: up.SHA256, Rows: up.Rows})
		if err := signedCall(ctx, agency, "POST", e.url(0)+"/v1/datasets", "application/json", reg, nil); err != nil {
			tb.Fatal(err)
		}
		join := map[string]any{"datasets": []string{"*"}, "lists": name == "taxl", "max_rows_per_person": 1}
		pb, _ := json.Marshal(map[string]any{"dataset": name, "grantees": []string{"role:enterprise"}, "purpose": "credit risk statistics", "modes": []string{"masked"},
			"aggregates": map[string][]string{"income": {"count", "avg", "sum"}}, "min_group_size": 10,
			"dp": map[string]any{"epsilon_per_query": 1.0, "epsilon_budget": 5.0}, "approval": map[string]any{"mode": "auto"},
			"expires": "2099-01-01T00:00:00Z", "join": join})
		if err := signedCall(ctx, agency, "POST", e.url(0)+"/v1/policies", "application/json", pb, nil); err != nil {
			tb.Fatal(err)
		}
	}
	return e
}

func TestDevListJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sandboxctl and runs a dev consortium")
	}
	e := newListEnv(t, 600, "taxl", "taxn")
	defer e.stop()
	ctx, dir, url, load, id, logs := e.ctx, e.dir, e.url, e.load, listID, e.logs

	// The list: every second tax person up to 400, and 150 people the
	// agency does not hold (which must reach no node); a branch each;
	// duplicates de-duplicated by sandboxctl.
	var list bytes.Buffer
	list.WriteString("id,branch,note\n")
	var listIDs, outside []string
	want := map[string][2]float64{} // branch -> people, income sum
	for i := 0; i < 400; i += 2 {
		b := []string{"north", "south"}[(i/2)%2]
		fmt.Fprintf(&list, "%s,%s,x\n", id(i), b)
		listIDs = append(listIDs, id(i))
		w := want[b]
		want[b] = [2]float64{w[0] + 1, w[1] + float64(100*(i%50))}
	}
	for i := range 150 {
		o := fmt.Sprintf("9901012000%08d", i)
		fmt.Fprintf(&list, "%s,%s,x\n", o, []string{"north", "south"}[i%2])
		outside = append(outside, o)
	}
	fmt.Fprintf(&list, "%s,%s,x\n", id(0), "north") // a repeat
	listFile := filepath.Join(t.TempDir(), "applicants.csv")
	if err := os.WriteFile(listFile, list.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sandboxctl := func(args ...string) ([]byte, error) {
		out, _, err := e.sandboxctl(args...)
		return out, err
	}
	size := func() uint64 {
		h, err := getHealth(url(0))
		if err != nil {
			t.Fatal(err)
		}
		return h.LedgerSize
	}

	t.Run("policy without lists is refused before the ledger", func(t *testing.T) {
		before := size()
		out, err := sandboxctl("job", "submit", "--purpose", "credit risk statistics", "--list", "applicants="+listFile+":id",
			"--query", "SELECT COUNT(*) FROM taxn t JOIN applicants a ON t.person_id = a.id")
		if err == nil || !strings.Contains(err.Error(), "no policy of dataset taxn allows joining an enterprise's id list (join.lists)") {
			t.Fatalf("got %v: %s", err, out)
		}
		if after := size(); after != before {
			t.Fatalf("ledger grew from %d to %d", before, after)
		}
	})

	var res struct {
		Job        string  `json:"job"`
		Rows       [][]any `json:"rows"`
		Suppressed int     `json:"suppressed"`
	}
	t.Run("list join", func(t *testing.T) {
		out, err := sandboxctl("--json", "job", "submit", "--purpose", "credit risk statistics", "--wait", "--list", "applicants="+listFile+":id",
			"--query", "SELECT a.branch, COUNT(*), AVG(t.income) FROM taxl t JOIN applicants a ON t.person_id = a.id GROUP BY a.branch")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if len(res.Rows) != 2 {
			t.Fatalf("rows %v", res.Rows)
		}
		for _, r := range res.Rows {
			w := want[r[0].(string)]
			// epsilon 1 over 4 draws (count, avg's two, the threshold):
			// the count's Laplace scale is 4; 10 scales.
			if d := r[1].(float64) - w[0]; d > 40 || d < -40 {
				t.Fatalf("row %v, want %v people", r, w)
			}
		}
	})

	t.Run("the ledger and audit access", func(t *testing.T) {
		var job api.JobResponse
		if err := signedCall(ctx, load("enterprise"), "GET", url(1)+"/v1/jobs/"+res.Job, "", nil, &job); err != nil {
			t.Fatal(err)
		}
		if job.List == nil || job.List.Size != int64(len(listIDs)+len(outside)) || job.List.Name != "applicants" {
			t.Fatalf("job's list %+v", job.List)
		}
		var access struct {
			Access []api.JobResponse `json:"access"`
		}
		if err := signedCall(ctx, load("auditor"), "GET", url(2)+"/v1/audit/access?dataset=taxl", "", nil, &access); err != nil {
			t.Fatal(err)
		}
		if len(access.Access) != 1 || len(access.Access[0].Flows) != 2 || access.Access[0].List == nil {
			t.Fatalf("access %+v", access.Access)
		}
		f := access.Access[0].Flows[1]
		if f.Dataset != "applicants" || f.Rows != int64(len(listIDs)+len(outside)) || f.To.String() != access.Access[0].Runner || f.From != policies.Address(load("enterprise").Address()) {
			t.Fatalf("list flow %+v", f)
		}
	})

	t.Run("no list id on any node's disk or in the log", func(t *testing.T) {
		check := func(where string, b []byte, ids []string) {
			for _, x := range ids {
				if bytes.Contains(b, []byte(x)) {
					t.Fatalf("%s holds list id %s", where, x)
				}
			}
		}
		check("the consortium's log", logs.Bytes(), append(append([]string(nil), listIDs...), outside...))
		if len(logs.Bytes()) < 1000 {
			t.Fatalf("the debug log holds %d bytes only", len(logs.Bytes()))
		}
		for _, node := range []string{"node1", "node2", "node3"} {
			ids := append([]string(nil), outside...)
			if node != "node1" { // node1 holds taxl: its own people's ids
				ids = append(ids, listIDs...)
			}
			err := filepath.WalkDir(filepath.Join(dir, "nodes", node), func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				check(path, b, ids)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

var pseudonymisedIn = regexp.MustCompile(`ids pseudonymised through the consortium in (\S+)\n`)

var benchListIDs = flag.Int("list-ids", 100_000, "distinct ids of the list in BenchmarkDevListJoin")

// BenchmarkDevListJoin is a list join of -list-ids ids end to end on a dev
// consortium, through the sandboxctl binary, against a dataset of as many
// rows (half the list in it): submission, the ids' pseudonyms through the
// threshold VOPRF, the job key, tags shipped to the runner, the semi-join
// and the result. It reports the seconds of the whole command and the
// list's ids per second.
func BenchmarkDevListJoin(b *testing.B) {
	m := *benchListIDs
	e := newListEnv(b, m, "taxl")
	defer e.stop()
	var list bytes.Buffer
	list.WriteString("id,branch\n")
	for i := range m {
		fmt.Fprintf(&list, "%s,%s\n", listID(m/2+i), []string{"east", "north", "south"}[i%3])
	}
	file := filepath.Join(b.TempDir(), "applicants.csv")
	if err := os.WriteFile(file, list.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	var voprf time.Duration
	for range b.N {
		out, stderr, err := e.sandboxctl("--json", "job", "submit", "--purpose", "credit risk statistics", "--wait", "--list", "applicants="+file+":id",
			"--query", "SELECT a.branch, COUNT(*), AVG(t.income) FROM taxl t JOIN applicants a ON t.person_id = a.id GROUP BY a.branch")
		if err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		var res struct{ Rows [][]any }
		if err := json.Unmarshal(out, &res); err != nil || len(res.Rows) != 3 {
			b.Fatalf("%v: %s", err, out)
		}
		// sandboxctl says how long the ids' pseudonyms took.
		if m := pseudonymisedIn.FindSubmatch(stderr); m != nil {
			d, err := time.ParseDuration(string(m[1]))
			if err != nil {
				b.Fatal(err)
			}
			voprf += d
		}
	}
	el := time.Since(start)
	b.ReportMetric(el.Seconds()/float64(b.N), "s/op")
	b.ReportMetric(float64(m*b.N)/el.Seconds(), "ids/s")
	b.ReportMetric(voprf.Seconds()/float64(b.N), "voprf-s/op")
}
