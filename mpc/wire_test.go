package mpc

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// wireKey is a node key from a fixed seed, so that messages it seals are
// the same bytes on every run (FuzzOpenMessage's corpus holds some).
func wireKey(t testing.TB) (*chain.Key, *fakeLedger) {
	t.Helper()
	key, err := chain.NewKeyFromSeed(chain.Ed25519, bytes.Repeat([]byte{7}, chain.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	addr := policies.Address(key.Address())
	led := &fakeLedger{accounts: map[policies.Address]policies.Account{addr: {Address: addr, PublicKey: key.PublicKey(), Algorithm: "ed25519", Roles: []string{"node"}}}}
	return key, led
}

// TestWireRoundTrip: every message a party sends, sealed and opened by
// its service, decodes to the value sent, and encodes again to the same
// body; opened under another service it fails (the signature binds the
// service).
func TestWireRoundTrip(t *testing.T) {
	key, led := wireKey(t)
	shares := []sealedShare{{From: "node1", To: "node2", Enc: []byte{1, 2}, CT: []byte{3}}, {From: "node1", To: "node3", Enc: []byte{4}, CT: []byte{5, 6}}}
	cases := []struct {
		name, service string
		msg           any
	}{
		{"round1Resp", svcRound1, &round1Resp{ID: "c1", Node: "node1", HPKE: []byte{1}, CKG: []byte{2, 3}, Galois: [][]byte{{4}, {5, 6}}}},
		{"round2Req", svcRound2, &round2Req{ID: "c1", HPKE: map[string][]byte{"node1": {1}, "node2": {2}}}},
		{"round2Resp", svcRound2, &round2Resp{ID: "c1", Node: "node2", Shares: shares}},
		{"round3Req", svcRound3, &round3Req{ID: "c1", Shares: shares, PK: []byte{9, 9}, Galois: [][]byte{{1}}}},
		{"round3Resp", svcRound3, &round3Resp{ID: "c1", Node: "node3", PK: "ab12", Galois: "cd34"}},
		{"ShareRequest", svcShare, &ShareRequest{Job: "job-1", Ciphertext: []byte{1, 2, 3}, Active: []string{"node1", "node2"}, Positions: []int{0, 7}, PerCell: 2, Runner: "node1"}},
		{"shareResp", svcShare, &shareResp{Job: "job-1", Node: "node2", Share: []byte{8}}},
		{"psRound1Resp", svcPsRound1, &psRound1Resp{ID: "p1", Node: "node1", HPKE: []byte{1}}},
		{"psRound2Req", svcPsRound2, &psRound2Req{ID: "p1", HPKE: map[string][]byte{"node1": {1}}}},
		{"psRound2Resp", svcPsRound2, &psRound2Resp{ID: "p1", Node: "node1", Commitments: [][]byte{{1}, {2}}, Shares: shares}},
		{"psRound3Req", svcPsRound3, &psRound3Req{ID: "p1", Shares: shares, Commitments: [][][]byte{{{1}}, {{2}, {3}}}}},
		{"psRound3Resp", svcPsRound3, &psRound3Resp{ID: "p1", Node: "node2", VerificationKey: []byte{4, 5}}},
		{"EvalRequest", svcPsEval, &EvalRequest{Batch: "b1", Request: []byte{6}}},
		{"evalResp", svcPsEval, &evalResp{Batch: "b1", Node: "node3", Partial: []byte{7}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := seal(key, c.service, c.msg)
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(reflect.TypeOf(c.msg).Elem()).Interface()
			signer, err := open(led, c.service, raw, got)
			if err != nil {
				t.Fatal(err)
			}
			if signer != policies.Address(key.Address()) {
				t.Fatalf("signer %s", signer)
			}
			if !reflect.DeepEqual(got, c.msg) {
				t.Fatalf("opened %+v, sent %+v", got, c.msg)
			}
			var env signed
			if err := json.Unmarshal(raw, &env); err != nil {
				t.Fatal(err)
			}
			again, err := json.Marshal(got)
			if err != nil || !bytes.Equal(again, env.Body) {
				t.Fatalf("re-encoded %s, sent %s (%v)", again, env.Body, err)
			}
			envAgain, err := json.Marshal(env)
			if err != nil || !bytes.Equal(envAgain, raw) {
				t.Fatalf("envelope re-encoded %s, sent %s (%v)", envAgain, raw, err)
			}
			// The same bytes under another service do not open.
			other := svcShare
			if c.service == svcShare {
				other = svcRound1
			}
			if _, err := open(led, other, raw, reflect.New(reflect.TypeOf(c.msg).Elem()).Interface()); err == nil {
				t.Fatalf("a %s message opened as %s", c.service, other)
			}
		})
	}
}

// TestOpenMessageCorpus: FuzzOpenMessage's seed corpus reaches past the
// signature check: its valid message opens, each of the others fails.
func TestOpenMessageCorpus(t *testing.T) {
	_, led := wireKey(t)
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOpenMessage", "*"))
	if err != nil || len(files) < 4 {
		t.Fatalf("corpus of %d files (%v)", len(files), err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, lit, ok := strings.Cut(strings.TrimSpace(string(b)), "\n[]byte(")
			raw, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
			if !ok || err != nil {
				t.Fatalf("not a []byte corpus file: %v", err)
			}
			var req ShareRequest
			_, err = open(led, svcShare, []byte(raw), &req)
			if want := name == "valid-share-request"; (err == nil) != want {
				t.Fatalf("opened: %v, want %v", err, want)
			}
		})
	}
}
