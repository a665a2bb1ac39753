package policies

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Policy is an agency's rule for using one dataset (CONTRACT.md).
type Policy struct {
	ID           string              `json:"id,omitempty"` // assigned when committed
	Dataset      string              `json:"dataset"`
	Grantees     []string            `json:"grantees"` // account addresses, "role:R" or "org:O"
	Purpose      string              `json:"purpose"`
	Modes        []string            `json:"modes"`
	Aggregates   map[string][]string `json:"aggregates"`
	GroupBy      []string            `json:"group_by"`
	Filter       []string            `json:"filter"`
	MinGroupSize int                 `json:"min_group_size"`
	Dominance    *Dominance          `json:"dominance,omitempty"`
	DP           DP                  `json:"dp"`
	Approval     Approval            `json:"approval"`
	Expires      time.Time           `json:"expires"`
	// Join says whether, and with what, the dataset may be joined; nil:
	// never (DESIGN.md, "Joining across agencies"; join.go).
	Join    *Join   `json:"join,omitempty"`
	Owner   Address `json:"owner,omitempty"`
	Revoked bool    `json:"revoked,omitempty"`
}

// Dominance is the (n, k) rule: a cell is suppressed when its n largest
// contributors make up more than k of its total.
type Dominance struct {
	N int     `json:"n"`
	K float64 `json:"k"`
}

// DP sets the differential-privacy parameters.
type DP struct {
	EpsilonPerQuery float64 `json:"epsilon_per_query"`
	EpsilonBudget   float64 `json:"epsilon_budget"`
	Delta           float64 `json:"delta"`
	Mechanism       string  `json:"mechanism,omitempty"` // laplace (default) or gaussian
	// SharesBudgetWith names the agency's other datasets about the same
	// people: their populations are merged with this dataset's, so one
	// budget covers them all (budget.go).
	SharesBudgetWith []string `json:"shares_budget_with,omitempty"`
	// MaxIntervalRatio, when > 0, suppresses a released value whose 95%
	// interval is wider than this multiple of the value ("too noisy to
	// release").
	MaxIntervalRatio float64 `json:"max_interval_ratio,omitempty"`
}

// Approval is auto, or manual with m approvals from the owner's agency.
type Approval struct {
	Mode      string `json:"mode"`
	Approvers int    `json:"approvers,omitempty"`
}

// Modes of execution.
const (
	ModeMasked = "masked"
	ModeHE     = "he"
)

// ParsePolicy reads a policy document from untrusted JSON and checks what
// can be checked without the dataset's schema.
func ParsePolicy(b []byte) (*Policy, error) {
	if err := checkExpires(b); err != nil {
		return nil, err
	}
	var p Policy
	if err := strictUnmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: policy: %v", ErrInvalid, err)
	}
	if p.ID != "" || p.Owner != (Address{}) || p.Revoked {
		return nil, fmt.Errorf("%w: policy: id, owner and revoked are set by the ledger", ErrInvalid)
	}
	if err := p.validateShape(); err != nil {
		return nil, err
	}
	return &p, nil
}

// checkExpires explains a malformed expires field in a sentence (the
// JSON decoder would quote Go's time layout).
func checkExpires(b []byte) error {
	var doc struct {
		Expires json.RawMessage `json:"expires"`
	}
	if json.Unmarshal(b, &doc) != nil || doc.Expires == nil {
		return nil // the strict decoding says what is wrong
	}
	var v string
	if json.Unmarshal(doc.Expires, &v) == nil {
		if _, err := time.Parse(time.RFC3339, v); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: policy: expires must be a date and time in RFC 3339 form, such as \"2027-12-31T00:00:00Z\", not %s", ErrInvalid, clip(string(doc.Expires)))
}

func (p *Policy) validateShape() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: policy: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if p.Dataset == "" {
		return bad("dataset is required")
	}
	if len(p.Grantees) == 0 {
		return bad("grantees must name at least one account, role:R or org:O")
	}
	for _, g := range p.Grantees {
		if _, _, err := parseGrantee(g); err != nil {
			return bad("%v", err)
		}
	}
	if strings.TrimSpace(p.Purpose) == "" {
		return bad("purpose is required")
	}
	if len(p.Modes) == 0 {
		return bad("modes must list masked and/or he")
	}
	for _, m := range p.Modes {
		if m != ModeMasked && m != ModeHE {
			return bad("unknown mode %q (masked or he)", clip(m))
		}
	}
	if len(p.Aggregates) == 0 {
		return bad("aggregates must allow at least one column")
	}
	for col, fns := range p.Aggregates {
		if len(fns) == 0 {
			return bad("aggregates for %q is empty", clip(col))
		}
		for _, f := range fns {
			if !contains(aggregates, lower(f)) {
				return bad("unknown aggregate %q for %q", clip(f), clip(col))
			}
		}
	}
	if p.MinGroupSize < 1 {
		return bad("min_group_size must be at least 1")
	}
	if d := p.Dominance; d != nil && (d.N < 1 || !(d.K > 0 && d.K <= 1)) {
		return bad("dominance needs n >= 1 and 0 < k <= 1")
	}
	if p.Join != nil {
		if err := p.Join.validate(); err != nil {
			return err
		}
	}
	dp := p.DP
	switch {
	case !(dp.EpsilonPerQuery > 0) || math.IsInf(dp.EpsilonPerQuery, 0):
		return bad("dp.epsilon_per_query must be > 0")
	case !(dp.EpsilonBudget >= dp.EpsilonPerQuery) || math.IsInf(dp.EpsilonBudget, 0):
		return bad("dp.epsilon_budget must be at least dp.epsilon_per_query")
	case !(dp.Delta >= 0 && dp.Delta < 1):
		return bad("dp.delta must be in [0, 1)")
	case !(dp.MaxIntervalRatio >= 0) || math.IsInf(dp.MaxIntervalRatio, 0):
		return bad("dp.max_interval_ratio must be a number >= 0 (0: no suppression of noisy values)")
	}
	for _, d := range dp.SharesBudgetWith {
		if d == p.Dataset {
			return bad("dp.shares_budget_with names the policy's own dataset %q", d)
		}
	}
	switch dp.Mechanism {
	case "", "laplace":
	case "gaussian":
		if dp.Delta == 0 {
			return bad("dp.mechanism gaussian needs dp.delta > 0")
		}
	default:
		return bad("dp.mechanism must be laplace or gaussian")
	}
	switch p.Approval.Mode {
	case "auto":
		if p.Approval.Approvers != 0 {
			return bad("approval auto takes no approvers")
		}
	case "manual":
		if p.Approval.Approvers < 1 {
			return bad("approval manual needs approvers >= 1")
		}
	default:
		return bad("approval.mode must be auto or manual")
	}
	if p.Expires.IsZero() {
		return bad("expires is required (RFC 3339)")
	}
	if j := p.Join; j != nil && contains(j.Datasets, p.Dataset) {
		return bad("join.datasets: %q is the policy's own dataset (self-joins are never run)", p.Dataset)
	}
	return nil
}

// sameTerms reports whether two policies say the same thing (whoever
// published them, whenever).
func sameTerms(a, b *Policy) bool {
	x, y := *a, *b
	for _, p := range []*Policy{&x, &y} {
		p.ID, p.Owner, p.Revoked = "", Address{}, false
		p.Expires = p.Expires.UTC()
	}
	jx, errx := json.Marshal(x)
	jy, erry := json.Marshal(y)
	return errx == nil && erry == nil && string(jx) == string(jy)
}

// inForce returns the id of a policy in force (not revoked) with the same
// terms as p, or "" (the smallest id, should a ledger hold several).
func inForce(policies map[string]*Policy, p *Policy) string {
	id := ""
	for k, q := range policies {
		if !q.Revoked && sameTerms(q, p) && (id == "" || k < id) {
			id = k
		}
	}
	return id
}

// validateAgainst checks the policy against the dataset's schema at time now.
func (p *Policy) validateAgainst(s *Schema, now time.Time) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: policy: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if !p.Expires.After(now) {
		return bad("expired at %s", p.Expires.UTC().Format(time.RFC3339))
	}
	// Joining datasets matches consortium pseudonyms; a lists-only join
	// (the enterprise's own ids, issue 17) is judged where lists run.
	if p.Join != nil && len(p.Join.Datasets) > 0 && JoinKey(s) == "" {
		return bad("join needs a dataset whose identifier column has consortium pseudonyms (\"pseudonym\": \"consortium\")")
	}
	cols := make([]string, 0, len(p.Aggregates))
	for c := range p.Aggregates {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	for _, name := range cols {
		if name == "*" {
			for _, f := range p.Aggregates[name] {
				if lower(f) != "count" {
					return bad("only count applies to *")
				}
			}
			continue
		}
		c, ok := s.Column(name)
		if !ok {
			return bad("unknown column %q in aggregates", clip(name))
		}
		allowed := allowedAggregates(c)
		for _, f := range p.Aggregates[name] {
			if !contains(allowed, lower(f)) {
				return bad("aggregate %s not allowed for %s column %q", lower(f), c.Class, name)
			}
		}
	}
	for _, list := range []struct {
		what  string
		names []string
	}{{"group_by", p.GroupBy}, {"filter", p.Filter}} {
		for _, name := range list.names {
			c, ok := s.Column(name)
			if !ok {
				return bad("unknown column %q in %s", clip(name), list.what)
			}
			if c.Class == Identifier || c.Class == Sensitive {
				return bad("%s column %q may not be used in %s", c.Class, name, list.what)
			}
		}
	}
	return nil
}

// parseGrantee reads "role:R", "org:O" or a 40-hex address.
func parseGrantee(g string) (kind, value string, err error) {
	if r, ok := strings.CutPrefix(g, "role:"); ok && r != "" {
		return "role", r, nil
	}
	if o, ok := strings.CutPrefix(g, "org:"); ok && o != "" {
		return "org", o, nil
	}
	if _, err := ParseAddress(g); err == nil {
		return "account", lower(g), nil
	}
	return "", "", fmt.Errorf("grantee %q is not an address, role:R or org:O", clip(g))
}
