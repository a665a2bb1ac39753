package api_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	. "github.com/datasandbox/datasandbox/api"
	"github.com/datasandbox/datasandbox/api/apitest"
	"github.com/datasandbox/datasandbox/audit"
	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// Every endpoint x every role x (no signature, wrong signature, valid):
// generated from the route table, so a new endpoint cannot be added
// without being covered here.
func TestAccessControlMatrix(t *testing.T) {
	f := apitest.New(t)
	s, err := New(DefaultConfig(), f.C.Nodes[0], f.SMs[0].M, f.C.Keys[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := chain.GenerateKey(chain.Ed25519)
	roles := map[string]string{"admin": "admin", "agency1": "agency", "bank": "enterprise", "auditor": "auditor"}
	table := policies.DefaultTable()
	for _, r := range s.Routes() {
		t.Run(r.Method+" "+r.Path, func(t *testing.T) {
			path := strings.ReplaceAll(r.Path, "{id}", "x")
			body := []byte(nil)
			if r.Method == http.MethodPost {
				body = []byte(`{}`)
			}
			for who, role := range roles {
				send := func(mode string) int {
					req, _ := http.NewRequest(r.Method, f.Srv[0].URL+path, bytes.NewReader(body))
					if body != nil {
						req.Header.Set("Content-Type", "application/json")
					}
					switch mode {
					case "valid":
						k := f.Keys[who]
						audit.SignRequest(req, body, k.Ed25519(), k.Address().String())
					case "wrong":
						audit.SignRequest(req, body, stranger.Ed25519(), f.Keys[who].Address().String())
					}
					code, _ := apitest.Send(t, req, nil)
					return code
				}
				name := r.Method + " " + r.Path + " as " + who
				if r.Public {
					if code := send("none"); code != 200 {
						t.Errorf("%s unsigned: %d, want 200", name, code)
					}
					continue
				}
				if code := send("none"); code != 401 {
					t.Errorf("%s unsigned: %d, want 401", name, code)
				}
				if code := send("wrong"); code != 401 {
					t.Errorf("%s wrongly signed: %d, want 401", name, code)
				}
				permitted := r.Perm == "" || contains(table[role], r.Perm)
				code := send("valid")
				switch {
				case !permitted && code != 403:
					t.Errorf("%s: %d, want 403 (lacks %s)", name, code, r.Perm)
				case permitted && (code == 401 || code == 403):
					t.Errorf("%s: %d, but the role holds what the route needs", name, code)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
