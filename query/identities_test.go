package query

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// identityFlows: a connection with its reply (one edge of svc-app), a
// login-bound user's flow, an unattributed flow and a flow before the
// window.
func identityFlows() []testFlow {
	return []testFlow{
		{t: t0, src: "10.3.0.10", dst: "10.2.0.10", sport: 40001, dport: 5432, proto: 6, bytes: 100, srcID: "svc-app", dstID: "svc-db", verdict: "allowed", rule: "app-to-db"},
		{t: t0.Add(time.Second), src: "10.2.0.10", dst: "10.3.0.10", sport: 5432, dport: 40001, proto: 6, bytes: 1000, srcID: "svc-db", dstID: "svc-app", verdict: "allowed", rule: "app-to-db"},
		{t: t0.Add(time.Minute), src: "10.3.2.50", dst: "10.2.0.10", sport: 40002, dport: 5432, proto: 6, bytes: 10, srcID: "mallory", verdict: "allowed", rule: "app-to-db"},
		{t: t0.Add(2 * time.Minute), src: "192.0.2.66", dst: "10.2.0.12", sport: 40003, dport: 22, proto: 6, bytes: 5, verdict: "allowed", rule: "admin-ssh"},
		{t: t0.Add(-time.Hour), src: "10.3.0.10", dst: "10.2.0.10", sport: 40001, dport: 5432, proto: 6, bytes: 7, srcID: "svc-app", verdict: "allowed", rule: "app-to-db"},
	}
}

func identityAccessInserts(db string, modern bool) []string {
	addr := func(s string) string {
		if s == "" {
			s = "::"
		} else {
			s = mapped(s)
		}
		if modern {
			return fmt.Sprintf("toIPv6('%s')", s)
		}
		return fmt.Sprintf("IPv6StringToNum('%s')", s)
	}
	row := func(at time.Time, source, host, user, src, dst, dstHost string, port uint16, action, outcome string, trusted int) string {
		return fmt.Sprintf(`INSERT INTO %s.access_events (time, source, host, user, src_addr, dst_addr, dst_host, dst_port, action, outcome, trusted)
SELECT toDateTime(%d), '%s', '%s', '%s', %s, %s, '%s', toUInt16(%d), '%s', '%s', toUInt8(%d)`,
			db, at.Unix(), source, host, user, addr(src), addr(dst), dstHost, port, action, outcome, trusted)
	}
	return []string{
		row(t0, "sshd", "web-1", "mallory", "10.1.2.50", "", "", 0, "login", "success", 1),
		row(t0.Add(time.Minute), "sshd", "web-1", "mallory", "10.1.2.50", "", "", 0, "login", "success", 1),
		row(t0.Add(2*time.Minute), "gateway", "bastion", "alice", "10.9.0.5", "10.2.0.10", "", 5432, "session_open", "success", 1),
		// not access: a failure, a logout, an untrusted sender, no user, outside the window
		row(t0, "sshd", "web-1", "backup", "203.0.113.66", "", "", 0, "login", "failure", 1),
		row(t0, "sshd", "web-1", "mallory", "10.1.2.50", "", "", 0, "logout", "success", 1),
		row(t0, "sshd", "web-1", "eve", "10.1.2.51", "", "", 0, "login", "success", 0),
		row(t0, "nginx", "web-1", "", "10.1.2.52", "", "shop", 443, "GET", "success", 1),
		// identity sources that only bind addresses
		row(t0, "dhcp", "dhcp-1", "laptop-7", "10.1.2.53", "", "", 0, "session_open", "success", 1),
		row(t0, "radius", "nas-1", "alice", "10.1.2.54", "10.9.9.9", "", 0, "interim", "success", 1),
		row(t0.Add(-time.Hour), "sshd", "web-1", "mallory", "10.1.2.50", "", "", 0, "login", "success", 1),
	}
}

func TestIdentityEdgesAndAccessSessions(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	insertFlows(t, r, identityFlows())
	for _, q := range identityAccessInserts("flowaudit", false) {
		if err := r.conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	w := Window{From: t0, To: t0.Add(time.Hour)}
	edges, err := r.IdentityEdges(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	want := []IdentityEdge{
		{Client: a("192.0.2.66"), Server: a("10.2.0.12"), Port: 22, Proto: 6, Verdict: "allowed", Rule: "admin-ssh",
			Flows: 1, Bytes: 5, FirstSeen: t0.Add(2 * time.Minute), LastSeen: t0.Add(2 * time.Minute)},
		{Identity: "mallory", Client: a("10.3.2.50"), Server: a("10.2.0.10"), Port: 5432, Proto: 6, Verdict: "allowed", Rule: "app-to-db",
			Flows: 1, Bytes: 10, FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute)},
		{Identity: "svc-app", Client: a("10.3.0.10"), Server: a("10.2.0.10"), Port: 5432, Proto: 6, Verdict: "allowed", Rule: "app-to-db",
			Flows: 2, Bytes: 1100, FirstSeen: t0, LastSeen: t0.Add(time.Second)},
	}
	addrCmp := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if d := cmp.Diff(edges, want, addrCmp); d != "" {
		t.Errorf("IdentityEdges (-got +want):\n%s", d)
	}

	sessions, err := r.AccessSessions(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	wantS := []AccessSession{
		{User: "alice", Source: "gateway", Host: "bastion", SrcAddr: a("10.9.0.5"), DstAddr: a("10.2.0.10"), DstPort: 5432,
			Events: 1, From: t0.Add(2 * time.Minute), To: t0.Add(2 * time.Minute)},
		{User: "mallory", Source: "sshd", Host: "web-1", SrcAddr: a("10.1.2.50"), Events: 2, From: t0, To: t0.Add(time.Minute)},
	}
	if d := cmp.Diff(sessions, wantS, addrCmp); d != "" {
		t.Errorf("AccessSessions (-got +want):\n%s", d)
	}
}

// TestIdentityEdgesRollupMatchesFlows: over several days the rollup plus
// the partial ends give what flows alone give.
func TestIdentityEdgesRollupMatchesFlows(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	d0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var flows []testFlow
	for h := 0; h < 4*24; h += 5 {
		at := d0.Add(time.Duration(h)*time.Hour + 17*time.Minute)
		flows = append(flows,
			testFlow{t: at, src: "10.3.0.10", dst: "10.2.0.10", sport: uint16(33000 + h*100), dport: 5432, proto: 6, bytes: 100, srcID: "svc-app", verdict: "allowed", rule: "app-to-db"},
			testFlow{t: at, src: "10.2.0.10", dst: "10.3.0.10", sport: 5432, dport: uint16(33000 + h*100), proto: 6, bytes: 900, dstID: "svc-app", verdict: "allowed", rule: "app-to-db"},
			testFlow{t: at, src: "10.1.2.40", dst: "10.2.0.12", sport: 40000, dport: 22, proto: 6, bytes: 10, srcID: "svc-web"},
			testFlow{t: at, src: "10.1.0.7", dst: "10.3.0.10", sport: 0, dport: 0, proto: 1, bytes: 10, srcID: "alice", verdict: "allowed", rule: "internal-icmp"},
		)
	}
	insertFlows(t, r, flows)
	w := Window{From: d0.Add(12 * time.Hour), To: d0.Add(3*24*time.Hour + 12*time.Hour)}
	if sp, err := r.splitWindow(ctx, w, true); err != nil || sp.rollup == "" {
		t.Fatalf("the rollup is not used for whole days (%v)", err)
	}
	raw := New(r.conn, r.db)
	raw.noRollup = true
	got, err := r.IdentityEdges(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	want, err := raw.IdentityEdges(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("IdentityEdges rollup vs flows (-rollup +flows):\n%s", d)
	}
	if len(got) != 3 {
		t.Errorf("%d identity edges, want 3: %+v", len(got), got)
	}
}

// TestIdentitySQLModern runs the same SQL on the modern engine
// (ClickHouse 26.7): flows branch, rollup branch and access events.
func TestIdentitySQLModern(t *testing.T) {
	e := modernch.Open(t)
	db := modernch.Database(t, e)
	v := schemas.ServerVersion{Major: 26, Minor: 7}
	for _, table := range schemas.Tables() {
		if _, err := e.Query(table.CreateSQL(db, v, 30*24*time.Hour), "TSV"); err != nil {
			t.Fatalf("create %s: %v", table.Name, err)
		}
		if sql := table.ViewSQL(db); sql != "" {
			if _, err := e.Query(sql, "TSV"); err != nil {
				t.Fatalf("create view %s: %v", table.Name, err)
			}
		}
	}
	var sel []string
	for _, f := range identityFlows() {
		sel = append(sel, fmt.Sprintf(`SELECT toDateTime(%d) AS time_received, toIPv6('%s') AS src_addr, toIPv6('%s') AS dst_addr,
  toUInt16(%d) AS src_port, toUInt16(%d) AS dst_port, toUInt8(%d) AS proto, toUInt64(%d) AS bytes,
  '%s' AS src_identity, '%s' AS dst_identity, '%s' AS verdict, '%s' AS rule`,
			f.t.Unix(), mapped(f.src), mapped(f.dst), f.sport, f.dport, f.proto, f.bytes, f.srcID, f.dstID, f.verdict, f.rule))
	}
	if _, err := e.Query(fmt.Sprintf("INSERT INTO %s.flows (time_received, src_addr, dst_addr, src_port, dst_port, proto, bytes, src_identity, dst_identity, verdict, rule) %s",
		db, strings.Join(sel, " UNION ALL ")), "TSV"); err != nil {
		t.Fatal(err)
	}
	for _, q := range identityAccessInserts(db, true) {
		if _, err := e.Query(q, "TSV"); err != nil {
			t.Fatal(err)
		}
	}
	r := &Reader{db: db}
	w := Window{From: t0, To: t0.Add(time.Hour)}
	day := fmt.Sprintf("day >= toDate(toDateTime(%d)) AND day < toDate(toDateTime(%d))", t0.Unix(), t0.Add(24*time.Hour).Unix())
	for name, c := range map[string]struct {
		sql  string
		want string
	}{
		"flows": {r.identityEdgesSQL(split{raw: w.where("time_received")}),
			"\t::ffff:192.0.2.66\t::ffff:10.2.0.12\t22\t6\tallowed\tadmin-ssh\t1\t5\n" +
				"mallory\t::ffff:10.3.2.50\t::ffff:10.2.0.10\t5432\t6\tallowed\tapp-to-db\t1\t10\n" +
				"svc-app\t::ffff:10.3.0.10\t::ffff:10.2.0.10\t5432\t6\tallowed\tapp-to-db\t2\t1100\n"},
		// the whole day from the rollup holds the flow before the window too
		"rollup": {r.identityEdgesSQL(split{rollup: day}),
			"\t::ffff:192.0.2.66\t::ffff:10.2.0.12\t22\t6\tallowed\tadmin-ssh\t1\t5\n" +
				"mallory\t::ffff:10.3.2.50\t::ffff:10.2.0.10\t5432\t6\tallowed\tapp-to-db\t1\t10\n" +
				"svc-app\t::ffff:10.3.0.10\t::ffff:10.2.0.10\t5432\t6\tallowed\tapp-to-db\t3\t1107\n"},
		"access": {r.accessSessionsSQL(w),
			"alice\tgateway\tbastion\t::ffff:10.9.0.5\t::ffff:10.2.0.10\t\t5432\t1\n" +
				"mallory\tsshd\tweb-1\t::ffff:10.1.2.50\t::\t\t0\t2\n"},
	} {
		// Times aside (checked on 18.16): trimTimes drops them.
		got := trimTimes(t, e, c.sql)
		if got != c.want {
			t.Errorf("%s on ClickHouse 26.7:\n%s\nwant:\n%s", name, got, c.want)
		}
	}
}

// trimTimes runs sql on e and returns its TSV rows, sorted, without the
// last two columns (the first and last seen times).
func trimTimes(t *testing.T, e modernch.Engine, sql string) string {
	t.Helper()
	out, err := e.Query(sql, "TSV")
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		rows = append(rows, strings.Join(cols[:len(cols)-2], "\t"))
	}
	sort.Strings(rows)
	if len(rows) == 0 {
		return ""
	}
	return strings.Join(rows, "\n") + "\n"
}
