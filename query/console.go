package query

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/schemas"
)

// The console's questions. Segment edges are in the service orientation
// of rule_hits_1h: Client is the segment of the end that did not offer the
// service, Server the one that did, Port the serving end's port, so a
// connection and its replies are one edge. Flows whose service side is
// unknown keep their own orientation.

// Service-orientation expressions over flows, equal to the ones the
// rule_hits_1h view stores.
const (
	clientSegExpr = "if(service_side = 'src', dst_segment, src_segment)"
	serverSegExpr = "if(service_side = 'src', src_segment, dst_segment)"
	clientIDExpr  = "if(service_side = 'src', dst_identity, src_identity)"
	servicePort   = "if(service_side = '', dst_port, service_port)"
)

// Verdict classes of a filter: the enricher's verdicts and VerdictStaged,
// flows the staged rules would deny although the enforced ones did not.
const VerdictStaged = "staged_deny"

// EdgeFilter narrows the console's questions. Zero fields do not filter.
type EdgeFilter struct {
	Identity string // client identity (the end that did not offer the service)
	Port     uint16 // service port
	Verdict  string // allowed, violation, intra_segment, unknown or VerdictStaged
}

func (f EdgeFilter) rollupWhere() string {
	var c []string
	if f.Identity != "" {
		c = append(c, "client_identity = "+quoteList([]string{f.Identity}))
	}
	if f.Port != 0 {
		c = append(c, fmt.Sprintf("service_port = %d", f.Port))
	}
	c = append(c, verdictWhere(f.Verdict)...)
	return joinAnd(c)
}

func (f EdgeFilter) flowsWhere() string {
	var c []string
	if f.Identity != "" {
		c = append(c, clientIDExpr+" = "+quoteList([]string{f.Identity}))
	}
	if f.Port != 0 {
		c = append(c, fmt.Sprintf("%s = %d", servicePort, f.Port))
	}
	c = append(c, verdictWhere(f.Verdict)...)
	return joinAnd(c)
}

func verdictWhere(v string) []string {
	switch v {
	case "":
		return nil
	case VerdictStaged:
		return []string{"staged_verdict = 'violation' AND verdict != 'violation'"}
	}
	return []string{"verdict = " + quoteList([]string{v})}
}

func joinAnd(c []string) string {
	if len(c) == 0 {
		return ""
	}
	return " AND " + strings.Join(c, " AND ")
}

// SegmentEdge is the traffic from one client segment to one server
// segment within a window.
type SegmentEdge struct {
	Client, Server string
	Flows, Bytes   uint64
	Violations     uint64 // flows with verdict violation
	StagedDenies   uint64 // flows the staged rules would deny, not violations today
}

// Class is the edge's colour: violation when any flow was one, else
// staged_deny when any flow would be denied by the staged rules, else
// allowed.
func (e SegmentEdge) Class() string {
	switch {
	case e.Violations > 0:
		return "violation"
	case e.StagedDenies > 0:
		return VerdictStaged
	}
	return "allowed"
}

// hourAligned reports whether w can be answered from an hourly rollup.
func (w Window) hourAligned() bool {
	return w.From.Equal(w.From.Truncate(time.Hour)) && w.To.Equal(w.To.Truncate(time.Hour)) && w.To.After(w.From)
}

// minuteAligned reports whether w is on whole minutes.
func (w Window) minuteAligned() bool {
	return w.From.Equal(w.From.Truncate(time.Minute)) && w.To.Equal(w.To.Truncate(time.Minute)) && w.To.After(w.From)
}

// edgeRollup is a rollup in the service orientation (rule_hits_1h or
// console_edges_1m, the same columns) and its time column.
type edgeRollup struct{ table, time string }

// edgeRollup returns the rollup that answers w exactly in buckets of step
// (0: any), ok false to read flows: rule_hits_1h for whole hours,
// console_edges_1m for whole minutes when the minute view covers w (it has
// a row from before w's first minute, so it existed then; a view added to
// an existing database fills only what is inserted after it).
func (r *Reader) edgeRollup(ctx context.Context, w Window, step time.Duration) (edgeRollup, bool, error) {
	if r.noRollup {
		return edgeRollup{}, false, nil
	}
	if w.hourAligned() && step%time.Hour == 0 {
		return edgeRollup{r.table(schemas.RuleHitsTable.Name), "hour"}, true, nil
	}
	if !w.minuteAligned() || step%time.Minute != 0 {
		return edgeRollup{}, false, nil
	}
	t := r.table(schemas.ConsoleEdgesTable.Name)
	var n uint64
	q := fmt.Sprintf("SELECT toUInt64(count()) FROM (SELECT 1 FROM %s WHERE minute < toDateTime(%d) LIMIT 1)", t, w.From.Unix())
	if err := r.conn.QueryRow(ctx, q).Scan(&n); err != nil {
		if strings.Contains(err.Error(), "doesn't exist") || strings.Contains(err.Error(), "code: 60") {
			return edgeRollup{}, false, nil // not migrated yet: flows only
		}
		return edgeRollup{}, false, fmt.Errorf("query: minute rollup coverage: %w", err)
	}
	return edgeRollup{t, "minute"}, n > 0, nil
}

// SegmentEdges returns the segment edges of w passing f, sorted by client
// then server. A window on whole hours is read from rule_hits_1h, one on
// whole minutes from console_edges_1m, any other from flows; all give the
// same numbers.
func (r *Reader) SegmentEdges(ctx context.Context, w Window, f EdgeFilter) ([]SegmentEdge, error) {
	ru, ok, err := r.edgeRollup(ctx, w, 0)
	if err != nil {
		return nil, err
	}
	var q string
	if ok {
		q = fmt.Sprintf(`SELECT client_segment, server_segment, sum(flows), sum(bytes),
    sumIf(flows, verdict = 'violation'), sumIf(flows, staged_verdict = 'violation' AND verdict != 'violation')
FROM %s
WHERE %s%s
GROUP BY client_segment, server_segment`, ru.table, w.where(ru.time), f.rollupWhere())
	} else {
		q = fmt.Sprintf(`SELECT %s AS c, %s AS s, count(), sum(bytes),
    countIf(verdict = 'violation'), countIf(staged_verdict = 'violation' AND verdict != 'violation')
FROM %s
WHERE %s%s
GROUP BY c, s`, clientSegExpr, serverSegExpr, r.table("flows"), w.where("time_received"), f.flowsWhere())
	}
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: segment edges: %w", err)
	}
	defer rows.Close()
	var out []SegmentEdge
	for rows.Next() {
		var e SegmentEdge
		if err := rows.Scan(&e.Client, &e.Server, &e.Flows, &e.Bytes, &e.Violations, &e.StagedDenies); err != nil {
			return nil, fmt.Errorf("query: segment edges: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: segment edges: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Client != out[j].Client {
			return out[i].Client < out[j].Client
		}
		return out[i].Server < out[j].Server
	})
	return out, nil
}

// EdgeDetail is what the console shows for one segment edge.
type EdgeDetail struct {
	Ports      []EdgePort
	Identities []Tally // client identities ("" = none)
	Talkers    []Talker
	Rules      []EdgeRule
}

// EdgePort is one service of an edge.
type EdgePort struct {
	Port         uint16
	Proto        uint8
	Flows, Bytes uint64
	Violations   uint64
}

// Tally is a value with its flow count.
type Tally struct {
	Value string
	Flows uint64
}

// Talker is one client and server address pair of an edge.
type Talker struct {
	Client, Server netip.Addr
	Flows, Bytes   uint64
}

// EdgeRule is a deciding rule of an edge's flows ("" = no rule decided).
type EdgeRule struct {
	Rule, Verdict             string
	StagedRule, StagedVerdict string
	Flows                     uint64
}

// EdgeDetail returns the ports (by flows), client identities and rules
// (by flows), and the top talkers (at most top, by flows) of the edge from
// client to server within w. Ties sort by value. Ports, identities and
// rules come from a rollup when w allows it (as SegmentEdges), the
// talkers from flows; the four reads run at once.
func (r *Reader) EdgeDetail(ctx context.Context, w Window, f EdgeFilter, client, server string, top int) (*EdgeDetail, error) {
	c, sv := quoteList([]string{client}), quoteList([]string{server})
	// The pair of segments in either order first: a condition on the
	// primary key's columns, so ClickHouse reads only the pair's granules.
	where := fmt.Sprintf("%s AND ((src_segment = %s AND dst_segment = %s) OR (src_segment = %s AND dst_segment = %s)) AND %s = %s AND %s = %s%s",
		w.where("time_received"), c, sv, sv, c, clientSegExpr, c, serverSegExpr, sv, f.flowsWhere())
	from := r.table("flows")
	d := &EdgeDetail{}
	// Ports, identities and rules of whole hours or minutes from a rollup
	// (the same numbers); the talkers' addresses only flows keep.
	portsQ := fmt.Sprintf(`SELECT %s AS p, proto, count(), sum(bytes), countIf(verdict = 'violation')
FROM %s WHERE %s GROUP BY p, proto`, servicePort, from, where)
	idsQ := fmt.Sprintf(`SELECT %s AS i, count() FROM %s WHERE %s GROUP BY i`, clientIDExpr, from, where)
	rulesQ := fmt.Sprintf(`SELECT rule, verdict, staged_rule, staged_verdict, count()
FROM %s WHERE %s GROUP BY rule, verdict, staged_rule, staged_verdict`, from, where)
	ru, ok, err := r.edgeRollup(ctx, w, 0)
	if err != nil {
		return nil, err
	}
	if ok {
		rh := ru.table
		rw := fmt.Sprintf("%s AND client_segment = %s AND server_segment = %s%s", w.where(ru.time), c, sv, f.rollupWhere())
		portsQ = fmt.Sprintf(`SELECT service_port, proto, sum(flows), sum(bytes), sumIf(flows, verdict = 'violation')
FROM %s WHERE %s GROUP BY service_port, proto`, rh, rw)
		idsQ = fmt.Sprintf(`SELECT client_identity, sum(flows) FROM %s WHERE %s GROUP BY client_identity`, rh, rw)
		rulesQ = fmt.Sprintf(`SELECT rule, verdict, staged_rule, staged_verdict, sum(flows)
FROM %s WHERE %s GROUP BY rule, verdict, staged_rule, staged_verdict`, rh, rw)
	}

	if top <= 0 {
		top = 10
	}
	talkersQ := fmt.Sprintf(`SELECT IPv6NumToString(c), IPv6NumToString(s), n, b FROM
(
    SELECT if(service_side = 'src', dst_addr, src_addr) AS c, if(service_side = 'src', src_addr, dst_addr) AS s,
        count() AS n, sum(bytes) AS b
    FROM %s WHERE %s GROUP BY c, s
)
ORDER BY n DESC, c, s LIMIT %d`, from, where, top)

	// The four reads at once: the talkers' (from flows) is the longest.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	read := func(i int, what, q string, scan func(driver.Rows) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := r.conn.Query(ctx, q)
			if err != nil {
				errs[i] = fmt.Errorf("query: edge %s: %w", what, err)
				return
			}
			defer rows.Close()
			for rows.Next() {
				if err := scan(rows); err != nil {
					errs[i] = fmt.Errorf("query: edge %s: %w", what, err)
					return
				}
			}
			if err := rows.Err(); err != nil {
				errs[i] = fmt.Errorf("query: edge %s: %w", what, err)
			}
		}()
	}
	read(0, "ports", portsQ, func(rows driver.Rows) error {
		var p EdgePort
		if err := rows.Scan(&p.Port, &p.Proto, &p.Flows, &p.Bytes, &p.Violations); err != nil {
			return err
		}
		d.Ports = append(d.Ports, p)
		return nil
	})
	read(1, "identities", idsQ, func(rows driver.Rows) error {
		var t Tally
		if err := rows.Scan(&t.Value, &t.Flows); err != nil {
			return err
		}
		d.Identities = append(d.Identities, t)
		return nil
	})
	read(2, "rules", rulesQ, func(rows driver.Rows) error {
		var e EdgeRule
		if err := rows.Scan(&e.Rule, &e.Verdict, &e.StagedRule, &e.StagedVerdict, &e.Flows); err != nil {
			return err
		}
		d.Rules = append(d.Rules, e)
		return nil
	})
	read(3, "talkers", talkersQ, func(rows driver.Rows) error {
		var t Talker
		var c, s string
		if err := rows.Scan(&c, &s, &t.Flows, &t.Bytes); err != nil {
			return err
		}
		var err error
		if t.Client, err = parseAddr(c); err != nil {
			return err
		}
		if t.Server, err = parseAddr(s); err != nil {
			return err
		}
		d.Talkers = append(d.Talkers, t)
		return nil
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Slice(d.Ports, func(i, j int) bool {
		a, b := d.Ports[i], d.Ports[j]
		if a.Flows != b.Flows {
			return a.Flows > b.Flows
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Proto < b.Proto
	})
	sort.Slice(d.Identities, func(i, j int) bool {
		a, b := d.Identities[i], d.Identities[j]
		if a.Flows != b.Flows {
			return a.Flows > b.Flows
		}
		return a.Value < b.Value
	})
	sort.Slice(d.Rules, func(i, j int) bool {
		a, b := d.Rules[i], d.Rules[j]
		if a.Flows != b.Flows {
			return a.Flows > b.Flows
		}
		return a.Rule+"\x00"+a.Verdict+"\x00"+a.StagedRule+"\x00"+a.StagedVerdict <
			b.Rule+"\x00"+b.Verdict+"\x00"+b.StagedRule+"\x00"+b.StagedVerdict
	})
	return d, nil
}

// FlowFilter narrows Flows. Zero fields do not filter.
type FlowFilter struct {
	EdgeFilter
	SrcSegment, DstSegment string     // as sent (not service orientation)
	Addr                   netip.Addr // either end
	Exporter               netip.Addr
}

func (f FlowFilter) where() string {
	s := f.flowsWhere()
	var c []string
	if f.SrcSegment != "" {
		c = append(c, "src_segment = "+quoteList([]string{f.SrcSegment}))
	}
	if f.DstSegment != "" {
		c = append(c, "dst_segment = "+quoteList([]string{f.DstSegment}))
	}
	if f.Addr.IsValid() {
		// Compared as text: IPv6NumToString reads FixedString(16) and
		// IPv6 alike, while IPv6StringToNum(...) compared with an IPv6
		// column is parsed as an address string on modern servers.
		a := quoteList([]string{mappedString(f.Addr)})
		c = append(c, fmt.Sprintf("(IPv6NumToString(src_addr) = %s OR IPv6NumToString(dst_addr) = %s)", a, a))
	}
	if f.Exporter.IsValid() {
		c = append(c, "IPv6NumToString(exporter) = "+quoteList([]string{mappedString(f.Exporter)}))
	}
	return s + joinAnd(c)
}

func mappedString(a netip.Addr) string {
	if a.Is4() {
		return "::ffff:" + a.String()
	}
	return a.String()
}

// FlowRow is one stored flow, as the flows explorer lists it.
type FlowRow struct {
	Time                     time.Time
	Exporter                 netip.Addr
	SrcAddr, DstAddr         netip.Addr
	SrcPort, DstPort         uint16
	Proto                    uint8
	Bytes, Packets           uint64
	SrcSegment, DstSegment   string
	SrcIdentity, DstIdentity string
	Verdict, Rule            string
	StagedVerdict            string
}

// Flows returns at most limit flows of w passing f, newest first (ties by
// addresses and ports), skipping offset, and the number of flows passing f.
func (r *Reader) Flows(ctx context.Context, w Window, f FlowFilter, limit, offset int) ([]FlowRow, uint64, error) {
	where := w.where("time_received") + f.where()
	// The count from a rollup when one answers w and f (the same number).
	count := fmt.Sprintf("SELECT count() FROM %s WHERE %s", r.table("flows"), where)
	if f.rollupOK() {
		ru, ok, err := r.edgeRollup(ctx, w, 0)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			count = fmt.Sprintf("SELECT toUInt64(sum(flows)) FROM %s WHERE %s%s", ru.table, w.where(ru.time), f.rollupWhere())
		}
	}
	var total uint64
	if err := r.conn.QueryRow(ctx, count).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("query: flows: %w", err)
	}
	if total == 0 || uint64(offset) >= total {
		return nil, total, nil
	}
	// The page's oldest time first, reading one column: the page's rows
	// are then read from that time on only. The window's last hour
	// first: when it holds the page, the older hours are not read.
	var cutoff time.Time
	n := uint64(offset + limit)
	if recent := w.To.Add(-time.Hour); recent.After(w.From) {
		var found uint64
		var t time.Time
		if err := r.conn.QueryRow(ctx, fmt.Sprintf("SELECT toUInt64(count()), min(t) FROM (SELECT time_received AS t FROM %s WHERE %s ORDER BY time_received DESC LIMIT %d)",
			r.table("flows"), Window{From: recent, To: w.To}.where("time_received")+f.where(), n)).Scan(&found, &t); err != nil {
			return nil, 0, fmt.Errorf("query: flows: %w", err)
		}
		if found == n {
			cutoff = t
		}
	}
	if cutoff.IsZero() {
		if err := r.conn.QueryRow(ctx, fmt.Sprintf("SELECT min(t) FROM (SELECT time_received AS t FROM %s WHERE %s ORDER BY time_received DESC LIMIT %d)",
			r.table("flows"), where, n)).Scan(&cutoff); err != nil {
			return nil, 0, fmt.Errorf("query: flows: %w", err)
		}
	}
	where += fmt.Sprintf(" AND time_received >= toDateTime(%d)", cutoff.Unix())
	q := fmt.Sprintf(`SELECT time_received, IPv6NumToString(exporter), IPv6NumToString(src_addr), IPv6NumToString(dst_addr),
    src_port, dst_port, proto, bytes, packets, src_segment, dst_segment, src_identity, dst_identity, verdict, rule, staged_verdict
FROM %s
WHERE %s
ORDER BY time_received DESC, src_addr, dst_addr, src_port, dst_port, proto, bytes
LIMIT %d, %d`, r.table("flows"), where, offset, limit)
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, 0, fmt.Errorf("query: flows: %w", err)
	}
	defer rows.Close()
	var out []FlowRow
	for rows.Next() {
		var fr FlowRow
		var e, s, d string
		if err := rows.Scan(&fr.Time, &e, &s, &d, &fr.SrcPort, &fr.DstPort, &fr.Proto, &fr.Bytes, &fr.Packets,
			&fr.SrcSegment, &fr.DstSegment, &fr.SrcIdentity, &fr.DstIdentity, &fr.Verdict, &fr.Rule, &fr.StagedVerdict); err != nil {
			return nil, 0, fmt.Errorf("query: flows: %w", err)
		}
		fr.Time = fr.Time.UTC()
		if fr.Exporter, err = parseAddr(e); err != nil {
			return nil, 0, err
		}
		if fr.SrcAddr, err = parseAddr(s); err != nil {
			return nil, 0, err
		}
		if fr.DstAddr, err = parseAddr(d); err != nil {
			return nil, 0, err
		}
		out = append(out, fr)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("query: flows: %w", err)
	}
	return out, total, nil
}

// AlertByID returns the latest version of one alert, or nil when there is
// no such alert.
func (r *Reader) AlertByID(ctx context.Context, id string) (*Alert, error) {
	q := fmt.Sprintf(`SELECT alert_id, kind, severity, IPv6NumToString(src_addr), IPv6NumToString(dst_addr),
    src_segment, dst_segment, src_identity, dst_port, proto, toDateTime(first_seen), toDateTime(last_seen),
    summary, evidence, count, bytes
FROM %s FINAL
WHERE alert_id = %s`, r.table("alerts"), quoteList([]string{id}))
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: alert %s: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var a Alert
	var s, d string
	if err := rows.Scan(&a.ID, &a.Kind, &a.Severity, &s, &d, &a.SrcSegment, &a.DstSegment, &a.SrcIdentity,
		&a.DstPort, &a.Proto, &a.FirstSeen, &a.LastSeen, &a.Summary, &a.Evidence, &a.Count, &a.Bytes); err != nil {
		return nil, fmt.Errorf("query: alert %s: %w", id, err)
	}
	if a.SrcAddr, err = optAddr(s); err != nil {
		return nil, err
	}
	if a.DstAddr, err = optAddr(d); err != nil {
		return nil, err
	}
	a.FirstSeen, a.LastSeen = a.FirstSeen.UTC(), a.LastSeen.UTC()
	return &a, nil
}
