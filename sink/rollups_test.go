package sink

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// TestRollups inserts enriched flows and reads the segment matrix and the
// observed edges back: the materialized views work on this server.
func TestRollups(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	v, err := Migrate(ctx, conn, "flowaudit", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
		t.Fatalf("second Migrate (views must be idempotent): %v", err)
	}
	w := &flowWriter{name: "flows"}
	w.cols.modern = v.Modern()
	t0 := time.Date(2026, 11, 23, 8, 0, 10, 0, time.UTC)
	add := func(at time.Time, src, dst string, port uint16, verdict schemas.Verdict, id string, bytes uint64) {
		pr := w.partition(0, 0)
		pr.rows = append(pr.rows, flowRow{received: uint64(at.UnixNano()), typ: schemas.FlowTypeIPFIX, flow: schemas.Flow{
			SrcSegment: src, DstSegment: dst, DstPort: port, Proto: 6, Verdict: verdict, SrcIdentity: id, Bytes: bytes, Packets: 1}})
		w.n++
	}
	add(t0, "web", "db", 5432, schemas.VerdictAllowed, "alice", 100)
	add(t0.Add(5*time.Second), "web", "db", 5432, schemas.VerdictAllowed, "alice", 50)
	add(t0.Add(2*time.Minute), "web", "db", 5432, schemas.VerdictAllowed, "alice", 7)
	add(t0, "web", "db", 22, schemas.VerdictViolation, "", 9)
	if err := w.insert(ctx, conn, "flowaudit"); err != nil {
		t.Fatal(err)
	}
	type cell struct {
		Minute                time.Time
		Port                  uint16
		Verdict               string
		Flows, Bytes, Packets uint64
	}
	rows, err := conn.Query(ctx, `SELECT minute, dst_port, verdict, sum(flows), sum(bytes), sum(packets)
		FROM flowaudit.segment_matrix_1m WHERE src_segment = 'web' AND dst_segment = 'db'
		GROUP BY minute, dst_port, verdict ORDER BY minute, dst_port`)
	if err != nil {
		t.Fatal(err)
	}
	var got []cell
	for rows.Next() {
		var c cell
		if err := rows.Scan(&c.Minute, &c.Port, &c.Verdict, &c.Flows, &c.Bytes, &c.Packets); err != nil {
			t.Fatal(err)
		}
		c.Minute = c.Minute.UTC()
		got = append(got, c)
	}
	rows.Close()
	m0 := t0.Truncate(time.Minute)
	want := []cell{
		{m0, 22, "violation", 1, 9, 1},
		{m0, 5432, "allowed", 2, 150, 2},
		{m0.Add(2 * time.Minute), 5432, "allowed", 1, 7, 1},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("segment matrix (-got +want):\n%s", diff)
	}
	var first, last time.Time
	var flows uint64
	if err := conn.QueryRow(ctx, `SELECT minMerge(first_seen), maxMerge(last_seen), countMerge(flows) FROM flowaudit.observed_edges
		WHERE src_segment = 'web' AND dst_segment = 'db' AND dst_port = 5432 AND src_identity = 'alice'`).Scan(&first, &last, &flows); err != nil {
		t.Fatal(err)
	}
	if !first.Equal(t0) || !last.Equal(t0.Add(2*time.Minute)) || flows != 3 {
		t.Errorf("observed edge = first %v last %v flows %d; want %v, %v, 3", first.UTC(), last.UTC(), flows, t0, t0.Add(2*time.Minute))
	}
}
