package audit

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WriteHTML writes a verified ledger's view as one self-contained page
// (inline CSS and SVG; no script, no external resource), readable on a
// laptop and on a phone: the verdict and checks, the signed checkpoint and
// its signers, charts of budgets (each requester's share of each budget,
// and its use over time) and of jobs by status, refusals by rule, the jobs
// with requester, mode, query, reason and approvers, the data flows of
// join jobs (which columns of which dataset moved to which node, with
// digests, as a chart and a table), then the accounts,
// datasets, policies, HE key ceremony and shares, and the log's history
// block by block (the ledger keeps no history of signed checkpoints). sandboxctl console shows this same page.
func WriteHTML(w io.Writer, v *View, title string, checks map[string]bool) error {
	type kv struct {
		K string
		V any
	}
	var chk []kv
	for k, ok := range checks {
		chk = append(chk, kv{k, ok})
	}
	sort.Slice(chk, func(i, j int) bool { return chk[i].K < chk[j].K })
	var kinds []kv
	for k, n := range v.Report.Kinds {
		kinds = append(kinds, kv{k, n})
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].K < kinds[j].K })
	blocks, earlier := v.Blocks, 0
	if len(blocks) > 40 {
		earlier = len(blocks) - 40
		blocks = blocks[earlier:]
	}
	recent := make([]BlockInfo, len(blocks))
	for i, b := range blocks {
		recent[len(blocks)-1-i] = b
	}
	// A long ledger's page lists its latest jobs; the JSON report (ledger
	// verify --out) has every one.
	jobs, earlierJobs := v.Jobs, 0
	if len(jobs) > maxJobRows {
		earlierJobs = len(jobs) - maxJobRows
		jobs = jobs[earlierJobs:]
	}
	joins, earlierJoins := v.Joins(), 0
	if len(joins) > maxJoinCharts {
		earlierJoins = len(joins) - maxJoinCharts
		joins = joins[earlierJoins:]
	}
	return reportPage.Execute(w, map[string]any{
		"Title": title, "V": v, "R": v.Report, "Checks": chk, "Kinds": kinds, "CSS": template.CSS(reportCSS),
		"BudgetChart":   budgetChart(v.Budgets),
		"BudgetTime":    budgetTimeChart(v),
		"QuotaChart":    quotaChart(v.Quotas),
		"StatusChart":   countChart("jobs by status", "jobs", v.Report.Jobs, statusOrder),
		"RefusalsChart": countChart("refusals by rule", "refusals", v.Report.Refusals, nil),
		"Joins":         joins, "EarlierJoins": earlierJoins,
		"Blocks": recent, "Earlier": earlier, "Jobs": jobs, "EarlierJobs": earlierJobs,
	})
}

// maxJobRows bounds the jobs listed on the page, maxJoinCharts the joins
// drawn.
const (
	maxJobRows    = 2000
	maxJoinCharts = 100
)

var statusOrder = []string{"pending", "authorised", "running", "completed", "failed", "rejected"}

var statusColor = map[string]string{"pending": "#bf8700", "authorised": "#2da44e", "running": "#2da44e", "completed": "#116329", "failed": "#cf222e", "rejected": "#a40e26"}

type bar struct {
	label, note, color string
	value              float64 // in axis units (a fraction for budgets)
}

// hbars draws horizontal bars against a labelled x axis from 0 to top,
// with ticks every step.
func hbars(title, axis string, bars []bar, top, step float64, tick func(float64) string) template.HTML {
	if len(bars) == 0 {
		return template.HTML(`<p class="muted">none</p>`)
	}
	const W, left, right, rowH, pad, bottom = 760.0, 250.0, 150.0, 26.0, 22.0, 38.0
	H := pad + bottom + rowH*float64(len(bars))
	x := func(v float64) float64 { return left + (W-left-right)*math.Min(v, top)/top }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s"><title>%s</title>`, W, H, esc(title), esc(title))
	for t := 0.0; t <= top+1e-9; t += step {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#e1e4e8"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`,
			x(t), x(t), pad-4, H-bottom, x(t), H-bottom+16, esc(tick(t)))
	}
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#57606a"/><line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#57606a"/>`,
		left, left, pad-4, H-bottom, left, W-right, H-bottom, H-bottom)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#57606a">%s</text>`, (left+W-right)/2, H-4, esc(axis))
	for i, br := range bars {
		y := pad + rowH*float64(i)
		label := br.label
		if len([]rune(label)) > 36 {
			label = string([]rune(label)[:35]) + "…"
		}
		w := x(br.value) - left
		if br.value > 0 && w < 2 {
			w = 2
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text><rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" rx="2" fill="%s"/><text x="%.1f" y="%.0f">%s</text>`,
			left-8, y+15, esc(label), left, y+3, w, rowH-8, br.color, x(br.value)+6, y+15, esc(br.note))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func esc(s string) string { return template.HTMLEscapeString(s) }

func fmtEps(x float64) string { return strconv.FormatFloat(math.Round(x*1000)/1000, 'f', -1, 64) }

// budgetChart shows each requester's spending on each dataset as a share
// of that dataset's budget: one large spender does not flatten the rest,
// and a budget near its end stands out (amber from 80 %, red when used up).
func budgetChart(bs []BudgetView) template.HTML {
	bars := make([]bar, len(bs))
	for i, b := range bs {
		f := b.Fraction()
		color := "#0b5cad"
		switch {
		case f >= 1-1e-9:
			color = "#a40e26"
		case f >= 0.8:
			color = "#bf8700"
		}
		bars[i] = bar{label: b.Requester.Label() + " · " + b.Dataset, value: f, color: color,
			note: fmt.Sprintf("%s of %s ε (%d jobs)", fmtEps(b.Spent), fmtEps(b.Budget), b.Jobs)}
	}
	return hbars("epsilon spent of each budget, by requester and dataset", "share of the dataset's budget used (ε spent / ε budget)", bars, 1, 0.25,
		func(t float64) string { return fmt.Sprintf("%.0f%%", t*100) })
}

// quotaChart shows each account's pseudonymised ids as a share of its
// quota: an account pseudonymising a population stands out.
func quotaChart(qs []QuotaView) template.HTML {
	bars := make([]bar, len(qs))
	for i, q := range qs {
		color := "#0b5cad"
		if q.Fraction() >= 0.8 {
			color = "#bf8700"
		}
		bars[i] = bar{label: q.Account.Label(), value: q.Fraction(), color: color, note: fmt.Sprintf("%d of %d ids", q.Used, q.Quota)}
	}
	return hbars("ids pseudonymised, by account, of its quota", "share of the account's quota used", bars, 1, 0.25,
		func(t float64) string { return fmt.Sprintf("%.0f%%", t*100) })
}

// countChart draws counts by key (in order, then the rest sorted).
func countChart(title, unit string, m map[string]int, order []string) template.HTML {
	var keys []string
	seen := map[string]bool{}
	for _, k := range order {
		if m[k] > 0 {
			keys = append(keys, k)
			seen[k] = true
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	keys = append(keys, rest...)
	most := 0
	bars := make([]bar, len(keys))
	for i, k := range keys {
		c := statusColor[k]
		if c == "" {
			c = "#0b5cad"
		}
		bars[i] = bar{label: k, value: float64(m[k]), note: strconv.Itoa(m[k]), color: c}
		most = max(most, m[k])
	}
	step := niceStep(float64(most) / 4)
	top := math.Max(step, math.Ceil(float64(most)/step)*step)
	return hbars(title, unit, bars, top, step, func(t float64) string { return strconv.FormatFloat(t, 'f', -1, 64) })
}

func niceStep(raw float64) float64 {
	if raw < 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

var lineColors = []string{"#0b5cad", "#bf3989", "#1a7f37", "#bc4c00", "#6639ba", "#0a7f8a", "#a40e26", "#57606a"}

// budgetTimeChart draws, for the (at most 8) pairs that spent the most,
// the share of the budget used over time (by each job's submission time):
// a y axis in percent, a time axis with dated ticks, a legend.
func budgetTimeChart(v *View) template.HTML {
	bs := v.Budgets
	if len(bs) == 0 {
		return template.HTML(`<p class="muted">No epsilon spent yet.</p>`)
	}
	if len(bs) > len(lineColors) {
		bs = bs[:len(lineColors)]
	}
	var t0, t1 time.Time
	for _, j := range v.Jobs {
		if j.Charged == 0 {
			continue
		}
		if t0.IsZero() || j.Submitted.Before(t0) {
			t0 = j.Submitted
		}
		if j.Submitted.After(t1) {
			t1 = j.Submitted
		}
	}
	// The time axis runs to the checkpoint: each line shows where its
	// budget stands now.
	if v.Checkpoint != nil && v.Checkpoint.Time.After(t1) {
		t1 = v.Checkpoint.Time
	}
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	const W, H, left, right, top, bottom = 760.0, 280.0, 56.0, 20.0, 16.0, 60.0
	x := func(t time.Time) float64 { return left + (W-left-right)*t.Sub(t0).Seconds()/span }
	y := func(f float64) float64 { return H - bottom - (H-top-bottom)*math.Min(f, 1) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="share of each budget used over time"><title>share of each budget used over time</title>`, W, H)
	for f := 0.0; f <= 1.0001; f += 0.25 {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e1e4e8"/><text x="%.0f" y="%.1f" text-anchor="end">%.0f%%</text>`, left, W-right, y(f), y(f), left-6, y(f)+4, f*100)
	}
	layout := "15:04:05"
	if t1.Sub(t0) > 20*time.Hour {
		layout = "2006-01-02"
	}
	ticks := 4 // dated ticks; only the ends when they would overlap
	if t1.Sub(t0) < 8*time.Second {
		ticks = 1
	}
	for i := 0; i <= ticks; i++ {
		t := t0.Add(time.Duration(float64(t1.Sub(t0)) * float64(i) / float64(ticks)))
		anchor := "middle"
		if i == 0 {
			anchor = "start"
		} else if i == ticks {
			anchor = "end"
		}
		if i > 0 && x(t)-x(t0) < 60 {
			break
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#57606a"/><text x="%.1f" y="%.0f" text-anchor="%s">%s</text>`, x(t), x(t), H-bottom, H-bottom+4, x(t), H-bottom+17, anchor, t.UTC().Format(layout))
	}
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#57606a"/><line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#57606a"/>`, left, left, top, H-bottom, left, W-right, H-bottom, H-bottom)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#57606a">job submitted (UTC, %s)</text>`, (left+W-right)/2, H-bottom+32, t0.UTC().Format("2006-01-02"))
	lx := left
	for i, bv := range bs {
		var pts strings.Builder
		cum := 0.0
		fmt.Fprintf(&pts, "%.1f,%.1f ", x(t0), y(0))
		for _, j := range v.Jobs {
			if j.Charged == 0 || j.Requester.String() != bv.Requester.Address || j.Dataset != bv.Dataset || bv.Budget <= 0 {
				continue
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(j.Submitted), y(cum/bv.Budget))
			cum += j.Charged
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(j.Submitted), y(cum/bv.Budget))
		}
		fmt.Fprintf(&pts, "%.1f,%.1f", x(t1), y(cum/math.Max(bv.Budget, 1e-12)))
		c := lineColors[i]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, pts.String())
		label := bv.Requester.Label() + " · " + bv.Dataset
		if lx+float64(len(label))*6.5+24 > W {
			break // the legend's line is full; the table below names every pair
		}
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="4" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`, lx, H-12, c, lx+16, H-7, esc(label))
		lx += float64(len([]rune(label)))*6.5 + 30
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// reportCSS is the report's style: a page that fits 1366 px and a phone,
// tables that wrap instead of widening the page.
const reportCSS = `*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;margin:0 auto;padding:16px;max-width:1280px}
h1{font-size:22px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:13px}th,td{border-bottom:1px solid #d0d7de;padding:5px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#eef1f4}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.nw{white-space:nowrap}
table.jobs{table-layout:fixed}table.jobs code{font-size:12px}
.ok{color:#116329}.bad{color:#a40e26}.muted{color:#57606a}code{font:12px ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600}.verdict.ok{background:#dcf4e3}.verdict.bad{background:#fde2e2}
.pill{display:inline-block;padding:0 7px;border-radius:9px;background:#e7ecf2;font-size:12px}.pill.completed,.pill.authorised,.pill.running{background:#dcf4e3;color:#116329}.pill.rejected,.pill.failed{background:#fde2e2;color:#a40e26}.pill.pending{background:#fff1cc;color:#7d4e00}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:8px 24px}
svg.chart{width:100%;max-width:760px;height:auto}svg.chart text{font:12px system-ui,sans-serif;fill:#1b1f24}
.scroll{overflow-x:auto}
svg.flows{display:block;margin:6px 0}svg.flows.narrow{display:none}g.flow{cursor:default}g.flow:focus{outline:none}g.flow:focus rect,g.flow:hover rect{stroke:#bf3989;stroke-width:3}
@media (max-width:700px){body{padding:8px}svg.flows.wide{display:none}svg.flows.narrow{display:block}table.jobs,table.jobs tbody,table.jobs tr,table.jobs td,table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}table.jobs thead,table.cards thead{display:none}table.jobs tr,table.cards tr{border:1px solid #d0d7de;border-radius:6px;margin:8px 0;padding:4px}table.jobs td,table.cards td{border:0;padding:2px 6px;text-align:left}table.jobs td::before,table.cards td::before{content:attr(data-label) ": ";color:#57606a}}`

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"eps":   fmtEps,
	"pct":   func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"join":  strings.Join,
	"flows": flowChart,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Title}}</title>
<style>{{.CSS}}</style></head>
<body><h1>{{.Title}}</h1>
{{if .R.OK}}<p class="verdict ok">OK: all checks hold for {{.R.Entries}} entries in {{.R.Blocks}} blocks.</p>{{else}}<p class="verdict bad">FAILED at index {{.R.FirstFailure.Index}}: {{.R.FirstFailure.Reason}}</p>{{end}}
<div class="grid"><div>
<h2>Checks</h2><table>{{range .Checks}}<tr><td>{{.K}}</td><td>{{if .V}}<span class="ok">pass</span>{{else}}<span class="bad">not passed</span>{{end}}</td></tr>{{end}}</table>
</div><div>
<h2>Signed checkpoint</h2>{{with .V.Checkpoint}}<table>
<tr><th>size</th><td>{{.Size}} entries</td></tr><tr><th>root</th><td><code>{{.Root}}</code></td></tr>
<tr><th>signed by</th><td>{{join .Signers ", "}} {{if .Trusted}}<span class="ok">(trusted keys)</span>{{else}}<span class="bad">(signature NOT checked: no trusted keys)</span>{{end}}</td></tr>
<tr><th>time</th><td>{{time .Time}} UTC</td></tr></table>{{end}}
<p class="muted">Replayed state hash <code>{{.R.StateHash}}</code>; {{.R.Actors}} accounts acted.</p>
</div></div>

<h2>Budgets: ε spent of each budget</h2>
{{.BudgetChart}}
<h3>Use of each budget over time</h3>
{{.BudgetTime}}
<div class="scroll"><table><thead><tr><th>requester</th><th>organisation</th><th>dataset</th><th class="num">jobs</th><th class="num">ε spent</th><th class="num">ε budget</th><th class="num">used</th></tr></thead><tbody>
{{range .V.Budgets}}<tr><td>{{.Requester.Name}} <code class="muted" title="{{.Requester.Address}}">{{.Requester.Short}}</code></td><td>{{.Requester.Org}}</td><td>{{.Dataset}}</td><td class="num">{{.Jobs}}</td><td class="num">{{eps .Spent}}</td><td class="num">{{eps .Budget}}</td><td class="num">{{pct .Fraction}}</td></tr>{{else}}<tr><td colspan="7" class="muted">none</td></tr>{{end}}
</tbody></table></div>
<h3>Privacy budgets as kept: each organisation on each population of data subjects</h3>
<p class="muted">Datasets of the same people (the same digest, or linked by a policy) share one population; every account of an organisation draws on its one budget there.</p>
<div class="scroll"><table><thead><tr><th>holder</th><th>population</th><th>datasets</th><th class="num">ε spent</th><th class="num">ε budget</th><th class="num">used</th></tr></thead><tbody>
{{range .V.Populations}}<tr><td>{{.Holder}}</td><td>{{.Population}}</td><td>{{range $i, $d := .Datasets}}{{if $i}}, {{end}}{{$d}}{{end}}</td><td class="num">{{eps .Spent}}</td><td class="num">{{eps .Budget}}</td><td class="num">{{pct .Fraction}}</td></tr>{{else}}<tr><td colspan="6" class="muted">none</td></tr>{{end}}
</tbody></table></div>

<div class="grid"><div><h2>Jobs by status</h2>{{.StatusChart}}</div><div><h2>Refusals by rule</h2>{{.RefusalsChart}}</div></div>

<h2>Jobs and refusals, in order</h2>
<table class="jobs"><colgroup><col style="width:6%"><col style="width:10%"><col style="width:11%"><col style="width:10%"><col style="width:12%"><col style="width:22%"><col style="width:14%"><col style="width:9%"><col style="width:6%"></colgroup>
<thead><tr><th>job</th><th>submitted (UTC)</th><th>requester</th><th>dataset · mode</th><th>purpose</th><th>query</th><th>status · reason</th><th>approved by</th><th class="num">ε</th></tr></thead><tbody>
{{range .Jobs}}<tr><td data-label="job">{{.ID}}</td><td data-label="submitted">{{time .Submitted}}</td><td data-label="requester">{{.RequesterOf.Label}} <code class="muted" title="{{.RequesterOf.Address}}">{{.RequesterOf.Short}}</code></td>
<td data-label="dataset">{{join (.Plan.Datasets .Dataset) " ⋈ "}} · {{.Mode}}</td><td data-label="purpose">{{.Purpose}}</td><td data-label="query"><code>{{.Query}}</code></td>
<td data-label="status"><span class="pill {{.Status}}">{{.Status}}</span>{{if .ReasonText}} {{.ReasonText}}{{end}}{{if .Refunded}} (ε returned){{end}}{{if .Shares}}<br><span class="muted">HE shares: {{join .Shares ", "}}</span>{{end}}</td>
<td data-label="approved by">{{range $i, $a := .ApproverOf}}{{if $i}}, {{end}}{{$a.Label}}{{else}}{{if and (eq .Needed 0) (ne .Status "rejected") (ne .Status "pending")}}<span class="muted">auto</span>{{end}}{{end}}</td><td data-label="ε" class="num">{{eps .Charged}}</td></tr>
{{else}}<tr><td colspan="9" class="muted">no jobs</td></tr>{{end}}</tbody></table>
{{if .EarlierJobs}}<p class="muted">The {{.EarlierJobs}} earlier jobs are left out here; the JSON report (ledger verify --out) lists every job.</p>{{end}}
<h2>Data flows of join jobs</h2>
<p class="muted">Each join moves only the columns its plan needs, under per-job tags, from the nodes holding the datasets to the node that runs it; each shipment's digest is on the ledger (job.flow) and was checked against the plan. Tab moves through the shipments.</p>
{{range .Joins}}<h3>{{.Job}} joins {{join .Datasets ", "}} <span class="pill {{.Status}}">{{.Status}}</span>{{if .Runner.Address}} · run by {{.Runner.Label}}{{end}}</h3>
{{flows . false}}{{flows . true}}
<table class="cards"><thead><tr><th>dataset</th><th>columns</th><th class="num">rows</th><th>from</th><th>to</th><th>digest of what moved</th><th class="num">entry</th></tr></thead><tbody>
{{range .Flows}}<tr><td data-label="dataset">{{.Dataset}}</td><td data-label="columns">{{join .Columns ", "}}</td><td data-label="rows" class="num">{{.Rows}}</td><td data-label="from">{{.FromOf.Label}}</td><td data-label="to">{{.ToOf.Label}}</td><td data-label="digest of what moved"><code>{{.DigestText}}</code></td><td data-label="ledger entry" class="num">{{.Index}}</td></tr>{{else}}<tr><td colspan="7" class="muted">nothing moved yet</td></tr>{{end}}
</tbody></table>
{{else}}<p class="muted">No join job on this ledger.</p>{{end}}
{{if .EarlierJoins}}<p class="muted">The {{.EarlierJoins}} earlier join jobs are left out here; ledger entries of kind job.flow list every shipment.</p>{{end}}

<h2>Accounts</h2><div class="scroll"><table><thead><tr><th>name</th><th>organisation</th><th>roles</th><th>address</th></tr></thead><tbody>
{{range .V.Accounts}}<tr><td>{{.Name}}</td><td>{{.Org}}</td><td>{{join .Roles ", "}}</td><td><code>{{.Address}}</code></td></tr>{{end}}</tbody></table></div>

<h2>Datasets</h2><div class="scroll"><table><thead><tr><th>dataset</th><th>owner</th><th class="num">rows</th><th>columns (class)</th><th>registered (UTC)</th><th>sha256</th></tr></thead><tbody>
{{range .V.Datasets}}<tr><td class="nw">{{.Name}}</td><td class="nw">{{.OwnerOf.Label}}</td><td class="num">{{.Rows}}</td><td>{{.Columns}}</td><td>{{time .Time}}</td><td><code title="{{.SHA256}}">{{printf "%.16s" .SHA256}}…</code></td></tr>{{else}}<tr><td colspan="6" class="muted">none</td></tr>{{end}}</tbody></table></div>

<h2>Policies</h2><div class="scroll"><table><thead><tr><th>policy</th><th>dataset</th><th>purpose</th><th>grantees</th><th>modes</th><th class="num">ε per query / budget</th><th>min group</th><th>approval</th><th>expires</th><th>state</th></tr></thead><tbody>
{{range .V.Policies}}<tr><td>{{.ID}}</td><td>{{.Dataset}}</td><td>{{.Purpose}}</td><td>{{join .Grantees ", "}}</td><td>{{join .Modes ", "}}</td><td class="num">{{eps .DP.EpsilonPerQuery}} / {{eps .DP.EpsilonBudget}}</td><td>{{.MinGroupSize}}</td><td>{{.Approval.Mode}}{{if .Approval.Approvers}}, {{.Approval.Approvers}} approver(s){{end}}</td><td>{{time .Expires}}</td><td>{{if .Revoked}}<span class="bad">revoked</span>{{else}}active{{end}}</td></tr>{{else}}<tr><td colspan="10" class="muted">none</td></tr>{{end}}</tbody></table></div>

<h2>HE key ceremony</h2>{{with .V.HE}}<p>Ceremony {{.ID}} ({{time .Time}} UTC): any {{.Threshold}} of {{len .Participants}} nodes decrypt together, none alone; parameters {{.Params}}.</p>
<table><thead><tr><th>node</th><th class="num">Shamir point</th><th>account</th></tr></thead><tbody>{{range .Participants}}<tr><td>{{.Node}}</td><td class="num">{{.Point}}</td><td><code>{{.Address}}</code></td></tr>{{end}}</tbody></table>
<p class="muted">public key sha256 <code>{{.PublicKey}}</code>; transcript sha256 <code>{{.Transcript}}</code>. Decryption shares per job are listed with the jobs.</p>{{else}}<p class="muted">No HE key ceremony on this ledger.</p>{{end}}

<h2>Consortium pseudonyms</h2>{{with .V.Pseudonym}}<p>Key {{.ID}} ({{.Suite}}, generation {{.Generation}}, {{time .Time}} UTC): any {{.Threshold}} of {{len .Participants}} nodes evaluate together, none holds the key.</p>{{else}}<p class="muted">No pseudonym key ceremony on this ledger.</p>{{end}}
{{if .V.Quotas}}{{.QuotaChart}}
<div class="scroll"><table><thead><tr><th>account</th><th>roles</th><th class="num">ids pseudonymised</th><th class="num">quota</th><th class="num">used</th></tr></thead><tbody>
{{range .V.Quotas}}<tr><td>{{.Account.Label}} <code class="muted" title="{{.Account.Address}}">{{.Account.Short}}</code></td><td>{{join .Account.Roles ", "}}</td><td class="num">{{.Used}}</td><td class="num">{{.Quota}}</td><td class="num">{{pct .Fraction}}</td></tr>{{end}}
</tbody></table></div>{{else}}<p class="muted">No ids pseudonymised with the consortium's key.</p>{{end}}

<h2>Log history: the Merkle root after each block</h2>
<p class="muted">The ledger keeps no history of signed checkpoints (a node signs its latest when asked): the signed checkpoint this verification used is at the top. Each block's Merkle root below was recomputed from its entries during verification.{{if .Earlier}} The {{.Earlier}} earlier blocks are left out here.{{end}}</p>
<div class="scroll"><table><thead><tr><th class="num">block</th><th class="num">log size</th><th>time (UTC)</th><th>proposed by</th><th>root (hex)</th></tr></thead><tbody>
{{range .Blocks}}<tr><td class="num">{{.Height}}</td><td class="num">{{.Size}}</td><td>{{time .Time}}</td><td>{{.Proposer}}</td><td><code>{{.Root}}</code></td></tr>{{else}}<tr><td colspan="5" class="muted">none</td></tr>{{end}}</tbody></table></div>

<h2>Entries by kind</h2><table>{{range .Kinds}}<tr><td>{{.K}}</td><td class="num">{{.V}}</td></tr>{{end}}</table>
</body></html>
`))
