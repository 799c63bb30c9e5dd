package console

import (
	"fmt"
	"html/template"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/query"
)

// params are a page's URL query parameters: every view is a shareable URL.
type params struct {
	Range    string // 1h, 6h, 24h, 7d, 30d; ignored when From and To are set
	From, To string // RFC 3339
	Identity string
	Port     string
	Verdict  string
	Metric   string // bytes or flows (map thickness)
	Client   string // selected edge on the map
	Server   string
	Selected bool // an edge is selected
	// flows explorer
	SrcSegment, DstSegment, Addr, Exporter string
	Page                                   int
	// alerts
	Severity, Kind string
	// map: zoomed into a segment's workloads; the expanded tag group
	Segment, Group string
	// flows explorer: the time series' dimension and how many values of
	// each dimension stay apart from "other"
	Dim string
	Top int

	window query.Window
	filter query.FlowFilter
}

// defaultTop and maxTop bound the explorer's top-N.
const defaultTop, maxTop = 8, 50

var dimensionSet = func() map[string]bool {
	m := map[string]bool{}
	for _, d := range query.Dimensions {
		m[d] = true
	}
	return m
}()

var ranges = map[string]time.Duration{"1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour,
	"7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

// RangeChoices are the time ranges the forms offer.
var RangeChoices = []string{"1h", "6h", "24h", "7d", "30d"}

// VerdictChoices are the verdict filters the forms offer.
var VerdictChoices = []string{"allowed", "violation", query.VerdictStaged, "intra_segment", "unknown"}

// parseParams reads and checks the parameters; errors name the parameter.
func parseParams(q url.Values, now time.Time, defRange string) (params, error) {
	p := params{
		Range: q.Get("range"), From: q.Get("from"), To: q.Get("to"), Identity: q.Get("identity"),
		Port: q.Get("port"), Verdict: q.Get("verdict"), Metric: q.Get("metric"),
		Client: q.Get("client"), Server: q.Get("server"),
		SrcSegment: q.Get("src_segment"), DstSegment: q.Get("dst_segment"), Addr: q.Get("addr"), Exporter: q.Get("exporter"),
		Severity: q.Get("severity"), Kind: q.Get("kind"),
		Segment: q.Get("segment"), Group: q.Get("group"), Dim: q.Get("dim"),
	}
	if p.Dim == "" {
		p.Dim = "server_segment"
	}
	if _, ok := dimensionSet[p.Dim]; !ok {
		return p, fmt.Errorf("dim: %q is not one of %s", p.Dim, strings.Join(query.Dimensions, ", "))
	}
	p.Top = defaultTop
	if s := q.Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxTop {
			return p, fmt.Errorf("top: %q is not a number from 1 to %d", s, maxTop)
		}
		p.Top = n
	}
	p.Selected = q.Has("client") && q.Has("server")
	if p.Metric == "" {
		p.Metric = "flows"
	}
	if p.Metric != "flows" && p.Metric != "bytes" {
		return p, fmt.Errorf("metric: %q is not flows or bytes", p.Metric)
	}
	// A range chosen in a form wins over the from and to it carries along.
	if p.Range == "" && (p.From != "" || p.To != "") {
		from, err := time.Parse(time.RFC3339, p.From)
		if err != nil {
			return p, fmt.Errorf("from: %q is not an RFC 3339 time such as 2026-12-01T10:00:00Z", p.From)
		}
		to, err := time.Parse(time.RFC3339, p.To)
		if err != nil {
			return p, fmt.Errorf("to: %q is not an RFC 3339 time such as 2026-12-01T11:00:00Z", p.To)
		}
		if !to.After(from) {
			return p, fmt.Errorf("to: %s is not after from %s", p.To, p.From)
		}
		p.window = query.Window{From: from.UTC(), To: to.UTC()}
		p.Range = ""
	} else {
		p.From, p.To = "", ""
		if p.Range == "" {
			p.Range = defRange
		}
		d, ok := ranges[p.Range]
		if !ok {
			return p, fmt.Errorf("range: %q is not one of 1h, 6h, 24h, 7d, 30d (or give from and to)", p.Range)
		}
		if d >= 6*time.Hour {
			// Whole hours, so the map reads the hourly rollup.
			to := now.UTC().Truncate(time.Hour).Add(time.Hour)
			p.window = query.Window{From: to.Add(-d), To: to}
		} else {
			// Whole minutes (ending at the next one), so the pages read
			// the minute rollup.
			to := now.UTC().Truncate(time.Minute)
			if to.Before(now) {
				to = to.Add(time.Minute)
			}
			p.window = query.Window{From: to.Add(-d), To: to}
		}
	}
	p.filter.Identity = p.Identity
	if p.Port != "" {
		n, err := strconv.ParseUint(p.Port, 10, 16)
		if err != nil || n == 0 {
			return p, fmt.Errorf("port: %q is not a port number 1-65535", p.Port)
		}
		p.filter.Port = uint16(n)
	}
	if p.Verdict != "" {
		ok := false
		for _, v := range VerdictChoices {
			ok = ok || v == p.Verdict
		}
		if !ok {
			return p, fmt.Errorf("verdict: %q is not allowed, violation, %s, intra_segment or unknown", p.Verdict, query.VerdictStaged)
		}
		p.filter.Verdict = p.Verdict
	}
	p.filter.SrcSegment, p.filter.DstSegment = p.SrcSegment, p.DstSegment
	for _, a := range []struct {
		name, v string
		dst     *netip.Addr
	}{{"addr", p.Addr, &p.filter.Addr}, {"exporter", p.Exporter, &p.filter.Exporter}} {
		if a.v == "" {
			continue
		}
		ip, err := netip.ParseAddr(a.v)
		if err != nil {
			return p, fmt.Errorf("%s: %q is not an IP address", a.name, a.v)
		}
		*a.dst = ip.Unmap()
	}
	if s := q.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return p, fmt.Errorf("page: %q is not a page number from 1", s)
		}
		p.Page = n
	} else {
		p.Page = 1
	}
	return p, nil
}

// Window is the time range the page shows.
func (p params) Window() query.Window { return p.window }

// Query renders the parameters as a query string, with kv (name, value
// pairs) overriding; an empty value drops the parameter.
func (p params) Query(kv ...string) template.URL {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("range", p.Range)
	set("from", p.From)
	set("to", p.To)
	set("identity", p.Identity)
	set("port", p.Port)
	set("verdict", p.Verdict)
	if p.Metric != "flows" {
		set("metric", p.Metric)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	return template.URL(q.Encode())
}
