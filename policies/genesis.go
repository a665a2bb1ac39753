package policies

import (
	"fmt"
	"time"
)

// Genesis is the first entry's document.
type Genesis struct {
	Consortium string              `json:"consortium"`
	Table      map[string][]string `json:"table"`
	Accounts   []GenesisAccount    `json:"accounts"`
	// Limits are the consortium-wide DP limits; absent: DefaultLimits.
	Limits *Limits `json:"limits,omitempty"`
	// PseudonymQuota is how many ids an account of each role may have
	// pseudonymised with the consortium key (DefaultPseudonymQuota when
	// absent).
	PseudonymQuota map[string]int64 `json:"pseudonym_quota,omitempty"`
	// JoinLeaseSeconds is how long a join's runner holds the job without
	// renewing before another executor may take it over (JoinLease when
	// absent; MinJoinLease to MaxJoinLease).
	JoinLeaseSeconds int64 `json:"join_lease_seconds,omitempty"`
}

// GenesisAccount is an account written by genesis.
type GenesisAccount struct {
	PublicKey []byte   `json:"public_key"`
	Algorithm string   `json:"algorithm"`
	Name      string   `json:"name,omitempty"`
	Org       string   `json:"org,omitempty"`
	Roles     []string `json:"roles"`
}

func (s *state) genesis(e Entry, blockTime time.Time) error {
	var g Genesis
	if err := strictUnmarshal(e.Payload, &g); err != nil {
		return fmt.Errorf("%w: genesis: %v", ErrInvalid, err)
	}
	if len(g.Table) == 0 {
		return fmt.Errorf("%w: genesis has no permission table", ErrInvalid)
	}
	for role, perms := range g.Table {
		if err := checkRole(role, perms); err != nil {
			return err
		}
	}
	if g.Limits != nil {
		if err := g.Limits.Validate(); err != nil {
			return err
		}
		l := *g.Limits
		s.Limits = &l
	}
	if err := checkJoinLease(g.JoinLeaseSeconds); err != nil {
		return err
	}
	s.Table = g.Table
	s.Name = g.Consortium
	s.JoinLeaseSeconds = g.JoinLeaseSeconds
	if err := s.pseudonymGenesis(g.PseudonymQuota); err != nil {
		return err
	}
	for _, a := range g.Accounts {
		if err := checkKey(a.PublicKey, a.Algorithm); err != nil {
			return err
		}
		addr := AddressOf(a.PublicKey)
		if _, dup := s.Accounts[addr.String()]; dup {
			return fmt.Errorf("%w: genesis lists account %s twice", ErrInvalid, addr)
		}
		for _, r := range a.Roles {
			if _, ok := g.Table[r]; !ok {
				return fmt.Errorf("%w: genesis account %s has unknown role %q", ErrInvalid, addr, clip(r))
			}
		}
		s.Accounts[addr.String()] = &Account{Address: addr, PublicKey: a.PublicKey, Algorithm: a.Algorithm, Name: a.Name, Org: a.Org, Roles: sortedSet(a.Roles)}
	}
	if !s.can(e.Author, PermGrant) {
		return fmt.Errorf("%w: genesis must be signed by one of its accounts holding %s", ErrInvalid, PermGrant)
	}
	s.Genesis = true
	s.Counts[KindGenesis]++
	s.Used["genesis"] = usedAct{Index: 0, Expiry: blockTime.Add(2 * ReplayWindow)}
	return nil
}
