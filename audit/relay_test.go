package audit

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

type relayWorld struct {
	t                 *testing.T
	sm                StateMachine
	admin, bank, node *chain.Key
	shop              *chain.Key
	index             uint64
}

func newRelayWorld(t *testing.T) *relayWorld {
	t.Helper()
	w := &relayWorld{t: t, sm: NewStateMachine()}
	w.admin, _ = chain.GenerateKey(chain.Ed25519)
	w.bank, _ = chain.GenerateKey(chain.Ed25519)
	w.node, _ = chain.GenerateKey(chain.Ed25519)
	w.shop, _ = chain.GenerateKey(chain.Ed25519)
	g := policies.Genesis{Table: policies.DefaultTable(), Accounts: []policies.GenesisAccount{
		{PublicKey: w.admin.PublicKey(), Algorithm: "ed25519", Roles: []string{"admin"}},
		{PublicKey: w.bank.PublicKey(), Algorithm: "ed25519", Org: "bank", Roles: []string{"enterprise"}},
		{PublicKey: w.node.PublicKey(), Algorithm: "ed25519", Roles: []string{"node"}},
		{PublicKey: w.shop.PublicKey(), Algorithm: "ed25519", Org: "shop", Roles: []string{"enterprise"}},
	}}
	raw, err := GenesisEntry(w.admin, g, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w.apply(raw)
	return w
}

func (w *relayWorld) apply(raw []byte) error {
	e, err := chain.ParseAndVerify(raw)
	if err != nil {
		w.t.Fatal(err)
	}
	err = w.sm.Apply(e, w.index, time.Now())
	if err == nil {
		w.index++
	}
	return err
}

// signed makes a request signed by k, as a client would send it.
func signed(t *testing.T, k *chain.Key, method, url string, body []byte) *http.Request {
	t.Helper()
	r, _ := http.NewRequest(method, url, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if err := SignRequest(r, body, k.Ed25519(), k.Address().String()); err != nil {
		t.Fatal(err)
	}
	return r
}

// relayEntry wraps a request in an entry signed by author.
func (w *relayWorld) relayEntry(author *chain.Key, kind, actor string, r *http.Request, body []byte, extra string) []byte {
	w.t.Helper()
	rel := Relay{Actor: actor, Request: CaptureRequest(r, r.URL.String(), body)}
	if extra != "" {
		rel.Extra = []byte(extra)
	}
	p, _ := RelayPayload(rel)
	raw, err := author.NewEntry(kind, uint64(time.Now().UnixNano()), time.Now(), p)
	if err != nil {
		w.t.Fatal(err)
	}
	return raw
}

const jobJSON = `{"query":"SELECT COUNT(*) FROM t","mode":"masked","purpose":"p"}`
const jobExtra = `{"dataset":"t","plan":{"aggregates":[{"func":"count","columns":["*"]}]}}`

func TestRelayedRequestsAreCheckedByEveryNode(t *testing.T) {
	w := newRelayWorld(t)
	body := []byte(jobJSON)
	url := "http://node1.example:8080/v1/jobs"
	bank := w.bank.Address().String()

	// The honest relay is accepted (the job is recorded, rejected by policy
	// since there is no dataset: what matters is that it is applied).
	r := signed(t, w.bank, "POST", url, body)
	if err := w.apply(w.relayEntry(w.node, policies.KindJobSubmit, bank, r, body, jobExtra)); err != nil {
		t.Fatalf("honest relay: %v", err)
	}
	cases := []struct {
		name string
		raw  func() []byte
		want error
	}{
		{"the same request again", func() []byte {
			return w.relayEntry(w.node, policies.KindJobSubmit, bank, r, body, jobExtra)
		}, policies.ErrReplay},
		{"node alters the body", func() []byte {
			r := signed(t, w.bank, "POST", url, body)
			return w.relayEntry(w.node, policies.KindJobSubmit, bank, r, []byte(strings.Replace(jobJSON, "COUNT(*)", "SUM(x)", 1)), jobExtra)
		}, policies.ErrForbidden},
		{"node relays it as another kind", func() []byte {
			r := signed(t, w.bank, "POST", url, body)
			return w.relayEntry(w.node, policies.KindPolicyPublish, bank, r, body, "")
		}, policies.ErrInvalid},
		{"node claims another actor", func() []byte {
			r := signed(t, w.bank, "POST", url, body)
			return w.relayEntry(w.node, policies.KindJobSubmit, w.admin.Address().String(), r, body, jobExtra)
		}, policies.ErrForbidden},
		{"relay by a non-node", func() []byte {
			r := signed(t, w.bank, "POST", url, body)
			return w.relayEntry(w.shop, policies.KindJobSubmit, bank, r, body, jobExtra)
		}, policies.ErrForbidden},
		{"forged signature", func() []byte {
			r := signed(t, w.bank, "POST", url, body)
			sig := []byte(r.Header.Get("Signature"))
			sig[10] ^= 1
			r.Header.Set("Signature", string(sig))
			return w.relayEntry(w.node, policies.KindJobSubmit, bank, r, body, jobExtra)
		}, policies.ErrForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := w.sm.M.StateHash()
			err := w.apply(c.raw())
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if w.sm.M.StateHash() != before {
				t.Fatal("a refused entry changed the state")
			}
		})
	}
}

func TestSignatureCreated(t *testing.T) {
	got, err := SignatureCreated(`sig1=("@method");created=1700000000;keyid="x"`)
	if err != nil || got.Unix() != 1700000000 {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := SignatureCreated(`sig1=("@method");keyid="x"`); err == nil {
		t.Fatal("missing created accepted")
	}
}

func FuzzVerifyRequest(f *testing.F) {
	k, _ := chain.NewKeyFromSeed(chain.Ed25519, make([]byte, 32))
	r, _ := http.NewRequest("POST", "http://h/v1/jobs", strings.NewReader("{}"))
	SignRequest(r, []byte("{}"), k.Ed25519(), k.Address().String())
	f.Add(r.Header.Get("Signature-Input"), r.Header.Get("Signature"), r.Header.Get("Content-Digest"), []byte("{}"))
	f.Add(`sig1=();created=1`, `sig1=:AA==:`, ``, []byte(nil))
	addr := policies.Address(k.Address())
	f.Fuzz(func(t *testing.T, input, sig, digest string, body []byte) {
		r, err := http.NewRequest("POST", "http://h/v1/jobs", bytes.NewReader(body))
		if err != nil {
			return
		}
		r.Header.Set("Signature-Input", input)
		r.Header.Set("Signature", sig)
		r.Header.Set("Content-Digest", digest)
		if _, err := VerifyRequest(r, body, addr, k.PublicKey()); err == nil {
			// Only a real signature by k over this request may verify.
			if !strings.Contains(input, k.Address().String()) {
				t.Fatalf("verified without the key's keyid: %q", input)
			}
		}
		_, _ = SignatureCreated(input)
	})
}
