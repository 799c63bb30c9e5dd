package query

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// Every SQL statement the project ships runs on both ClickHouse
// generations over the same data with the same results: ClickHouse 18.16
// (Debian's server, the old DDL) and ClickHouse 26.7 (the modern engine,
// the >= 23.8 DDL). The same rows are generated on both by one INSERT ...
// SELECT over numbers (only the address constructor differs), the views
// fill the rollups on both, then every case below runs on both Readers.
//
// To cover a new query function, add a case to generationCases: a name
// and a call returning the function's results (any comparable shape).

// genT0 is the start of the generated data: 700 flows 431 s apart, about
// three and a half days, so reads over the daily rollup cover whole days.
var genT0 = time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)

var (
	genAll     = Window{From: genT0, To: genT0.Add(4 * 24 * time.Hour)}
	genPartial = Window{From: genT0.Add(5*time.Hour + 17*time.Second), To: genT0.Add(2*24*time.Hour + 3*time.Hour)}
	// genMinutes is on whole minutes, not hours: read from console_edges_1m.
	genMinutes = Window{From: genT0.Add(63 * time.Minute), To: genT0.Add(26*time.Hour + 7*time.Minute)}
)

// sameAsFlows runs q on r and on a Reader of flows alone, and fails unless
// both answer alike: a rollup's numbers are those of flows.
func sameAsFlows(q func(ctx context.Context, r *Reader) (any, error)) func(ctx context.Context, r *Reader) (any, error) {
	return func(ctx context.Context, r *Reader) (any, error) {
		got, err := q(ctx, r)
		if err != nil {
			return nil, err
		}
		want, err := q(ctx, &Reader{conn: r.conn, db: r.db, noRollup: true})
		if err != nil {
			return nil, err
		}
		if d := cmp.Diff(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			return nil, fmt.Errorf("rollup and flows differ (-rollup +flows):\n%s", d)
		}
		return got, nil
	}
}

type generationCase struct {
	name string
	run  func(ctx context.Context, r *Reader) (any, error)
}

var generationCases = []generationCase{
	{"KnownEdges", func(ctx context.Context, r *Reader) (any, error) { return r.KnownEdges(ctx) }},
	{"ServiceEdges", func(ctx context.Context, r *Reader) (any, error) { return r.ServiceEdges(ctx, genAll) }},
	{"ServiceEdges partial days", func(ctx context.Context, r *Reader) (any, error) { return r.ServiceEdges(ctx, genPartial) }},
	{"ServiceEdges flows only", func(ctx context.Context, r *Reader) (any, error) {
		return (&Reader{conn: r.conn, db: r.db, noRollup: true}).ServiceEdges(ctx, genAll)
	}},
	{"ReplayGroups", func(ctx context.Context, r *Reader) (any, error) {
		return r.ReplayGroups(ctx, genAll, []uint16{22, 23, 53, 54, 443, 444, 1024, 5432, 5433})
	}},
	{"ReplayGroups partial days", func(ctx context.Context, r *Reader) (any, error) {
		return r.ReplayGroups(ctx, genPartial, []uint16{5432, 5433})
	}},
	{"SegmentEdges", func(ctx context.Context, r *Reader) (any, error) { return r.SegmentEdges(ctx, genAll, EdgeFilter{}) }},
	{"SegmentEdges partial hours", func(ctx context.Context, r *Reader) (any, error) {
		return r.SegmentEdges(ctx, genPartial, EdgeFilter{})
	}},
	{"SegmentEdges staged deny", func(ctx context.Context, r *Reader) (any, error) {
		return r.SegmentEdges(ctx, genAll, EdgeFilter{Verdict: VerdictStaged})
	}},
	{"SegmentEdges identity and port", func(ctx context.Context, r *Reader) (any, error) {
		return r.SegmentEdges(ctx, genAll, EdgeFilter{Identity: "alice", Port: 5432})
	}},
	{"EdgeDetail", func(ctx context.Context, r *Reader) (any, error) {
		return r.EdgeDetail(ctx, genAll, EdgeFilter{}, "web", "db", 5)
	}},
	{"EdgeDetail violations", func(ctx context.Context, r *Reader) (any, error) {
		return r.EdgeDetail(ctx, genPartial, EdgeFilter{Verdict: "violation"}, "app", "web", 3)
	}},
	{"Flows", func(ctx context.Context, r *Reader) (any, error) {
		rows, total, err := r.Flows(ctx, genAll, FlowFilter{}, 25, 10)
		return []any{rows, total}, err
	}},
	{"Flows by address and segment", func(ctx context.Context, r *Reader) (any, error) {
		rows, total, err := r.Flows(ctx, genAll, FlowFilter{SrcSegment: "web", Addr: netip.MustParseAddr("10.2.0.10"), Exporter: netip.MustParseAddr("192.0.2.1")}, 50, 0)
		return []any{rows, total}, err
	}},
	{"Flows IPv6 address", func(ctx context.Context, r *Reader) (any, error) {
		rows, total, err := r.Flows(ctx, genAll, FlowFilter{Addr: netip.MustParseAddr("2001:db8:1::1")}, 50, 0)
		return []any{rows, total}, err
	}},
	{"Alerts", func(ctx context.Context, r *Reader) (any, error) { return r.Alerts(ctx, genAll, nil) }},
	{"Alerts of kinds", func(ctx context.Context, r *Reader) (any, error) {
		return r.Alerts(ctx, genAll, []string{"address_scan", "port_scan"})
	}},
	{"AlertByID", func(ctx context.Context, r *Reader) (any, error) { return r.AlertByID(ctx, "a1") }},
	{"FlowSeries by every dimension", func(ctx context.Context, r *Reader) (any, error) {
		var out []any
		for _, dim := range Dimensions {
			series, err := r.FlowSeries(ctx, genPartial, FlowFilter{}, dim, time.Hour)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", dim, err)
			}
			out = append(out, series)
		}
		return out, nil
	}},
	{"FlowSeries filtered", func(ctx context.Context, r *Reader) (any, error) {
		return r.FlowSeries(ctx, genAll, FlowFilter{EdgeFilter: EdgeFilter{Verdict: "violation"}, SrcSegment: "app"}, "dst_segment", 5*time.Minute)
	}},
	{"SankeyPaths", func(ctx context.Context, r *Reader) (any, error) {
		return r.SankeyPaths(ctx, genAll, FlowFilter{}, 8, false)
	}},
	{"SankeyPaths top 2 by bytes", func(ctx context.Context, r *Reader) (any, error) {
		return r.SankeyPaths(ctx, genAll, FlowFilter{}, 2, true)
	}},
	{"WorkloadEdges", func(ctx context.Context, r *Reader) (any, error) {
		return r.WorkloadEdges(ctx, genAll, EdgeFilter{}, "db")
	}},
	{"WorkloadEdges partial hours", func(ctx context.Context, r *Reader) (any, error) {
		return r.WorkloadEdges(ctx, genPartial, EdgeFilter{Identity: "alice"}, "web")
	}},
	{"SegmentEdges whole minutes", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		return r.SegmentEdges(ctx, genMinutes, EdgeFilter{})
	})},
	{"SegmentEdges whole minutes filtered", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		return r.SegmentEdges(ctx, genMinutes, EdgeFilter{Identity: "alice", Port: 5432, Verdict: "violation"})
	})},
	{"SegmentEdges whole minutes staged deny", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		return r.SegmentEdges(ctx, genMinutes, EdgeFilter{Verdict: VerdictStaged})
	})},
	{"WorkloadEdges whole minutes", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		return r.WorkloadEdges(ctx, genMinutes, EdgeFilter{}, "db")
	})},
	{"EdgeDetail whole minutes", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		var out []any
		for _, e := range [][2]string{{"web", "db"}, {"app", "web"}, {"db", "external"}} {
			d, err := r.EdgeDetail(ctx, genMinutes, EdgeFilter{}, e[0], e[1], 5)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	})},
	{"FlowSeries whole minutes by every dimension", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		var out []any
		for _, dim := range Dimensions {
			for _, step := range []time.Duration{time.Minute, 15 * time.Minute} {
				series, err := r.FlowSeries(ctx, genMinutes, FlowFilter{EdgeFilter: EdgeFilter{Port: 443}}, dim, step)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", dim, err)
				}
				out = append(out, series)
			}
		}
		return out, nil
	})},
	{"SankeyPaths whole minutes", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		a, err := r.SankeyPaths(ctx, genMinutes, FlowFilter{}, 2, false)
		if err != nil {
			return nil, err
		}
		b, err := r.SankeyPaths(ctx, genMinutes, FlowFilter{EdgeFilter: EdgeFilter{Identity: "bob"}}, 8, true)
		return []any{a, b}, err
	})},
	{"Flows whole minutes", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		rows, total, err := r.Flows(ctx, genMinutes, FlowFilter{EdgeFilter: EdgeFilter{Verdict: "allowed"}}, 20, 5)
		return []any{rows, total}, err
	})},
	{"Flows of the last hour", sameAsFlows(func(ctx context.Context, r *Reader) (any, error) {
		// The page within the window's last hour, and one reaching
		// before it.
		rows, total, err := r.Flows(ctx, genPartial, FlowFilter{}, 3, 2)
		if err != nil {
			return nil, err
		}
		more, _, err := r.Flows(ctx, genPartial, FlowFilter{}, 10, 5)
		return []any{rows, total, more}, err
	})},
	{"whole minutes read console_edges_1m", func(ctx context.Context, r *Reader) (any, error) {
		ru, ok, err := r.edgeRollup(ctx, genMinutes, time.Minute)
		if err == nil && (!ok || ru.time != "minute") {
			err = fmt.Errorf("edgeRollup = %+v, %v: want console_edges_1m", ru, ok)
		}
		return ru.time, err
	}},
	{"ViolationEdges", func(ctx context.Context, r *Reader) (any, error) { return r.ViolationEdges(ctx, genAll) }},
	{"EnforcementMismatches", func(ctx context.Context, r *Reader) (any, error) { return r.EnforcementMismatches(ctx, genAll) }},
	{"AppliedPolicies", func(ctx context.Context, r *Reader) (any, error) { return r.AppliedPolicies(ctx) }},
	{"ServiceRows", func(ctx context.Context, r *Reader) (any, error) { return r.ServiceRows(ctx, genAll) }},
	{"ServiceRows partial hours", func(ctx context.Context, r *Reader) (any, error) { return r.ServiceRows(ctx, genPartial) }},
	{"AccessSources", func(ctx context.Context, r *Reader) (any, error) { return r.AccessSources(ctx, genAll) }},
	{"FailedAccesses", func(ctx context.Context, r *Reader) (any, error) { return r.FailedAccesses(ctx, genAll) }},
	{"Retention", func(ctx context.Context, r *Reader) (any, error) { return r.Retention(ctx) }},
	{"ProbeRuns", func(ctx context.Context, r *Reader) (any, error) { return r.ProbeRuns(ctx, genAll) }},
	{"PolicyVersions", func(ctx context.Context, r *Reader) (any, error) { return r.PolicyVersions(ctx) }},
	{"PolicyApplications", func(ctx context.Context, r *Reader) (any, error) { return r.PolicyApplications(ctx, genAll.To) }},
	{"EdgesFirstSeen", func(ctx context.Context, r *Reader) (any, error) { return r.EdgesFirstSeen(ctx, genPartial) }},
	{"ViolationsPerDay", func(ctx context.Context, r *Reader) (any, error) { return r.ViolationsPerDay(ctx, genAll) }},
	{"RuleTraffics", func(ctx context.Context, r *Reader) (any, error) { return r.RuleTraffics(ctx, genPartial) }},
	{"LatestProbeRun", func(ctx context.Context, r *Reader) (any, error) { return r.LatestProbeRun(ctx) }},
	{"ProbeCoverage", func(ctx context.Context, r *Reader) (any, error) { return r.ProbeCoverage(ctx, "r1", 10*time.Minute) }},
	{"IdentityEdges", func(ctx context.Context, r *Reader) (any, error) { return r.IdentityEdges(ctx, genAll) }},
	{"IdentityEdges partial days", func(ctx context.Context, r *Reader) (any, error) { return r.IdentityEdges(ctx, genPartial) }},
	{"AccessSessions", func(ctx context.Context, r *Reader) (any, error) { return r.AccessSessions(ctx, genAll) }},
}

// generateSQL returns the statements that fill database with the test
// data; addr is the function making an address column from a string
// (IPv6StringToNum for FixedString(16), toIPv6 for IPv6).
func generateSQL(database, addr string) []string {
	t0 := genT0.Unix()
	flows := fmt.Sprintf(`INSERT INTO %[1]s.flows (time_received, time_start, time_end, flow_type, exporter, sampling_rate, src_addr, dst_addr,
    src_port, dst_port, proto, bytes, packets, src_segment, dst_segment, src_workload, dst_workload, src_identity, dst_identity,
    verdict, rule, staged_verdict, staged_rule, service_side, service_port, fw_action,
    src_identity_source, dst_identity_source, src_device, dst_device)
SELECT toDateTime(%[2]d + n * 431) AS tr, toDateTime(%[2]d + n * 431 - 3), toDateTime(%[2]d + n * 431 - 1),
    ['ipfix', 'netflow_v5', 'sflow'][n %% 3 + 1], %[3]s(concat('::ffff:192.0.2.', toString(n %% 2 + 1))), toUInt32(n %% 3 + 1), -- constant per flow_type: the demo reads any(sampling_rate)
    %[3]s(if(n %% 5 = 0, concat('2001:db8:1::', toString(n %% 4 + 1)), concat('::ffff:10.', toString(n %% 3 + 1), '.0.', toString(n %% 4 + 10)))),
    %[3]s(if(n %% 5 = 0, concat('2001:db8:2::', toString(n %% 3 + 1)), concat('::ffff:10.', toString((n + 1) %% 3 + 1), '.0.', toString(n %% 2 + 10)))),
    toUInt16(if(n %% 6 = 0, 5432, 40000 + n %% 50)) AS sp,
    toUInt16(if(n %% 6 = 0, 40000 + n %% 50, [5432, 443, 22, 53][n %% 4 + 1])) AS dp,
    toUInt8(if(n %% 29 = 0, 1, if(dp = 53, 17, 6))),
    toUInt64(n * 13 + 40), toUInt64(n %% 9 + 1),
    ['web', 'app', 'db'][n %% 3 + 1] AS sseg, ['web', 'app', 'db', 'external'][(n + 1) %% 4 + 1] AS dseg,
    ['shop', 'orders', '', ''][n %% 4 + 1], ['orders-db', '', 'api', ''][n %% 4 + 1],
    ['alice', 'bob', 'svc-app', ''][n %% 4 + 1], ['', 'svc-db', '', ''][n %% 4 + 1],
    ['allowed', 'violation', 'intra_segment', 'unknown'][n %% 7 %% 4 + 1] AS v,
    if(v = 'allowed', concat('r-', dseg), '') AS rl,
    if(n %% 5 = 1, 'violation', v), if(n %% 5 = 1, 'staged-deny', rl),
    if(n %% 11 = 0, '', if(n %% 6 = 0, 'src', 'dst')) AS side,
    toUInt16(if(side = '', 0, if(n %% 6 = 0, 5432, dp))),
    ['', 'forwarded', 'dropped', 'denied', 'forwarded'][n %% 5 + 1],
    ['session', 'radius', 'inventory', ''][n %% 4 + 1], ['', 'inventory', '', ''][n %% 4 + 1],
    ['', 'aa:bb:cc:00:00:01', '', 'aa:bb:cc:00:00:02'][n %% 4 + 1], ''
FROM (SELECT number AS n FROM system.numbers LIMIT 700)`, database, t0, addr)
	alert := func(id, kind, src string, first, last int64, version int) string {
		return fmt.Sprintf(`INSERT INTO %s.alerts (alert_id, time, kind, severity, src_addr, dst_addr, src_segment, dst_segment, src_identity, dst_port, proto, first_seen, last_seen, count, bytes, summary, evidence, version)
SELECT '%s', toDateTime(%d), '%s', 'high', %s('%s'), %s('::'), 'app', 'db', 'alice', toUInt16(5432), toUInt8(6), toDateTime(%d), toDateTime(%d), toUInt64(3), toUInt64(999), 's', '{"n":1}', toUInt64(%d)`,
			database, id, t0+last, kind, addr, src, addr, t0+first, t0+last, version)
	}
	probe := func(at int64, run, src, srcSeg, dst, dstSeg string, port uint16, proto uint8) string {
		return fmt.Sprintf(`INSERT INTO %s.probe_results (time, run_id, prober, src_addr, src_segment, dst_addr, dst_segment, dst_port, proto, expected, observed, result)
SELECT toDateTime(%d), '%s', 'p', %s('%s'), '%s', %s('%s'), '%s', toUInt16(%d), toUInt8(%d), 'deny', 'filtered', 'pass'`,
			database, t0+at, run, addr, src, srcSeg, addr, dst, dstSeg, port, proto)
	}
	access := fmt.Sprintf(`INSERT INTO %[1]s.access_events (time, received, source, host, user, src_addr, dst_addr, dst_port, action, outcome)
SELECT toDateTime(%[2]d + n * 977), toDateTime(%[2]d + n * 977 + 1), ['sshd', 'nginx', 'k8s_audit'][n %% 3 + 1], 'h', ['alice', 'bob', 'mallory'][n %% 3 + 1],
    %[3]s(if(n %% 4 = 0, '2001:db8:1::9', concat('::ffff:10.1.0.', toString(n %% 5)))), %[3]s('::ffff:10.2.0.10'), toUInt16(22),
    ['login', 'login', 'logout', 'GET'][n %% 4 + 1], ['success', 'failure', 'denied'][n %% 3 + 1]
FROM (SELECT number AS n FROM system.numbers LIMIT 200)`, database, t0, addr)
	// VPN sessions: the identity-source columns (README's "who had
	// 10.8.0.6" query).
	vpn := fmt.Sprintf(`INSERT INTO %[1]s.access_events (time, received, source, host, user, src_addr, action, outcome, binding, device, outer_addr, labels)
SELECT toDateTime(%[2]d + n * 1800), toDateTime(%[2]d + n * 1800), 'openvpn', 'vpn-1', ['carol', 'dave'][n %% 2 + 1],
    %[3]s(concat('::ffff:10.8.0.', toString(6 + n %% 2))), 'session_open', 'success', ['start', 'stop'][intDiv(n, 2) %% 2 + 1],
    'carol-laptop', %[3]s('::ffff:198.51.100.4'), ''
FROM (SELECT number AS n FROM system.numbers LIMIT 8)`, database, t0, addr)
	policies := fmt.Sprintf(`INSERT INTO %[1]s.policy_versions (version, loaded_at, path, content, host, summary)
SELECT concat('v', toString(n %% 3)), toDateTime(%[2]d + n * 3600), '/etc/flowaudit/policy.yaml', concat('rules: ', toString(n %% 3)),
    ['enrich-1', 'enrich-2'][n %% 2 + 1], '3 segments, 2 rules, default deny'
FROM (SELECT number AS n FROM system.numbers LIMIT 7)`, database, t0)
	return []string{flows, access, vpn, policies,
		alert("a1", "address_scan", "::ffff:10.3.2.66", 600, 660, 1),
		alert("a1", "address_scan", "::ffff:10.3.2.66", 600, 720, 2),
		alert("a2", "policy_violation", "2001:db8:1::7", 90000, 90000, 1),
		alert("a3", "port_scan", "::ffff:10.3.2.77", 200000, 200300, 1),
		probe(3600, "r1", "::ffff:10.1.0.10", "web", "::ffff:10.2.0.10", "app", 5432, 6),
		probe(3600, "r1", "::ffff:10.1.0.10", "web", "::ffff:10.2.0.11", "app", 22, 6),
		probe(3600, "r1", "::ffff:10.1.0.11", "web", "::ffff:10.3.0.10", "db", 443, 6),
		probe(600, "r0", "::ffff:10.1.0.10", "web", "::ffff:10.3.0.10", "db", 5432, 6),
	}
}

// generationReaders returns Readers over the same generated data on
// ClickHouse 18.16 and on the modern engine.
func generationReaders(t *testing.T) (old, modern *Reader) {
	t.Helper()
	e := modernch.Open(t)
	_, old = startDB(t)
	ctx := context.Background()
	for _, q := range generateSQL("flowaudit", "IPv6StringToNum") {
		if err := old.conn.Exec(ctx, q); err != nil {
			t.Fatalf("ClickHouse 18.16: %v\n%s", err, q)
		}
	}
	db := modernch.Database(t, e)
	conn := modernch.Conn(e)
	for _, q := range schemas.DDL(db, schemas.ServerVersion{Major: 26, Minor: 7}, 0) {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("ClickHouse 26.7: %v\n%s", err, q)
		}
	}
	for _, q := range generateSQL(db, "toIPv6") {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("ClickHouse 26.7: %v\n%s", err, q)
		}
	}
	return old, New(conn, db)
}

var generationCmp = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
}

// nonEmpty reports whether v holds something: a non-empty slice, a
// non-nil pointer, a non-zero value.
func nonEmpty(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice:
		for i := 0; i < rv.Len(); i++ {
			if !nonEmpty(rv.Index(i).Interface()) {
				return false
			}
		}
		return rv.Len() > 0
	case reflect.Invalid:
		return false
	}
	return !rv.IsZero()
}

// TestQueriesOnBothGenerations runs every query function on ClickHouse
// 18.16 and 26.7 over the same data and compares the results.
func TestQueriesOnBothGenerations(t *testing.T) {
	old, modern := generationReaders(t)
	ctx := context.Background()
	for _, c := range generationCases {
		t.Run(c.name, func(t *testing.T) {
			want, err := c.run(ctx, old)
			if err != nil {
				t.Fatalf("ClickHouse 18.16: %v", err)
			}
			got, err := c.run(ctx, modern)
			if err != nil {
				t.Fatalf("ClickHouse 26.7: %v", err)
			}
			if !nonEmpty(want) {
				t.Fatalf("empty result on 18.16 (%#v): the generated data does not exercise this query", want)
			}
			if d := cmp.Diff(got, want, generationCmp...); d != "" {
				t.Errorf("ClickHouse 26.7 differs from 18.16 (-26.7 +18.16):\n%s", d)
			}
		})
	}
	t.Run("shipped SQL", func(t *testing.T) {
		stmts := shippedSQL(t)
		if len(stmts) < 10 {
			t.Fatalf("found only %d statements in deploy/demo.sh and README.md", len(stmts))
		}
		t.Logf("%d statements from deploy/demo.sh and README.md", len(stmts))
		for _, s := range stmts {
			// Without its LIMIT and compared as sorted rows: rows that tie
			// in the ORDER BY may come in either order, and a LIMIT then
			// keeps different ones.
			s = regexp.MustCompile(`\s+LIMIT \d+\s*$`).ReplaceAllString(s, "")
			want := rawRows(t, old, s, "flowaudit")
			got := rawRows(t, modern, s, modern.db)
			sort.Strings(want)
			sort.Strings(got)
			if len(want) == 0 {
				t.Errorf("no rows on 18.16: the generated data does not exercise\n%s", s)
			}
			if d := cmp.Diff(got, want); d != "" {
				t.Errorf("ClickHouse 26.7 differs from 18.16 (-26.7 +18.16) on\n%s\n%s", s, d)
			}
		}
	})
}

// shippedSQL collects the SELECTs of deploy/demo.sh and README.md's sql
// blocks, over the database "flowaudit" and times from genT0.
func shippedSQL(t *testing.T) []string {
	t.Helper()
	var out []string
	demo, err := os.ReadFile("../deploy/demo.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?:\bq|\bqv|clickhouse-client -q) "(SELECT [^"]+)"`).FindAllStringSubmatch(string(demo), -1) {
		s := strings.ReplaceAll(m[1], "flowaudit_demo.", "flowaudit.")
		s = strings.ReplaceAll(s, "$START", fmt.Sprint(genT0.Unix()))
		out = append(out, s)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		s := strings.TrimSpace(m[1])
		if !strings.HasPrefix(s, "SELECT") || strings.Contains(s, "file(") || strings.Contains(s, "s3(") {
			continue // only SELECTs over the flowaudit tables
		}
		// "Recent" windows of examples are relative to now(): the data is
		// older, so read from the data's start instead.
		s = regexp.MustCompile(`now\(\) - [0-9 *]+`).ReplaceAllString(s, fmt.Sprint(genT0.Unix()))
		out = append(out, s)
	}
	return out
}

// rawRows runs s (over the database "flowaudit", renamed to db) and
// returns its rows as text, each value converted through its Go scan type
// so that the generations' types (String and LowCardinality, DateTime and
// DateTime64) compare by value.
func rawRows(t *testing.T, r *Reader, s, db string) []string {
	t.Helper()
	s = strings.ReplaceAll(s, "flowaudit.", db+".")
	rows, err := r.conn.Query(context.Background(), s)
	if err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out []string
	for rows.Next() {
		out = append(out, scanText(t, rows, types))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func scanText(t *testing.T, rows driver.Rows, types []driver.ColumnType) string {
	dest := make([]any, len(types))
	for i, ct := range types {
		dest[i] = reflect.New(ct.ScanType()).Interface()
	}
	if err := rows.Scan(dest...); err != nil {
		t.Fatal(err)
	}
	fields := make([]string, len(dest))
	for i, d := range dest {
		v := reflect.ValueOf(d).Elem().Interface()
		switch v := v.(type) {
		case time.Time:
			fields[i] = v.UTC().Format(time.RFC3339Nano)
		default:
			fields[i] = fmt.Sprint(v)
		}
	}
	return strings.Join(fields, "\t")
}
