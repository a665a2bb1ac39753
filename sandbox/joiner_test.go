package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// memLedger applies entries to one state machine at once, as a
// consortium's ledger would (every node reads the same state).
type memLedger struct {
	mu    sync.Mutex
	m     *policies.Machine
	index uint64
	skew  time.Duration // added to the block time
}

func (l *memLedger) Append(_ context.Context, raw []byte) (chain.Receipt, error) {
	e, err := chain.ParseAndVerify(raw)
	if err != nil {
		return chain.Receipt{}, err
	}
	a := policies.AddressOf(e.PublicKey)
	return l.apply(policies.Entry{Author: a, Actor: a, ActorKey: e.PublicKey, Algorithm: "ed25519", Kind: e.Kind, Time: e.Time, Payload: e.Payload,
		ReplayKey: fmt.Sprintf("entry:%s:%d", a, e.Nonce), ReplayTime: e.Time})
}

func (l *memLedger) apply(e policies.Entry) (chain.Receipt, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.ReplayKey == "" {
		e.ReplayKey, e.ReplayTime = fmt.Sprintf("direct:%d", l.index), time.Now()
	}
	if err := l.m.Apply(e, l.index, time.Now().Add(l.skew)); err != nil {
		return chain.Receipt{}, err
	}
	l.index++
	return chain.Receipt{Index: l.index - 1}, nil
}

func (l *memLedger) WaitApplied(context.Context, uint64) error { return nil }

// testJoinCrypto stands in for mpc.JoinKeys (tested there): keys "sealed"
// by XOR with a digest of the job and recipient, messages "signed" by
// naming the signer. It exercises the joiner's logic, not the crypto.
type testJoinCrypto struct{ me policies.Address }

func (c testJoinCrypto) Public() []byte { h := sha256.Sum256(c.me[:]); return h[:] }
func (c testJoinCrypto) pad(job string, to policies.Address) []byte {
	h := sha256.Sum256(append([]byte(job), to[:]...))
	return h[:]
}
func (c testJoinCrypto) SealJobKey(job string, to policies.Address, k []byte) ([]byte, error) {
	p := c.pad(job, to)
	out := make([]byte, len(k))
	for i := range k {
		out[i] = k[i] ^ p[i]
	}
	return out, nil
}
func (c testJoinCrypto) OpenJobKey(job string, _ policies.Address, s []byte) ([]byte, error) {
	return c.SealJobKey(job, c.me, s)
}
func (c testJoinCrypto) Sign(_ string, v any) ([]byte, error) {
	b, _ := json.Marshal(v)
	return json.Marshal(map[string]any{"signer": c.me, "body": json.RawMessage(b)})
}
func (c testJoinCrypto) Open(_ string, raw []byte, v any) (policies.Address, error) {
	var m struct {
		Signer policies.Address `json:"signer"`
		Body   json.RawMessage  `json:"body"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return policies.Address{}, err
	}
	return m.Signer, json.Unmarshal(m.Body, v)
}

type joinNode struct {
	name  string
	key   *chain.Key
	store *Store
	dir   string
	j     *Joiner
	logs  *bytes.Buffer
}

type joinCluster struct {
	t     *testing.T
	led   *memLedger
	nodes map[string]*joinNode
	keys  map[string]*chain.Key
	// call, when set, stands between the executor and an owner.
	call func(peer string, b []byte, err error) ([]byte, error)
	fix  *joinFixture
	ctx  context.Context
	wg   sync.WaitGroup
}

var logMu sync.Mutex

type lockedBuf struct{ b *bytes.Buffer }

func (w lockedBuf) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return w.b.Write(p)
}

// newJoinCluster: node1 (org tax) holds tax2025, node2 (org health) holds
// benefits2025, node3 (org ops) holds nothing; both policies allow the
// join; bank is an enterprise.
func newJoinCluster(t *testing.T, wait time.Duration) *joinCluster {
	c := newJoinClusterStopped(t, wait)
	c.start()
	return c
}

// start runs every node's joiner.
func (c *joinCluster) start() {
	for _, n := range c.nodes {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); n.j.Run(c.ctx) }()
	}
}

func newJoinClusterStopped(t *testing.T, wait time.Duration) *joinCluster {
	t.Helper()
	c := &joinCluster{t: t, led: &memLedger{m: policies.New()}, nodes: map[string]*joinNode{}, keys: map[string]*chain.Key{}}
	g := policies.Genesis{Consortium: "test", Table: policies.DefaultTable()}
	for _, a := range []struct{ name, role, org string }{
		{"admin", "admin", ""}, {"agency1", "agency", "tax"}, {"agency2", "agency", "health"}, {"bank", "enterprise", "bank"},
		{"node1", "node", "tax"}, {"node2", "node", "health"}, {"node3", "node", "ops"}, {"node4", "node", "ops2"},
	} {
		k, err := chain.GenerateKey(chain.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		c.keys[a.name] = k
		g.Accounts = append(g.Accounts, policies.GenesisAccount{PublicKey: k.PublicKey(), Algorithm: "ed25519", Name: a.name, Org: a.org, Roles: []string{a.role}})
	}
	gb, _ := json.Marshal(g)
	c.must("admin", "admin", policies.KindGenesis, gb, nil)
	// Limits that let the tests' policies make the noise negligible.
	lb, _ := json.Marshal(policies.Limits{MaxEpsilonPerQuery: 1000, MaxEpsilonBudget: 10000, MaxDelta: 1e-3})
	c.must("admin", "admin", policies.KindLimitsSet, lb, nil)
	c.fix = joinFixtures(t, 600, 200, 800, nil)
	csvs := map[string][]byte{"node1": c.fix.taxCSV, "node2": c.fix.benCSV}
	ds := map[string]string{"node1": "tax2025", "node2": "benefits2025"}
	schemas := map[string]policies.Schema{"node1": taxJoinSchema, "node2": benefitJoinSchema}
	agency := map[string]string{"node1": "agency1", "node2": "agency2"}
	ctx, cancel := context.WithCancel(context.Background())
	c.ctx = ctx
	t.Cleanup(func() { cancel(); c.wg.Wait() })
	for _, name := range []string{"node1", "node2", "node3"} {
		dir := filepath.Join(t.TempDir(), name)
		st, err := OpenStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		n := &joinNode{name: name, key: c.keys[name], store: st, dir: dir, logs: &bytes.Buffer{}}
		c.nodes[name] = n
		if csv, ok := csvs[name]; ok {
			s := schemas[name]
			up, err := st.Upload(ctx, bytes.NewReader(csv), &s, nil, (&fakePRF{}).fn)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Bind(up.SHA256, ds[name]); err != nil {
				t.Fatal(err)
			}
			doc, _ := json.Marshal(policies.DatasetDoc{Name: ds[name], Schema: s, SHA256: up.SHA256, Rows: up.Rows})
			c.must(name, agency[name], policies.KindDatasetRegister, doc, nil)
		}
		cfg := JoinerConfig{Name: name, Key: n.key, Nonces: chain.NewNonces(), Crypto: testJoinCrypto{me: policies.Address(n.key.Address())},
			Poll: 20 * time.Millisecond, Wait: wait, Logger: slog.New(slog.NewTextHandler(lockedBuf{n.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		cfg.Call = func(ctx context.Context, peer, service string, body []byte) ([]byte, error) {
			p, ok := c.nodes[peer]
			if !ok {
				return nil, fmt.Errorf("no peer %q", peer)
			}
			b, err := p.j.Serve(ctx, service, body)
			if c.call != nil {
				return c.call(peer, b, err)
			}
			return b, err
		}
		n.j = NewJoiner(cfg, st, c.led, c.led.m)
	}
	for _, d := range []string{"tax2025", "benefits2025"} {
		p := map[string]any{
			"dataset": d, "grantees": []string{"role:enterprise"}, "purpose": "benefit statistics", "modes": []string{"masked"},
			"group_by": []string{"kind", "region"}, "filter": []string{"region"}, "min_group_size": 10,
			"dp":       map[string]any{"epsilon_per_query": 1000.0, "epsilon_budget": 5000.0},
			"approval": map[string]any{"mode": "auto"}, "expires": "2099-01-01T00:00:00Z",
			"join": map[string]any{"datasets": []string{"*"}, "lists": false, "max_rows_per_person": 1},
		}
		if d == "tax2025" {
			p["aggregates"], p["group_by"] = map[string][]string{"income": {"count", "avg", "sum"}}, []string{"region"}
		} else {
			p["aggregates"], p["group_by"], p["filter"] = map[string][]string{"benefit": {"sum", "avg"}}, []string{"kind"}, []string{"kind"}
		}
		b, _ := json.Marshal(p)
		c.must(map[string]string{"tax2025": "node1", "benefits2025": "node2"}[d], map[string]string{"tax2025": "agency1", "benefits2025": "agency2"}[d], policies.KindPolicyPublish, b, nil)
	}
	return c
}

// must applies an act of actor relayed by author.
func (c *joinCluster) must(author, actor, kind string, doc, extra []byte) {
	c.t.Helper()
	if _, err := c.led.apply(policies.Entry{Author: policies.Address(c.keys[author].Address()), Actor: policies.Address(c.keys[actor].Address()),
		Kind: kind, Payload: doc, Extra: extra, Time: time.Now()}); err != nil {
		c.t.Fatalf("%s %s: %v", actor, kind, err)
	}
}

func (c *joinCluster) submit(sql string) string {
	c.t.Helper()
	q, err := ParseQuery(sql)
	if err != nil {
		c.t.Fatal(err)
	}
	doc, _ := json.Marshal(policies.JobDoc{Query: sql, Mode: "masked", Purpose: "benefit statistics"})
	x, _ := json.Marshal(policies.JobExtra{Dataset: q.From, Plan: q.Plan()})
	c.must("node1", "bank", policies.KindJobSubmit, doc, x)
	js := c.led.m.Jobs(nil)
	j := js[len(js)-1]
	if j.Status != policies.JobAuthorised {
		c.t.Fatalf("job %s: %s", j.Status, j.Reason)
	}
	return j.ID
}

func (c *joinCluster) await(id string, within time.Duration) policies.Job {
	c.t.Helper()
	end := time.Now().Add(within)
	for time.Now().Before(end) {
		if j, _ := c.led.m.Job(id); j.Status == policies.JobCompleted || j.Status == policies.JobFailed {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	j, _ := c.led.m.Job(id)
	c.t.Fatalf("job %s still %s", id, j.Status)
	return j
}

const joinerSQL = "SELECT b.kind, COUNT(*), SUM(t.income) FROM tax2025 t JOIN benefits2025 b ON t.person_id = b.person_id GROUP BY b.kind"

// A join end to end between three nodes over a ledger: the owners share
// the job key (sealed to the other owner only), commit their flows and
// ship; the executor (node3) joins, releases and completes; the result is
// the plaintext join's within noise; no raw id and no pseudonym of either
// dataset is on the executor's disk or in its log.
func TestJoinerEndToEnd(t *testing.T) {
	c := newJoinCluster(t, 5*time.Second)
	id := c.submit(joinerSQL)
	j := c.await(id, 20*time.Second)
	if j.Status != policies.JobCompleted {
		t.Fatalf("%s: %s", j.Status, j.Reason)
	}
	n3 := policies.Address(c.keys["node3"].Address())
	if j.Runner != n3 || len(j.Flows) != 2 || len(j.KeySealed) != 1 {
		t.Fatalf("runner %s, %d flows, key sealed to %d", j.Runner, len(j.Flows), len(j.KeySealed))
	}
	if _, ok := j.KeySealed[n3.String()]; ok {
		t.Fatal("the job key was sealed to the executor")
	}
	// The key holder deletes the job key once the job ended.
	holder := c.nodes["node1"]
	if j.KeyFrom == policies.Address(c.keys["node2"].Address()) {
		holder = c.nodes["node2"]
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(holder.j.keyPath(id)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the job key outlived its job")
		}
	}
	b, ok := c.nodes["node3"].store.Result(id)
	if !ok {
		t.Fatal("no result on the executor")
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil || res.Seal() != nil || res.ResultSHA256 != j.ResultHash {
		t.Fatalf("result %v does not match the ledger", err)
	}
	want := map[string][2]float64{}
	for _, pid := range c.fix.ids {
		if k, ok := c.fix.kind[pid]; ok {
			w := want[k]
			want[k] = [2]float64{w[0] + 1, w[1] + c.fix.income[pid]}
		}
	}
	if len(res.Rows) != len(want) {
		t.Fatalf("rows %v, want %v", res.Rows, want)
	}
	for _, r := range res.Rows {
		w := want[r[0].(string)]
		// epsilon 1000 over 2 moments: noise scale 0.002 on counts, 200 on
		// sums of incomes bounded by 100000.
		if math.Abs(r[1].(float64)-w[0]) > 1 || math.Abs(r[2].(float64)-w[1]) > 5000 {
			t.Fatalf("row %v, want %v", r, w)
		}
	}
	// What the executor holds: scan its disk and log.
	secrets := [][]byte{}
	for _, pid := range c.fix.ids {
		secrets = append(secrets, []byte(pid))
	}
	for _, name := range []string{"node1", "node2"} {
		for _, ds := range []string{"tax2025", "benefits2025"} {
			if tab, err := c.nodes[name].store.Table(ds); err == nil {
				ps := tab.Cols["person_id"].Pseudo
				for i := 0; i < tab.Rows; i++ {
					secrets = append(secrets, ps[i*PseudonymSize:(i+1)*PseudonymSize])
				}
			}
		}
	}
	n := c.nodes["node3"]
	logMu.Lock()
	logs := bytes.Clone(n.logs.Bytes())
	logMu.Unlock()
	files := 0
	err := filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				return fmt.Errorf("%s holds %q", path, s)
			}
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("%v (%d files)", err, files)
	}
	for _, s := range secrets {
		if bytes.Contains(logs, s) {
			t.Fatalf("the executor's log holds %q", s)
		}
	}
}

// An owner that does not answer: the executor waits within its deadline,
// then fails the job with the reason, and every budget is refunded.
func TestJoinerOwnerDown(t *testing.T) {
	c := newJoinCluster(t, 500*time.Millisecond)
	c.call = func(peer string, b []byte, err error) ([]byte, error) {
		if peer == "node2" {
			return nil, errors.New("chain: calling node2: connection refused")
		}
		return b, err
	}
	id := c.submit(joinerSQL)
	j := c.await(id, 20*time.Second)
	bank := policies.Address(c.keys["bank"].Address())
	if j.Status != policies.JobFailed || !strings.Contains(j.Reason, "did not ship dataset benefits2025") || !j.Refunded ||
		c.led.m.Spent(bank, "tax2025") != 0 || c.led.m.Spent(bank, "benefits2025") != 0 {
		t.Fatalf("%s %q refunded=%v", j.Status, j.Reason, j.Refunded)
	}
}

// Shipped data that is not what its owner committed is refused by digest.
func TestJoinerRefusesTamperedShipment(t *testing.T) {
	c := newJoinCluster(t, 2*time.Second)
	c.call = func(peer string, b []byte, err error) ([]byte, error) {
		if peer == "node2" && err == nil {
			b = bytes.Replace(b, []byte("housing"), []byte("hous1ng"), 1)
		}
		return b, err
	}
	id := c.submit(joinerSQL)
	j := c.await(id, 20*time.Second)
	if j.Status != policies.JobFailed || !strings.Contains(j.Reason, "is not the") || !j.Refunded {
		t.Fatalf("%s %q", j.Status, j.Reason)
	}
}

// An executor that claimed the job and died: after its lease (block time)
// another executor takes the job over and completes it; the first can no
// longer complete it, so nothing is released twice.
func TestJoinerTakesOverAfterLease(t *testing.T) {
	c := newJoinClusterStopped(t, 5*time.Second)
	id := c.submit(joinerSQL)
	start, _ := json.Marshal(policies.JobResultDoc{Job: id, Node: "node4"})
	n4 := policies.Address(c.keys["node4"].Address())
	c.led.skew = -policies.JoinLease - time.Minute
	if _, err := c.led.apply(policies.Entry{Author: n4, Actor: n4, Kind: policies.KindJobStart, Payload: start, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	c.led.skew = 0
	c.start()
	j := c.await(id, 20*time.Second)
	if j.Status != policies.JobCompleted || j.Runner != policies.Address(c.keys["node3"].Address()) {
		t.Fatalf("%s by %s: %s", j.Status, j.Runner, j.Reason)
	}
	done, _ := json.Marshal(policies.JobResultDoc{Job: id, ResultHash: strings.Repeat("a", 64)})
	if _, err := c.led.apply(policies.Entry{Author: n4, Actor: n4, Kind: policies.KindJobComplete, Payload: done, Time: time.Now()}); !errors.Is(err, policies.ErrConflict) {
		t.Fatalf("the first executor completed the job again: %v", err)
	}
}

func (c testJoinCrypto) SealJobKeyToList(job, list string, _, k []byte) ([]byte, error) {
	return c.SealJobKey(job+"/"+list, policies.Address{}, k)
}
