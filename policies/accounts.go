package policies

import (
	"fmt"
	"slices"
	"sort"
)

// Documents of the account kinds.
type (
	RegisterDoc struct {
		PublicKey []byte `json:"public_key"`
		Algorithm string `json:"algorithm"`
		Name      string `json:"name,omitempty"`
	}
	GrantDoc struct {
		Address string `json:"address"`
		Role    string `json:"role"`
		Org     string `json:"org,omitempty"`
	}
	RotateDoc struct {
		PublicKey []byte `json:"public_key"`
	}
	TableDoc struct {
		Role        string   `json:"role"`
		Permissions []string `json:"permissions"`
	}
)

// register adds the actor's own key as a new account (account.register).
func (s *state) register(e Entry) error {
	var d RegisterDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	if err := checkKey(d.PublicKey, d.Algorithm); err != nil {
		return err
	}
	addr := AddressOf(d.PublicKey)
	if addr != e.Actor {
		return fmt.Errorf("%w: the key registered must be the actor's own", ErrInvalid)
	}
	if acc, ok := s.Accounts[addr.String()]; ok && acc.PublicKey != nil {
		return fmt.Errorf("%w: account %s is already registered", ErrConflict, addr)
	}
	acc := edit(s, s.Accounts, addr.String(), newAccount)
	acc.Address = addr
	acc.PublicKey, acc.Algorithm, acc.Name = d.PublicKey, d.Algorithm, d.Name
	return nil
}

// changeRole grants or revokes a role (account.grant, account.revoke).
func (s *state) changeRole(e Entry) error {
	var d GrantDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	addr, err := ParseAddress(d.Address)
	if err != nil {
		return err
	}
	if _, ok := s.Table[d.Role]; !ok {
		return fmt.Errorf("%w: unknown role %q", ErrInvalid, clip(d.Role))
	}
	cur, ok := s.Accounts[addr.String()]
	if e.Kind == KindAccountRevoke {
		if !ok {
			return fmt.Errorf("%w: account %s", ErrUnknownAccount, addr)
		}
		if !contains(cur.Roles, d.Role) {
			return fmt.Errorf("%w: account %s does not hold role %s", ErrConflict, addr, d.Role)
		}
	}
	acc := edit(s, s.Accounts, addr.String(), newAccount)
	acc.Address = addr
	if e.Kind == KindAccountGrant {
		acc.Roles = sortedSet(append(acc.Roles, d.Role))
		if d.Org != "" {
			acc.Org = d.Org
		}
		return nil
	}
	acc.Roles = slices.DeleteFunc(acc.Roles, func(r string) bool { return r == d.Role })
	if s.admins() == 0 {
		return fmt.Errorf("%w: revoking it would leave no account with %s", ErrConflict, PermGrant)
	}
	return nil
}

// rotate replaces the actor's key with one of the same algorithm
// (account.rotate).
func (s *state) rotate(e Entry) error {
	actor := s.Accounts[e.Actor.String()]
	var d RotateDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	if err := checkKey(d.PublicKey, actor.Algorithm); err != nil {
		return err
	}
	edit(s, s.Accounts, e.Actor.String(), newAccount).PublicKey = d.PublicKey
	return nil
}

// setTable sets one role's permissions (table.set); at least one account
// must keep the grant permission.
func (s *state) setTable(e Entry) error {
	var d TableDoc
	if err := decode(e, &d); err != nil {
		return err
	}
	if err := checkRole(d.Role, d.Permissions); err != nil {
		return err
	}
	put(s, s.Table, d.Role, sortedSet(d.Permissions))
	if s.admins() == 0 {
		return fmt.Errorf("%w: this would leave no account with %s", ErrConflict, PermGrant)
	}
	return nil
}

func (s *state) admins() int {
	n := 0
	for _, a := range s.Accounts {
		if a.PublicKey != nil && s.can(a.Address, PermGrant) {
			n++
		}
	}
	return n
}

func checkRole(role string, perms []string) error {
	if !identRE.MatchString(role) {
		return fmt.Errorf("%w: role name %q must match [a-z_][a-z0-9_]*", ErrInvalid, clip(role))
	}
	for _, p := range perms {
		if !contains(knownPermissions, p) {
			return fmt.Errorf("%w: role %s: unknown permission %q", ErrInvalid, role, clip(p))
		}
	}
	return nil
}

// Account key algorithms and their public key sizes: requests are signed
// with RFC 9421 under the account's key, Ed25519 or ML-DSA-65 (FIPS 204).
var keySizes = map[string]int{"ed25519": 32, "ml-dsa-65": 1952}

func checkKey(pub []byte, alg string) error {
	size, ok := keySizes[alg]
	if !ok || len(pub) != size {
		return fmt.Errorf("%w: account keys are ed25519 (32-byte public keys) or ml-dsa-65 (1952 bytes); got %q with %d bytes", ErrInvalid, clip(alg), len(pub))
	}
	return nil
}

func sortedSet(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	j := 0
	for i := range out {
		if i == 0 || out[i] != out[i-1] {
			out[j] = out[i]
			j++
		}
	}
	return out[:j]
}
