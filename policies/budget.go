package policies

import (
	"fmt"
	"sort"
	"strings"
)

// Privacy budgets.
//
// The privacy unit is the person and the budget holder is the
// organisation. A budget is kept per (population, holder):
//
//   - a population is a set of data subjects. Every dataset belongs to one
//     (Dataset.Population). A dataset whose content digest equals an
//     already registered one's joins that one's population (the same file
//     under another name, or registered again in he mode, describes the same
//     people); a policy's "shares_budget_with" merges its dataset's
//     population with the named datasets' (the same people in another
//     table). A merge adds the spent budgets together: what was learnt about
//     those people through either table counts against both.
//   - the holder is the requester's organisation ("org:NAME"); an account
//     without an organisation holds its own budget ("account:ADDRESS"). So
//     every account of an organisation draws on one budget.
//
// A job debits every population it reads, once each (Charge.Populations):
// a join of two agencies' datasets debits both, and the job records what
// it debited so that a refund credits exactly that, even after merges.
//
// A policy's epsilon_budget caps spent+epsilon for the jobs it authorises:
// where several policies cover one population, each one's cap applies to
// the population's shared total.

// Charge is what a job's authorisation debited.
type Charge struct {
	Holder      string   `json:"holder"`
	Populations []string `json:"populations"`
	Epsilon     float64  `json:"epsilon"`
}

// holderOf names the budget holder of an account.
func (s *state) holderOf(a Address) string {
	if acc := s.Accounts[a.String()]; acc != nil && acc.Org != "" {
		return "org:" + acc.Org
	}
	return "account:" + a.String()
}

// population resolves a population id through merges. A merge always
// points a population that was current at the current one it joins, so
// the chains have no cycles and are at most as long as there were merges.
func (s *state) population(id string) string {
	for range len(s.Merged) + 1 {
		next, ok := s.Merged[id]
		if !ok {
			break
		}
		id = next
	}
	return id
}

// populationOf returns the population of a dataset ("" when unknown).
func (s *state) populationOf(dataset string) string {
	ds := s.Datasets[dataset]
	if ds == nil {
		return ""
	}
	if ds.Population == "" { // registered before populations existed
		return "pop:" + ds.Name
	}
	return s.population(ds.Population)
}

// newPopulation picks the population of a dataset being registered: the
// one of a registered dataset with the same content digest, or a new one.
func (s *state) newPopulation(name, sha string) string {
	names := make([]string, 0, len(s.Datasets))
	for n := range s.Datasets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if s.Datasets[n].SHA256 == sha {
			return s.populationOf(n)
		}
	}
	return "pop:" + name
}

// mergePopulations joins the populations of the datasets into the one of
// the first, adding up every holder's spent budget.
func (s *state) mergePopulations(datasets []string) {
	if len(datasets) < 2 {
		return
	}
	into := s.populationOf(datasets[0])
	for _, d := range datasets[1:] {
		from := s.populationOf(d)
		if from == into {
			continue
		}
		holders := make([]string, 0, len(s.Budgets[from]))
		for h := range s.Budgets[from] {
			holders = append(holders, h)
		}
		sort.Strings(holders)
		for _, h := range holders {
			s.spend(into, h, s.Budgets[from][h])
		}
		drop(s, s.Budgets, from)
		put(s, s.Merged, from, into)
		names := make([]string, 0, len(s.Datasets))
		for n, ds := range s.Datasets {
			if ds.Population == from || (ds.Population == "" && "pop:"+ds.Name == from) {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			edit(s, s.Datasets, n, nil).Population = into
		}
	}
}

// spend adds eps (negative: a refund) to what holder spent on pop, through
// the journal (journal.go); a budget back at zero is dropped.
func (s *state) spend(pop, holder string, eps float64) {
	inner, ok := s.Budgets[pop]
	if !ok {
		inner = map[string]float64{}
		put(s, s.Budgets, pop, inner)
	}
	v := inner[holder] + eps
	if v > 1e-12 {
		put(s, inner, holder, v)
		return
	}
	drop(s, inner, holder)
	if len(inner) == 0 {
		drop(s, s.Budgets, pop)
	}
}

// jobPopulations lists the populations a job reads, each once, sorted.
// (A join's datasets will be listed here too.)
func (s *state) jobPopulations(j *Job) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range []string{j.Dataset} {
		if p := s.populationOf(d); p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// debit charges the policy's epsilon to every population the job reads,
// or returns why it cannot (nothing is debited then).
func (s *state) debit(j *Job, p *Policy) string {
	eps := p.DP.EpsilonPerQuery
	lim := s.limits()
	if eps > lim.MaxEpsilonPerQuery+1e-12 {
		return fmt.Sprintf("policy %s: epsilon_per_query %s exceeds the consortium's limit of %s per query", p.ID, fnum(eps), fnum(lim.MaxEpsilonPerQuery))
	}
	budget := min(p.DP.EpsilonBudget, lim.MaxEpsilonBudget)
	holder := s.holderOf(j.Requester)
	pops := s.jobPopulations(j)
	for _, pop := range pops {
		spent := s.Budgets[pop][holder]
		if spent+eps > budget+1e-12 {
			return fmt.Sprintf("privacy budget exhausted for dataset %q (population %s: %s; holder %s): spent %s of %s, this query needs %s",
				j.Dataset, pop, strings.Join(s.populationDatasets(pop), ", "), holder, fnum(spent), fnum(budget), fnum(eps))
		}
	}
	for _, pop := range pops {
		s.spend(pop, holder, eps)
	}
	j.Charge = &Charge{Holder: holder, Populations: pops, Epsilon: eps}
	return ""
}

// refund credits back what a job's authorisation debited.
func (s *state) refund(j *Job) bool {
	c := j.Charge
	if c == nil || c.Epsilon <= 0 {
		return false
	}
	// Each debit is credited back, also when populations it debited were
	// merged since (the merge added them up).
	for _, pop := range c.Populations {
		pop = s.population(pop)
		spent := s.Budgets[pop][c.Holder]
		s.spend(pop, c.Holder, -min(c.Epsilon, spent))
	}
	return true
}

// populationDatasets lists the datasets of a population, sorted.
func (s *state) populationDatasets(pop string) []string {
	var out []string
	for n := range s.Datasets {
		if s.populationOf(n) == pop {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Spent returns the epsilon the requester's budget holder has spent on the
// dataset's population.
func (m *Machine) Spent(requester Address, dataset string) float64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.Budgets[m.s.populationOf(dataset)][m.s.holderOf(requester)]
}

// BudgetLine is one holder's spending on one population.
type BudgetLine struct {
	Population string   `json:"population"`
	Datasets   []string `json:"datasets"`
	Holder     string   `json:"holder"`
	Spent      float64  `json:"spent"`
}

// Budgets lists every (population, holder) budget with spending, sorted.
func (m *Machine) Budgets() []BudgetLine {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []BudgetLine
	for pop, byHolder := range m.s.Budgets {
		for h, eps := range byHolder {
			out = append(out, BudgetLine{Population: pop, Datasets: m.s.populationDatasets(pop), Holder: h, Spent: eps})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Population != out[j].Population {
			return out[i].Population < out[j].Population
		}
		return out[i].Holder < out[j].Holder
	})
	return out
}

// Population resolves a population id through merges (auditors sum jobs'
// charges by the population they belong to now).
func (m *Machine) Population(id string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.population(id)
}

// checkShares validates a policy's shares_budget_with against the state:
// every named dataset exists and belongs to the policy's agency.
func (s *state) checkShares(p *Policy, actor *Account) error {
	for _, d := range p.DP.SharesBudgetWith {
		ds, ok := s.Datasets[d]
		if !ok {
			return fmt.Errorf("%w: policy: dp.shares_budget_with names dataset %q, which is not registered", ErrInvalid, clip(d))
		}
		if !sameOwner(ds, actor) {
			return fmt.Errorf("%w: policy: dp.shares_budget_with names dataset %q of another agency (cross-agency populations are linked by consortium pseudonyms)", ErrForbidden, d)
		}
	}
	return nil
}

// HolderOf names the budget holder of an account: "org:NAME", or
// "account:ADDRESS" for an account without an organisation.
func (m *Machine) HolderOf(a Address) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.holderOf(a)
}
