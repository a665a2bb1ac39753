package audit

import (
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
)

// WriteHTML writes the report as one self-contained page: the checks,
// tables of jobs, budgets and refusals, and a chart of jobs and epsilon
// spent over time (inline SVG; no script, no external resource).
func WriteHTML(w io.Writer, rep *Report, title string, checks map[string]bool) error {
	type kv struct {
		K string
		V any
	}
	var eps []kv
	for req, byDS := range rep.Epsilon {
		for ds, e := range byDS {
			eps = append(eps, kv{req + " on " + ds, e})
		}
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].K < eps[j].K })
	var budgets []kv
	for pop, byHolder := range rep.Budgets {
		for h, e := range byHolder {
			budgets = append(budgets, kv{h + " on " + pop, e})
		}
	}
	sort.Slice(budgets, func(i, j int) bool { return budgets[i].K < budgets[j].K })
	sorted := func(m map[string]int) []kv {
		var out []kv
		for k, v := range m {
			out = append(out, kv{k, v})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
		return out
	}
	var chk []kv
	for k, v := range checks {
		chk = append(chk, kv{k, v})
	}
	sort.Slice(chk, func(i, j int) bool { return chk[i].K < chk[j].K })
	return reportPage.Execute(w, map[string]any{
		"Title": title, "R": rep, "Checks": chk, "Jobs": sorted(rep.Jobs), "Refusals": sorted(rep.Refusals),
		"Kinds": sorted(rep.Kinds), "Eps": eps, "Budgets": budgets, "Chart": template.HTML(chart(rep.Timeline)),
	})
}

// chart draws cumulative jobs (all, completed) and cumulative epsilon
// over time as an SVG.
func chart(tl []JobEvent) string {
	if len(tl) == 0 {
		return "<p>No jobs yet.</p>"
	}
	ev := append([]JobEvent(nil), tl...)
	sort.Slice(ev, func(i, j int) bool { return ev[i].Time.Before(ev[j].Time) })
	const W, H, pad = 720.0, 240.0, 40.0
	t0, t1 := ev[0].Time, ev[len(ev)-1].Time
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	totalEps := 0.0
	for _, e := range ev {
		totalEps += e.Epsilon
	}
	x := func(i int) float64 { return pad + (W-2*pad)*ev[i].Time.Sub(t0).Seconds()/span }
	var jobs, epsl strings.Builder
	cum := 0.0
	for i := range ev {
		cum += ev[i].Epsilon
		fmt.Fprintf(&jobs, "%.1f,%.1f ", x(i), H-pad-(H-2*pad)*float64(i+1)/float64(len(ev)))
		y := H - pad
		if totalEps > 0 {
			y = H - pad - (H-2*pad)*cum/totalEps
		}
		fmt.Fprintf(&epsl, "%.1f,%.1f ", x(i), y)
	}
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" role="img" aria-label="jobs and epsilon over time">
<rect x="0" y="0" width="%.0f" height="%.0f" fill="#fafafa" stroke="#ccc"/>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" points="%s"/>
<text x="%.0f" y="20" font-size="12" fill="#1f77b4">jobs (cumulative, %d)</text>
<text x="%.0f" y="36" font-size="12" fill="#d62728">epsilon spent (cumulative, %g)</text>
<text x="%.0f" y="%.0f" font-size="11">%s</text>
<text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%s</text>
</svg>`, W, H, W, H, jobs.String(), epsl.String(), pad, len(ev), pad, totalEps, pad, H-12, t0.Format("2006-01-02 15:04:05"), W-pad, H-12, t1.Format("2006-01-02 15:04:05"))
}

var reportPage = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font:14px/1.4 sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.ok{color:#080}.bad{color:#b00}code{font-size:12px}</style></head>
<body><h1>{{.Title}}</h1>
{{if .R.OK}}<p class="ok"><b>OK: all checks hold.</b></p>{{else}}<p class="bad"><b>FAILED at index {{.R.FirstFailure.Index}}: {{.R.FirstFailure.Reason}}</b></p>{{end}}
<p>{{.R.Entries}} entries in {{.R.Blocks}} blocks; root <code>{{.R.Root}}</code>; replayed state hash <code>{{.R.StateHash}}</code>.</p>
<h2>Checks</h2><table>{{range .Checks}}<tr><td>{{.K}}</td><td>{{if .V}}<span class="ok">pass</span>{{else}}<span class="bad">not passed</span>{{end}}</td></tr>{{end}}</table>
<h2>Jobs and epsilon over time</h2>{{.Chart}}
<h2>Jobs by status</h2><table>{{range .Jobs}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{end}}</table>
<h2>Privacy budgets spent, by organisation and population of data subjects</h2><table>{{range .Budgets}}<tr><td><code>{{.K}}</code></td><td>{{.V}}</td></tr>{{else}}<tr><td>none</td></tr>{{end}}</table>
<h2>Epsilon spent, by requester and dataset</h2><table>{{range .Eps}}<tr><td><code>{{.K}}</code></td><td>{{.V}}</td></tr>{{end}}</table>
<h2>Refusals by rule</h2><table>{{range .Refusals}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{else}}<tr><td>none</td></tr>{{end}}</table>
<h2>Entries by kind</h2><table>{{range .Kinds}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{end}}</table>
<h2>Jobs</h2><table><tr><th>job</th><th>submitted</th><th>requester</th><th>dataset</th><th>purpose</th><th>status</th><th>epsilon</th><th>result sha256</th></tr>
{{range .R.Timeline}}<tr><td>{{.Job}}</td><td>{{.Time.Format "2006-01-02 15:04:05"}}</td><td><code>{{.Requester}}</code></td><td>{{.Dataset}}</td><td>{{.Purpose}}</td><td>{{.Status}}</td><td>{{.Epsilon}}</td><td><code>{{.ResultHash}}</code></td></tr>{{end}}</table>
</body></html>
`))
