package sink

import (
	"context"
	"strings"
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
	w.modern = v.Modern()
	t0 := time.Date(2026, 11, 23, 8, 0, 10, 0, time.UTC)
	add := func(at time.Time, src, dst string, port uint16, verdict schemas.Verdict, id string, bytes uint64) {
		pr := w.partition(0, 0)
		pr.appendRow(flowRow{received: uint64(at.UnixNano()), typ: schemas.FlowTypeIPFIX, flow: schemas.Flow{
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

// TestRuleHits: rule_hits_1h counts flows per hour and deciding rule in
// the service orientation (replies swapped onto their connection, unknown
// sides kept as they are), and so does console_edges_1m per minute;
// segment_matrix_1m carries staged_verdict.
func TestRuleHits(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	v, err := Migrate(ctx, conn, "flowaudit", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &flowWriter{name: "flows"}
	w.modern = v.Modern()
	t0 := time.Date(2026, 11, 23, 8, 0, 10, 0, time.UTC)
	add := func(at time.Time, f schemas.Flow) {
		pr := w.partition(0, 0)
		f.Proto, f.Packets = 6, 1
		pr.appendRow(flowRow{received: uint64(at.UnixNano()), typ: schemas.FlowTypeIPFIX, flow: f})
		w.n++
	}
	allowed := schemas.Flow{SrcSegment: "web", DstSegment: "db", SrcWorkload: "shop", DstWorkload: "orders-db", SrcIdentity: "alice",
		SrcPort: 40000, DstPort: 5432, Verdict: schemas.VerdictAllowed, Rule: "web-db", StagedVerdict: schemas.VerdictViolation, StagedRule: "deny-db",
		ServiceSide: schemas.ServiceDst, ServicePort: 5432, Bytes: 100}
	reply := schemas.Flow{SrcSegment: "db", DstSegment: "web", SrcWorkload: "orders-db", DstWorkload: "shop", DstIdentity: "alice",
		SrcPort: 5432, DstPort: 40000, Verdict: schemas.VerdictAllowed, Rule: "web-db", StagedVerdict: schemas.VerdictViolation, StagedRule: "deny-db",
		ServiceSide: schemas.ServiceSrc, ServicePort: 5432, Bytes: 1000}
	unknown := schemas.Flow{SrcSegment: "web", DstSegment: "db", SrcPort: 50000, DstPort: 40000, Verdict: schemas.VerdictViolation,
		StagedVerdict: schemas.VerdictViolation, Bytes: 7}
	add(t0, allowed)
	add(t0.Add(time.Minute), reply)
	add(t0.Add(20*time.Minute), allowed)
	add(t0.Add(time.Hour), reply)
	add(t0, unknown)
	if err := w.insert(ctx, conn, "flowaudit"); err != nil {
		t.Fatal(err)
	}
	type hit struct {
		Hour                          time.Time
		Rule, Verdict, Staged         string
		Src, Dst, SrcWl, DstWl, SrcID string
		Port                          uint16
		Side                          string
		Flows, Bytes                  uint64
		Last                          time.Time
	}
	rows, err := conn.Query(ctx, `SELECT hour, rule, verdict, staged_verdict, src_segment, dst_segment, client_workload, server_workload,
		client_identity, dst_port, service_side, sum(flows), sum(bytes), maxMerge(last_hit)
		FROM flowaudit.rule_hits_1h
		GROUP BY hour, rule, verdict, staged_verdict, src_segment, dst_segment, client_workload, server_workload, client_identity, dst_port, service_side
		ORDER BY hour, rule, service_side`)
	if err != nil {
		t.Fatal(err)
	}
	var got []hit
	for rows.Next() {
		var h hit
		if err := rows.Scan(&h.Hour, &h.Rule, &h.Verdict, &h.Staged, &h.Src, &h.Dst, &h.SrcWl, &h.DstWl, &h.SrcID, &h.Port, &h.Side,
			&h.Flows, &h.Bytes, &h.Last); err != nil {
			t.Fatal(err)
		}
		h.Hour, h.Last = h.Hour.UTC(), h.Last.UTC()
		got = append(got, h)
	}
	rows.Close()
	h0 := t0.Truncate(time.Hour)
	want := []hit{
		{h0, "", "violation", "violation", "web", "db", "", "", "", 40000, "", 1, 7, t0},
		{h0, "web-db", "allowed", "violation", "web", "db", "shop", "orders-db", "alice", 5432, "dst", 2, 200, t0.Add(20 * time.Minute)},
		{h0, "web-db", "allowed", "violation", "web", "db", "shop", "orders-db", "alice", 5432, "src", 1, 1000, t0.Add(time.Minute)},
		{h0.Add(time.Hour), "web-db", "allowed", "violation", "web", "db", "shop", "orders-db", "alice", 5432, "src", 1, 1000, t0.Add(time.Hour)},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("rule_hits_1h (-got +want):\n%s", diff)
	}
	var staged uint64
	if err := conn.QueryRow(ctx, `SELECT sum(flows) FROM flowaudit.segment_matrix_1m WHERE verdict = 'allowed' AND staged_verdict = 'violation'`).Scan(&staged); err != nil {
		t.Fatal(err)
	}
	if staged != 4 {
		t.Errorf("segment_matrix_1m allowed but staged violation: %d flows, want 4", staged)
	}

	// console_edges_1m: the same orientation, per minute.
	rows, err = conn.Query(ctx, `SELECT minute, client_segment, server_segment, service_port, verdict, staged_verdict, client_identity,
		rule, staged_rule, client_workload, server_workload, sum(flows), sum(bytes)
		FROM flowaudit.console_edges_1m
		GROUP BY minute, client_segment, server_segment, service_port, verdict, staged_verdict, client_identity, rule, staged_rule,
			client_workload, server_workload
		ORDER BY minute, rule`)
	if err != nil {
		t.Fatal(err)
	}
	var edges [][]any
	for rows.Next() {
		var m time.Time
		var c, s, v, sv, id, rl, srl, cw, sw string
		var port uint16
		var flows, bytes uint64
		if err := rows.Scan(&m, &c, &s, &port, &v, &sv, &id, &rl, &srl, &cw, &sw, &flows, &bytes); err != nil {
			t.Fatal(err)
		}
		edges = append(edges, []any{m.UTC(), c, s, port, v, sv, id, rl, srl, cw, sw, flows, bytes})
	}
	rows.Close()
	m0 := t0.Truncate(time.Minute)
	wantEdges := [][]any{
		{m0, "web", "db", uint16(40000), "violation", "violation", "", "", "", "", "", uint64(1), uint64(7)},
		{m0, "web", "db", uint16(5432), "allowed", "violation", "alice", "web-db", "deny-db", "shop", "orders-db", uint64(1), uint64(100)},
		{m0.Add(time.Minute), "web", "db", uint16(5432), "allowed", "violation", "alice", "web-db", "deny-db", "shop", "orders-db", uint64(1), uint64(1000)},
		{m0.Add(20 * time.Minute), "web", "db", uint16(5432), "allowed", "violation", "alice", "web-db", "deny-db", "shop", "orders-db", uint64(1), uint64(100)},
		{m0.Add(time.Hour), "web", "db", uint16(5432), "allowed", "violation", "alice", "web-db", "deny-db", "shop", "orders-db", uint64(1), uint64(1000)},
	}
	if diff := cmp.Diff(edges, wantEdges); diff != "" {
		t.Errorf("console_edges_1m (-got +want):\n%s", diff)
	}
}

// TestMigrateRecreatesOutdatedView: an existing segment_matrix_1m and its
// view from before staged_verdict gain the column in the sorting key, and
// the view is recreated so new rows carry it.
func TestMigrateRecreatesOutdatedView(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	v, err := Migrate(ctx, conn, "flowaudit", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Put back the shape of the previous release.
	for _, stmt := range []string{
		"DROP TABLE flowaudit.segment_matrix_1m_mv",
		"DROP TABLE flowaudit.segment_matrix_1m",
		`CREATE TABLE flowaudit.segment_matrix_1m (minute DateTime, src_segment String, dst_segment String, dst_port UInt16, proto UInt8,
			verdict String, flows UInt64, bytes UInt64, packets UInt64)
			ENGINE = SummingMergeTree((flows, bytes, packets)) PARTITION BY toYYYYMMDD(minute) ORDER BY (minute, src_segment, dst_segment, dst_port, proto, verdict)`,
		`CREATE MATERIALIZED VIEW flowaudit.segment_matrix_1m_mv TO flowaudit.segment_matrix_1m AS
			SELECT toStartOfMinute(time_received) AS minute, src_segment, dst_segment, dst_port, proto, verdict,
			count() AS flows, sum(bytes) AS bytes, sum(packets) AS packets FROM flowaudit.flows
			GROUP BY minute, src_segment, dst_segment, dst_port, proto, verdict`,
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	logger, logs := testLogger(t)
	if _, err := Migrate(ctx, conn, "flowaudit", 0, logger); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "recreating materialized view") {
		t.Errorf("no view recreated; log:\n%s", logs)
	}
	var key string
	if err := conn.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = 'flowaudit' AND name = 'segment_matrix_1m'").Scan(&key); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(key, "verdict, staged_verdict)") {
		t.Errorf("segment_matrix_1m sorting key lacks staged_verdict:\n%s", key)
	}
	w := &flowWriter{name: "flows"}
	w.modern = v.Modern()
	for _, sv := range []schemas.Verdict{schemas.VerdictViolation, schemas.VerdictAllowed, schemas.VerdictViolation} {
		pr := w.partition(0, 0)
		pr.appendRow(flowRow{received: uint64(time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC).UnixNano()),
			flow: schemas.Flow{SrcSegment: "a", DstSegment: "b", Verdict: schemas.VerdictAllowed, StagedVerdict: sv}})
		w.n++
	}
	if err := w.insert(ctx, conn, "flowaudit"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE flowaudit.segment_matrix_1m FINAL"); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT sum(flows) FROM flowaudit.segment_matrix_1m WHERE staged_verdict = 'violation'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("staged violations after merge = %d, want 2", n)
	}
	// A third run changes nothing.
	logger, logs = testLogger(t)
	if _, err := Migrate(ctx, conn, "flowaudit", 0, logger); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "recreating") {
		t.Errorf("view recreated again; log:\n%s", logs)
	}
}
