package query

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNoProbeRun is returned when probe_results holds no such run.
var ErrNoProbeRun = errors.New("query: no such probe run in probe_results")

// ProbeCoverage is how many of a probe run's TCP and UDP attempts between
// one segment pair the flows table shows (collection coverage: the share
// of the path the exporters see). ICMP attempts are left out: exporters
// key echo flows by type and code in ways that differ.
type ProbeCoverage struct {
	SrcSegment, DstSegment string
	Sent, Seen             uint64
}

// LatestProbeRun returns the run_id of the most recent probe run.
func (r *Reader) LatestProbeRun(ctx context.Context) (string, error) {
	var id string
	var n uint64
	err := r.conn.QueryRow(ctx, "SELECT argMax(run_id, time), toUInt64(count()) FROM "+r.table("probe_results")).Scan(&id, &n)
	if err != nil {
		return "", fmt.Errorf("query: latest probe run: %w", err)
	}
	if n == 0 {
		return "", ErrNoProbeRun
	}
	return id, nil
}

// ProbeCoverage returns, per (source segment, destination segment) of
// run, its TCP/UDP attempts and how many of them a flow from the same
// source address to the same address, port and protocol matches, seen
// from a minute before the run's first attempt to slack after its last
// (exporters report a flow when it ends or times out). Sorted by source
// then destination segment.
func (r *Reader) ProbeCoverage(ctx context.Context, run string, slack time.Duration) ([]ProbeCoverage, error) {
	var first, last time.Time
	var n uint64
	if err := r.conn.QueryRow(ctx, "SELECT min(toDateTime(time)), max(toDateTime(time)), toUInt64(count()) FROM "+
		r.table("probe_results")+" WHERE run_id = ?", run).Scan(&first, &last, &n); err != nil {
		return nil, fmt.Errorf("query: probe run %s: %w", run, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoProbeRun, run)
	}
	w := Window{From: first.Add(-time.Minute), To: last.Add(slack + time.Second)}
	q := fmt.Sprintf(`SELECT src_segment, dst_segment, toUInt64(count()),
    toUInt64(countIf((src_addr, dst_addr, dst_port, proto) IN (
        SELECT src_addr, dst_addr, dst_port, proto FROM %s WHERE %s AND proto IN (6, 17))))
FROM %s
WHERE run_id = ? AND proto IN (6, 17)
GROUP BY src_segment, dst_segment
ORDER BY src_segment, dst_segment`, r.table("flows"), w.where("time_received"), r.table("probe_results"))
	rows, err := r.conn.Query(ctx, q, run)
	if err != nil {
		return nil, fmt.Errorf("query: probe coverage: %w", err)
	}
	defer rows.Close()
	var out []ProbeCoverage
	for rows.Next() {
		var c ProbeCoverage
		if err := rows.Scan(&c.SrcSegment, &c.DstSegment, &c.Sent, &c.Seen); err != nil {
			return nil, fmt.Errorf("query: probe coverage: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: probe coverage: %w", err)
	}
	return out, nil
}
