package audit

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/datasandbox/datasandbox/policies"
)

func testView() *View {
	bank := AccountView{Address: strings.Repeat("ab", 20), Name: "Bank A", Org: "banka"}
	shop := AccountView{Address: strings.Repeat("cd", 20), Name: "Shop", Org: "shop"}
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var req policies.Address
	copy(req[:], bytes.Repeat([]byte{0xab}, 20))
	return &View{
		Report: &Report{OK: true, Entries: 12, Blocks: 3, Jobs: map[string]int{"completed": 40, "rejected": 1},
			Refusals: map[string]int{"purpose": 1}, Kinds: map[string]int{"job.submit": 41}},
		Checkpoint: &CheckpointView{Size: 12, Signers: []string{"node1", "node2"}, Trusted: true, Time: t0},
		Accounts:   []AccountView{bank, shop},
		Quotas:     []QuotaView{{Account: bank, Used: 900000, Quota: 1000000}},
		Budgets: []BudgetView{
			{Requester: bank, Dataset: "tax2025", Spent: 400, Budget: 400, Jobs: 40}, // a large spender
			{Requester: shop, Dataset: "health", Spent: 0.5, Budget: 5, Jobs: 1},
		},
		Populations: []PopulationView{
			{BudgetLine: policies.BudgetLine{Population: "pop:tax2025", Datasets: []string{"tax2025", "tax2025he"}, Holder: "org:banka", Spent: 4}, Budget: 5},
		},
		Jobs: []JobView{{Job: policies.Job{ID: "job-7", Requester: req, Dataset: "tax2025", Mode: "masked", Purpose: "<script>alert(1)</script>",
			Query: "SELECT region, AVG(income) FROM tax2025 GROUP BY region", Status: "completed", Submitted: t0}, RequesterOf: bank, Charged: 10,
			ApproverOf: []AccountView{{Name: "Tax agency", Org: "tax"}}}},
	}
}

func TestWriteHTML(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, testView(), "Ledger audit", map[string]bool{"merkle_root": true}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"Bank A (banka)",             // requesters by name and organisation
		"400 of 400 ε (40 jobs)",     // epsilon with its budget
		"0.5 of 5 ε (1 jobs)",        //
		"node1, node2",               // checkpoint signers
		"AVG(income)",                // the query
		"Tax agency (tax)",           // the approver
		"share of the dataset&#39;s", // the budget chart's axis
		">75%<",                      // and its ticks
		"&lt;script&gt;",             // text is escaped
		"900000 of 1000000 ids",      // pseudonymisation against quotas
		"<td>org:banka</td><td>pop:tax2025</td><td>tax2025, tax2025he</td>", // budgets as kept: organisation × population
	} {
		t.Run(want, func(t *testing.T) {
			if !strings.Contains(page, want) {
				t.Errorf("the report lacks %q", want)
			}
		})
	}
	if strings.Contains(page, "<script>") {
		t.Error("a purpose's markup reached the page unescaped")
	}
	// Each bar is its requester's share of its own budget: the small
	// spender's bar is a tenth of the axis, not flattened by the large one.
	bars := regexp.MustCompile(`<rect x="250" y="[0-9.]+" width="([0-9.]+)"`).FindAllStringSubmatch(page, -1)
	if len(bars) < 2 {
		t.Fatalf("budget bars: %v", bars)
	}
	full, _ := strconv.ParseFloat(bars[0][1], 64)
	small, _ := strconv.ParseFloat(bars[1][1], 64)
	if full != 360 || small != 36 {
		t.Fatalf("bar widths %v and %v, want 360 (100%%) and 36 (10%%)", full, small)
	}
}

// A long ledger's page lists its latest jobs and says how many it left out.
func TestWriteHTMLLongLedger(t *testing.T) {
	v := testView()
	job := v.Jobs[0]
	v.Jobs = nil
	for i := range maxJobRows + 3 {
		j := job
		j.ID = "job-" + strconv.Itoa(1000+i)
		v.Jobs = append(v.Jobs, j)
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, v, "Ledger audit", nil); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if !strings.Contains(page, "The 3 earlier jobs are left out") || strings.Contains(page, ">job-1002<") || !strings.Contains(page, ">job-1003<") {
		t.Fatal("the page does not list the latest jobs only, or does not say so")
	}
}
