package query

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// ServiceEdge is the traffic between one client address and one server
// address on one service (port and protocol) under one pair of identities,
// within a window. Replies are folded into the connection they answer:
// Client is the end that did not offer the service, whichever end sent the
// flow. Port is the service port for TCP, UDP and SCTP and 0 otherwise.
type ServiceEdge struct {
	Client, Server                 netip.Addr
	Port                           uint16
	Proto                          uint8
	ClientIdentity, ServerIdentity string // as enriched ("" when none)
	Flows, Bytes                   uint64 // as exported (sampled)
	Replies                        uint64 // flows of Flows sent by the server
	// FirstSeen and LastSeen are flow times (schemas.FlowBatch.FlowTime:
	// start, else end, else receipt), to the second: the clock detectors
	// date alerts by. The window itself selects on time_received.
	FirstSeen, LastSeen time.Time
}

// ServiceEdges returns every service edge of w, sorted by client, server,
// proto, port, client identity, server identity. It is the input of
// `audit recommend`: one row per address pair and service, so that a
// recommendation can relabel addresses with any policy's segments and
// inventory and keep per-source evidence.
func (r *Reader) ServiceEdges(ctx context.Context, w Window) ([]ServiceEdge, error) {
	sp, err := r.splitWindow(ctx, w, true)
	if err != nil {
		return nil, err
	}
	// One branch per source, each already grouped by the edge key; the
	// outer query adds them up. Ports are the rollup's keys on both.
	const edgeCols = `if(rep, dst_addr, src_addr) AS e_client, if(rep, src_addr, dst_addr) AS e_server,
        if(proto IN (6, 17, 132), if(rep, sp, dp), 0) AS e_port, proto,
        if(rep, dst_identity, src_identity) AS e_client_id, if(rep, src_identity, dst_identity) AS e_server_id`
	var branches []string
	if sp.raw != "" {
		branches = append(branches, fmt.Sprintf(`SELECT e_client, e_server, e_port, proto, e_client_id, e_server_id,
        count() AS n, sum(bytes) AS b, toUInt64(countIf(rep)) AS nr, min(ft) AS tf, max(ft) AS tl
    FROM
    (
        SELECT %s AS sp, %s AS dp, %s = 1 AS rep, %s, bytes, %s AS ft
        FROM %s
        WHERE %s
    )
    GROUP BY e_client, e_server, e_port, proto, e_client_id, e_server_id`,
			schemas.AuditSrcPortKeySQL, schemas.AuditDstPortKeySQL, schemas.AuditReplySQL, edgeCols,
			schemas.FlowTimeSQL, r.table("flows"), sp.raw))
	}
	if sp.rollup != "" {
		branches = append(branches, fmt.Sprintf(`SELECT e_client, e_server, e_port, proto, e_client_id, e_server_id,
        sum(n1) AS n, sum(b1) AS b, toUInt64(sumIf(n1, rep)) AS nr, min(tf1) AS tf, max(tl1) AS tl
    FROM
    (
        SELECT src_port_key AS sp, dst_port_key AS dp, %s = 1 AS rep, %s,
            countMerge(flows) AS n1, sumMerge(bytes) AS b1, minMerge(first_seen) AS tf1, maxMerge(last_seen) AS tl1
        FROM %s
        WHERE %s
        GROUP BY src_addr, dst_addr, src_port_key, dst_port_key, proto, service_side, src_identity, dst_identity
    )
    GROUP BY e_client, e_server, e_port, proto, e_client_id, e_server_id`,
			schemas.AuditReplySQL, edgeCols, r.table(schemas.AuditEdgesTable.Name), sp.rollup))
	}
	q := fmt.Sprintf(`SELECT IPv6NumToString(e_client), IPv6NumToString(e_server), e_port, proto, e_client_id, e_server_id,
    sum(n), sum(b), sum(nr), min(tf), max(tl)
FROM
(
    %s
)
GROUP BY e_client, e_server, e_port, proto, e_client_id, e_server_id`, strings.Join(branches, "\n    UNION ALL\n    "))
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: service edges: %w", err)
	}
	defer rows.Close()
	var out []ServiceEdge
	for rows.Next() {
		var e ServiceEdge
		var c, s string
		if err := rows.Scan(&c, &s, &e.Port, &e.Proto, &e.ClientIdentity, &e.ServerIdentity,
			&e.Flows, &e.Bytes, &e.Replies, &e.FirstSeen, &e.LastSeen); err != nil {
			return nil, fmt.Errorf("query: service edges: %w", err)
		}
		if e.Client, err = parseAddr(c); err != nil {
			return nil, err
		}
		if e.Server, err = parseAddr(s); err != nil {
			return nil, err
		}
		e.FirstSeen, e.LastSeen = e.FirstSeen.UTC(), e.LastSeen.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: service edges: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].less(&out[j]) })
	return out, nil
}

func (e *ServiceEdge) less(o *ServiceEdge) bool {
	if c := e.Client.Compare(o.Client); c != 0 {
		return c < 0
	}
	if c := e.Server.Compare(o.Server); c != 0 {
		return c < 0
	}
	if e.Proto != o.Proto {
		return e.Proto < o.Proto
	}
	if e.Port != o.Port {
		return e.Port < o.Port
	}
	if e.ClientIdentity != o.ClientIdentity {
		return e.ClientIdentity < o.ClientIdentity
	}
	return e.ServerIdentity < o.ServerIdentity
}

// ReplayGroup is a set of flows of a window that any policy decides alike:
// same addresses, protocol, identities and enriched verdict, and ports
// that fall into the same interval of every port boundary the question
// named (see Reader.ReplayGroups).
type ReplayGroup struct {
	SrcAddr, DstAddr netip.Addr
	// SrcPort and DstPort are the lowest port of the boundary interval
	// holding the flows' ports; ICMP keeps DstPort (type<<8|code) exact.
	SrcPort, DstPort uint16
	Proto            uint8
	// ServiceSide is the enricher's service_side (the policy decides by
	// it). Reply is set when the source end offers the service (the flows
	// answer connections the destination opened: ServiceSide src, or the
	// lower port without one); ServicePort is the service's port (TCP,
	// UDP, SCTP; else 0), exact.
	ServiceSide              schemas.ServiceSide
	Reply                    bool
	ServicePort              uint16
	SrcIdentity, DstIdentity string
	Verdict, Rule            string // as enriched
	Flows, Bytes             uint64
}

// ReplayGroups returns the flows of w grouped so that a policy decision on
// one representative of a group is the decision on each of its flows.
// bounds are port boundaries: every PortSpec's Lo and Hi+1 of the policies
// to be replayed, plus 1024 (the reply rule's ephemeral floor); a flow's
// ports are replaced by the greatest bound at or below them (0 is always a
// bound). The number of groups thus depends on addresses and services, not
// on ephemeral ports. Sorted by every field in declaration order.
func (r *Reader) ReplayGroups(ctx context.Context, w Window, bounds []uint16) ([]ReplayGroup, error) {
	b := normBounds(bounds)
	// The rollup keeps client ports from 32768 up as 32768: exact for
	// bounds up to there only.
	exact := len(b) == 0 || b[len(b)-1] <= schemas.AuditPortClamp
	sp, err := r.splitWindow(ctx, w, exact)
	if err != nil {
		return nil, err
	}
	const keys = "src_addr, dst_addr, g_src_port, g_dst_port, proto, service_side, rep, g_port, src_identity, dst_identity, verdict, rule"
	cols := func(sport, dport string) string {
		return fmt.Sprintf(`%s AS sp, %s AS dp, %s = 1 AS rep, if(proto IN (6, 17, 132), if(rep, sp, dp), 0) AS g_port,
            if(proto IN (1, 58), sp, %s) AS g_src_port, if(proto IN (1, 58), dp, %s) AS g_dst_port`,
			sport, dport, schemas.AuditReplySQL, bucketExpr("sp", b), bucketExpr("dp", b))
	}
	var branches []string
	if sp.raw != "" {
		branches = append(branches, fmt.Sprintf(`SELECT %s, count() AS n, sum(bytes) AS nb
    FROM
    (
        SELECT src_addr, dst_addr, proto, service_side, src_identity, dst_identity, verdict, rule, bytes,
            %s
        FROM %s
        WHERE %s
    )
    GROUP BY %s`, keys, cols("src_port", "dst_port"), r.table("flows"), sp.raw, keys))
	}
	if sp.rollup != "" {
		branches = append(branches, fmt.Sprintf(`SELECT %s, sum(n1) AS n, sum(b1) AS nb
    FROM
    (
        SELECT src_addr, dst_addr, proto, service_side, src_identity, dst_identity, verdict, rule,
            %s,
            countMerge(flows) AS n1, sumMerge(bytes) AS b1
        FROM %s
        WHERE %s
        GROUP BY src_addr, dst_addr, src_port_key, dst_port_key, proto, service_side, src_identity, dst_identity, verdict, rule
    )
    GROUP BY %s`, keys, cols("src_port_key", "dst_port_key"), r.table(schemas.AuditEdgesTable.Name), sp.rollup, keys))
	}
	q := fmt.Sprintf(`SELECT IPv6NumToString(src_addr), IPv6NumToString(dst_addr), g_src_port, g_dst_port, proto, service_side, rep, g_port,
    src_identity, dst_identity, verdict, rule, sum(n), sum(nb)
FROM
(
    %s
)
GROUP BY %s`, strings.Join(branches, "\n    UNION ALL\n    "), keys)
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: replay groups: %w", err)
	}
	defer rows.Close()
	var out []ReplayGroup
	for rows.Next() {
		var g ReplayGroup
		var s, d string
		var reply uint8
		var side string
		if err := rows.Scan(&s, &d, &g.SrcPort, &g.DstPort, &g.Proto, &side, &reply, &g.ServicePort,
			&g.SrcIdentity, &g.DstIdentity, &g.Verdict, &g.Rule, &g.Flows, &g.Bytes); err != nil {
			return nil, fmt.Errorf("query: replay groups: %w", err)
		}
		if g.SrcAddr, err = parseAddr(s); err != nil {
			return nil, err
		}
		if g.DstAddr, err = parseAddr(d); err != nil {
			return nil, err
		}
		g.Reply = reply != 0
		switch side {
		case "dst":
			g.ServiceSide = schemas.ServiceDst
		case "src":
			g.ServiceSide = schemas.ServiceSrc
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: replay groups: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].less(&out[j]) })
	return out, nil
}

func (g *ReplayGroup) less(o *ReplayGroup) bool {
	if c := g.SrcAddr.Compare(o.SrcAddr); c != 0 {
		return c < 0
	}
	if c := g.DstAddr.Compare(o.DstAddr); c != 0 {
		return c < 0
	}
	switch {
	case g.SrcPort != o.SrcPort:
		return g.SrcPort < o.SrcPort
	case g.DstPort != o.DstPort:
		return g.DstPort < o.DstPort
	case g.Proto != o.Proto:
		return g.Proto < o.Proto
	case g.ServiceSide != o.ServiceSide:
		return g.ServiceSide < o.ServiceSide
	case g.Reply != o.Reply:
		return !g.Reply
	case g.ServicePort != o.ServicePort:
		return g.ServicePort < o.ServicePort
	case g.SrcIdentity != o.SrcIdentity:
		return g.SrcIdentity < o.SrcIdentity
	case g.DstIdentity != o.DstIdentity:
		return g.DstIdentity < o.DstIdentity
	case g.Verdict != o.Verdict:
		return g.Verdict < o.Verdict
	}
	return g.Rule < o.Rule
}

// normBounds sorts and deduplicates bounds and drops 0 (always implied).
func normBounds(bounds []uint16) []uint16 {
	b := append([]uint16(nil), bounds...)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	out := b[:0]
	for _, v := range b {
		if v != 0 && (len(out) == 0 || out[len(out)-1] != v) {
			out = append(out, v)
		}
	}
	return out
}

// bucketExpr maps column to the greatest of 0 and bounds at or below it.
// multiIf over constants is vectorised on both generations, where a lambda
// over a constant array would be materialised per row.
func bucketExpr(column string, bounds []uint16) string {
	if len(bounds) == 0 {
		return "toUInt16(0)"
	}
	var b strings.Builder
	b.WriteString("multiIf(")
	prev := uint16(0)
	for _, v := range bounds {
		fmt.Fprintf(&b, "%s < %d, toUInt16(%d), ", column, v, prev)
		prev = v
	}
	fmt.Fprintf(&b, "toUInt16(%d))", prev)
	return b.String()
}
