package console

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// The segment map: nodes on a circle in name order (a layout that is the
// same on every render), sized by the traffic they take part in; edges as
// curves from client to server, bent to one side so that both directions
// of a pair stay apart, coloured by verdict class and as thick as their
// share of the largest edge.

const (
	mapWidth, mapHeight = 960, 680
	minNode, maxNode    = 14.0, 42.0
	minEdge, maxEdge    = 1.5, 12.0
)

// mapNode is one segment on the map.
type mapNode struct {
	Name, Label string
	Href        string // zoom in (or out); "" = none
	X, Y, R     float64
	Flows       uint64
	Bytes       uint64
	Tags        string
	Sensitive   bool
	LabelX      float64
	LabelY      float64
	Anchor      string
}

// mapEdge is one segment edge on the map.
type mapEdge struct {
	query.SegmentEdge
	Path       string
	Width      float64
	LabelX     float64
	LabelY     float64
	Label      string
	Href       string
	Selected   bool
	ClassName  string
	ClientName string
	ServerName string
}

// segmentMap is the SVG's content.
type segmentMap struct {
	Width, Height int
	Nodes         []mapNode
	Edges         []mapEdge
	Metric        string
}

// segLabel names a segment on screen ("" is traffic no segment holds).
func segLabel(s string) string {
	if s == "" {
		return "(no segment)"
	}
	return s
}

// sensitive reports whether tags mark a segment as holding sensitive data.
func sensitive(tags []string) bool {
	for _, t := range tags {
		t = strings.ToLower(t)
		if t == "sensitive" || strings.HasPrefix(t, "pci") {
			return true
		}
	}
	return false
}

// view is what a map shows as its nodes: segments, the workloads of one
// segment (zoomed in), or tag groups of segments (above groupAbove).
type view struct {
	tags  func(node string) []string
	label func(node string) string
	// nodeHref and edgeHref link a node and an edge ("" = no link).
	nodeHref func(node string) string
	edgeHref func(e query.SegmentEdge) string
}

// segmentTags are the tags of each segment of the policy (nil without one).
func segmentTags(m *policy.Matcher) map[string][]string {
	tags := map[string][]string{}
	if m != nil {
		for _, s := range m.Policy().Segments {
			tags[s.Name] = s.Tags
		}
	}
	return tags
}

func layout(edges []query.SegmentEdge, v view, p params) segmentMap {
	metric := func(e query.SegmentEdge) float64 {
		if p.Metric == "bytes" {
			return float64(e.Bytes)
		}
		return float64(e.Flows)
	}
	type tot struct{ flows, bytes uint64 }
	totals := map[string]*tot{}
	add := func(n string, e query.SegmentEdge) {
		t := totals[n]
		if t == nil {
			t = &tot{}
			totals[n] = t
		}
		t.flows += e.Flows
		t.bytes += e.Bytes
	}
	maxEdgeV := 0.0
	for _, e := range edges {
		add(e.Client, e)
		if e.Server != e.Client {
			add(e.Server, e)
		}
		maxEdgeV = math.Max(maxEdgeV, metric(e))
	}
	names := make([]string, 0, len(totals))
	for n := range totals {
		names = append(names, n)
	}
	sort.Strings(names)
	maxNodeV := 0.0
	nodeV := func(n string) float64 {
		if p.Metric == "bytes" {
			return float64(totals[n].bytes)
		}
		return float64(totals[n].flows)
	}
	for _, n := range names {
		maxNodeV = math.Max(maxNodeV, nodeV(n))
	}
	cx, cy := float64(mapWidth)/2, float64(mapHeight)/2
	radius := math.Min(cx, cy) - maxNode - 60
	sm := segmentMap{Width: mapWidth, Height: mapHeight, Metric: p.Metric}
	pos := map[string]int{}
	for i, n := range names {
		angle := -math.Pi/2 + 2*math.Pi*float64(i)/float64(len(names))
		x, y := cx, cy
		if len(names) > 1 {
			x, y = cx+radius*math.Cos(angle), cy+radius*math.Sin(angle)
		}
		r := minNode
		if maxNodeV > 0 {
			r = minNode + (maxNode-minNode)*math.Sqrt(nodeV(n)/maxNodeV)
		}
		tags := v.tags(n)
		node := mapNode{Name: n, Label: v.label(n), X: round(x), Y: round(y), R: round(r), Href: v.nodeHref(n),
			Flows: totals[n].flows, Bytes: totals[n].bytes, Tags: strings.Join(tags, ", "), Sensitive: sensitive(tags)}
		// Labels outside the circle.
		lx, ly := x+(r+8)*math.Cos(angle), y+(r+8)*math.Sin(angle)
		node.Anchor = "middle"
		switch c := math.Cos(angle); {
		case len(names) == 1:
			lx, ly = x, y+r+18
		case c > 0.3:
			node.Anchor = "start"
		case c < -0.3:
			node.Anchor = "end"
		}
		if math.Sin(angle) > 0.3 && len(names) > 1 {
			ly += 12
		}
		node.LabelX, node.LabelY = round(lx), round(ly)
		pos[n] = len(sm.Nodes)
		sm.Nodes = append(sm.Nodes, node)
	}
	for _, e := range edges {
		a, b := sm.Nodes[pos[e.Client]], sm.Nodes[pos[e.Server]]
		me := mapEdge{SegmentEdge: e, ClassName: e.Class(), ClientName: v.label(e.Client), ServerName: v.label(e.Server)}
		me.Width = minEdge
		if maxEdgeV > 0 {
			me.Width = round(minEdge + (maxEdge-minEdge)*math.Sqrt(metric(e)/maxEdgeV))
		}
		if p.Metric == "bytes" {
			me.Label = humanBytes(e.Bytes)
		} else {
			me.Label = fmt.Sprint(e.Flows)
		}
		me.Href = v.edgeHref(e)
		me.Selected = p.Selected && p.Client == e.Client && p.Server == e.Server
		if e.Client == e.Server {
			// A loop outside the node, away from the centre.
			// Turned off the outward direction, where the node's label is.
			ang := math.Atan2(a.Y-cy, a.X-cx) + 1.1
			if len(sm.Nodes) == 1 {
				ang = -math.Pi/2 + 1.1
			}
			s1 := ang - 0.5
			s2 := ang + 0.5
			x1, y1 := a.X+a.R*math.Cos(s1), a.Y+a.R*math.Sin(s1)
			x2, y2 := a.X+a.R*math.Cos(s2), a.Y+a.R*math.Sin(s2)
			d := a.R + 45
			c1x, c1y := a.X+d*math.Cos(s1-0.4), a.Y+d*math.Sin(s1-0.4)
			c2x, c2y := a.X+d*math.Cos(s2+0.4), a.Y+d*math.Sin(s2+0.4)
			me.Path = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, c1x, c1y, c2x, c2y, x2, y2)
			me.LabelX, me.LabelY = round(a.X+(a.R+36)*math.Cos(ang)), round(a.Y+(a.R+36)*math.Sin(ang))
		} else {
			dx, dy := b.X-a.X, b.Y-a.Y
			l := math.Hypot(dx, dy)
			// Control point: off the midpoint, to the right of a->b.
			bend := math.Min(60, l/4)
			mx, my := (a.X+b.X)/2, (a.Y+b.Y)/2
			qx, qy := mx-dy/l*bend, my+dx/l*bend
			sx, sy := toward(a.X, a.Y, qx, qy, a.R)
			ex, ey := toward(b.X, b.Y, qx, qy, b.R+4)
			me.Path = fmt.Sprintf("M%.1f,%.1f Q%.1f,%.1f %.1f,%.1f", sx, sy, qx, qy, ex, ey)
			// The curve's midpoint (t = 0.5).
			me.LabelX, me.LabelY = round(0.25*sx+0.5*qx+0.25*ex), round(0.25*sy+0.5*qy+0.25*ey)
		}
		sm.Edges = append(sm.Edges, me)
	}
	return sm
}

// toward is the point at distance d from (x, y) in the direction of (tx, ty).
func toward(x, y, tx, ty, d float64) (float64, float64) {
	dx, dy := tx-x, ty-y
	l := math.Hypot(dx, dy)
	if l == 0 {
		return x, y
	}
	return x + dx/l*d, y + dy/l*d
}

func round(v float64) float64 { return math.Round(v*10) / 10 }

func humanBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
