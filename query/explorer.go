package query

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// The flows explorer's questions: a time series of flows split by one
// dimension, and the paths of a Sankey diagram. Both read flows, where every
// filter of FlowFilter applies, or a rollup (rule_hits_1h, console_edges_1m)
// when the window, the buckets and the filter allow it.

// Dimensions are the columns the explorer can split by, in menu order.
var Dimensions = []string{"src_segment", "dst_segment", "client_segment", "server_segment",
	"src_identity", "dst_identity", "client_identity", "port", "proto", "verdict", "staged_verdict", "exporter"}

// dimensionExpr is the SQL of a dimension, as a String.
func dimensionExpr(dim string) (string, bool) {
	switch dim {
	case "src_segment", "dst_segment", "src_identity", "dst_identity", "verdict", "staged_verdict":
		return dim, true
	case "client_segment":
		return clientSegExpr, true
	case "server_segment":
		return serverSegExpr, true
	case "client_identity":
		return clientIDExpr, true
	case "port":
		return "concat(toString(" + servicePort + "), '/', " + protoNameExpr + ")", true
	case "proto":
		return protoNameExpr, true
	case "exporter":
		return "replaceRegexpOne(IPv6NumToString(exporter), '^::ffff:', '')", true
	}
	return "", false
}

// rollupDimensionExpr is a dimension's SQL over rule_hits_1h and
// console_edges_1m, for the dimensions they keep (in the service
// orientation).
func rollupDimensionExpr(dim string) (string, bool) {
	switch dim {
	case "client_segment", "server_segment", "client_identity", "verdict", "staged_verdict":
		return dim, true
	case "port":
		return "concat(toString(service_port), '/', " + protoNameExpr + ")", true
	case "proto":
		return protoNameExpr, true
	}
	return "", false
}

// rollupOK reports whether f filters only on what rule_hits_1h and
// console_edges_1m keep.
func (f FlowFilter) rollupOK() bool {
	return f.SrcSegment == "" && f.DstSegment == "" && !f.Addr.IsValid() && !f.Exporter.IsValid()
}

// protoNameExpr names the common protocols, else the number.
const protoNameExpr = "multiIf(proto = 6, 'tcp', proto = 17, 'udp', proto = 1, 'icmp', proto = 58, 'icmpv6', proto = 132, 'sctp', toString(proto))"

// SeriesPoint is one bucket of one series.
type SeriesPoint struct {
	Start        time.Time
	Flows, Bytes uint64
}

// SeriesKey is one value of the dimension with its points, one per bucket
// that has flows.
type SeriesKey struct {
	Value        string
	Flows, Bytes uint64 // over the window
	Points       []SeriesPoint
}

// FlowSeries counts the flows of w passing f in buckets of step (aligned
// on the Unix epoch), split by dim, sorted by value.
func (r *Reader) FlowSeries(ctx context.Context, w Window, f FlowFilter, dim string, step time.Duration) ([]SeriesKey, error) {
	expr, ok := dimensionExpr(dim)
	if !ok {
		return nil, fmt.Errorf("query: no dimension %q (one of %s)", dim, strings.Join(Dimensions, ", "))
	}
	s := int64(step / time.Second)
	if s < 1 {
		s = 1
	}
	q := fmt.Sprintf(`SELECT intDiv(toUInt32(time_received), %d) * %d AS b, toString(%s) AS k, count(), sum(bytes)
FROM %s
WHERE %s%s
GROUP BY b, k`, s, s, expr, r.table("flows"), w.where("time_received"), f.where())
	// Whole hours in buckets of whole hours (or whole minutes in buckets
	// of whole minutes), on what the rollups keep: read one instead (the
	// same numbers).
	if rexpr, ok := rollupDimensionExpr(dim); ok && f.rollupOK() {
		ru, ok, err := r.edgeRollup(ctx, w, time.Duration(s)*time.Second)
		if err != nil {
			return nil, err
		}
		if ok {
			q = fmt.Sprintf(`SELECT intDiv(toUInt32(%s), %d) * %d AS b, toString(%s) AS k, sum(flows), sum(bytes)
FROM %s
WHERE %s%s
GROUP BY b, k`, ru.time, s, s, rexpr, ru.table, w.where(ru.time), f.rollupWhere())
		}
	}
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: flow series: %w", err)
	}
	defer rows.Close()
	byKey := map[string]*SeriesKey{}
	for rows.Next() {
		var b uint64
		var k string
		var p SeriesPoint
		if err := rows.Scan(&b, &k, &p.Flows, &p.Bytes); err != nil {
			return nil, fmt.Errorf("query: flow series: %w", err)
		}
		p.Start = time.Unix(int64(b), 0).UTC()
		sk := byKey[k]
		if sk == nil {
			sk = &SeriesKey{Value: k}
			byKey[k] = sk
		}
		sk.Flows += p.Flows
		sk.Bytes += p.Bytes
		sk.Points = append(sk.Points, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: flow series: %w", err)
	}
	out := make([]SeriesKey, 0, len(byKey))
	for _, sk := range byKey {
		sort.Slice(sk.Points, func(i, j int) bool { return sk.Points[i].Start.Before(sk.Points[j].Start) })
		out = append(out, *sk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out, nil
}

// SankeyPath is the traffic of one client segment → service port → server
// segment → client identity path (the service orientation of the map).
// A value outside its stage's top is SankeyOther.
type SankeyPath struct {
	ClientSegment, Port, ServerSegment, Identity string
	Flows, Bytes                                 uint64
}

// SankeyOther stands for the values of a stage outside its top.
const SankeyOther = "\x01other"

// SankeyPaths returns the paths of w passing f, each stage's values
// outside its top (by bytes when byBytes, else flows) folded into
// SankeyOther in ClickHouse, so at most (top+1)^4 paths come back; sorted
// by flows (most first), then by the path.
func (r *Reader) SankeyPaths(ctx context.Context, w Window, f FlowFilter, top int, byBytes bool) ([]SankeyPath, error) {
	port, _ := dimensionExpr("port")
	if top < 1 {
		top = 1
	}
	metric, flows := "count()", "count()"
	if byBytes {
		metric = "sum(bytes)"
	}
	from, where := r.table("flows"), w.where("time_received")+f.where()
	cSeg, sSeg, cID := clientSegExpr, serverSegExpr, clientIDExpr
	ru, ok, err := r.edgeRollup(ctx, w, 0)
	if err != nil {
		return nil, err
	}
	if ok && f.rollupOK() {
		// Every stage is in the rollups: read one instead.
		port, _ = rollupDimensionExpr("port")
		cSeg, sSeg, cID = "client_segment", "server_segment", "client_identity"
		from, where = ru.table, w.where(ru.time)+f.rollupWhere()
		flows = "sum(flows)"
		if !byBytes {
			metric = "sum(flows)"
		}
	}
	// Each stage's top values, all four in one read, over the paths
	// (fewer rows than flows or the rollup's, before arrayJoin makes four
	// of each).
	tops, err := r.conn.Query(ctx, fmt.Sprintf(`SELECT st, v FROM
(
    SELECT tupleElement(t, 1) AS st, tupleElement(t, 2) AS v, sum(m0) AS m
    FROM
    (
        SELECT arrayJoin([(0, c), (1, p), (2, s), (3, i)]) AS t, m0
        FROM (SELECT %s AS c, %s AS p, %s AS s, %s AS i, %s AS m0 FROM %s WHERE %s GROUP BY c, p, s, i)
    )
    GROUP BY st, v
)
ORDER BY st, m DESC, v
LIMIT %d BY st`, cSeg, port, sSeg, cID, metric, from, where, top))
	if err != nil {
		return nil, fmt.Errorf("query: sankey tops: %w", err)
	}
	var keep [4][]string
	for tops.Next() {
		var st uint8
		var v string
		if err := tops.Scan(&st, &v); err != nil {
			tops.Close()
			return nil, fmt.Errorf("query: sankey tops: %w", err)
		}
		if st < 4 {
			keep[st] = append(keep[st], v)
		}
	}
	tops.Close()
	if err := tops.Err(); err != nil {
		return nil, fmt.Errorf("query: sankey tops: %w", err)
	}
	fold := func(st int, expr string) string {
		if len(keep[st]) == 0 {
			return expr
		}
		return fmt.Sprintf("if(%s IN (%s), %s, '\\x01other')", expr, quoteList(keep[st]), expr)
	}
	// Folded over the paths, as the tops.
	q := fmt.Sprintf(`SELECT %s AS fc, %s AS fp, %s AS fs, %s AS fi, sum(n), sum(nb)
FROM (SELECT %s AS c, %s AS p, %s AS s, %s AS i, %s AS n, sum(bytes) AS nb FROM %s WHERE %s GROUP BY c, p, s, i)
GROUP BY fc, fp, fs, fi`, fold(0, "c"), fold(1, "p"), fold(2, "s"), fold(3, "i"), cSeg, port, sSeg, cID, flows, from, where)
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: sankey: %w", err)
	}
	defer rows.Close()
	var out []SankeyPath
	for rows.Next() {
		var p SankeyPath
		if err := rows.Scan(&p.ClientSegment, &p.Port, &p.ServerSegment, &p.Identity, &p.Flows, &p.Bytes); err != nil {
			return nil, fmt.Errorf("query: sankey: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: sankey: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Flows != b.Flows {
			return a.Flows > b.Flows
		}
		return a.ClientSegment+"\x00"+a.Port+"\x00"+a.ServerSegment+"\x00"+a.Identity <
			b.ClientSegment+"\x00"+b.Port+"\x00"+b.ServerSegment+"\x00"+b.Identity
	})
	return out, nil
}

// WorkloadEdges are the edges of w passing f with at least one end in
// segment, with that segment's ends split by workload: an end in segment
// is named "segment/workload" ("segment/" without a workload), any other
// end by its segment. Read from rule_hits_1h on whole hours,
// console_edges_1m on whole minutes, else from flows; sorted like
// SegmentEdges.
func (r *Reader) WorkloadEdges(ctx context.Context, w Window, f EdgeFilter, segment string) ([]SegmentEdge, error) {
	seg := quoteList([]string{segment})
	name := func(segCol, wlCol string) string {
		return fmt.Sprintf("if(%s = %s, concat(%s, '/', %s), %s)", segCol, seg, segCol, wlCol, segCol)
	}
	ru, ok, err := r.edgeRollup(ctx, w, 0)
	if err != nil {
		return nil, err
	}
	var q string
	if ok {
		q = fmt.Sprintf(`SELECT %s AS c, %s AS s, sum(flows), sum(bytes),
    sumIf(flows, verdict = 'violation'), sumIf(flows, staged_verdict = 'violation' AND verdict != 'violation')
FROM %s
WHERE %s AND (client_segment = %s OR server_segment = %s)%s
GROUP BY c, s`, name("client_segment", "client_workload"), name("server_segment", "server_workload"),
			ru.table, w.where(ru.time), seg, seg, f.rollupWhere())
	} else {
		cw := "if(service_side = 'src', dst_workload, src_workload)"
		sw := "if(service_side = 'src', src_workload, dst_workload)"
		q = fmt.Sprintf(`SELECT %s AS c, %s AS s, count(), sum(bytes),
    countIf(verdict = 'violation'), countIf(staged_verdict = 'violation' AND verdict != 'violation')
FROM %s
WHERE %s AND (%s = %s OR %s = %s)%s
GROUP BY c, s`, name(clientSegExpr, cw), name(serverSegExpr, sw),
			r.table("flows"), w.where("time_received"), clientSegExpr, seg, serverSegExpr, seg, f.flowsWhere())
	}
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: workload edges: %w", err)
	}
	defer rows.Close()
	var out []SegmentEdge
	for rows.Next() {
		var e SegmentEdge
		if err := rows.Scan(&e.Client, &e.Server, &e.Flows, &e.Bytes, &e.Violations, &e.StagedDenies); err != nil {
			return nil, fmt.Errorf("query: workload edges: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: workload edges: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Client != out[j].Client {
			return out[i].Client < out[j].Client
		}
		return out[i].Server < out[j].Server
	})
	return out, nil
}
