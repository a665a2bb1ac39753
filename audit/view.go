package audit

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/datasandbox/datasandbox/chain"
	"github.com/datasandbox/datasandbox/policies"
)

// View is what a verified ledger shows people: the report's findings with
// the replayed state's names, budgets and history beside them. The HTML
// report (WriteHTML) renders it; the console shows that report.
type View struct {
	Report     *Report
	Checkpoint *CheckpointView
	Accounts   []AccountView
	Datasets   []DatasetView
	Policies   []policies.Policy
	Jobs       []JobView
	Budgets    []BudgetView
	// Populations are the privacy budgets as the state machine keeps them:
	// each organisation's spending on each population of data subjects
	// (policies/budget.go), against the largest budget a policy on it
	// allows.
	Populations []PopulationView
	HE          *policies.HECeremony
	Pseudonym   *policies.PseudonymCeremony
	Quotas      []QuotaView // accounts that had ids pseudonymised
	Blocks      []BlockInfo // the log's history, block by block
	names       map[policies.Address]AccountView
}

// CheckpointView is the signed checkpoint the ledger was verified against.
type CheckpointView struct {
	Size    uint64
	Root    string
	Signers []string
	Trusted bool
	Time    time.Time
}

// AccountView is an account as people know it.
type AccountView struct {
	Address string
	Name    string
	Org     string
	Roles   []string
}

// Label is the account's name and organisation, or its address when it
// has neither.
func (a AccountView) Label() string {
	switch {
	case a.Name != "" && a.Org != "" && a.Org != a.Name:
		return a.Name + " (" + a.Org + ")"
	case a.Name != "":
		return a.Name
	case a.Org != "":
		return a.Org
	}
	return a.Address
}

// Short is the address's first 10 hex digits.
func (a AccountView) Short() string {
	if len(a.Address) > 10 {
		return a.Address[:10]
	}
	return a.Address
}

// DatasetView is a registered dataset.
type DatasetView struct {
	policies.Dataset
	OwnerOf AccountView
	Columns string
}

// JobView is one job with the names of who asked and who approved.
type JobView struct {
	policies.Job
	RequesterOf AccountView
	ApproverOf  []AccountView
	Charged     float64 // epsilon debited (0 when refused, pending or refunded)
	ReasonText  string  // the reason, with accounts' addresses given their names
	Shares      []string
}

// PopulationView is one organisation's (holder's) spending on one
// population of data subjects: the budget that caps its jobs.
type PopulationView struct {
	policies.BudgetLine
	Budget float64 // the largest epsilon_budget a policy on its datasets allows (within the limits)
}

// Fraction is Spent over Budget (0 without a budget).
func (p PopulationView) Fraction() float64 { return spentFraction(p.Spent, p.Budget) }

// BudgetView is what one requester spent on one dataset, against the
// largest budget a policy on the dataset sets (the budget itself is kept
// per organisation and population: PopulationView).
type BudgetView struct {
	Requester AccountView
	Dataset   string
	Spent     float64
	Budget    float64
	Jobs      int
}

// Fraction is Spent over Budget (0 without a budget).
func (b BudgetView) Fraction() float64 { return spentFraction(b.Spent, b.Budget) }

// spentFraction is spent over budget (0 without a budget).
func spentFraction(spent, budget float64) float64 {
	if budget <= 0 {
		return 0
	}
	return spent / budget
}

// QuotaView is how many ids an account had pseudonymised, of its quota.
type QuotaView struct {
	Account AccountView
	Used    int64
	Quota   int64
}

// Fraction is Used over Quota (1 without a quota).
func (q QuotaView) Fraction() float64 {
	if q.Quota <= 0 {
		return 1
	}
	return float64(q.Used) / float64(q.Quota)
}

// BlockInfo is a block's header as the verification read it.
type BlockInfo struct {
	Height   uint64
	Size     uint64 // the log's size after the block
	Root     string // hex of the Merkle root at that size
	Proposer string
	Time     time.Time
}

// BlockLog is a Source that keeps the headers of the blocks read through
// it, for the report's history.
type BlockLog struct {
	Source
	Blocks []BlockInfo
}

// Next reads the next block and records its header.
func (l *BlockLog) Next(ctx context.Context) (*chain.Block, [][]byte, error) {
	b, e, err := l.Source.Next(ctx)
	if err == nil && b != nil {
		l.Blocks = append(l.Blocks, BlockInfo{Height: b.Height, Size: b.FirstIndex + uint64(b.Count), Root: hex.EncodeToString(b.Root[:]), Proposer: b.Proposer, Time: b.Time})
	}
	return b, e, err
}

// NewView puts names and budgets beside a report. m is the replayed state
// (Verify's), cp the checkpoint verified against, trusted whether its
// signature was checked against trusted keys; blocks may be nil.
func NewView(rep *Report, m *policies.Machine, cp *chain.Checkpoint, trusted bool, blocks []BlockInfo) *View {
	v := &View{Report: rep, Blocks: blocks, names: map[policies.Address]AccountView{}}
	if cp != nil {
		v.Checkpoint = &CheckpointView{Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]), Signers: cp.Signer, Trusted: trusted, Time: cp.Time}
	}
	if m == nil {
		return v
	}
	for _, a := range m.Accounts() {
		av := AccountView{Address: a.Address.String(), Name: a.Name, Org: a.Org, Roles: a.Roles}
		v.names[a.Address] = av
		v.Accounts = append(v.Accounts, av)
		if used, quota := m.PseudonymQuota(a.Address); used > 0 {
			v.Quotas = append(v.Quotas, QuotaView{Account: av, Used: used, Quota: quota})
		}
	}
	sort.Slice(v.Accounts, func(i, j int) bool { return v.Accounts[i].Label() < v.Accounts[j].Label() })
	for _, d := range m.Datasets() {
		cols := make([]string, len(d.Schema.Columns))
		for i, c := range d.Schema.Columns {
			cols[i] = c.Name + " (" + c.Class + ")"
		}
		v.Datasets = append(v.Datasets, DatasetView{Dataset: d, OwnerOf: v.account(d.Owner), Columns: strings.Join(cols, ", ")})
	}
	v.Policies = m.Policies()
	budget := map[string]float64{}
	for _, p := range v.Policies {
		budget[p.Dataset] = max(budget[p.Dataset], p.DP.EpsilonBudget)
	}
	type pair struct {
		req policies.Address
		ds  string
	}
	spent := map[pair]*BudgetView{}
	for _, j := range m.Jobs(nil) {
		jv := JobView{Job: j, RequesterOf: v.account(j.Requester), ReasonText: v.named(j.Reason)}
		for _, a := range j.Approvals {
			jv.ApproverOf = append(jv.ApproverOf, v.account(a))
		}
		for _, s := range j.Shares {
			jv.Shares = append(jv.Shares, v.account(s.Node).Label())
		}
		switch j.Status {
		case policies.JobAuthorised, policies.JobRunning, policies.JobCompleted, policies.JobFailed:
			if !j.Refunded {
				jv.Charged = j.Epsilon
			}
		}
		if jv.Charged > 0 {
			k := pair{j.Requester, j.Dataset}
			if spent[k] == nil {
				spent[k] = &BudgetView{Requester: jv.RequesterOf, Dataset: j.Dataset, Budget: budget[j.Dataset]}
			}
			spent[k].Spent += jv.Charged
			spent[k].Jobs++
		}
		v.Jobs = append(v.Jobs, jv)
	}
	sort.Slice(v.Jobs, func(i, j int) bool { return v.Jobs[i].Submitted.Before(v.Jobs[j].Submitted) })
	for _, b := range spent {
		v.Budgets = append(v.Budgets, *b)
	}
	sort.Slice(v.Budgets, func(i, j int) bool {
		if v.Budgets[i].Fraction() != v.Budgets[j].Fraction() {
			return v.Budgets[i].Fraction() > v.Budgets[j].Fraction()
		}
		return v.Budgets[i].Requester.Label()+v.Budgets[i].Dataset < v.Budgets[j].Requester.Label()+v.Budgets[j].Dataset
	})
	limit := m.Limits().MaxEpsilonBudget
	for _, l := range m.Budgets() {
		pv := PopulationView{BudgetLine: l}
		for _, p := range v.Policies {
			if slices.Contains(l.Datasets, p.Dataset) {
				pv.Budget = max(pv.Budget, min(p.DP.EpsilonBudget, limit))
			}
		}
		v.Populations = append(v.Populations, pv)
	}
	if c, ok := m.HE(); ok {
		v.HE = &c
	}
	if c, ok := m.Pseudonym(); ok {
		v.Pseudonym = &c
	}
	sort.Slice(v.Quotas, func(i, j int) bool { return v.Quotas[i].Fraction() > v.Quotas[j].Fraction() })
	return v
}

func (v *View) account(a policies.Address) AccountView {
	if av, ok := v.names[a]; ok {
		return av
	}
	return AccountView{Address: a.String()}
}

var hexAddress = regexp.MustCompile(`\b[0-9a-f]{40}\b`)

// named puts accounts' names beside the addresses a text quotes.
func (v *View) named(s string) string {
	return hexAddress.ReplaceAllStringFunc(s, func(h string) string {
		a, err := policies.ParseAddress(h)
		if err != nil {
			return h
		}
		if av, ok := v.names[a]; ok && (av.Name != "" || av.Org != "") {
			return av.Label() + " (" + av.Short() + ")"
		}
		return h
	})
}

// NodeLabel names an HE participant by its account when it has one.
func (v *View) NodeLabel(p policies.HEParticipant) string {
	if av, ok := v.names[p.Address]; ok && av.Name != "" {
		return p.Node + " · " + av.Label()
	}
	return p.Node
}
