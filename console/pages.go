package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/report"
)

const flowsPerPage = 50

var funcs = template.FuncMap{
	"bytes": humanBytes,
	"proto": protoName,
	"ts":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"addr": func(a netip.Addr) string {
		if !a.IsValid() {
			return "-"
		}
		return a.String()
	},
	"seg":      segLabel,
	"ranges":   func() []string { return RangeChoices },
	"verdicts": func() []string { return VerdictChoices },
	"dims":     func() []string { return query.Dimensions },
	"join":     func(v []string) string { return strings.Join(v, ", ") },
	"pct":      func(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) },
	"dash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
	"add":   func(a, b int) int { return a + b },
	"url":   func(s string) template.URL { return template.URL(s) },
	"list3": func() []string { return []string{"allowed", "violation", query.VerdictStaged} },
	"add1":  func(r float64) float64 { return r + 5 },
	"add1f": func(a, b float64) float64 { return a + b },
	"sevs":  func() []string { return []string{"critical", "high", "medium", "low"} },
}

func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// params reads the request's parameters, answering 400 itself on an error.
func (s *Server) params(w http.ResponseWriter, r *http.Request, active, defRange string) (params, bool) {
	p, err := parseParams(r.URL.Query(), s.deps.Now(), defRange)
	if err != nil {
		s.fail(w, page{Title: "Bad request", Active: active, P: p}, http.StatusBadRequest, err)
		return p, false
	}
	return p, true
}

type mapData struct {
	Map       segmentMap
	Edges     []query.SegmentEdge
	Detail    *query.EdgeDetail
	Alerts    []query.Alert
	Edge      *query.SegmentEdge
	PolicyErr string
	FlowsHref string
	Zoom      string // zoomed into this segment's workloads
	Grouped   bool   // segments grouped by tag
	Group     string // the expanded group
	Back      string // the map without zoom or expansion
}

func (s *Server) handleMap(w http.ResponseWriter, r *http.Request) {
	p, ok := s.params(w, r, "map", "24h")
	if !ok {
		return
	}
	pg := page{Title: "Segment map", Active: "map", P: p}
	edges, err := s.deps.Reader.SegmentEdges(r.Context(), p.window, p.filter.EdgeFilter)
	if err != nil {
		s.fail(w, pg, http.StatusBadGateway, err)
		return
	}
	d := mapData{Edges: edges}
	m, perr := s.loadPolicy()
	if perr != nil {
		d.PolicyErr = perr.Error()
	}
	tags := segmentTags(m)
	shown := edges
	v := segmentView(tags, p)
	switch {
	case p.Segment != "":
		if shown, err = s.deps.Reader.WorkloadEdges(r.Context(), p.window, p.filter.EdgeFilter, p.Segment); err != nil {
			s.fail(w, pg, http.StatusBadGateway, err)
			return
		}
		v = workloadView(tags, p)
		d.Zoom = p.Segment
		d.Back = "/map?" + string(p.Query())
		pg.Title = "Segment map: workloads of " + segLabel(p.Segment)
	case distinctSegments(edges) > groupAbove:
		var counts map[string]int
		shown, counts = groupEdges(edges, tags, p.Group)
		v = groupView(tags, counts, p)
		d.Grouped = true
		d.Group = p.Group
		d.Back = "/map?" + string(p.Query())
	}
	d.Map = layout(shown, v, p)
	if p.Selected {
		for i := range edges {
			if edges[i].Client == p.Client && edges[i].Server == p.Server {
				d.Edge = &edges[i]
			}
		}
		if d.Edge == nil {
			d.Edge = &query.SegmentEdge{Client: p.Client, Server: p.Server}
		}
		var (
			wg         sync.WaitGroup
			all        []query.Alert
			errD, errA error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			d.Detail, errD = s.deps.Reader.EdgeDetail(r.Context(), p.window, p.filter.EdgeFilter, p.Client, p.Server, 10)
		}()
		go func() {
			defer wg.Done()
			all, errA = s.deps.Reader.Alerts(r.Context(), p.window, nil)
		}()
		wg.Wait()
		if err := errors.Join(errD, errA); err != nil {
			s.fail(w, pg, http.StatusBadGateway, err)
			return
		}
		for _, a := range all {
			if (a.SrcSegment == p.Client && a.DstSegment == p.Server) || (a.SrcSegment == p.Server && a.DstSegment == p.Client) {
				d.Alerts = append(d.Alerts, a)
			}
		}
	}
	pg.Data = d
	s.render(w, "map.html", pg)
}

// apiEdge is one edge of /api/edges.
type apiEdge struct {
	Client       string `json:"client"`
	Server       string `json:"server"`
	Class        string `json:"class"`
	Flows        uint64 `json:"flows"`
	Bytes        uint64 `json:"bytes"`
	Violations   uint64 `json:"violations"`
	StagedDenies uint64 `json:"staged_denies"`
}

func (s *Server) handleAPIEdges(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.Query(), s.deps.Now(), "24h")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	edges, err := s.deps.Reader.SegmentEdges(r.Context(), p.window, p.filter.EdgeFilter)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	out := []apiEdge{}
	for _, e := range edges {
		out = append(out, apiEdge{e.Client, e.Server, e.Class(), e.Flows, e.Bytes, e.Violations, e.StagedDenies})
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": p.window.From, "to": p.window.To, "edges": out})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

type flowsData struct {
	Series     seriesChart
	Sankey     sankeyChart
	Flows      []query.FlowRow
	Total      uint64
	First      int
	Last       int
	Prev, Next string
}

func (p params) flowsQuery(kv ...string) string {
	top := ""
	if p.Top != defaultTop {
		top = strconv.Itoa(p.Top)
	}
	base := []string{"src_segment", p.SrcSegment, "dst_segment", p.DstSegment, "addr", p.Addr, "exporter", p.Exporter,
		"dim", p.Dim, "top", top}
	return string(p.Query(append(base, kv...)...))
}

func (s *Server) handleFlows(w http.ResponseWriter, r *http.Request) {
	p, ok := s.params(w, r, "flows", "1h")
	if !ok {
		return
	}
	pg := page{Title: "Flows", Active: "flows", P: p}
	// The list, the series and the Sankey at once.
	var (
		wg                  sync.WaitGroup
		rows                []query.FlowRow
		total               uint64
		keys                []query.SeriesKey
		paths               []query.SankeyPath
		errList, errS, errP error
		step                = stepFor(p.window)
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		rows, total, errList = s.deps.Reader.Flows(r.Context(), p.window, p.filter, flowsPerPage, (p.Page-1)*flowsPerPage)
	}()
	go func() {
		defer wg.Done()
		keys, errS = s.deps.Reader.FlowSeries(r.Context(), p.window, p.filter, p.Dim, step)
	}()
	go func() {
		defer wg.Done()
		paths, errP = s.deps.Reader.SankeyPaths(r.Context(), p.window, p.filter, p.Top, p.Metric == "bytes")
	}()
	wg.Wait()
	if err := errors.Join(errList, errS, errP); err != nil {
		s.fail(w, pg, http.StatusBadGateway, err)
		return
	}
	d := flowsData{Flows: rows, Total: total, First: (p.Page-1)*flowsPerPage + 1, Last: (p.Page-1)*flowsPerPage + len(rows),
		Series: buildSeries(keys, p.window, step, p), Sankey: buildSankey(paths, p)}
	if p.Page > 1 {
		d.Prev = "/flows?" + p.flowsQuery("page", strconv.Itoa(p.Page-1))
	}
	if uint64(d.Last) < total {
		d.Next = "/flows?" + p.flowsQuery("page", strconv.Itoa(p.Page+1))
	}
	pg.Data = d
	s.render(w, "flows.html", pg)
}

type alertsData struct {
	Alerts     []query.Alert
	Severities []query.Tally
	Kinds      []query.Tally
}

var severityOrder = map[string]int{"critical": 0, "high": 1, "medium": 2, "low": 3}

func (s *Server) handleAlerts(w http.ResponseWriter, r *http.Request) {
	p, ok := s.params(w, r, "alerts", "7d")
	if !ok {
		return
	}
	pg := page{Title: "Alerts", Active: "alerts", P: p}
	var kinds []string
	if p.Kind != "" {
		kinds = []string{p.Kind}
	}
	all, err := s.deps.Reader.Alerts(r.Context(), p.window, kinds)
	if err != nil {
		s.fail(w, pg, http.StatusBadGateway, err)
		return
	}
	d := alertsData{}
	sev, kind := map[string]uint64{}, map[string]uint64{}
	for i := len(all) - 1; i >= 0; i-- { // newest first
		a := all[i]
		sev[a.Severity]++
		kind[a.Kind]++
		if p.Severity == "" || a.Severity == p.Severity {
			d.Alerts = append(d.Alerts, a)
		}
	}
	d.Severities = tallies(sev, func(a, b string) bool {
		oa, okA := severityOrder[a]
		ob, okB := severityOrder[b]
		if okA != okB {
			return okA
		}
		if oa != ob {
			return oa < ob
		}
		return a < b
	})
	d.Kinds = tallies(kind, func(a, b string) bool { return a < b })
	pg.Data = d
	s.render(w, "alerts.html", pg)
}

func tallies(m map[string]uint64, less func(a, b string) bool) []query.Tally {
	out := make([]query.Tally, 0, len(m))
	for k, v := range m {
		out = append(out, query.Tally{Value: k, Flows: v})
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i].Value, out[j].Value) })
	return out
}

type alertData struct {
	Alert     *query.Alert
	Evidence  string
	FlowsHref string
}

func (s *Server) handleAlert(w http.ResponseWriter, r *http.Request) {
	pg := page{Title: "Alert", Active: "alerts"}
	pg.P, _ = parseParams(nil, s.deps.Now(), "7d")
	a, err := s.deps.Reader.AlertByID(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, pg, http.StatusBadGateway, err)
		return
	}
	if a == nil {
		s.fail(w, pg, http.StatusNotFound, fmt.Errorf("no alert %q in the alerts table", r.PathValue("id")))
		return
	}
	d := alertData{Alert: a, Evidence: a.Evidence}
	var buf bytes.Buffer
	if json.Indent(&buf, []byte(a.Evidence), "", "  ") == nil {
		d.Evidence = buf.String()
	}
	// The flows behind it: its addresses over its activity.
	fp := params{From: a.FirstSeen.UTC().Format(time.RFC3339), To: a.LastSeen.Add(time.Minute).UTC().Format(time.RFC3339), Metric: "flows"}
	kv := []string{}
	switch {
	case a.SrcAddr.IsValid():
		kv = append(kv, "addr", a.SrcAddr.String())
	case a.DstAddr.IsValid():
		kv = append(kv, "addr", a.DstAddr.String())
	}
	if a.DstPort != 0 {
		kv = append(kv, "port", strconv.Itoa(int(a.DstPort)))
	}
	d.FlowsHref = "/flows?" + string(fp.Query(kv...))
	pg.Data = d
	pg.Title = "Alert " + a.ID
	s.render(w, "alert.html", pg)
}

type auditData struct {
	NoPolicy bool
	Rec      *audit.Recommendation
}

func (s *Server) recommend(r *http.Request, p params) (*audit.Recommendation, *auditData, error) {
	m, err := s.loadPolicy()
	if err != nil {
		return nil, nil, err
	}
	if m == nil {
		return nil, &auditData{NoPolicy: true}, nil
	}
	edges, err := s.deps.Reader.ServiceEdges(r.Context(), p.window)
	if err != nil {
		return nil, nil, err
	}
	alerts, err := s.deps.Reader.Alerts(r.Context(), p.window, audit.DefaultHoldKinds)
	if err != nil {
		return nil, nil, err
	}
	rec := audit.Recommend(edges, alerts, m, audit.DefaultRecommendOptions(p.window))
	return rec, &auditData{Rec: rec}, nil
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	p, ok := s.params(w, r, "audit", "7d")
	if !ok {
		return
	}
	pg := page{Title: "Audit", Active: "audit", P: p}
	_, d, err := s.recommend(r, p)
	if err != nil {
		s.fail(w, pg, http.StatusBadGateway, err)
		return
	}
	pg.Data = d
	s.render(w, "audit.html", pg)
}

func (s *Server) handleAuditPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.Query(), s.deps.Now(), "7d")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec, d, err := s.recommend(r, p)
	if err == nil && d.NoPolicy {
		err = errors.New("the configuration has no policy.file: recommendations need the policy whose segments label the traffic")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	m, _ := s.loadPolicy()
	var buf bytes.Buffer
	if err := audit.WritePolicy(&buf, m.Policy(), rec); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Content-Disposition", `attachment; filename="recommended-policy.yaml"`)
	_, _ = w.Write(buf.Bytes())
}

type reportRow struct {
	query.ReportRow
	Summary report.Summary
	Files   []string // the pack's files this console can serve
}

type reportsData struct {
	Reports []reportRow
	Dir     string
}

// packFiles are the files of a pack the console serves.
var packFiles = []string{report.FileHTML, report.FilePDF, report.FileJSON, report.FileManifest}

// packDir is a pack's directory when it is inside the configured
// report.dir and exists here; "" otherwise.
func (s *Server) packDir(path string) string {
	if s.deps.ReportDir == "" || path == "" {
		return ""
	}
	root, err1 := filepath.Abs(s.deps.ReportDir)
	dir, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return ""
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return ""
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	return dir
}

func (s *Server) handleReports(w http.ResponseWriter, r *http.Request) {
	p, ok := s.params(w, r, "reports", "30d")
	if !ok {
		return
	}
	pg := page{Title: "Reports", Active: "reports", P: p}
	rows, err := s.deps.Reader.Reports(r.Context(), p.window, 200)
	if err != nil {
		s.fail(w, pg, http.StatusBadGateway, err)
		return
	}
	d := reportsData{Dir: s.deps.ReportDir}
	for _, row := range rows {
		rr := reportRow{ReportRow: row}
		_ = json.Unmarshal([]byte(row.Summary), &rr.Summary)
		if dir := s.packDir(row.Path); dir != "" {
			for _, f := range packFiles {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					rr.Files = append(rr.Files, f)
				}
			}
		}
		d.Reports = append(d.Reports, rr)
	}
	pg.Data = d
	s.render(w, "reports.html", pg)
}

// handleReportFile serves one file of a pack under report.dir. The pack's
// index.html is self-contained (inline CSS and SVG), so it gets a policy
// of its own that still loads nothing from anywhere.
func (s *Server) handleReportFile(w http.ResponseWriter, r *http.Request) {
	id, file := r.PathValue("id"), r.PathValue("file")
	known := false
	for _, f := range packFiles {
		known = known || f == file
	}
	if !known {
		http.Error(w, fmt.Sprintf("%s is not a file of a pack (%s)", file, strings.Join(packFiles, ", ")), http.StatusNotFound)
		return
	}
	row, err := s.deps.Reader.ReportByID(r.Context(), id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if row == nil {
		http.Error(w, fmt.Sprintf("no report %q in the reports table", id), http.StatusNotFound)
		return
	}
	dir := s.packDir(row.Path)
	if dir == "" {
		http.Error(w, fmt.Sprintf("report %s is at %s, not under this console's report.dir %q", id, row.Path, s.deps.ReportDir), http.StatusNotFound)
		return
	}
	if file == report.FileHTML {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
	}
	// ServeContent, not ServeFile: ServeFile redirects .../index.html.
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.ServeContent(w, r, file, st.ModTime(), f)
}
