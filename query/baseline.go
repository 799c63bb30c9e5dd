package query

import (
	"context"
	"time"
)

// KnownEdge is one segment-level edge observed_edges has seen, whatever
// the identity: detect's new_edge baseline.
type KnownEdge struct {
	SrcSegment, DstSegment string
	DstPort                uint16
	Proto                  uint8
	LastSeen               time.Time // to the second
}

// KnownEdges returns every (source segment, destination segment, port,
// protocol) observed_edges holds with its latest sighting, sorted by
// those four fields.
func (r *Reader) KnownEdges(ctx context.Context) ([]KnownEdge, error) {
	rows, err := r.conn.Query(ctx, `SELECT toString(src_segment), toString(dst_segment), dst_port, proto, toUInt32(maxMerge(last_seen))
FROM `+r.table("observed_edges")+`
GROUP BY src_segment, dst_segment, dst_port, proto
ORDER BY src_segment, dst_segment, dst_port, proto`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []KnownEdge
	for rows.Next() {
		var e KnownEdge
		var last uint32
		if err := rows.Scan(&e.SrcSegment, &e.DstSegment, &e.DstPort, &e.Proto, &last); err != nil {
			return nil, err
		}
		e.LastSeen = time.Unix(int64(last), 0).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
