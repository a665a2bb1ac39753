package mpc

import (
	"bytes"
	"testing"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

type hpkeLedger map[policies.Address]policies.Account

func (l hpkeLedger) Account(a policies.Address) (policies.Account, bool) {
	acc, ok := l[a]
	return acc, ok
}
func (l hpkeLedger) Can(policies.Address, string) bool { return true }

// A job key sealed to an owner node opens there, for that job, from that
// sender only; and the HPKE key survives a restart.
func TestJoinKeySealing(t *testing.T) {
	led := hpkeLedger{}
	mk := func(dir string) (*JoinKeys, *chain.Key) {
		k, err := chain.GenerateKey(chain.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		jk, err := NewJoinKeys(dir, k, led)
		if err != nil {
			t.Fatal(err)
		}
		led[policies.Address(k.Address())] = policies.Account{Address: policies.Address(k.Address()), PublicKey: k.PublicKey(), Algorithm: "ed25519", HPKE: jk.Public()}
		return jk, k
	}
	dirB := t.TempDir()
	a, ka := mk(t.TempDir())
	b, kb := mk(dirB)
	c, _ := mk(t.TempDir())
	secret := bytes.Repeat([]byte{7}, 32)
	sealed, err := a.SealJobKey("job-1", policies.Address(kb.Address()), secret)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.OpenJobKey("job-1", policies.Address(ka.Address()), sealed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("%x %v", got, err)
	}
	b2, err := NewJoinKeys(dirB, kb, led)
	if err != nil || !bytes.Equal(b2.Public(), b.Public()) {
		t.Fatal("the HPKE key changed across a restart")
	}
	cases := []struct {
		name string
		open func() ([]byte, error)
	}{
		{"another job", func() ([]byte, error) { return b.OpenJobKey("job-2", policies.Address(ka.Address()), sealed) }},
		{"another recipient", func() ([]byte, error) { return c.OpenJobKey("job-1", policies.Address(ka.Address()), sealed) }},
		{"another sender", func() ([]byte, error) { return b.OpenJobKey("job-1", policies.Address(kb.Address()), sealed) }},
		{"truncated", func() ([]byte, error) { return b.OpenJobKey("job-1", policies.Address(ka.Address()), sealed[:40]) }},
		{"a flipped bit", func() ([]byte, error) {
			x := bytes.Clone(sealed)
			x[len(x)-1] ^= 1
			return b.OpenJobKey("job-1", policies.Address(ka.Address()), x)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := tc.open(); err == nil {
				t.Fatalf("opened: %x", got)
			}
		})
	}
	if _, err := a.SealJobKey("job-1", policies.Address{9}, secret); err == nil {
		t.Fatal("sealed to a node without an HPKE key")
	}
}
