package audit

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"

	"github.com/datasandbox/datasandbox/policies"
)

// JoinView is one join job's data flows: which columns of which dataset
// moved from which node to which, with the digest of what moved
// (job.flow entries, checked against the job's plan by the verifier).
type JoinView struct {
	Job      string
	Status   string
	Datasets []string
	Runner   AccountView
	Flows    []FlowView
}

// FlowView is one shipment, with its nodes' names.
type FlowView struct {
	policies.JobFlow
	FromOf AccountView
	ToOf   AccountView
}

// Sentence says the flow in words (for screen readers and tooltips).
func (f FlowView) Sentence() string {
	return fmt.Sprintf("%s: columns %s, %d rows, moved from %s to %s; %s (ledger entry %d)",
		f.Dataset, strings.Join(f.Columns, ", "), f.Rows, f.FromOf.Label(), f.ToOf.Label(), f.DigestText(), f.Index)
}

// DigestText is the flow's digest after its algorithm's name ("blake3
// …", or "sha256 …" for flows committed before BLAKE3).
func (f FlowView) DigestText() string {
	alg, sum := f.Digest()
	return alg + " " + sum
}

// Joins lists the join jobs that moved data, in submission order.
func (v *View) Joins() []JoinView {
	var out []JoinView
	for _, j := range v.Jobs {
		if !j.IsJoin() {
			continue
		}
		jv := JoinView{Job: j.ID, Status: j.Status, Datasets: j.Plan.Datasets(j.Dataset)}
		if j.Runner != (policies.Address{}) {
			jv.Runner = v.account(j.Runner)
		}
		for _, f := range j.Flows {
			jv.Flows = append(jv.Flows, FlowView{JobFlow: f, FromOf: v.account(f.From), ToOf: v.account(f.To)})
		}
		out = append(out, jv)
	}
	return out
}

// The flow chart: each shipment a box on the left (dataset, sending node,
// columns, rows and digest), an arrow to the node that received it on the
// right. Each shipment is focusable (tabindex) and says itself to screen
// readers (aria-label); the table under the chart repeats it in full. The
// wide chart is for a laptop; the narrow one, drawn top to bottom, for a
// phone (CSS shows one of them).
const (
	flowBoxH = 64.0 // a shipment's box
	flowGap  = 12.0
	flowFont = 12.0
)

// flowChart draws a join's flows, wide or narrow.
func flowChart(j JoinView, narrow bool) template.HTML {
	if len(j.Flows) == 0 {
		return template.HTML(`<p class="muted">No data has moved for this job yet.</p>`)
	}
	var b strings.Builder
	title := "data flows of " + j.Job
	if narrow {
		drawNarrow(&b, j, title)
	} else {
		drawWide(&b, j, title)
	}
	return template.HTML(b.String())
}

// flowLines are the three lines of a shipment's box.
func flowLines(f FlowView, chars int) [3]string {
	return [3]string{
		clipRunes(f.Dataset+" · from "+f.FromOf.Label(), chars),
		clipRunes("columns: "+strings.Join(f.Columns, ", "), chars),
		clipRunes(strconv.FormatInt(f.Rows, 10)+" rows · "+prefix(f.DigestText(), 19)+"…", chars),
	}
}

func clipRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// arrowDefs is the arrowhead, one per chart (ids are per job).
func arrowDefs(b *strings.Builder, id string) {
	fmt.Fprintf(b, `<defs><marker id="%s" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#0b5cad"/></marker></defs>`, id)
}

func flowBox(b *strings.Builder, f FlowView, x, y, w float64, chars int) {
	fmt.Fprintf(b, `<g class="flow" tabindex="0" role="img" aria-label="%s"><title>%s</title>`, esc(f.Sentence()), esc(f.Sentence()))
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" rx="6" fill="#eef4fb" stroke="#0b5cad"/>`, x, y, w, flowBoxH)
	for i, line := range flowLines(f, chars) {
		weight := ""
		if i == 0 {
			weight = ` font-weight="600"`
		}
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f"%s>%s</text>`, x+10, y+19+float64(i)*17, weight, esc(line))
	}
	b.WriteString(`</g>`)
}

func nodeBox(b *strings.Builder, label, note string, x, y, w, h float64, chars int) {
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" rx="6" fill="#f6f8fa" stroke="#57606a"/>`, x, y, w, h)
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-weight="600">%s</text>`, x+10, y+h/2-2, esc(clipRunes(label, chars)))
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" fill="#57606a">%s</text>`, x+10, y+h/2+14, esc(note))
}

// destinations lists the nodes that received flows, the runner first.
func destinations(j JoinView) []AccountView {
	var out []AccountView
	seen := map[string]bool{}
	add := func(a AccountView) {
		if a.Address != "" && !seen[a.Address] {
			seen[a.Address] = true
			out = append(out, a)
		}
	}
	for _, f := range j.Flows {
		if f.ToOf.Address == j.Runner.Address {
			add(f.ToOf)
		}
	}
	for _, f := range j.Flows {
		add(f.ToOf)
	}
	return out
}

func destNote(j JoinView, a AccountView) string {
	if a.Address == j.Runner.Address {
		return "runs the join"
	}
	return "received it first (job taken over)"
}

// drawWide: shipments in a column on the left, receiving nodes on the
// right, an arrow for each shipment.
func drawWide(b *strings.Builder, j JoinView, title string) {
	const W, boxW, destX, destW = 680.0, 330.0, 440.0, 232.0
	dests := destinations(j)
	n := float64(len(j.Flows))
	H := 8 + n*(flowBoxH+flowGap)
	fmt.Fprintf(b, `<svg class="chart flows wide" viewBox="0 0 %.0f %.0f" style="max-width:%.0fpx" role="group" aria-label="%s"><title>%s</title>`, W, H, W, esc(title), esc(title))
	id := "arrow-w-" + j.Job
	arrowDefs(b, id)
	// Each receiving node is as tall as the shipments' column, split
	// evenly among the nodes.
	dh := (H - 8) / float64(len(dests))
	destY := map[string]float64{}
	for i, d := range dests {
		y := 4 + float64(i)*dh
		nodeBox(b, d.Label(), destNote(j, d), destX, y+2, destW, dh-flowGap, 30)
		destY[d.Address] = y + (dh-flowGap)/2 + 2
	}
	for i, f := range j.Flows {
		y := 4 + float64(i)*(flowBoxH+flowGap)
		flowBox(b, f, 8, y, boxW, 46)
		fmt.Fprintf(b, `<path d="M%.0f,%.0f C%.0f,%.0f %.0f,%.0f %.0f,%.0f" fill="none" stroke="#0b5cad" stroke-width="2" marker-end="url(#%s)"/>`,
			8+boxW, y+flowBoxH/2, 8+boxW+50, y+flowBoxH/2, destX-50, destY[f.ToOf.Address], destX-2, destY[f.ToOf.Address], id)
	}
	b.WriteString(`</svg>`)
}

// drawNarrow: for a phone, each shipment's box, an arrow down, and the
// node that received it.
func drawNarrow(b *strings.Builder, j JoinView, title string) {
	const W, arrowH, destH = 360.0, 30.0, 44.0
	step := flowBoxH + arrowH + destH + 2*flowGap
	H := 8 + float64(len(j.Flows))*step
	fmt.Fprintf(b, `<svg class="chart flows narrow" viewBox="0 0 %.0f %.0f" role="group" aria-label="%s"><title>%s</title>`, W, H, esc(title), esc(title))
	id := "arrow-n-" + j.Job
	arrowDefs(b, id)
	for i, f := range j.Flows {
		y := 4 + float64(i)*step
		flowBox(b, f, 4, y, W-8, 44)
		fmt.Fprintf(b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#0b5cad" stroke-width="2" marker-end="url(#%s)"/>`, W/2, W/2, y+flowBoxH+2, y+flowBoxH+arrowH-2, id)
		nodeBox(b, "to "+f.ToOf.Label(), destNote(j, f.ToOf), 4, y+flowBoxH+arrowH, W-8, destH, 44)
	}
	b.WriteString(`</svg>`)
}
