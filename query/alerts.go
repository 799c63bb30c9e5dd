package query

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"
)

// Alert is one detector finding, as stored (each alert_id once, its latest
// version). Zero fields mean the detector did not narrow the finding to
// that field: SrcAddr and DstAddr are invalid (netip.Addr{}) when unset.
type Alert struct {
	ID, Kind, Severity     string
	SrcAddr, DstAddr       netip.Addr
	SrcSegment, DstSegment string
	SrcIdentity            string
	DstPort                uint16
	Proto                  uint8
	FirstSeen, LastSeen    time.Time
	Summary, Evidence      string // Evidence is the detector's JSON object
	Count, Bytes           uint64
}

// Alerts returns the alerts of the given kinds (every kind when empty)
// whose activity [first_seen, last_seen] overlaps w, sorted by first_seen
// then id.
func (r *Reader) Alerts(ctx context.Context, w Window, kinds []string) ([]Alert, error) {
	q := fmt.Sprintf(`SELECT alert_id, kind, severity, IPv6NumToString(src_addr), IPv6NumToString(dst_addr),
    src_segment, dst_segment, src_identity, dst_port, proto, toDateTime(first_seen), toDateTime(last_seen),
    summary, evidence, count, bytes
FROM %s FINAL
WHERE toDateTime(last_seen) >= toDateTime(%d) AND toDateTime(first_seen) < toDateTime(%d)`,
		r.table("alerts"), w.From.Unix(), w.To.Unix())
	if len(kinds) > 0 {
		q += " AND kind IN (" + quoteList(kinds) + ")"
	}
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("query: alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		var s, d string
		if err := rows.Scan(&a.ID, &a.Kind, &a.Severity, &s, &d, &a.SrcSegment, &a.DstSegment, &a.SrcIdentity,
			&a.DstPort, &a.Proto, &a.FirstSeen, &a.LastSeen, &a.Summary, &a.Evidence, &a.Count, &a.Bytes); err != nil {
			return nil, fmt.Errorf("query: alerts: %w", err)
		}
		if a.SrcAddr, err = optAddr(s); err != nil {
			return nil, err
		}
		if a.DstAddr, err = optAddr(d); err != nil {
			return nil, err
		}
		a.FirstSeen, a.LastSeen = a.FirstSeen.UTC(), a.LastSeen.UTC()
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: alerts: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].FirstSeen.Equal(out[j].FirstSeen) {
			return out[i].FirstSeen.Before(out[j].FirstSeen)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func optAddr(s string) (netip.Addr, error) {
	a, err := parseAddr(s)
	if err != nil || a.IsUnspecified() {
		return netip.Addr{}, err
	}
	return a, nil
}
