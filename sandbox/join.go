package sandbox

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/datasandbox/datasandbox/policies"
)

// Joins across agencies (DESIGN.md, "Joining across agencies").
//
// A join runs on an executor, a node that holds none of the joined
// datasets. Each owner derives, for the job, a tag per row from the row's
// stored consortium pseudonym (join_tag.go: a keyed pseudorandom
// permutation of P(id) under a key derived from k_job), with a per-job key
// the owners share and the executor never holds, and ships the tags and
// the plan's columns (Ship). The executor matches rows on tags it cannot
// invert (ExecuteJoin): it learns how many rows match, never whose; a tag
// is useless outside its job, since k_job differs per job.
// An owner learns nothing of the other dataset.

// TagSize is the length of a per-job row tag (join_tag.go).
const TagSize = 12

// JoinEnv is what CheckJoin needs to know beyond the query: the schemas of
// the datasets it names, the number of nodes in the consortium, and
// whether some active policy of a dataset allows its join with another.
type JoinEnv struct {
	Schemas map[string]*policies.Schema
	Nodes   int
	// Allows may be nil (the engine's own check, after the ledger
	// authorised the job).
	Allows func(dataset, other string) bool
}

// CheckJoin is CheckQuery for a query that joins datasets: the join's own
// rules (inner equi-joins of two or three datasets on identifier columns
// with consortium pseudonyms, with at least MinJoinNodes nodes, each
// policy allowing it), then the engine's rules over the columns of every
// dataset, and in mode he the encrypted engine's (checkHEJoin). Its errors are *RefusalError with the rule and
// the position.
func CheckJoin(q *Query, env JoinEnv, mode string) error {
	if len(q.Joins) == 0 {
		return fmt.Errorf("sandbox: CheckJoin of a query without a join")
	}
	for _, j := range q.Joins {
		if j.Kind != "inner" {
			return q.refuseAt(j.Pos, RuleJoin, "only inner joins run: a %s join would release counts of people who are not in the other dataset", strings.ToUpper(j.Kind))
		}
	}
	ds := q.datasets()
	if len(ds) > policies.MaxJoinDatasets {
		return q.refuseAt(q.Joins[policies.MaxJoinDatasets-1].Pos, RuleJoin, "a query joins at most %d datasets", policies.MaxJoinDatasets)
	}
	if env.Nodes < policies.MinJoinNodes {
		return q.refuseAt(q.Joins[0].Pos, RuleJoin, "a join runs on a node that holds none of its datasets: the consortium needs at least %d nodes, it has %d", policies.MinJoinNodes, env.Nodes)
	}
	merged := &policies.Schema{}
	for _, d := range ds {
		s, ok := env.Schemas[d]
		if !ok {
			return q.refuseAt(q.datasetPos(d), RuleUnknown, "unknown dataset %q", d)
		}
		key := q.joinKey[d]
		c, ok := s.Column(key)
		switch {
		case !ok:
			return q.refuseAt(q.joinRefPos(d), RuleUnknown, "unknown column %q of dataset %s", key, d)
		case c.Class != policies.Identifier || c.Pseudonym != policies.PseudonymConsortium:
			return q.refuseAt(q.joinRefPos(d), RuleJoin, "%s.%s is %s; joins match only identifier columns with consortium pseudonyms", d, key, classWithPseudonym(c))
		}
		if env.Allows != nil {
			for _, o := range ds {
				if o != d && !env.Allows(d, o) {
					return q.refuseAt(q.datasetPos(o), RuleJoin, "no policy of dataset %s allows joining it with %s", d, o)
				}
			}
		}
		for _, c := range s.Columns {
			c.Name = d + "." + c.Name
			merged.Columns = append(merged.Columns, c)
		}
	}
	if err := Check(q, merged); err != nil {
		return err
	}
	if mode == policies.ModeHE {
		return checkHEJoin(q, env.Schemas)
	}
	return nil
}

func classWithPseudonym(c policies.Column) string {
	if c.Class == policies.Identifier {
		return "an identifier column with agency pseudonyms (not joinable)"
	}
	return "a " + c.Class + " column"
}

// datasetPos is where dataset d is named in FROM.
func (q *Query) datasetPos(d string) int {
	for _, j := range q.Joins {
		if j.Dataset == d {
			return j.Pos
		}
	}
	return strings.Index(q.Source, d)
}

// joinRefPos is where the join key of dataset d is named.
func (q *Query) joinRefPos(d string) int {
	for _, r := range q.refs {
		if r.Use == "join" && strings.HasPrefix(r.Name, d+".") {
			return r.Pos
		}
	}
	return q.datasetPos(d)
}

// JoinPart is one owner's shipment as the executor uses it: the dataset,
// the per-job tag of each row, the shipped columns (named as in the
// dataset) and the policy's bound on rows per person.
type JoinPart struct {
	Dataset string
	Tags    [][TagSize]byte
	Table   *Table
	MaxRows int
	// List marks an enterprise's list (list.go): the join's output
	// control then thresholds noisy counts (Control.NoisyThreshold).
	List bool
	// parted is Tags partitioned for the join, when the part was
	// partitioned as it was parsed (Shipment.Part).
	parted *partitioned
}

// ExecuteJoin joins the parts on their tags (a hash join), keeps at most
// MaxRows rows per person of each part (chosen by a keyed hash of the tag
// and the row, so without bias and the same for the same job), and runs
// the plan over the joined rows with output control: the minimum group
// size counts distinct people, dominance sums each person's rows, and the DP noise is calibrated to the rows
// one person contributes to the join (the product of the parts' bounds).
// selKey keys the row selection (the executor draws it per job, from
// crypto/rand).
func ExecuteJoin(ctx context.Context, q *Query, parts []JoinPart, ctl Control, lim Limits, selKey []byte) (*Result, error) {
	env := JoinEnv{Schemas: map[string]*policies.Schema{}, Nodes: policies.MinJoinNodes}
	for _, p := range parts {
		env.Schemas[p.Dataset] = &p.Table.Schema
		if len(p.Tags) != p.Table.Rows {
			return nil, fmt.Errorf("%w: dataset %s shipped %d tags for %d rows", ErrBadData, p.Dataset, len(p.Tags), p.Table.Rows)
		}
	}
	if err := CheckJoin(q, env, policies.ModeMasked); err != nil {
		return nil, err
	}
	order := q.datasets()
	if len(parts) != len(order) {
		return nil, fmt.Errorf("%w: %d parts for a join of %d datasets", ErrBadData, len(parts), len(order))
	}
	byName := map[string]*JoinPart{}
	for i := range parts {
		byName[parts[i].Dataset] = &parts[i]
	}
	tags := make([][][TagSize]byte, len(order))
	maxRows := make([]int, len(order))
	pre := make([]*partitioned, len(order))
	bound := 1
	for i, d := range order {
		p := byName[d]
		if p == nil {
			return nil, fmt.Errorf("%w: no part for dataset %s", ErrBadData, d)
		}
		if p.MaxRows < 1 {
			return nil, fmt.Errorf("%w: dataset %s has no bound on rows per person", ErrRefused, d)
		}
		bound *= p.MaxRows
		tags[i], maxRows[i], pre[i] = p.Tags, p.MaxRows, p.parted
	}
	rows, person, err := matchTags(ctx, tags, maxRows, pre, selKey)
	if err != nil {
		return nil, err
	}
	t, err := joinedTable(q, order, byName, rows, nil)
	if err != nil {
		return nil, err
	}
	if need := int64(t.Rows) * int64(9+8*len(t.Cols)); need > lim.MaxMemory {
		return nil, fmt.Errorf("%w: the join needs about %d MiB, limit %d MiB", ErrLimit, need>>20, lim.MaxMemory>>20)
	}
	mask, err := evalWhere(t, q.Where)
	if err != nil {
		return nil, err
	}
	gid, ngroups, keys, err := groupIDs(t, q.Keys, lim)
	if err != nil {
		return nil, err
	}
	counts := distinctPeople(t.Rows, mask, gid, ngroups, person)
	aggs := make([]*aggState, len(q.Aggs))
	for i, ag := range q.Aggs {
		// Dominance is judged per person (personTops), not per row.
		if aggs[i], err = computeAgg(ctx, t, ag, mask, gid, ngroups, nil); err != nil {
			return nil, err
		}
	}
	if err := personTops(t, aggs, mask, gid, ngroups, person, ctl.Dominance); err != nil {
		return nil, err
	}
	// One person changes at most bound rows of the join: noise for one
	// row at epsilon/bound protects the person at epsilon (group privacy).
	eps := ctl.Epsilon
	ctl.Epsilon = eps / float64(bound)
	for _, p := range parts {
		ctl.NoisyThreshold = ctl.NoisyThreshold || p.List
	}
	// Counts and sums are clamped to what a public bound allows (finish):
	// not the joined rows (the intersection is not public) but the
	// smallest dataset's rows (on the ledger) times the rows per person.
	public := len(parts[0].Tags)
	for _, p := range parts {
		public = min(public, len(p.Tags))
	}
	res, err := finish(q, ctl, keys, counts, aggs, public*bound)
	if err != nil {
		return nil, err
	}
	if res.EpsilonSpent > 0 {
		res.EpsilonSpent = eps
	}
	return res, nil
}

// emitCombos appends every combination of one row per part.
func emitCombos(per [][]int32, rows *[]int32, person *[]int32, p int32) {
	k := len(per)
	var buf [policies.MaxJoinDatasets + 1]int // a list joins one more part
	pos := buf[:]
	if k > len(buf) {
		pos = make([]int, k)
	}
	for {
		for i := range k {
			*rows = append(*rows, per[i][pos[i]])
		}
		*person = append(*person, p)
		i := k - 1
		for i >= 0 {
			pos[i]++
			if pos[i] < len(per[i]) {
				break
			}
			pos[i] = 0
			i--
		}
		if i < 0 {
			return
		}
	}
}

// joinedTable lays the joined rows out as one table whose columns are
// named dataset.column; every column the query reads must have been
// shipped, but those in enc (shipped encrypted, in he mode).
func joinedTable(q *Query, order []string, parts map[string]*JoinPart, rows []int32, enc map[string]bool) (*Table, error) {
	k := len(order)
	n := len(rows) / k
	t := &Table{Rows: n, Cols: map[string]*Column{}}
	for i, d := range order {
		p := parts[d]
		for _, sc := range p.Table.Schema.Columns {
			name := d + "." + sc.Name
			meta := sc
			meta.Name = name
			t.Schema.Columns = append(t.Schema.Columns, meta)
			src, ok := p.Table.Cols[sc.Name]
			if !ok {
				continue // not shipped: the plan does not read it
			}
			c := &Column{Meta: meta, Kind: src.Kind, Dict: src.Dict}
			switch src.Kind {
			case kindNum:
				if len(src.Num) != p.Table.Rows {
					return nil, fmt.Errorf("%w: column %s has %d values for %d rows", ErrBadData, name, len(src.Num), p.Table.Rows)
				}
				c.Num = gather(src.Num, rows, k, i, n)
			case kindDict:
				if len(src.Codes) != p.Table.Rows {
					return nil, fmt.Errorf("%w: column %s has %d values for %d rows", ErrBadData, name, len(src.Codes), p.Table.Rows)
				}
				c.Codes = gather(src.Codes, rows, k, i, n)
			default:
				return nil, fmt.Errorf("%w: column %s of kind %s is never shipped", ErrBadData, name, src.Kind)
			}
			t.Cols[name] = c
		}
	}
	for name := range q.Columns() {
		if _, ok := t.Cols[name]; !ok && !isJoinRef(q, name) && !enc[name] {
			return nil, fmt.Errorf("%w: column %s was not shipped", ErrBadData, name)
		}
	}
	return t, nil
}

// gather is the n joined rows' values of part i's column src (rows holds
// k rows per joined row), in parallel ranges.
func gather[T any](src []T, rows []int32, k, i, n int) []T {
	out := make([]T, n)
	var wg sync.WaitGroup
	for _, r := range chunks(n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := r[0]; j < r[1]; j++ {
				out[j] = src[rows[j*k+i]]
			}
		}()
	}
	wg.Wait()
	return out
}

func isJoinRef(q *Query, name string) bool {
	for _, r := range q.refs {
		if r.Name == name && r.Use != "join" {
			return false
		}
	}
	return true
}

// distinctPeople counts, per group, the distinct people among the selected
// rows: what the minimum group size is compared with. The joined rows come
// in person order, so a person is new to a group when it differs from the
// group's last one.
func distinctPeople(rows int, mask []bool, gid []uint32, groups int, person []int32) []int64 {
	counts := make([]int64, groups)
	last := make([]int32, groups)
	for g := range last {
		last[g] = -1
	}
	for i := 0; i < rows; i++ {
		if mask != nil && !mask[i] {
			continue
		}
		g := 0
		if gid != nil {
			g = int(gid[i])
		}
		if last[g] != person[i] {
			last[g] = person[i]
			counts[g]++
		}
	}
	return counts
}
