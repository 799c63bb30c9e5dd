package query

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// PolicyApplication is one application of a policy version (at an
// enricher's start or reload), to the second, with the file's content.
// Several enrichers applying one version in the same second are one
// application.
type PolicyApplication struct {
	Version, Path, Host, Summary string
	LoadedAt                     time.Time
	Content                      []byte
}

// PolicyApplications returns every application before until (the whole
// history: drift needs the version in force when a window starts),
// sorted by loaded time, then version.
func (r *Reader) PolicyApplications(ctx context.Context, until time.Time) ([]PolicyApplication, error) {
	q := fmt.Sprintf(`SELECT version, toUInt32(toDateTime(loaded_at)) AS t, any(path), any(host), any(summary), any(content)
FROM %s
WHERE toDateTime(loaded_at) < toDateTime(%d)
GROUP BY version, t`, r.table(schemas.PolicyVersionsTable.Name), until.Unix())
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: policy applications: %w", err)
	}
	defer rows.Close()
	var out []PolicyApplication
	for rows.Next() {
		var a PolicyApplication
		var t uint32
		var content string
		if err := rows.Scan(&a.Version, &t, &a.Path, &a.Host, &a.Summary, &content); err != nil {
			return nil, fmt.Errorf("query: policy applications: %w", err)
		}
		a.LoadedAt = time.Unix(int64(t), 0).UTC()
		a.Content = []byte(content)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: policy applications: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LoadedAt.Equal(out[j].LoadedAt) {
			return out[i].LoadedAt.Before(out[j].LoadedAt)
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// EdgeSighting is a service edge (client segment → server segment on a
// service port, with the client's identity) and when it was first and
// last seen over the whole stored history.
type EdgeSighting struct {
	ClientSegment, ServerSegment string
	Port                         uint16
	Proto                        uint8
	Identity                     string
	// Verdicts are the verdicts its flows got, sorted.
	Verdicts []string
	// FirstHour is the start of the hour of its first flow (rule_hits_1h
	// is hourly); LastSeen the time of its last flow.
	FirstHour, LastSeen time.Time
	Flows, Bytes        uint64
}

// EdgesFirstSeen returns the service edges whose first flow falls in w
// (by hour: the hour holding w.From counts), from rule_hits_1h, in the
// service orientation (replies folded into the connection they answer),
// intra-segment traffic excluded; sorted by first hour, client segment,
// server segment, proto, port, identity. Flows and bytes are the edge's
// totals up to w.To.
func (r *Reader) EdgesFirstSeen(ctx context.Context, w Window) ([]EdgeSighting, error) {
	q := fmt.Sprintf(`SELECT client_segment, server_segment, service_port, proto, client_identity, groupUniqArray(verdict),
    min(hour) AS first, max(lh), sum(f), sum(b)
FROM
(
    SELECT hour, verdict, client_segment, server_segment, service_port, proto, client_identity,
        sum(flows) AS f, sum(bytes) AS b, maxMerge(last_hit) AS lh
    FROM %s
    WHERE hour < toDateTime(%d) AND verdict != 'intra_segment'
    GROUP BY hour, verdict, client_segment, server_segment, service_port, proto, client_identity
)
GROUP BY client_segment, server_segment, service_port, proto, client_identity
HAVING first >= toStartOfHour(toDateTime(%d))`, r.table(schemas.RuleHitsTable.Name), w.To.Unix(), w.From.Unix())
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: edges first seen: %w", err)
	}
	defer rows.Close()
	var out []EdgeSighting
	for rows.Next() {
		var e EdgeSighting
		if err := rows.Scan(&e.ClientSegment, &e.ServerSegment, &e.Port, &e.Proto, &e.Identity, &e.Verdicts,
			&e.FirstHour, &e.LastSeen, &e.Flows, &e.Bytes); err != nil {
			return nil, fmt.Errorf("query: edges first seen: %w", err)
		}
		sort.Strings(e.Verdicts)
		e.FirstHour, e.LastSeen = e.FirstHour.UTC(), e.LastSeen.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: edges first seen: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		switch {
		case !a.FirstHour.Equal(b.FirstHour):
			return a.FirstHour.Before(b.FirstHour)
		case a.ClientSegment != b.ClientSegment:
			return a.ClientSegment < b.ClientSegment
		case a.ServerSegment != b.ServerSegment:
			return a.ServerSegment < b.ServerSegment
		case a.Proto != b.Proto:
			return a.Proto < b.Proto
		case a.Port != b.Port:
			return a.Port < b.Port
		}
		return a.Identity < b.Identity
	})
	return out, nil
}

// DailyViolations is the violation traffic of one day (server time zone).
type DailyViolations struct {
	Day   time.Time
	Flows uint64
	// Edges counts distinct client segment × server segment × port ×
	// protocol with violations that day.
	Edges uint64
}

// ViolationsPerDay returns the violations of the hours starting in w per
// day, from rule_hits_1h, sorted by day; days without violations are
// absent.
func (r *Reader) ViolationsPerDay(ctx context.Context, w Window) ([]DailyViolations, error) {
	q := fmt.Sprintf(`SELECT toUInt32(toDateTime(toDate(hour))) AS d, sum(flows), toUInt64(uniqExact(client_segment, server_segment, service_port, proto))
FROM %s
WHERE %s AND verdict = 'violation'
GROUP BY d
ORDER BY d`, r.table(schemas.RuleHitsTable.Name), w.where("hour"))
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: violations per day: %w", err)
	}
	defer rows.Close()
	var out []DailyViolations
	for rows.Next() {
		var v DailyViolations
		var d uint32
		if err := rows.Scan(&d, &v.Flows, &v.Edges); err != nil {
			return nil, fmt.Errorf("query: violations per day: %w", err)
		}
		v.Day = time.Unix(int64(d), 0).UTC()
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: violations per day: %w", err)
	}
	return out, nil
}

// RuleTraffic is the flows one rule decided in a window.
type RuleTraffic struct {
	Rule     string
	Flows    uint64
	LastSeen time.Time
}

// RuleTraffics returns the flows per deciding rule (allow and deny rules;
// flows no rule decided are absent) of the hours starting in w, from
// rule_hits_1h, sorted by rule.
func (r *Reader) RuleTraffics(ctx context.Context, w Window) ([]RuleTraffic, error) {
	q := fmt.Sprintf(`SELECT rule, sum(f), max(lh)
FROM
(
    SELECT rule, sum(flows) AS f, maxMerge(last_hit) AS lh
    FROM %s
    WHERE %s AND rule != ''
    GROUP BY hour, rule
)
GROUP BY rule
ORDER BY rule`, r.table(schemas.RuleHitsTable.Name), w.where("hour"))
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: rule traffic: %w", err)
	}
	defer rows.Close()
	var out []RuleTraffic
	for rows.Next() {
		var t RuleTraffic
		if err := rows.Scan(&t.Rule, &t.Flows, &t.LastSeen); err != nil {
			return nil, fmt.Errorf("query: rule traffic: %w", err)
		}
		t.LastSeen = t.LastSeen.UTC()
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: rule traffic: %w", err)
	}
	return out, nil
}
