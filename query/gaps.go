package query

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// ViolationEdge is the violations of one service edge between segments
// within a window, from rule_hits_1h: client segment to server segment on
// one service port and protocol (the service orientation of rule_hits_1h).
type ViolationEdge struct {
	ClientSegment, ServerSegment string
	Port                         uint16
	Proto                        uint8
	Rules                        []string // deny rules that decided them; "" when no rule allowed them
	Flows, Bytes                 uint64
	// Hours is the number of distinct hours with violations: how often
	// they recur.
	Hours               uint64
	FirstHour, LastSeen time.Time
}

// ViolationEdges returns the violation edges of w, sorted by client
// segment, server segment, proto, port. Hours are whole: w selects the
// hours that start in it.
func (r *Reader) ViolationEdges(ctx context.Context, w Window) ([]ViolationEdge, error) {
	q := fmt.Sprintf(`SELECT client_segment, server_segment, service_port, proto, groupUniqArray(rule),
    sum(f), sum(b), toUInt64(uniqExact(hour)), min(hour), max(lh)
FROM
(
    SELECT hour, rule, client_segment, server_segment, service_port, proto,
        sum(flows) AS f, sum(bytes) AS b, maxMerge(last_hit) AS lh
    FROM %s
    WHERE %s AND verdict = 'violation'
    GROUP BY hour, rule, client_segment, server_segment, service_port, proto
)
GROUP BY client_segment, server_segment, service_port, proto`, r.table(schemas.RuleHitsTable.Name), w.where("hour"))
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: violation edges: %w", err)
	}
	defer rows.Close()
	var out []ViolationEdge
	for rows.Next() {
		var e ViolationEdge
		if err := rows.Scan(&e.ClientSegment, &e.ServerSegment, &e.Port, &e.Proto, &e.Rules, &e.Flows, &e.Bytes,
			&e.Hours, &e.FirstHour, &e.LastSeen); err != nil {
			return nil, fmt.Errorf("query: violation edges: %w", err)
		}
		sort.Strings(e.Rules)
		e.FirstHour, e.LastSeen = e.FirstHour.UTC(), e.LastSeen.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: violation edges: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		switch {
		case a.ClientSegment != b.ClientSegment:
			return a.ClientSegment < b.ClientSegment
		case a.ServerSegment != b.ServerSegment:
			return a.ServerSegment < b.ServerSegment
		case a.Proto != b.Proto:
			return a.Proto < b.Proto
		}
		return a.Port < b.Port
	})
	return out, nil
}

// EnforcementMismatch is flows of one service edge on which the exporting
// device and the policy disagree: the policy's verdict (as enriched) was
// violation and the device forwarded them, or allowed and the device
// dropped or denied them (fw_action).
type EnforcementMismatch struct {
	ClientSegment, ServerSegment string
	Port                         uint16
	Proto                        uint8
	Verdict, Rule, FwAction      string
	Flows, Bytes                 uint64
	FirstSeen, LastSeen          time.Time
	// Examples are up to three "client -> server" address pairs.
	Examples []string
}

// EnforcementMismatches returns the mismatches of w from flows (the
// rollups do not keep fw_action), in the service orientation of
// rule_hits_1h, sorted by client segment, server segment, proto, port,
// verdict, fw_action, rule.
func (r *Reader) EnforcementMismatches(ctx context.Context, w Window) ([]EnforcementMismatch, error) {
	q := fmt.Sprintf(`SELECT c_seg, s_seg, s_port, proto, verdict, rule, fw_action, count(), sum(bytes),
    min(time_received), max(time_received), arraySlice(arraySort(groupUniqArray(pair)), 1, 3)
FROM
(
    SELECT if(service_side = 'src', dst_segment, src_segment) AS c_seg,
        if(service_side = 'src', src_segment, dst_segment) AS s_seg,
        if(service_side = '', dst_port, service_port) AS s_port,
        proto, verdict, rule, fw_action, bytes, time_received,
        if(service_side = 'src', concat(IPv6NumToString(dst_addr), ' -> ', IPv6NumToString(src_addr)),
            concat(IPv6NumToString(src_addr), ' -> ', IPv6NumToString(dst_addr))) AS pair
    FROM %s
    WHERE %s AND ((verdict = 'violation' AND fw_action = 'forwarded')
        OR (verdict = 'allowed' AND fw_action IN ('dropped', 'denied')))
)
GROUP BY c_seg, s_seg, s_port, proto, verdict, rule, fw_action`, r.table("flows"), w.where("time_received"))
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: enforcement mismatches: %w", err)
	}
	defer rows.Close()
	var out []EnforcementMismatch
	for rows.Next() {
		var e EnforcementMismatch
		if err := rows.Scan(&e.ClientSegment, &e.ServerSegment, &e.Port, &e.Proto, &e.Verdict, &e.Rule, &e.FwAction,
			&e.Flows, &e.Bytes, &e.FirstSeen, &e.LastSeen, &e.Examples); err != nil {
			return nil, fmt.Errorf("query: enforcement mismatches: %w", err)
		}
		for i, ex := range e.Examples {
			e.Examples[i] = strings.ReplaceAll(ex, "::ffff:", "")
		}
		sort.Strings(e.Examples)
		e.FirstSeen, e.LastSeen = e.FirstSeen.UTC(), e.LastSeen.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: enforcement mismatches: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		return fmt.Sprint(a.ClientSegment, "|", a.ServerSegment, "|", a.Proto, "|", a.Port, "|", a.Verdict, "|", a.FwAction, "|", a.Rule) <
			fmt.Sprint(b.ClientSegment, "|", b.ServerSegment, "|", b.Proto, "|", b.Port, "|", b.Verdict, "|", b.FwAction, "|", b.Rule)
	})
	return out, nil
}

// AppliedPolicy is one policy version from policy_versions with the first
// time any enricher applied it.
type AppliedPolicy struct {
	Version     string
	FirstLoaded time.Time
	Content     []byte
}

// AppliedPolicies returns every policy version ever applied (not only in
// a window: review ages need the whole history), sorted by first loaded
// time, then version: the first of each version's PolicyApplications.
func (r *Reader) AppliedPolicies(ctx context.Context) ([]AppliedPolicy, error) {
	apps, err := r.PolicyApplications(ctx, time.Unix(1<<32-1, 0)) // DateTime's last second
	if err != nil {
		return nil, err
	}
	var out []AppliedPolicy
	seen := map[string]bool{}
	for _, a := range apps {
		if !seen[a.Version] {
			seen[a.Version] = true
			out = append(out, AppliedPolicy{Version: a.Version, FirstLoaded: a.LoadedAt, Content: a.Content})
		}
	}
	return out, nil
}
