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

// IdentityEdge is the traffic one client identity sent from one client
// address to one server address on one service, as the enricher decided
// it, within a window: the input of `audit identities`. Replies are
// folded into the connection they answer, as in ServiceEdge, so Identity
// is the client's (the source identity of forward flows, the destination
// identity of replies) and Port the service port (TCP, UDP, SCTP; else 0).
type IdentityEdge struct {
	Identity       string // "" when the client had none
	Client, Server netip.Addr
	Port           uint16
	Proto          uint8
	Verdict, Rule  string // as enriched
	Flows, Bytes   uint64 // as exported (sampled)
	// FirstSeen and LastSeen are flow times to the second (see
	// ServiceEdge).
	FirstSeen, LastSeen time.Time
}

// IdentityEdges returns every identity edge of w, sorted by identity,
// client, server, proto, port, verdict, rule. Whole days come from the
// daily rollup audit_edges_1d, the partial ends from flows.
func (r *Reader) IdentityEdges(ctx context.Context, w Window) ([]IdentityEdge, error) {
	sp, err := r.splitWindow(ctx, w, true)
	if err != nil {
		return nil, err
	}
	rows, err := r.conn.Query(ctx, r.identityEdgesSQL(sp))
	if err != nil {
		return nil, fmt.Errorf("query: identity edges: %w", err)
	}
	defer rows.Close()
	var out []IdentityEdge
	for rows.Next() {
		var e IdentityEdge
		var c, s string
		if err := rows.Scan(&e.Identity, &c, &s, &e.Port, &e.Proto, &e.Verdict, &e.Rule,
			&e.Flows, &e.Bytes, &e.FirstSeen, &e.LastSeen); err != nil {
			return nil, fmt.Errorf("query: identity edges: %w", err)
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
		return nil, fmt.Errorf("query: identity edges: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].less(&out[j]) })
	return out, nil
}

// identityEdgesSQL is the query of IdentityEdges over the split sp; both
// server generations run it.
func (r *Reader) identityEdgesSQL(sp split) string {
	const edgeCols = `if(rep, dst_addr, src_addr) AS e_client, if(rep, src_addr, dst_addr) AS e_server,
            if(proto IN (6, 17, 132), if(rep, sp, dp), 0) AS e_port, proto,
            if(rep, dst_identity, src_identity) AS e_id, verdict, rule`
	const keys = "e_id, e_client, e_server, e_port, proto, verdict, rule"
	var branches []string
	if sp.raw != "" {
		branches = append(branches, fmt.Sprintf(`SELECT %s, count() AS n, sum(bytes) AS b, min(ft) AS tf, max(ft) AS tl
    FROM
    (
        SELECT %s AS sp, %s AS dp, %s = 1 AS rep, %s, bytes, %s AS ft
        FROM %s
        WHERE %s
    )
    GROUP BY %s`, keys, schemas.AuditSrcPortKeySQL, schemas.AuditDstPortKeySQL, schemas.AuditReplySQL, edgeCols,
			schemas.FlowTimeSQL, r.table("flows"), sp.raw, keys))
	}
	if sp.rollup != "" {
		branches = append(branches, fmt.Sprintf(`SELECT %s, sum(n1) AS n, sum(b1) AS b, min(tf1) AS tf, max(tl1) AS tl
    FROM
    (
        SELECT src_port_key AS sp, dst_port_key AS dp, %s = 1 AS rep, %s,
            countMerge(flows) AS n1, sumMerge(bytes) AS b1, minMerge(first_seen) AS tf1, maxMerge(last_seen) AS tl1
        FROM %s
        WHERE %s
        GROUP BY src_addr, dst_addr, src_port_key, dst_port_key, proto, service_side, src_identity, dst_identity, verdict, rule
    )
    GROUP BY %s`, keys, schemas.AuditReplySQL, edgeCols, r.table(schemas.AuditEdgesTable.Name), sp.rollup, keys))
	}
	return fmt.Sprintf(`SELECT e_id, IPv6NumToString(e_client), IPv6NumToString(e_server), e_port, proto, verdict, rule,
    toUInt64(sum(n)), toUInt64(sum(b)), min(tf), max(tl)
FROM
(
    %s
)
GROUP BY %s`, strings.Join(branches, "\n    UNION ALL\n    "), keys)
}

func (e *IdentityEdge) less(o *IdentityEdge) bool {
	if e.Identity != o.Identity {
		return e.Identity < o.Identity
	}
	if c := e.Client.Compare(o.Client); c != 0 {
		return c < 0
	}
	if c := e.Server.Compare(o.Server); c != 0 {
		return c < 0
	}
	switch {
	case e.Proto != o.Proto:
		return e.Proto < o.Proto
	case e.Port != o.Port:
		return e.Port < o.Port
	case e.Verdict != o.Verdict:
		return e.Verdict < o.Verdict
	}
	return e.Rule < o.Rule
}

// AccessSession is the successful access events of one user from one
// source address to one target within a window: logins, sessions and
// requests that sshd, web servers, Kubernetes or database and SSH gateways
// reported, whether or not a flow exporter saw the traffic.
type AccessSession struct {
	User   string
	Source string // sshd, nginx, gateway, ...
	// Host is the host that wrote the log line (for sshd, the server
	// logged into); DstAddr (invalid when the event had none), DstHost
	// and DstPort are the target the event names.
	Host     string
	SrcAddr  netip.Addr // invalid when the event had none
	DstAddr  netip.Addr
	DstHost  string
	DstPort  uint16
	Events   uint64
	From, To time.Time // first and last event, to the second
}

// BindingOnlySources are the access sources that only say who holds an
// address (DHCP leases, RADIUS accounting, VPN status and Kubernetes pod
// snapshots): identity sources for the enricher, not access to a target.
var BindingOnlySources = []string{"dhcp", "dhcp_leases", "k8s_pods", "openvpn_status", "radius"}

// AccessSessions returns the access events of w (on the event time) that
// grant access — outcome success, from a trusted sender, with a user,
// other than a logout, session close, disconnect or interim update, and
// not from BindingOnlySources — grouped per user,
// source, host, source address and target, sorted by user, source, host,
// source address, destination address, destination host, port.
func (r *Reader) AccessSessions(ctx context.Context, w Window) ([]AccessSession, error) {
	rows, err := r.conn.Query(ctx, r.accessSessionsSQL(w))
	if err != nil {
		return nil, fmt.Errorf("query: access sessions: %w", err)
	}
	defer rows.Close()
	var out []AccessSession
	for rows.Next() {
		var s AccessSession
		var src, dst string
		if err := rows.Scan(&s.User, &s.Source, &s.Host, &src, &dst, &s.DstHost, &s.DstPort, &s.Events, &s.From, &s.To); err != nil {
			return nil, fmt.Errorf("query: access sessions: %w", err)
		}
		if s.SrcAddr, err = eventAddr(src); err != nil {
			return nil, err
		}
		if s.DstAddr, err = eventAddr(dst); err != nil {
			return nil, err
		}
		s.From, s.To = s.From.UTC(), s.To.UTC()
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: access sessions: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].less(&out[j]) })
	return out, nil
}

func (r *Reader) accessSessionsSQL(w Window) string {
	return fmt.Sprintf(`SELECT user, source, host, IPv6NumToString(src_addr), IPv6NumToString(dst_addr), dst_host, dst_port,
    toUInt64(count()), toDateTime(min(time)), toDateTime(max(time))
FROM %s
WHERE %s AND outcome = 'success' AND trusted = 1 AND user != ''
    AND action NOT IN ('logout', 'session_close', 'disconnect', 'interim') AND source NOT IN (%s)
GROUP BY user, source, host, src_addr, dst_addr, dst_host, dst_port`, r.table(schemas.AccessEventsTable.Name), w.where("time"),
		quoteList(BindingOnlySources))
}

// eventAddr parses an access event address; "::" (none) is the invalid
// Addr.
func eventAddr(s string) (netip.Addr, error) {
	a, err := parseAddr(s)
	if err != nil || a.IsUnspecified() {
		return netip.Addr{}, err
	}
	return a, nil
}

func (s *AccessSession) less(o *AccessSession) bool {
	switch {
	case s.User != o.User:
		return s.User < o.User
	case s.Source != o.Source:
		return s.Source < o.Source
	case s.Host != o.Host:
		return s.Host < o.Host
	}
	if c := s.SrcAddr.Compare(o.SrcAddr); c != 0 {
		return c < 0
	}
	if c := s.DstAddr.Compare(o.DstAddr); c != 0 {
		return c < 0
	}
	if s.DstHost != o.DstHost {
		return s.DstHost < o.DstHost
	}
	return s.DstPort < o.DstPort
}
