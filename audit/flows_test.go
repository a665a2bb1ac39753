package audit

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/policies"
)

// A join's flows, drawn: each shipment names its dataset, columns, rows,
// digest and both nodes by name, is focusable and says itself to screen
// readers, in the wide chart and the narrow one; a node that received a
// shipment before a takeover is told apart from the runner.
func TestJoinFlowChart(t *testing.T) {
	n1, n2, n3 := policies.Address{1}, policies.Address{2}, policies.Address{3}
	v := testView()
	v.names = map[policies.Address]AccountView{
		n1: {Address: n1.String(), Name: "node1", Org: "tax"},
		n2: {Address: n2.String(), Name: "node2", Org: "health"},
		n3: {Address: n3.String(), Name: "node3", Org: "registry"},
	}
	sum := strings.Repeat("5e", 32)
	join := policies.Job{ID: "job-9", Status: policies.JobCompleted, Dataset: "taxj", Runner: n3, Submitted: time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC),
		Plan: policies.Plan{Join: []policies.JoinSide{{Dataset: "taxj", Key: "person_id", Columns: []string{"income"}}, {Dataset: "benj", Key: "person_id", Columns: []string{"<kind>"}}}},
		Flows: []policies.JobFlow{
			{Dataset: "taxj", Columns: []string{"income"}, Rows: 300, SHA256: sum, From: n1, To: n2, Index: 40}, // before a takeover, and before BLAKE3
			{Dataset: "taxj", Columns: []string{"income"}, Rows: 300, BLAKE3: sum, From: n1, To: n3, Index: 44},
			{Dataset: "benj", Columns: []string{"<kind>"}, Rows: 300, BLAKE3: sum, From: n2, To: n3, Index: 45},
		}}
	v.Jobs = append(v.Jobs, JobView{Job: join})
	joins := v.Joins()
	if len(joins) != 1 || joins[0].Runner.Name != "node3" || len(joins[0].Flows) != 3 || joins[0].Flows[0].ToOf.Name != "node2" {
		t.Fatalf("Joins() = %+v", joins)
	}
	if got := destinations(joins[0]); len(got) != 2 || got[0].Name != "node3" {
		t.Fatalf("destinations = %+v, want the runner first", got)
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, v, "Ledger audit", nil); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"job-9 joins taxj, benj",
		"taxj ⋈ benj · ", // the jobs table names every dataset a join reads
		"run by node3 (registry)",
		`class="chart flows wide"`, `class="chart flows narrow"`,
		"runs the join", "received it first (job taken over)",
		`aria-label="taxj: columns income, 300 rows, moved from node1 (tax) to node3 (registry); blake3 ` + sum + ` (ledger entry 44)"`,
		"benj · from node2 (health)",
		"columns: &lt;kind&gt;",
		`<td data-label="from">node1 (tax)</td><td data-label="to">node2 (health)</td><td data-label="digest of what moved"><code>sha256 ` + sum + `</code></td><td data-label="ledger entry" class="num">40</td>`,
		`<td data-label="from">node1 (tax)</td><td data-label="to">node3 (registry)</td><td data-label="digest of what moved"><code>blake3 ` + sum + `</code></td><td data-label="ledger entry" class="num">44</td>`,
		"300 rows · sha256 5e5e5e5e5e5e…", "300 rows · blake3 5e5e5e5e5e5e…",
	} {
		t.Run(want, func(t *testing.T) {
			if !strings.Contains(page, want) {
				t.Errorf("the report lacks %q", want)
			}
		})
	}
	// Three shipments, each focusable once in each chart.
	if n := strings.Count(page, `<g class="flow" tabindex="0"`); n != 6 {
		t.Errorf("%d focusable shipments, want 6 (3 in each chart)", n)
	}
	if strings.Contains(page, "<kind>") {
		t.Error("a column name's markup reached the page unescaped")
	}
	if strings.Contains(page, "No join job on this ledger") {
		t.Error("the report says there is no join")
	}
}
