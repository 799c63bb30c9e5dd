package query

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/sink"
)

// testFlow is one row inserted into flows by insertFlows.
type testFlow struct {
	t              time.Time
	src, dst       string
	sport, dport   uint16
	proto          uint8
	bytes          uint64
	srcID, dstID   string
	verdict, rule  string
	srcSeg, dstSeg string
	side           string // service_side
}

func startDB(t *testing.T) (*testutil.ClickHouseServer, *Reader) {
	t.Helper()
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	if _, err := sink.Migrate(context.Background(), conn, "flowaudit", 0, nil); err != nil {
		t.Fatal(err)
	}
	return ch, New(conn, "flowaudit")
}

func mapped(s string) string {
	a := netip.MustParseAddr(s)
	if a.Is4() {
		return "::ffff:" + s
	}
	return s
}

// insertFlows writes rows with SQL the old generation accepts (the test
// server is 18.16).
func insertFlows(t *testing.T, r *Reader, flows []testFlow) {
	t.Helper()
	var sel []string
	for _, f := range flows {
		verdict := f.verdict
		if verdict == "" {
			verdict = "violation"
		}
		sel = append(sel, fmt.Sprintf(`SELECT toDateTime(%d) AS time_received, IPv6StringToNum('%s') AS src_addr, IPv6StringToNum('%s') AS dst_addr,
  toUInt16(%d) AS src_port, toUInt16(%d) AS dst_port, toUInt8(%d) AS proto, toUInt64(%d) AS bytes,
  '%s' AS src_identity, '%s' AS dst_identity, '%s' AS verdict, '%s' AS rule, '%s' AS src_segment, '%s' AS dst_segment,
  '%s' AS service_side, multiIf(service_side = 'src', src_port, service_side = 'dst', dst_port, toUInt16(0)) AS service_port`,
			f.t.Unix(), mapped(f.src), mapped(f.dst), f.sport, f.dport, f.proto, f.bytes, f.srcID, f.dstID, verdict, f.rule, f.srcSeg, f.dstSeg, f.side))
	}
	q := "INSERT INTO flowaudit.flows (time_received, src_addr, dst_addr, src_port, dst_port, proto, bytes, src_identity, dst_identity, verdict, rule, src_segment, dst_segment, service_side, service_port) " +
		strings.Join(sel, " UNION ALL ")
	if err := r.conn.Exec(context.Background(), q); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

func TestServiceEdgesAndReplayGroups(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	insertFlows(t, r, []testFlow{
		// a connection and its reply, twice, from different client ports
		{t: t0, src: "10.3.0.10", dst: "10.2.0.10", sport: 40001, dport: 5432, proto: 6, bytes: 100, srcID: "svc-app", dstID: "svc-db"},
		{t: t0.Add(time.Second), src: "10.2.0.10", dst: "10.3.0.10", sport: 5432, dport: 40001, proto: 6, bytes: 1000, srcID: "svc-db", dstID: "svc-app"},
		{t: t0.Add(time.Minute), src: "10.3.0.10", dst: "10.2.0.10", sport: 50002, dport: 5432, proto: 6, bytes: 200, srcID: "svc-app", dstID: "svc-db"},
		// IPv6 DNS
		{t: t0.Add(2 * time.Minute), src: "2001:db8:1:1::5", dst: "2001:db8:1:53::53", sport: 33333, dport: 53, proto: 17, bytes: 90},
		// ICMP echo reply (type 0) stays exact
		{t: t0.Add(3 * time.Minute), src: "10.1.0.1", dst: "10.3.0.1", sport: 0, dport: 0, proto: 1, bytes: 84},
		// outside the window
		{t: t0.Add(-time.Hour), src: "10.3.0.10", dst: "10.2.0.10", sport: 40001, dport: 5432, proto: 6, bytes: 7},
	})
	w := Window{From: t0, To: t0.Add(time.Hour)}

	edges, err := r.ServiceEdges(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	want := []ServiceEdge{
		{Client: netip.MustParseAddr("10.1.0.1"), Server: netip.MustParseAddr("10.3.0.1"), Port: 0, Proto: 1,
			Flows: 1, Bytes: 84, FirstSeen: t0.Add(3 * time.Minute), LastSeen: t0.Add(3 * time.Minute)},
		{Client: netip.MustParseAddr("10.3.0.10"), Server: netip.MustParseAddr("10.2.0.10"), Port: 5432, Proto: 6,
			ClientIdentity: "svc-app", ServerIdentity: "svc-db", Flows: 3, Bytes: 1300, Replies: 1,
			FirstSeen: t0, LastSeen: t0.Add(time.Minute)},
		{Client: netip.MustParseAddr("2001:db8:1:1::5"), Server: netip.MustParseAddr("2001:db8:1:53::53"), Port: 53, Proto: 17,
			Flows: 1, Bytes: 90, FirstSeen: t0.Add(2 * time.Minute), LastSeen: t0.Add(2 * time.Minute)},
	}
	if d := cmp.Diff(edges, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("ServiceEdges (-got +want):\n%s", d)
	}

	groups, err := r.ReplayGroups(ctx, w, []uint16{5432, 5433, 1024, 53, 54})
	if err != nil {
		t.Fatal(err)
	}
	wantG := []ReplayGroup{
		{SrcAddr: netip.MustParseAddr("10.1.0.1"), DstAddr: netip.MustParseAddr("10.3.0.1"), Proto: 1,
			Verdict: "violation", Flows: 1, Bytes: 84},
		{SrcAddr: netip.MustParseAddr("10.2.0.10"), DstAddr: netip.MustParseAddr("10.3.0.10"), SrcPort: 5432, DstPort: 5433, Proto: 6,
			Reply: true, ServicePort: 5432, SrcIdentity: "svc-db", DstIdentity: "svc-app", Verdict: "violation", Flows: 1, Bytes: 1000},
		// both client ports fall in [5433, 65535]: one group
		{SrcAddr: netip.MustParseAddr("10.3.0.10"), DstAddr: netip.MustParseAddr("10.2.0.10"), SrcPort: 5433, DstPort: 5432, Proto: 6,
			ServicePort: 5432, SrcIdentity: "svc-app", DstIdentity: "svc-db", Verdict: "violation", Flows: 2, Bytes: 300},
		{SrcAddr: netip.MustParseAddr("2001:db8:1:1::5"), DstAddr: netip.MustParseAddr("2001:db8:1:53::53"), SrcPort: 5433, DstPort: 53, Proto: 17,
			ServicePort: 53, Verdict: "violation", Flows: 1, Bytes: 90},
	}
	if d := cmp.Diff(groups, wantG, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("ReplayGroups (-got +want):\n%s", d)
	}
}

func TestAlerts(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	ins := func(id, kind, src string, first, last time.Time, version int) {
		q := fmt.Sprintf(`INSERT INTO flowaudit.alerts (alert_id, time, kind, severity, src_addr, dst_addr, src_segment, dst_segment, dst_port, proto, first_seen, last_seen, summary, evidence, version)
SELECT '%s', toDateTime(%d), '%s', 'high', IPv6StringToNum('%s'), IPv6StringToNum('::'), 'app', 'db', toUInt16(5432), toUInt8(6), toDateTime(%d), toDateTime(%d), 's', '{}', toUInt64(%d)`,
			id, last.Unix(), kind, mapped(src), first.Unix(), last.Unix(), version)
		if err := r.conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ins("a1", "address_scan", "10.3.2.66", t0, t0.Add(time.Minute), 1)
	ins("a1", "address_scan", "10.3.2.66", t0, t0.Add(2*time.Minute), 2) // a later version of a1
	ins("a2", "policy_violation", "10.1.2.40", t0.Add(time.Minute), t0.Add(time.Minute), 1)
	ins("a3", "port_scan", "10.3.2.77", t0.Add(-2*time.Hour), t0.Add(-time.Hour), 1) // before the window
	w := Window{From: t0, To: t0.Add(time.Hour)}
	got, err := r.Alerts(ctx, w, []string{"address_scan", "port_scan"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Alert{{ID: "a1", Kind: "address_scan", Severity: "high", SrcAddr: netip.MustParseAddr("10.3.2.66"),
		SrcSegment: "app", DstSegment: "db", DstPort: 5432, Proto: 6, FirstSeen: t0, LastSeen: t0.Add(2 * time.Minute),
		Summary: "s", Evidence: "{}"}}
	if d := cmp.Diff(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("Alerts (-got +want):\n%s", d)
	}
	all, err := r.Alerts(ctx, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Errorf("Alerts without kinds: %d alerts, want 2 (a1, a2)", len(all))
	}
}

func TestProbeCoverage(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	if _, err := r.LatestProbeRun(ctx); !errors.Is(err, ErrNoProbeRun) {
		t.Fatalf("LatestProbeRun on an empty table: %v", err)
	}
	// Run r1 from web: two TCP attempts to app (one seen as a flow), one to
	// db (seen, but 20 minutes late: outside the slack), one ICMP (left
	// out). Run r2 is older.
	ins := func(ts time.Time, run, src, srcSeg, dst, dstSeg string, port uint16, proto uint8) {
		q := fmt.Sprintf(`INSERT INTO flowaudit.probe_results (time, run_id, prober, src_addr, src_segment, dst_addr, dst_segment, dst_port, proto, expected, observed, result)
SELECT toDateTime(%d), '%s', 'p', IPv6StringToNum('%s'), '%s', IPv6StringToNum('%s'), '%s', toUInt16(%d), toUInt8(%d), 'deny', 'filtered', 'pass'`,
			ts.Unix(), run, mapped(src), srcSeg, mapped(dst), dstSeg, port, proto)
		if err := r.conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	ins(t0, "r1", "10.1.0.5", "web", "10.2.0.7", "app", 8080, 6)
	ins(t0, "r1", "10.1.0.5", "web", "10.2.0.7", "app", 22, 6)
	ins(t0, "r1", "10.1.0.5", "web", "10.3.0.9", "db", 5432, 6)
	ins(t0, "r1", "10.1.0.5", "web", "10.3.0.9", "db", 0, 1)
	ins(t0.Add(-time.Hour), "r2", "10.1.0.5", "web", "10.3.0.9", "db", 5432, 6)
	insertFlows(t, r, []testFlow{
		{t: t0.Add(30 * time.Second), src: "10.1.0.5", dst: "10.2.0.7", sport: 40000, dport: 8080, proto: 6},
		{t: t0.Add(20 * time.Minute), src: "10.1.0.5", dst: "10.3.0.9", sport: 40001, dport: 5432, proto: 6},
		{t: t0.Add(30 * time.Second), src: "10.1.0.6", dst: "10.2.0.7", sport: 40002, dport: 22, proto: 6}, // another source
	})
	if id, err := r.LatestProbeRun(ctx); err != nil || id != "r1" {
		t.Errorf("LatestProbeRun = %q, %v; want r1", id, err)
	}
	got, err := r.ProbeCoverage(ctx, "r1", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []ProbeCoverage{{"web", "app", 2, 1}, {"web", "db", 1, 0}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("ProbeCoverage (-got +want):\n%s", diff)
	}
	if _, err := r.ProbeCoverage(ctx, "nope", time.Minute); !errors.Is(err, ErrNoProbeRun) {
		t.Errorf("unknown run: %v", err)
	}
}

// TestRollupMatchesFlows reads several days both through the daily rollup
// (whole days) plus flows (the partial ends) and through flows alone: the
// answers must be equal.
func TestRollupMatchesFlows(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	d0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var flows []testFlow
	for h := 0; h < 4*24; h += 5 {
		at := d0.Add(time.Duration(h)*time.Hour + 17*time.Minute)
		flows = append(flows,
			testFlow{t: at, src: "10.3.0.10", dst: "10.2.0.10", sport: uint16(33000 + h*100), dport: 5432, proto: 6, bytes: 100, srcID: "svc-app", verdict: "allowed", rule: "app-to-db"},
			testFlow{t: at, src: "10.2.0.10", dst: "10.3.0.10", sport: 5432, dport: uint16(33000 + h*100), proto: 6, bytes: 900, dstID: "svc-app", verdict: "allowed", rule: "app-to-db"},
			testFlow{t: at, src: "10.1.0.7", dst: "10.3.0.10", sport: 40000, dport: 8080, proto: 6, bytes: 10},
			testFlow{t: at, src: "10.1.0.7", dst: "10.3.0.10", sport: 0, dport: 33024, proto: 58, bytes: 10},
			// a service above the clamp keeps its port
			testFlow{t: at, src: "10.1.0.7", dst: "10.3.0.10", sport: 60000, dport: 50051, proto: 6, bytes: 10},
			// the enricher's service side wins over the lower port
			testFlow{t: at, src: "10.1.0.8", dst: "10.3.0.10", sport: 3000, dport: 45000, proto: 6, bytes: 10, side: "dst"},
		)
	}
	insertFlows(t, r, flows)
	w := Window{From: d0.Add(12 * time.Hour), To: d0.Add(3*24*time.Hour + 12*time.Hour)}
	sp, err := r.splitWindow(ctx, w, true)
	if err != nil {
		t.Fatal(err)
	}
	if sp.rollup == "" {
		t.Fatal("the rollup is not used for whole days")
	}
	raw := New(r.conn, r.db)
	raw.noRollup = true
	bounds := []uint16{1024, 5432, 5433, 8080, 8081}
	got, err := r.ReplayGroups(ctx, w, bounds)
	if err != nil {
		t.Fatal(err)
	}
	want, err := raw.ReplayGroups(ctx, w, bounds)
	if err != nil {
		t.Fatal(err)
	}
	addrCmp := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if d := cmp.Diff(got, want, addrCmp); d != "" {
		t.Errorf("ReplayGroups rollup vs flows (-rollup +flows):\n%s", d)
	}
	if len(got) != 6 {
		t.Errorf("%d replay groups, want 6: %+v", len(got), got)
	}
	ge, err := r.ServiceEdges(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	we, err := raw.ServiceEdges(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ge, we, addrCmp); d != "" {
		t.Errorf("ServiceEdges rollup vs flows (-rollup +flows):\n%s", d)
	}
	var ports []uint16
	for _, e := range ge {
		ports = append(ports, e.Port)
	}
	if d := cmp.Diff(ports, []uint16{8080, 50051, 0, 45000, 5432}); d != "" {
		t.Errorf("service ports (-got +want):\n%s", d)
	}
	// A bound above the clamp reads flows only, exactly.
	if sp, _ := r.splitWindow(ctx, w, false); sp.rollup != "" {
		t.Error("rollup used although not exact")
	}
}

// TestSplitWindowExactDays: the rollup's first day and the days of a
// window's ends are read from the rollup when it holds exactly their flows
// inside the window, else from flows; either way the answers are those of
// flows alone.
func TestSplitWindowExactDays(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	d0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	var flows []testFlow
	for h := 0; h < 4*24; h += 5 {
		at := d0.Add(time.Duration(h)*time.Hour + 17*time.Minute)
		flows = append(flows,
			testFlow{t: at, src: "10.3.0.10", dst: "10.2.0.10", sport: uint16(33000 + h*100), dport: 5432, proto: 6, bytes: 100, srcID: "svc-app", verdict: "allowed", rule: "app-to-db"},
			testFlow{t: at, src: "10.1.0.7", dst: "10.3.0.10", sport: 40000, dport: 8080, proto: 6, bytes: 10},
		)
	}
	insertFlows(t, r, flows)
	raw := New(r.conn, r.db)
	raw.noRollup = true
	same := func(t *testing.T, w Window) {
		t.Helper()
		got, err := r.ServiceEdges(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		want, err := raw.ServiceEdges(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Errorf("ServiceEdges rollup vs flows (-rollup +flows):\n%s", d)
		}
		if len(got) == 0 {
			t.Error("no edges")
		}
	}
	cases := []struct {
		name    string
		w       Window
		wantRaw string
	}{
		// Every day whole or without flows outside the window (it ends
		// after the last flow): the rollup alone.
		{"whole", Window{From: d0, To: d0.Add(3*day + 23*time.Hour + 30*time.Minute)}, ""},
		{"ends after the data", Window{From: d0.Add(-2 * day).Add(5 * time.Hour), To: d0.Add(10*day + time.Hour)},
			fmt.Sprintf("((time_received >= toDateTime(%d) AND time_received < toDateTime(%d)))", d0.Add(-2*day).Add(5*time.Hour).Unix(), d0.Unix())},
		// The first day has flows before From: that day from flows.
		{"starts inside a day", Window{From: d0.Add(12 * time.Hour), To: d0.Add(10 * day)},
			fmt.Sprintf("((time_received >= toDateTime(%d) AND time_received < toDateTime(%d)))", d0.Add(12*time.Hour).Unix(), d0.Add(day).Unix())},
		// The last day has flows after To: that day's part from flows.
		{"ends inside a day", Window{From: d0, To: d0.Add(3*day + 12*time.Hour)},
			fmt.Sprintf("((time_received >= toDateTime(%d) AND time_received < toDateTime(%d)))", d0.Add(3*day).Unix(), d0.Add(3*day+12*time.Hour).Unix())},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sp, err := r.splitWindow(ctx, c.w, true)
			if err != nil {
				t.Fatal(err)
			}
			if sp.rollup == "" || sp.raw != c.wantRaw {
				t.Errorf("split %+v, want raw %q and a rollup", sp, c.wantRaw)
			}
			same(t, c.w)
		})
	}
	// Flows of the first day inserted while the view did not exist: the
	// rollup's first day is partial, so a Reader (which has not yet found
	// the day exact) reads it from flows.
	if err := r.conn.Exec(ctx, "DROP TABLE flowaudit.audit_edges_1d_mv"); err != nil {
		t.Fatal(err)
	}
	insertFlows(t, r, []testFlow{{t: d0.Add(time.Hour), src: "10.1.0.9", dst: "10.3.0.10", sport: 40000, dport: 8080, proto: 6, bytes: 10}})
	if _, err := sink.Migrate(ctx, r.conn, "flowaudit", 0, nil); err != nil {
		t.Fatal(err)
	}
	r = New(r.conn, r.db)
	w := Window{From: d0, To: d0.Add(10 * day)}
	sp, err := r.splitWindow(ctx, w, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("((time_received >= toDateTime(%d) AND time_received < toDateTime(%d)))", d0.Unix(), d0.Add(day).Unix()); sp.raw != want {
		t.Errorf("partial first day: raw %q, want %q", sp.raw, want)
	}
	same(t, w)
}
