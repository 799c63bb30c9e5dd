package report

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
)

// The HTML page is one self-contained file: inline CSS, inline SVG charts,
// no script, no font, image or style sheet from anywhere else, so it opens
// offline and an auditor's browser fetches nothing. The only links are
// relative ones to the pack's own evidence files.

// diagram is the data-flow diagram laid out for drawing (SVG and PDF).
type diagram struct {
	W, H  float64
	Nodes []diagramNode
	Edges []diagramEdge
}

type diagramNode struct {
	Node
	X, Y, R float64
}

type diagramEdge struct {
	Edge
	X1, Y1, X2, Y2 float64 // from the client's rim to the server's rim
	LX, LY         float64 // label position
	Width          float64
}

// layoutDiagram puts external on the left and the declared segments on a
// circle, CDE segments to the right, in name order, so a re-run draws the
// same picture.
func layoutDiagram(df DataFlow) diagram {
	d := diagram{W: 760, H: 460}
	var inner []Node
	var ext *Node
	for i := range df.Nodes {
		n := df.Nodes[i]
		if n.External {
			ext = &n
			continue
		}
		inner = append(inner, n)
	}
	// CDE segments last, so they land on the right of the circle.
	sort.SliceStable(inner, func(i, j int) bool { return !inner[i].CDE && inner[j].CDE })
	cx, cy, rad := 450.0, d.H/2, 170.0
	pos := map[string]*diagramNode{}
	if ext != nil {
		d.Nodes = append(d.Nodes, diagramNode{Node: *ext, X: 80, Y: cy, R: 42})
	}
	for i, n := range inner {
		a := math.Pi + 2*math.Pi*float64(i)/float64(max(len(inner), 1))
		if len(inner) == 1 {
			a = 0
		}
		// Start at the left (nearest external) and go clockwise.
		d.Nodes = append(d.Nodes, diagramNode{Node: n, X: cx + rad*math.Cos(a), Y: cy - rad*math.Sin(a), R: 36})
	}
	for i := range d.Nodes {
		pos[d.Nodes[i].Segment] = &d.Nodes[i]
	}
	var maxFlows uint64 = 1
	for _, e := range df.Edges {
		maxFlows = max(maxFlows, e.Flows)
	}
	for _, e := range df.Edges {
		a, b := pos[e.Client], pos[e.Server]
		if a == nil || b == nil {
			continue
		}
		dx, dy := b.X-a.X, b.Y-a.Y
		l := math.Hypot(dx, dy)
		if l == 0 {
			continue
		}
		ux, uy := dx/l, dy/l
		// Offset both directions of a pair sideways so they do not overlap.
		ox, oy := -uy*6, ux*6
		de := diagramEdge{Edge: e,
			X1: a.X + ux*a.R + ox, Y1: a.Y + uy*a.R + oy,
			X2: b.X - ux*(b.R+6) + ox, Y2: b.Y - uy*(b.R+6) + oy,
			Width: 1 + 4*math.Log1p(float64(e.Flows))/math.Log1p(float64(maxFlows)),
		}
		de.LX, de.LY = (de.X1+de.X2)/2+ox*2, (de.Y1+de.Y2)/2+oy*2
		d.Edges = append(d.Edges, de)
	}
	return d
}

func (d diagram) svg() template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="data-flow diagram">`, d.W, d.H)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerUnits="userSpaceOnUse" markerWidth="12" markerHeight="12" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>` +
		`<marker id="arrowv" viewBox="0 0 10 10" refX="8" refY="5" markerUnits="userSpaceOnUse" markerWidth="12" markerHeight="12" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/></marker></defs>`)
	for _, e := range d.Edges {
		color, marker, dash := "#555", "arrow", ""
		if e.Violations > 0 {
			color, marker, dash = "#c0392b", "arrowv", ` stroke-dasharray="6 3"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s marker-end="url(#%s)"><title>%s -&gt; %s: %d flows, %d violations</title></line>`,
			e.X1, e.Y1, e.X2, e.Y2, color, e.Width, dash, marker, template.HTMLEscapeString(e.Client), template.HTMLEscapeString(e.Server), e.Flows, e.Violations)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle" fill="%s">%s</text>`, e.LX, e.LY, color, humanCount(e.Flows))
	}
	for _, n := range d.Nodes {
		fill, stroke, label := "#eef3f8", "#5b7a99", n.Segment
		switch {
		case n.CDE:
			fill, stroke = "#fdecea", "#c0392b"
		case n.External:
			fill, stroke = "#f4f4f4", "#999"
		}
		width := 2.0
		if n.CDE {
			width = 4
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%.0f" fill="%s" stroke="%s" stroke-width="%.0f"/>`, n.X, n.Y, n.R, fill, stroke, width)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="13" text-anchor="middle" font-weight="bold">%s</text>`, n.X, n.Y+4, template.HTMLEscapeString(label))
		if n.CDE {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle" fill="#c0392b">CDE</text>`, n.X, n.Y+18)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// resultsBar is a stacked bar of the controls' results.
func resultsBar(s Summary) template.HTML {
	total := s.ControlsMet + s.ControlsFindings + s.ControlsNotAssessable
	if total == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(`<svg viewBox="0 0 600 40" width="100%" role="img" aria-label="control results">`)
	x := 0.0
	for _, part := range []struct {
		n     int
		color string
		label string
	}{{s.ControlsMet, "#27ae60", "met"}, {s.ControlsFindings, "#e67e22", "findings"}, {s.ControlsNotAssessable, "#95a5a6", "not assessable"}} {
		if part.n == 0 {
			continue
		}
		w := 600 * float64(part.n) / float64(total)
		label := fmt.Sprintf("%d %s", part.n, part.label)
		if w < 110 {
			label = fmt.Sprint(part.n)
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="0" width="%.1f" height="40" fill="%s"><title>%d %s</title></rect><text x="%.1f" y="25" font-size="13" text-anchor="middle" fill="#fff">%s</text>`,
			x, w, part.color, part.n, part.label, x+w/2, label)
		x += w
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// edgeBars is a horizontal bar chart of the busiest CDE edges.
func edgeBars(df DataFlow) template.HTML {
	var edges []Edge
	for _, e := range df.Edges {
		if e.CDE {
			edges = append(edges, e)
		}
	}
	if len(edges) == 0 {
		return ""
	}
	sort.SliceStable(edges, func(i, j int) bool { return edges[i].Flows > edges[j].Flows })
	if len(edges) > 12 {
		edges = edges[:12]
	}
	maxF := float64(edges[0].Flows)
	var b strings.Builder
	h := 22*len(edges) + 4
	fmt.Fprintf(&b, `<svg viewBox="0 0 700 %d" width="100%%" role="img" aria-label="CDE edges by flows">`, h)
	for i, e := range edges {
		y := 22 * i
		w := 420 * float64(e.Flows) / math.Max(maxF, 1)
		color := "#5b7a99"
		if e.Violations > 0 {
			color = "#c0392b"
		}
		fmt.Fprintf(&b, `<text x="0" y="%d" font-size="12">%s</text><rect x="190" y="%d" width="%.1f" height="16" fill="%s"/><text x="%.1f" y="%d" font-size="11">%d</text>`,
			y+14, template.HTMLEscapeString(e.Client+" -> "+e.Server), y+2, math.Max(w, 1), color, 196+w, y+14, e.Flows)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func humanCount(n uint64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// SummaryRows are the executive summary's lines: label and value, in
// the order every rendering shows them.
func SummaryRows(s Summary) [][2]string {
	return [][2]string{
		{"Flows in the window", fmt.Sprint(s.Flows)},
		{"Flows into the CDE", fmt.Sprint(s.FlowsIntoCDE)},
		{"Flows out of the CDE", fmt.Sprint(s.FlowsOutOfCDE)},
		{"Policy violations (flows)", fmt.Sprint(s.Violations)},
		{"Violations touching the CDE (flows)", fmt.Sprint(s.CDEViolations)},
		{"Unused rules", fmt.Sprint(s.UnusedRules)},
		{"Identities reaching the CDE", fmt.Sprint(s.IdentitiesReachingCDE)},
		{"Unattributed flows into the CDE", fmt.Sprint(s.UnattributedIntoCDE)},
		{"Failed or denied access attempts", fmt.Sprint(s.FailedLogins)},
		{"Alerts", fmt.Sprint(s.Alerts)},
		{"Segmentation test runs (12 months)", fmt.Sprint(s.ProbeRuns)},
		{"Oldest retained day", orDash(s.OldestRetainedDay)},
		{"Days of flows retained", fmt.Sprint(s.RetainedDays)},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// NumberRows returns a check's numbers sorted by name.
func NumberRows(n map[string]uint64) [][2]string {
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]string, len(keys))
	for i, k := range keys {
		out[i] = [2]string{strings.ReplaceAll(k, "_", " "), fmt.Sprint(n[k])}
	}
	return out
}

// ResultText is a result for people.
func ResultText(r string) string {
	switch r {
	case Met:
		return "Met"
	case Findings:
		return "Findings"
	}
	return "Not assessable"
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"result": ResultText, "numbers": NumberRows, "anchor": anchor,
	"ts": func(t interface{ Format(string) string }) string { return t.Format("2006-01-02 15:04:05 UTC") },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.R.FrameworkTitle}} evidence pack {{.R.ReportID}}</title>
<style>
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}.meta{color:#666}
.badge{display:inline-block;padding:.1em .6em;border-radius:.8em;color:#fff;font-size:.85em;font-weight:bold}
.met{background:#27ae60}.findings{background:#e67e22}.not_assessable{background:#95a5a6}
.check{border-left:4px solid #ddd;padding-left:1em;margin:1em 0}ul.findings li{margin:.1em 0}
nav ol{columns:2}
</style>
</head>
<body>
<h1>{{.R.FrameworkTitle}} evidence pack</h1>
<p class="meta">Report {{.R.ReportID}} · generated {{ts .R.GeneratedAt}} · window {{ts .R.Window.From}} to {{ts .R.Window.To}}<br>
Policy {{.R.Policy.File}} (SHA-256 {{.R.Policy.SHA256}}; {{.R.Policy.Segments}} segments, {{.R.Policy.Rules}} rules, default {{.R.Policy.Default}}) · CDE: {{range $i, $s := .R.CDESegments}}{{if $i}}, {{end}}{{$s}}{{else}}none tagged{{end}}</p>
<nav><h2>Contents</h2><ol><li><a href="#summary">Executive summary</a></li>{{range .R.Controls}}<li><a href="#{{anchor .ID}}">{{.ID}} {{.Title}}</a></li>{{end}}<li><a href="#evidence">Evidence files</a></li></ol></nav>
<h2 id="summary">Executive summary</h2>
{{.ResultsBar}}
<table>{{range .Summary}}<tr><th>{{index . 0}}</th><td class="n">{{index . 1}}</td></tr>{{end}}</table>
<table><tr><th>Control</th><th>Result</th><th>Title</th></tr>{{range .R.Controls}}<tr><td><a href="#{{anchor .ID}}">{{.ID}}</a></td><td><span class="badge {{.Result}}">{{result .Result}}</span></td><td>{{.Title}}</td></tr>{{end}}</table>
<h3>Data-flow diagram (observed)</h3>
<p class="meta">Segments and the traffic observed between them in the window, from the client segment to the segment offering the service; CDE segments in red, edges carrying violations dashed red, width by flows.</p>
{{.Diagram}}
{{if .EdgeBars}}<h3>CDE edges by flows</h3>{{.EdgeBars}}{{end}}
{{range .R.Controls}}
<h2 id="{{anchor .ID}}">{{.ID}} {{.Title}} <span class="badge {{.Result}}">{{result .Result}}</span></h2>
{{range .Checks}}<div class="check">
<h3>{{.Title}} <span class="badge {{.Result}}">{{result .Result}}</span></h3>
<p><b>What was checked.</b> {{.Checked}}</p>
<p><b>Result.</b> {{result .Result}}: {{.Reason}}.</p>
<table>{{range numbers .Numbers}}<tr><th>{{index . 0}}</th><td class="n">{{index . 1}}</td></tr>{{end}}</table>
{{if .Findings}}<p><b>Findings.</b></p><ul class="findings">{{range .Findings}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p><b>Evidence.</b> {{range $i, $e := .Evidence}}{{if $i}}, {{end}}<a href="{{$e}}">{{$e}}</a>{{end}}</p>
</div>{{end}}
{{end}}
<h2 id="evidence">Evidence files</h2>
<p>Every number above is the sum or count of rows of these files. MANIFEST.sha256 lists the SHA-256 of every file of the pack: check it with <code>sha256sum -c MANIFEST.sha256</code> or <code>flowaudit report verify DIR</code>.</p>
<ul>{{range .R.Evidence}}<li><a href="{{.}}">{{.}}</a></li>{{end}}</ul>
</body>
</html>
`))

func anchor(id string) string {
	return "c-" + strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, id)
}

// RenderHTML returns index.html.
func RenderHTML(p *Pack) ([]byte, error) {
	var buf bytes.Buffer
	err := pageTemplate.Execute(&buf, map[string]any{
		"R": p.Report, "Summary": SummaryRows(p.Report.Summary), "ResultsBar": resultsBar(p.Report.Summary),
		"Diagram": layoutDiagram(p.Report.DataFlow).svg(), "EdgeBars": edgeBars(p.Report.DataFlow),
	})
	return buf.Bytes(), err
}
