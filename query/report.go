package query

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The compliance report's questions (report/). Each returns the rows
// behind one part of an evidence pack, sorted by a documented key, so a
// pack's evidence files are byte-identical on re-runs over the same data.

// ServiceRow is the traffic of one window in the service orientation of
// rule_hits_1h (see SegmentEdges): the client segment and identity, the
// server segment, the serving end's port, and how the enricher decided it.
type ServiceRow struct {
	Client, Server string // segments; equal for intra-segment traffic
	Identity       string // client identity; "" when unattributed
	Port           uint16 // service port
	Proto          uint8
	Verdict, Rule  string
	Flows, Bytes   uint64
	// FirstSeen and LastSeen bound the rows' time_received, to the second,
	// except FirstSeen of traffic first seen in a whole hour of the
	// window (read from the rollup): the start of that hour.
	FirstSeen, LastSeen time.Time
}

// ServiceRows returns every (client segment, server segment, client
// identity, service port, protocol, verdict, rule) of w with its flows,
// bytes and first and last receipt, sorted by client, server, port,
// protocol, identity, verdict then rule. The whole hours of w are read
// from rule_hits_1h and the partial hours at either end from flows, so
// the counts are exactly those of flows at the cost of the rollup.
func (r *Reader) ServiceRows(ctx context.Context, w Window) ([]ServiceRow, error) {
	type part struct {
		w      Window
		rollup bool
	}
	parts := []part{{w, false}}
	if a, b := w.From.Truncate(time.Hour), w.To.Truncate(time.Hour); !r.noRollup {
		if a.Before(w.From) {
			a = a.Add(time.Hour)
		}
		if a.Before(b) {
			parts = []part{{Window{a, b}, true}}
			if w.From.Before(a) {
				parts = append(parts, part{Window{w.From, a}, false})
			}
			if b.Before(w.To) {
				parts = append(parts, part{Window{b, w.To}, false})
			}
		}
	}
	type key struct {
		c, s, i, v, rule string
		port             uint16
		proto            uint8
	}
	merged := map[key]*ServiceRow{}
	for _, p := range parts {
		if err := r.serviceRows(ctx, r.serviceRowsSQL(p.w, p.rollup), func(s ServiceRow) {
			k := key{s.Client, s.Server, s.Identity, s.Verdict, s.Rule, s.Port, s.Proto}
			m := merged[k]
			if m == nil {
				merged[k] = &s
				return
			}
			m.Flows += s.Flows
			m.Bytes += s.Bytes
			if s.FirstSeen.Before(m.FirstSeen) {
				m.FirstSeen = s.FirstSeen
			}
			if s.LastSeen.After(m.LastSeen) {
				m.LastSeen = s.LastSeen
			}
		}); err != nil {
			return nil, err
		}
	}
	out := make([]ServiceRow, 0, len(merged))
	for _, m := range merged {
		out = append(out, *m)
	}
	sortServiceRows(out)
	return out, nil
}

func (r *Reader) serviceRows(ctx context.Context, q string, add func(ServiceRow)) error {
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("query: service rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s ServiceRow
		var first, last uint32
		if err := rows.Scan(&s.Client, &s.Server, &s.Identity, &s.Port, &s.Proto, &s.Verdict, &s.Rule,
			&s.Flows, &s.Bytes, &first, &last); err != nil {
			return fmt.Errorf("query: service rows: %w", err)
		}
		s.FirstSeen, s.LastSeen = time.Unix(int64(first), 0).UTC(), time.Unix(int64(last), 0).UTC()
		add(s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query: service rows: %w", err)
	}
	return nil
}

// serviceRowsSQL is ServiceRows' query, from rule_hits_1h with rollup.
func (r *Reader) serviceRowsSQL(w Window, rollup bool) string {
	if rollup {
		return fmt.Sprintf(`SELECT client_segment, server_segment, client_identity, service_port, proto, verdict, rule,
    toUInt64(sum(flows)), toUInt64(sum(bytes)), toUInt32(min(hour)), toUInt32(maxMerge(last_hit))
FROM %s
WHERE %s
GROUP BY client_segment, server_segment, client_identity, service_port, proto, verdict, rule`,
			r.table("rule_hits_1h"), w.where("hour"))
	}
	return fmt.Sprintf(`SELECT %s AS c, %s AS s, %s AS i, toUInt16(%s) AS p, proto, verdict, rule,
    toUInt64(count()), toUInt64(sum(bytes)), toUInt32(min(time_received)), toUInt32(max(time_received))
FROM %s
WHERE %s
GROUP BY c, s, i, p, proto, verdict, rule`,
		clientSegExpr, serverSegExpr, clientIDExpr, servicePort, r.table("flows"), w.where("time_received"))
}

func sortServiceRows(out []ServiceRow) {
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		switch {
		case a.Client != b.Client:
			return a.Client < b.Client
		case a.Server != b.Server:
			return a.Server < b.Server
		case a.Port != b.Port:
			return a.Port < b.Port
		case a.Proto != b.Proto:
			return a.Proto < b.Proto
		case a.Identity != b.Identity:
			return a.Identity < b.Identity
		case a.Verdict != b.Verdict:
			return a.Verdict < b.Verdict
		}
		return a.Rule < b.Rule
	})
}

// AccessSource is the access-log coverage of one source (sshd, nginx…)
// in a window: how many events, and how many carry each field an audit
// trail needs (PCI DSS 10.2.2: user, origin, outcome).
type AccessSource struct {
	Source                             string
	Events                             uint64
	WithUser, WithSrcAddr, WithOutcome uint64
	Failures                           uint64 // outcome failure or denied
	FirstSeen, LastSeen                time.Time
}

// AccessSources returns the access-log sources of w, sorted by source.
func (r *Reader) AccessSources(ctx context.Context, w Window) ([]AccessSource, error) {
	rows, err := r.conn.Query(ctx, r.accessSourcesSQL(w))
	if err != nil {
		return nil, fmt.Errorf("query: access sources: %w", err)
	}
	defer rows.Close()
	var out []AccessSource
	for rows.Next() {
		var s AccessSource
		var first, last uint32
		if err := rows.Scan(&s.Source, &s.Events, &s.WithUser, &s.WithSrcAddr, &s.WithOutcome, &s.Failures, &first, &last); err != nil {
			return nil, fmt.Errorf("query: access sources: %w", err)
		}
		s.FirstSeen, s.LastSeen = time.Unix(int64(first), 0).UTC(), time.Unix(int64(last), 0).UTC()
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: access sources: %w", err)
	}
	return out, nil
}

func (r *Reader) accessSourcesSQL(w Window) string {
	return fmt.Sprintf(`SELECT source, toUInt64(count()), toUInt64(countIf(user != '')),
    toUInt64(countIf(IPv6NumToString(src_addr) NOT IN ('::', '::ffff:0.0.0.0'))),
    toUInt64(countIf(outcome IN ('success', 'failure', 'denied'))),
    toUInt64(countIf(outcome IN ('failure', 'denied'))),
    toUInt32(min(toDateTime(time))), toUInt32(max(toDateTime(time)))
FROM %s
WHERE %s
GROUP BY source
ORDER BY source`, r.table("access_events"), w.where("toDateTime(time)"))
}

// FailedAccess is the failed or denied access attempts of one user from
// one address through one source, in a window.
type FailedAccess struct {
	Source, User, SrcAddr, Outcome string // SrcAddr in text form, "" when unknown
	Attempts                       uint64
	FirstSeen, LastSeen            time.Time
}

// FailedAccesses returns the failed and denied access attempts of w
// (outcome failure or denied) per source, user, source address and
// outcome, sorted by attempts (most first), then source, user, address
// and outcome.
func (r *Reader) FailedAccesses(ctx context.Context, w Window) ([]FailedAccess, error) {
	rows, err := r.conn.Query(ctx, r.failedAccessSQL(w))
	if err != nil {
		return nil, fmt.Errorf("query: failed access: %w", err)
	}
	defer rows.Close()
	var out []FailedAccess
	for rows.Next() {
		var f FailedAccess
		var first, last uint32
		if err := rows.Scan(&f.Source, &f.User, &f.SrcAddr, &f.Outcome, &f.Attempts, &first, &last); err != nil {
			return nil, fmt.Errorf("query: failed access: %w", err)
		}
		if a, err := optAddr(f.SrcAddr); err == nil && a.IsValid() {
			f.SrcAddr = a.String()
		} else {
			f.SrcAddr = ""
		}
		f.FirstSeen, f.LastSeen = time.Unix(int64(first), 0).UTC(), time.Unix(int64(last), 0).UTC()
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: failed access: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		switch {
		case a.Attempts != b.Attempts:
			return a.Attempts > b.Attempts
		case a.Source != b.Source:
			return a.Source < b.Source
		case a.User != b.User:
			return a.User < b.User
		case a.SrcAddr != b.SrcAddr:
			return a.SrcAddr < b.SrcAddr
		}
		return a.Outcome < b.Outcome
	})
	return out, nil
}

func (r *Reader) failedAccessSQL(w Window) string {
	return fmt.Sprintf(`SELECT source, user, IPv6NumToString(src_addr) AS a, outcome, toUInt64(count()),
    toUInt32(min(toDateTime(time))), toUInt32(max(toDateTime(time)))
FROM %s
WHERE %s AND outcome IN ('failure', 'denied')
GROUP BY source, user, a, outcome`, r.table("access_events"), w.where("toDateTime(time)"))
}

// Retained is what one table holds: its rows and the first and last day
// (server time zone) of its time column. Days are zero when Rows is 0.
type Retained struct {
	Table                string
	Rows                 uint64
	OldestDay, NewestDay time.Time
}

// retainedTables are the tables whose history compliance evidence
// relies on, with their time column.
var retainedTables = [][2]string{
	{"flows", "time_received"},
	{"access_events", "time"},
	{"alerts", "time"},
	{"probe_results", "time"},
}

// Retention returns, for flows, access_events, alerts and probe_results
// in that order, the rows stored and the oldest and newest day: what is
// actually retained, whatever the configured TTL says.
func (r *Reader) Retention(ctx context.Context) ([]Retained, error) {
	var out []Retained
	for _, t := range retainedTables {
		q := r.retentionSQL(t[0], t[1])
		var n uint64
		var lo, hi uint32
		if err := r.conn.QueryRow(ctx, q).Scan(&n, &lo, &hi); err != nil {
			return nil, fmt.Errorf("query: retention of %s: %w", t[0], err)
		}
		ret := Retained{Table: t[0], Rows: n}
		if n > 0 {
			ret.OldestDay, ret.NewestDay = dayOf(lo), dayOf(hi)
		}
		out = append(out, ret)
	}
	return out, nil
}

func (r *Reader) retentionSQL(table, column string) string {
	return fmt.Sprintf("SELECT toUInt64(count()), toUInt32(toDateTime(min(toDate(%s)))), toUInt32(toDateTime(max(toDate(%s)))) FROM %s",
		column, column, r.table(table))
}

// dayOf turns the server's midnight (in its time zone) into that date at
// UTC midnight.
func dayOf(unix uint32) time.Time {
	t := time.Unix(int64(unix), 0)
	// The server's midnight is within ±14 h of UTC midnight: round to the
	// nearest UTC day.
	return t.UTC().Add(12 * time.Hour).Truncate(24 * time.Hour)
}

// ProbeRun is one active segmentation test (flowaudit probe): who ran it,
// when, and its results.
type ProbeRun struct {
	RunID, Prober         string
	SrcSegments           []string // segments the attempts started from
	Start, End            time.Time
	Attempts              uint64
	Pass, Breach, Blocked uint64
	TargetSegments        uint64 // distinct destination segments
}

// ProbeRuns returns the probe runs started in w, sorted by start then id.
func (r *Reader) ProbeRuns(ctx context.Context, w Window) ([]ProbeRun, error) {
	rows, err := r.conn.Query(ctx, r.probeRunsSQL(w))
	if err != nil {
		return nil, fmt.Errorf("query: probe runs: %w", err)
	}
	return scanProbeRuns(rows)
}

func (r *Reader) probeRunsSQL(w Window) string {
	return fmt.Sprintf(`SELECT run_id, any(prober), groupUniqArray(src_segment), toUInt32(min(toDateTime(time))), toUInt32(max(toDateTime(time))),
    toUInt64(count()), toUInt64(countIf(result = 'pass')), toUInt64(countIf(result = 'breach')), toUInt64(countIf(result = 'blocked')),
    toUInt64(uniqExact(dst_segment))
FROM %s
WHERE %s
GROUP BY run_id`, r.table("probe_results"), w.where("toDateTime(time)"))
}

func scanProbeRuns(rows driver.Rows) ([]ProbeRun, error) {
	defer rows.Close()
	var out []ProbeRun
	for rows.Next() {
		var p ProbeRun
		var first, last uint32
		if err := rows.Scan(&p.RunID, &p.Prober, &p.SrcSegments, &first, &last, &p.Attempts, &p.Pass, &p.Breach, &p.Blocked, &p.TargetSegments); err != nil {
			return nil, fmt.Errorf("query: probe runs: %w", err)
		}
		sort.Strings(p.SrcSegments)
		p.Start, p.End = time.Unix(int64(first), 0).UTC(), time.Unix(int64(last), 0).UTC()
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: probe runs: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].RunID < out[j].RunID
	})
	return out, nil
}

func (r *Reader) policyVersionsSQL() string {
	return fmt.Sprintf(`SELECT version, path, host, summary, toUInt32(toDateTime(loaded_at)) AS t
FROM %s
GROUP BY version, path, host, summary, t`, r.table("policy_versions"))
}

// PolicyVersion is one application of a policy file by an enricher.
type PolicyVersion struct {
	Version, Path, Host, Summary string
	LoadedAt                     time.Time
}

// PolicyVersions returns every policy application recorded in
// policy_versions, newest first (ties by version).
func (r *Reader) PolicyVersions(ctx context.Context) ([]PolicyVersion, error) {
	rows, err := r.conn.Query(ctx, r.policyVersionsSQL())
	if err != nil {
		return nil, fmt.Errorf("query: policy versions: %w", err)
	}
	defer rows.Close()
	var out []PolicyVersion
	for rows.Next() {
		var p PolicyVersion
		var t uint32
		if err := rows.Scan(&p.Version, &p.Path, &p.Host, &p.Summary, &t); err != nil {
			return nil, fmt.Errorf("query: policy versions: %w", err)
		}
		p.LoadedAt = time.Unix(int64(t), 0).UTC()
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: policy versions: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LoadedAt.Equal(out[j].LoadedAt) {
			return out[i].LoadedAt.After(out[j].LoadedAt)
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// reportSQL is every statement of the report's questions over w, for
// tests that run them on both server generations.
func (r *Reader) reportSQL(w Window) map[string]string {
	m := map[string]string{
		"service rows (flows)":  r.serviceRowsSQL(w, false),
		"service rows (rollup)": r.serviceRowsSQL(w, true),
		"access sources":        r.accessSourcesSQL(w),
		"failed access":         r.failedAccessSQL(w),
		"probe runs":            r.probeRunsSQL(w),
		"policy versions":       r.policyVersionsSQL(),
	}
	for _, t := range retainedTables {
		m["retention of "+t[0]] = r.retentionSQL(t[0], t[1])
	}
	return m
}
