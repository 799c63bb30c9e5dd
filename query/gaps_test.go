package query

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestGapQueries(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	// Violations web -> db:5432 in three hours (the 11:00 ones as replies),
	// one allowed flow the device dropped, one violation it forwarded.
	insertFlows(t, r, []testFlow{
		{t: t0, src: "10.1.0.1", dst: "10.2.0.1", sport: 40000, dport: 5432, proto: 6, srcSeg: "web", dstSeg: "db", side: "dst"},
		{t: t0.Add(time.Hour), src: "10.2.0.1", dst: "10.1.0.1", sport: 5432, dport: 40000, proto: 6, srcSeg: "db", dstSeg: "web", side: "src"},
		{t: t0.Add(2*time.Hour + time.Minute), src: "10.1.0.2", dst: "10.2.0.1", sport: 40001, dport: 5432, proto: 6, srcSeg: "web", dstSeg: "db", side: "dst", rule: "no-web-db"},
		{t: t0, src: "10.3.0.1", dst: "10.2.0.1", sport: 40002, dport: 22, proto: 6, srcSeg: "app", dstSeg: "db", side: "dst", verdict: "allowed", rule: "ssh"},
	})
	q := fmt.Sprintf(`INSERT INTO flowaudit.flows (time_received, src_addr, dst_addr, src_port, dst_port, service_port, proto, bytes, verdict, rule, src_segment, dst_segment, service_side, fw_action)
SELECT toDateTime(%d), IPv6StringToNum('::ffff:10.3.0.1'), IPv6StringToNum('::ffff:10.2.0.1'), toUInt16(40003), toUInt16(22), toUInt16(22), toUInt8(6), toUInt64(60), 'allowed', 'ssh', 'app', 'db', 'dst', 'dropped'
UNION ALL SELECT toDateTime(%d), IPv6StringToNum('::ffff:10.2.0.1'), IPv6StringToNum('::ffff:10.1.0.9'), toUInt16(5432), toUInt16(40004), toUInt16(5432), toUInt8(6), toUInt64(70), 'violation', '', 'db', 'web', 'src', 'forwarded'
UNION ALL SELECT toDateTime(%d), IPv6StringToNum('::ffff:10.3.0.1'), IPv6StringToNum('::ffff:10.2.0.1'), toUInt16(40005), toUInt16(22), toUInt16(22), toUInt8(6), toUInt64(80), 'allowed', 'ssh', 'app', 'db', 'dst', 'forwarded'`,
		t0.Add(time.Minute).Unix(), t0.Add(2*time.Minute).Unix(), t0.Add(3*time.Minute).Unix())
	if err := r.conn.Exec(ctx, q); err != nil {
		t.Fatal(err)
	}
	w := Window{From: t0, To: t0.Add(4 * time.Hour)}
	vs, err := r.ViolationEdges(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	// The forwarded violation (db answering web, a reply) counts too: 4
	// flows over 3 hours.
	wantV := []ViolationEdge{{ClientSegment: "web", ServerSegment: "db", Port: 5432, Proto: 6, Rules: []string{"", "no-web-db"},
		Flows: 4, Bytes: 70, Hours: 3, FirstHour: t0, LastSeen: t0.Add(2*time.Hour + time.Minute)}}
	if d := cmp.Diff(vs, wantV); d != "" {
		t.Errorf("ViolationEdges (-got +want):\n%s", d)
	}
	ms, err := r.EnforcementMismatches(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	wantM := []EnforcementMismatch{
		{ClientSegment: "app", ServerSegment: "db", Port: 22, Proto: 6, Verdict: "allowed", Rule: "ssh", FwAction: "dropped",
			Flows: 1, Bytes: 60, FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute), Examples: []string{"10.3.0.1 -> 10.2.0.1"}},
		{ClientSegment: "web", ServerSegment: "db", Port: 5432, Proto: 6, Verdict: "violation", FwAction: "forwarded",
			Flows: 1, Bytes: 70, FirstSeen: t0.Add(2 * time.Minute), LastSeen: t0.Add(2 * time.Minute), Examples: []string{"10.1.0.9 -> 10.2.0.1"}},
	}
	if d := cmp.Diff(ms, wantM); d != "" {
		t.Errorf("EnforcementMismatches (-got +want):\n%s", d)
	}
	for i, v := range []struct {
		version string
		at      time.Time
	}{{"bbb", t0}, {"aaa", t0.Add(time.Hour)}, {"bbb", t0.Add(2 * time.Hour)}} {
		q := fmt.Sprintf(`INSERT INTO flowaudit.policy_versions (version, loaded_at, path, content, host, summary)
SELECT '%s', toDateTime(%d), 'p.yaml', 'content %s', 'h%d', 's'`, v.version, v.at.Unix(), v.version, i)
		if err := r.conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ap, err := r.AppliedPolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantP := []AppliedPolicy{{Version: "bbb", FirstLoaded: t0, Content: []byte("content bbb")},
		{Version: "aaa", FirstLoaded: t0.Add(time.Hour), Content: []byte("content aaa")}}
	if d := cmp.Diff(ap, wantP); d != "" {
		t.Errorf("AppliedPolicies (-got +want):\n%s", d)
	}
}
