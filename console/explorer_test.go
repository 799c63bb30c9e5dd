package console

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/query"
)

func TestExplorerPages(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	for _, c := range []struct {
		path  string
		code  int
		needs []string
	}{
		// Every fixture flow is in the series and the Sankey; server
		// segments db (6), app (5), web (5).
		{"/flows?" + fixtureRange, 200, []string{`id="series"`, `data-total="16" data-buckets="60" data-keys="3"`,
			`<td>db</td><td>6</td><td>37.5 %</td>`, `id="sankey"`, `aria-label="sankey" data-total="16"`,
			`data-stage="1" data-name="5432/tcp" data-value="6"`, `data-stage="3" data-name="bob" data-value="2"`}},
		// Top 1 of client identities: (none) 6, the other 10 folded.
		{"/flows?" + fixtureRange + "&dim=client_identity&top=1", 200, []string{`data-keys="2"`, `<td>(none)</td><td>6</td>`,
			`<td>other</td><td>10</td><td>62.5 %</td>`, `data-stage="0" data-name="other"`, `data-stage="3" data-name="other" data-value="10"`}},
		// Bytes, split by exporter, filtered on the violation.
		{"/flows?" + fixtureRange + "&dim=exporter&metric=bytes&verdict=violation", 200, []string{`data-total="600"`,
			`href="/flows?dim=exporter&amp;exporter=192.0.2.1`, `Flows 1–2 of 2`}},
		{"/flows?dim=nope", 400, []string{"dim: &#34;nope&#34; is not one of"}},
		{"/flows?top=0", 400, []string{"top: &#34;0&#34; is not a number from 1 to 50"}},
	} {
		code, body := get(t, e.http.URL+c.path, "")
		if code != c.code {
			t.Errorf("%s: status %d, want %d: %s", c.path, code, c.code, body)
		}
		for _, n := range c.needs {
			if !strings.Contains(body, n) {
				t.Errorf("%s: body lacks %q", c.path, n)
			}
		}
	}
	// The series agrees with ClickHouse: per bucket sums equal the flows.
	keys, err := e.reader.FlowSeries(context.Background(), query.Window{From: t0, To: t0.Add(time.Hour)}, query.FlowFilter{}, "verdict", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, k := range keys {
		for _, p := range k.Points {
			got[k.Value] += p.Flows
		}
	}
	if d := cmp.Diff(map[string]uint64{"allowed": 13, "violation": 2, "intra_segment": 1}, got); d != "" {
		t.Errorf("series by verdict (-want +got):\n%s", d)
	}
}

func TestMapZoomIntoWorkloads(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	ctx := context.Background()
	conn := e.ch.Conn(t)
	// Two hours later: web's nginx to db's postgres and pgbouncer, and a
	// web host without a workload to postgres.
	at := t0.Add(2 * time.Hour)
	ins := fmt.Sprintf(`INSERT INTO flowaudit.flows (time_received, src_addr, dst_addr, src_port, dst_port, proto, bytes, packets,
  src_segment, dst_segment, src_workload, dst_workload, verdict, staged_verdict, service_side, service_port)
SELECT toDateTime(%d + number), IPv6StringToNum('::ffff:10.1.0.5'), IPv6StringToNum('::ffff:10.2.0.10'), toUInt16(40000), toUInt16(5432), toUInt8(6),
  toUInt64(100), toUInt64(1), 'web', 'db', arrayElement(['nginx', 'nginx', ''], toUInt32(1 + number %% 3)),
  arrayElement(['postgres', 'pgbouncer', 'postgres'], toUInt32(1 + number %% 3)), 'violation', 'violation', 'dst', toUInt16(5432)
FROM numbers(9)`, at.Unix())
	if err := conn.Exec(ctx, ins); err != nil {
		t.Fatal(err)
	}
	rng := "from=" + at.Format(time.RFC3339) + "&to=" + at.Add(time.Hour).Format(time.RFC3339)
	for _, raw := range []bool{false, true} {
		w := query.Window{From: at, To: at.Add(time.Hour)}
		if raw {
			w.To = at.Add(30 * time.Minute) // not whole hours: flows
		}
		got, err := e.reader.WorkloadEdges(ctx, w, query.EdgeFilter{}, "db")
		if err != nil {
			t.Fatal(err)
		}
		want := []query.SegmentEdge{
			{Client: "web", Server: "db/pgbouncer", Flows: 3, Bytes: 300, Violations: 3},
			{Client: "web", Server: "db/postgres", Flows: 6, Bytes: 600, Violations: 6},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("workload edges of db (raw %v) (-want +got):\n%s", raw, d)
		}
	}
	code, body := get(t, e.http.URL+"/map?"+rng+"&segment=web", "")
	if code != 200 {
		t.Fatalf("/map zoomed: %d %s", code, body)
	}
	for _, n := range []string{`id="zoom"`, `data-segment="web/nginx"`, `data-segment="web/"`, `data-segment="db"`,
		`>web: no workload</text>`, `data-client="web/nginx" data-server="db" data-class="violation" data-flows="6"`,
		// the edge opens its segment edge's detail, in the zoomed map
		`href="/map?from=` + strings.ReplaceAll(at.Format(time.RFC3339), ":", "%3A")} {
		if !strings.Contains(body, n) {
			t.Errorf("zoomed map lacks %q", n)
		}
	}
	code, body = get(t, e.http.URL+"/map?"+rng+"&segment=web&client=web&server=db", "")
	if code != 200 || !strings.Contains(body, `id="edge-detail" data-client="web" data-server="db"`) || !strings.Contains(body, "9 flows") {
		t.Errorf("zoomed map with the edge selected: %d, lacks its detail", code)
	}
}

func TestMapGroupsAbove50Segments(t *testing.T) {
	// 60 segments: 30 tagged pci, 20 tagged dmz, 10 untagged, each talking
	// to the next.
	tags := map[string][]string{}
	var edges []query.SegmentEdge
	name := func(i int) string { return fmt.Sprintf("s%02d", i) }
	for i := 0; i < 60; i++ {
		switch {
		case i < 30:
			tags[name(i)] = []string{"pci", "x"}
		case i < 50:
			tags[name(i)] = []string{"dmz"}
		}
		edges = append(edges, query.SegmentEdge{Client: name(i), Server: name((i + 1) % 60), Flows: 1, Bytes: 10, Violations: uint64(i % 2)})
	}
	if distinctSegments(edges) != 60 {
		t.Fatal("fixture")
	}
	got, counts := groupEdges(edges, tags, "")
	want := []query.SegmentEdge{
		{Client: "tag:(untagged)", Server: "tag:(untagged)", Flows: 9, Bytes: 90, Violations: 4},
		{Client: "tag:(untagged)", Server: "tag:pci", Flows: 1, Bytes: 10, Violations: 1},
		{Client: "tag:dmz", Server: "tag:(untagged)", Flows: 1, Bytes: 10, Violations: 1},
		{Client: "tag:dmz", Server: "tag:dmz", Flows: 19, Bytes: 190, Violations: 9},
		{Client: "tag:pci", Server: "tag:dmz", Flows: 1, Bytes: 10, Violations: 1},
		{Client: "tag:pci", Server: "tag:pci", Flows: 29, Bytes: 290, Violations: 14},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("grouped edges (-want +got):\n%s", d)
	}
	if counts["tag:pci"] != 30 || counts["tag:dmz"] != 20 || counts["tag:(untagged)"] != 10 {
		t.Errorf("group sizes %v", counts)
	}
	p, _ := parseParams(nil, t0, "24h")
	m := layout(got, groupView(tags, counts, p), p)
	if len(m.Nodes) != 3 || m.Nodes[2].Label != "pci (30 segments)" || !m.Nodes[2].Sensitive || !strings.Contains(m.Nodes[2].Href, "group=pci") {
		t.Errorf("grouped map nodes: %+v", m.Nodes)
	}
	// Expanding pci shows its 30 segments beside the two other groups.
	got, _ = groupEdges(edges, tags, "pci")
	if n := distinctSegments(got); n != 32 {
		t.Errorf("pci expanded: %d nodes, want 32", n)
	}
}

// Whole hours are read from rule_hits_1h, other windows from flows: the
// series and the Sankey are the same either way.
func TestExplorerRollupAndFlowsAgree(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	ctx := context.Background()
	hour := query.Window{From: t0, To: t0.Add(time.Hour)}
	half := query.Window{From: t0, To: t0.Add(30 * time.Minute)} // every fixture flow
	for _, f := range []query.FlowFilter{{}, {EdgeFilter: query.EdgeFilter{Port: 5432}}, {EdgeFilter: query.EdgeFilter{Verdict: "allowed", Identity: "alice"}}} {
		for _, dim := range []string{"client_segment", "server_segment", "client_identity", "port", "proto", "verdict", "staged_verdict"} {
			a, err := e.reader.FlowSeries(ctx, hour, f, dim, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.reader.FlowSeries(ctx, half, f, dim, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(a, b); d != "" || len(a) == 0 {
				t.Errorf("series by %s, filter %+v: rollup and flows differ or are empty (-rollup +flows):\n%s", dim, f, d)
			}
		}
		for _, top := range []int{1, 2, 8} {
			for _, byBytes := range []bool{false, true} {
				a, err := e.reader.SankeyPaths(ctx, hour, f, top, byBytes)
				if err != nil {
					t.Fatal(err)
				}
				b, err := e.reader.SankeyPaths(ctx, half, f, top, byBytes)
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(a, b); d != "" || len(a) == 0 {
					t.Errorf("sankey top %d bytes %v, filter %+v: rollup and flows differ (-rollup +flows):\n%s", top, byBytes, f, d)
				}
			}
		}
	}
}

// An edge's detail over whole hours (ports, identities and rules from
// rule_hits_1h) equals the one over flows.
func TestEdgeDetailRollupAndFlowsAgree(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	ctx := context.Background()
	hour := query.Window{From: t0, To: t0.Add(time.Hour)}
	half := query.Window{From: t0, To: t0.Add(30 * time.Minute)}
	for _, edge := range wantEdges {
		for _, f := range []query.EdgeFilter{{}, {Port: 5432}, {Verdict: "allowed"}, {Identity: "alice"}} {
			a, err := e.reader.EdgeDetail(ctx, hour, f, edge.Client, edge.Server, 10)
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.reader.EdgeDetail(ctx, half, f, edge.Client, edge.Server, 10)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(a, b, cmp.Comparer(func(x, y interface{ String() string }) bool { return x.String() == y.String() })); d != "" {
				t.Errorf("%s -> %s, filter %+v: rollup and flows differ (-rollup +flows):\n%s", edge.Client, edge.Server, f, d)
			}
		}
	}
}
