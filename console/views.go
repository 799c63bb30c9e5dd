package console

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/flowaudit/flowaudit/query"
)

// groupAbove is the number of segments above which the map groups them by
// their first tag, to stay readable.
const groupAbove = 50

// groupPrefix marks a tag group's node name.
const groupPrefix = "tag:"

// untagged is the group of segments without tags.
const untagged = "(untagged)"

func (p params) mapHref(kv ...string) string {
	return "/map?" + string(p.Query(append([]string{"segment", p.Segment, "group", p.Group}, kv...)...))
}

func edgeQuery(client, server string) string {
	return "&client=" + url.QueryEscape(client) + "&server=" + url.QueryEscape(server)
}

// segmentView shows segments; a node zooms into its workloads.
func segmentView(tags map[string][]string, p params) view {
	return view{
		tags:  func(n string) []string { return tags[n] },
		label: segLabel,
		nodeHref: func(n string) string {
			return "/map?" + string(p.Query("segment", n))
		},
		edgeHref: func(e query.SegmentEdge) string {
			return "/map?" + string(p.Query()) + edgeQuery(e.Client, e.Server)
		},
	}
}

// workloadOf splits a WorkloadEdges node name: its segment, its workload,
// and whether it is in the zoomed segment.
func workloadOf(node, segment string) (seg, workload string, inside bool) {
	if w, ok := strings.CutPrefix(node, segment+"/"); ok {
		return segment, w, true
	}
	return node, "", false
}

// workloadView shows the workloads of one segment and the segments they
// talk to. A workload edge's detail is its segment edge's; a segment node
// zooms into that segment, a workload node back out.
func workloadView(tags map[string][]string, p params) view {
	return view{
		tags: func(n string) []string {
			seg, _, _ := workloadOf(n, p.Segment)
			return tags[seg]
		},
		label: func(n string) string {
			seg, w, inside := workloadOf(n, p.Segment)
			switch {
			case inside && w == "":
				return segLabel(seg) + ": no workload"
			case inside:
				return w
			}
			return segLabel(seg)
		},
		nodeHref: func(n string) string {
			seg, _, inside := workloadOf(n, p.Segment)
			if inside {
				return "/map?" + string(p.Query("segment", ""))
			}
			return "/map?" + string(p.Query("segment", seg))
		},
		edgeHref: func(e query.SegmentEdge) string {
			c, _, _ := workloadOf(e.Client, p.Segment)
			s, _, _ := workloadOf(e.Server, p.Segment)
			return p.mapHref() + edgeQuery(c, s)
		},
	}
}

// groupOf is the node of a segment in the grouped map: its first tag's
// group, unless that group is expanded (or the segment is no segment).
func groupOf(seg string, tags map[string][]string, expanded string) string {
	if seg == "" {
		return ""
	}
	g := untagged
	if t := tags[seg]; len(t) > 0 {
		g = t[0]
	}
	if g == expanded {
		return seg
	}
	return groupPrefix + g
}

// groupEdges folds the edges of segments into edges of their groups.
func groupEdges(edges []query.SegmentEdge, tags map[string][]string, expanded string) ([]query.SegmentEdge, map[string]int) {
	sum := map[[2]string]*query.SegmentEdge{}
	members := map[string]map[string]bool{}
	for _, e := range edges {
		c, s := groupOf(e.Client, tags, expanded), groupOf(e.Server, tags, expanded)
		for _, pair := range [][2]string{{c, e.Client}, {s, e.Server}} {
			if members[pair[0]] == nil {
				members[pair[0]] = map[string]bool{}
			}
			members[pair[0]][pair[1]] = true
		}
		g := sum[[2]string{c, s}]
		if g == nil {
			g = &query.SegmentEdge{Client: c, Server: s}
			sum[[2]string{c, s}] = g
		}
		g.Flows += e.Flows
		g.Bytes += e.Bytes
		g.Violations += e.Violations
		g.StagedDenies += e.StagedDenies
	}
	out := make([]query.SegmentEdge, 0, len(sum))
	for _, g := range sum {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Client != out[j].Client {
			return out[i].Client < out[j].Client
		}
		return out[i].Server < out[j].Server
	})
	counts := map[string]int{}
	for n, m := range members {
		counts[n] = len(m)
	}
	return out, counts
}

// groupView shows tag groups (and the segments of the expanded group); a
// group node expands, a segment node zooms into its workloads.
func groupView(tags map[string][]string, counts map[string]int, p params) view {
	return view{
		tags: func(n string) []string {
			if g, ok := strings.CutPrefix(n, groupPrefix); ok {
				if g == untagged {
					return nil
				}
				return []string{g}
			}
			return tags[n]
		},
		label: func(n string) string {
			if g, ok := strings.CutPrefix(n, groupPrefix); ok {
				return fmt.Sprintf("%s (%d segments)", g, counts[n])
			}
			return segLabel(n)
		},
		nodeHref: func(n string) string {
			if g, ok := strings.CutPrefix(n, groupPrefix); ok {
				return "/map?" + string(p.Query("group", g))
			}
			return "/map?" + string(p.Query("segment", n, "group", ""))
		},
		edgeHref: func(e query.SegmentEdge) string {
			for _, n := range []string{e.Client, e.Server} {
				if g, ok := strings.CutPrefix(n, groupPrefix); ok {
					return "/map?" + string(p.Query("group", g))
				}
			}
			return p.mapHref() + edgeQuery(e.Client, e.Server)
		},
	}
}

// distinctSegments counts the segments of edges.
func distinctSegments(edges []query.SegmentEdge) int {
	seen := map[string]bool{}
	for _, e := range edges {
		seen[e.Client], seen[e.Server] = true, true
	}
	return len(seen)
}
