package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

const testPolicy = `segments:
  - name: web
    cidrs: [10.1.0.0/16, "2001:db8:1:1::/64"]
  - name: db
    cidrs: [10.2.0.0/16]
    tags: [pci-cde, sensitive]
inventory:
  - cidr: 10.2.0.10/32
    workload: orders-db
    owner: payments
    service_account: svc-orders
rules:
  - name: web-to-db-postgres
    from: [web]
    to: [db]
    ports: ["5432/tcp"]
default: deny
`

// startWithPolicy starts a ClickHouse server and "flowaudit run" with
// testPolicy in a file the test may rewrite; extraYAML adds keys.
func startWithPolicy(t *testing.T, extraYAML string) (*testutil.ClickHouseServer, *pipeline, string) {
	t.Helper()
	ch := testutil.StartClickHouse(t)
	policyPath := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, ch, pipelineOptions{extraYAML: "policy:\n  file: " + policyPath + "\n" + extraYAML})
	p.Start()
	return ch, p, policyPath
}

// flowSender sends hand-made flows as IPFIX from one exporter.
type flowSender struct {
	t    *testing.T
	conn *net.UDPConn
	enc  simulate.Encoder
}

func newFlowSender(t *testing.T, target string) *flowSender {
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &flowSender{t: t, conn: conn, enc: simulate.NewEncoder(simulate.ProtocolIPFIX, simulate.EncoderOptions{TemplateEvery: 1})}
}

// send sends n copies of a flow src:sport -> dst:dport/tcp, timed now.
func (s *flowSender) send(src string, sport uint16, dst string, dport uint16, n int) {
	s.t.Helper()
	now := uint64(time.Now().Truncate(time.Millisecond).UnixNano())
	flows := make([]schemas.Flow, 0, 30)
	flush := func() {
		if len(flows) == 0 {
			return
		}
		if _, err := s.conn.Write(s.enc.Encode(nil, flows)); err != nil {
			s.t.Fatal(err)
		}
		flows = flows[:0]
		time.Sleep(200 * time.Microsecond)
	}
	for i := 0; i < n; i++ {
		flows = append(flows, schemas.Flow{
			SrcAddr: schemas.AddrFromNetip(netip.MustParseAddr(src)), DstAddr: schemas.AddrFromNetip(netip.MustParseAddr(dst)),
			SrcPort: sport, DstPort: dport, Proto: 6, Bytes: 1000, Packets: 10, TimeStart: now, TimeEnd: now,
		})
		if len(flows) == 30 {
			flush()
		}
	}
	flush()
}

// syslog5424 sends one sshd line with a millisecond timestamp.
func syslog5424(t *testing.T, addr, msg string) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line := fmt.Sprintf("<38>1 %s web-7 sshd 4242 - - %s", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), msg)
	if _, err := c.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
}

type verdictRow struct {
	Src, SrcSeg, DstSeg string
	Port                uint16
	Verdict, Rule       string
	SrcID, DstWorkload  string
	Flows               uint64
}

func verdictRows(t *testing.T, ch *testutil.ClickHouseServer) []verdictRow {
	t.Helper()
	rows, err := ch.Conn(t).Query(context.Background(), `SELECT IPv6NumToString(src_addr), src_segment, dst_segment, dst_port, verdict, rule,
		src_identity, dst_workload, toUInt64(count()) FROM flowaudit.flows
		GROUP BY src_addr, src_segment, dst_segment, dst_port, verdict, rule, src_identity, dst_workload
		ORDER BY src_addr, dst_port, src_identity`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []verdictRow
	for rows.Next() {
		var r verdictRow
		if err := rows.Scan(&r.Src, &r.SrcSeg, &r.DstSeg, &r.Port, &r.Verdict, &r.Rule, &r.SrcID, &r.DstWorkload, &r.Flows); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestEnrichmentEndToEnd checks verdicts, replies, identities and exact
// counts in ClickHouse with a policy where web->db on 5432/tcp is allowed.
func TestEnrichmentEndToEnd(t *testing.T) {
	ch, p, _ := startWithPolicy(t, "")
	fs := newFlowSender(t, p.NetFlowAddr)

	fs.send("10.1.0.5", 51000, "10.2.0.10", 5432, 40) // web -> db:5432 allowed
	fs.send("10.1.0.5", 51001, "10.2.0.10", 22, 7)    // web -> db:22 violation
	fs.send("10.1.0.5", 51002, "10.1.0.6", 8080, 9)   // web -> web intra_segment
	fs.send("192.0.2.9", 51003, "10.2.0.10", 5432, 5) // external -> db violation
	fs.send("10.2.0.10", 5432, "10.1.0.5", 51000, 40) // the replies: allowed, not a violation

	// Identity: flows before the login carry none, flows after carry
	// alice, and the logout ends it.
	fs.send("10.1.0.50", 40000, "10.2.0.11", 5432, 3)
	time.Sleep(20 * time.Millisecond)
	syslog5424(t, p.SyslogUDP, "Accepted password for alice from 10.1.0.50 port 52222 ssh2")
	p.WaitMetric("flowaudit_enrich_access_events_total", 1, 30*time.Second)
	time.Sleep(20 * time.Millisecond)
	fs.send("10.1.0.50", 40001, "10.2.0.11", 5432, 4)
	time.Sleep(20 * time.Millisecond)
	syslog5424(t, p.SyslogUDP, "Disconnected from user alice 10.1.0.50 port 52222")
	p.WaitMetric("flowaudit_enrich_access_events_total", 2, 30*time.Second)
	time.Sleep(20 * time.Millisecond)
	fs.send("10.1.0.50", 40002, "10.2.0.11", 5432, 6)

	const total = 40 + 7 + 9 + 5 + 40 + 3 + 4 + 6
	if got := waitFlows(t, ch, total, 60*time.Second); got != total {
		t.Fatalf("rows = %d, want %d", got, total)
	}
	want := []verdictRow{
		{"::ffff:10.1.0.5", "web", "db", 22, "violation", "", "", "orders-db", 7},
		{"::ffff:10.1.0.5", "web", "db", 5432, "allowed", "web-to-db-postgres", "", "orders-db", 40},
		{"::ffff:10.1.0.5", "web", "web", 8080, "intra_segment", "", "", "", 9},
		{"::ffff:10.1.0.50", "web", "db", 5432, "allowed", "web-to-db-postgres", "", "", 9},
		{"::ffff:10.1.0.50", "web", "db", 5432, "allowed", "web-to-db-postgres", "alice", "", 4},
		{"::ffff:10.2.0.10", "db", "web", 51000, "allowed", "web-to-db-postgres", "svc-orders", "", 40},
		{"::ffff:192.0.2.9", "external", "db", 5432, "violation", "", "", "orders-db", 5},
	}
	if diff := cmp.Diff(verdictRows(t, ch), want); diff != "" {
		t.Errorf("flows by verdict (-got +want):\n%s", diff)
	}
	if n := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE verdict = 'violation'"); n != 12 {
		t.Errorf("violations = %d, want 12 (none of them replies)", n)
	}
	// The rollups saw the same.
	if n := waitCount(t, ch, "SELECT toUInt64(sum(flows)) FROM flowaudit.segment_matrix_1m WHERE verdict = 'violation'", 12, 10*time.Second); n != 12 {
		t.Errorf("segment matrix violations = %d, want 12", n)
	}
	// The views are written after the flows rows of the same INSERT become
	// visible: wait for the edges rather than reading them once.
	if n := waitCount(t, ch, "SELECT toUInt64(count()) FROM (SELECT src_segment, dst_segment, dst_port, proto, src_identity FROM flowaudit.observed_edges GROUP BY src_segment, dst_segment, dst_port, proto, src_identity)", 6, 10*time.Second); n != 6 {
		t.Errorf("observed edges = %d, want 6", n)
	}
}

// TestPolicyHotReload changes the policy under a running pipeline: a
// valid change applies without a restart, an invalid one is refused and
// the previous policy stays in force.
func TestPolicyHotReload(t *testing.T) {
	ch, p, policyPath := startWithPolicy(t, "enrich:\n  policy_reload_interval: 200ms\n")
	fs := newFlowSender(t, p.NetFlowAddr)
	fs.send("10.1.0.5", 51001, "10.2.0.10", 22, 5) // violation under the first policy
	waitFlows(t, ch, 5, 30*time.Second)
	// A first start: detect reads its baseline after the sink migrated.
	p.waitLog("new_edge baseline loaded from ClickHouse", 30*time.Second)
	if strings.Contains(p.Logs(), "doesn't exist") {
		t.Errorf("a first start queried a table before the migration:\n%s", p.Logs())
	}

	withSSH := testPolicy + `  - name: web-to-db-ssh
    from: [web]
    to: [db]
    ports: ["22/tcp"]
`
	withSSH = replaceOnce(withSSH, "default: deny\n", "") + "default: deny\n"
	if err := os.WriteFile(policyPath, []byte(withSSH), 0o644); err != nil {
		t.Fatal(err)
	}
	p.WaitMetric(`flowaudit_enrich_policy_reloads_total{outcome="ok"}`, 1, 30*time.Second)
	p.WaitMetric(`flowaudit_detect_policy_reloads_total{outcome="ok"}`, 1, 30*time.Second) // detect applies it too
	fs.send("10.1.0.5", 51002, "10.2.0.10", 22, 6)                                         // allowed now
	waitFlows(t, ch, 11, 30*time.Second)

	if err := os.WriteFile(policyPath, []byte("segments:\n  - name: web\n    cidrs: [not-a-cidr]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.WaitMetric(`flowaudit_enrich_policy_reloads_total{outcome="invalid"}`, 1, 30*time.Second)
	p.WaitMetric(`flowaudit_detect_policy_reloads_total{outcome="invalid"}`, 1, 30*time.Second)
	fs.send("10.1.0.5", 51003, "10.2.0.10", 22, 7) // still allowed: old policy kept
	if got := waitFlows(t, ch, 18, 30*time.Second); got != 18 {
		t.Fatalf("rows = %d, want 18", got)
	}
	got := map[string]uint64{}
	rows, err := ch.Conn(t).Query(context.Background(), "SELECT src_port, verdict, rule, toUInt64(count()) FROM flowaudit.flows GROUP BY src_port, verdict, rule")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var port uint16
		var v, r string
		var n uint64
		if err := rows.Scan(&port, &v, &r, &n); err != nil {
			t.Fatal(err)
		}
		got[fmt.Sprintf("%d %s %s", port, v, r)] = n
	}
	rows.Close()
	want := map[string]uint64{"51001 violation ": 5, "51002 allowed web-to-db-ssh": 6, "51003 allowed web-to-db-ssh": 7}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("verdicts across reloads (-got +want):\n%s", diff)
	}
	if n := p.Metric("flowaudit_ingest_flows_total"); n != 18 {
		t.Errorf("flows received = %v, want 18: nothing dropped during reloads", n)
	}
	// Every applied policy, and only those, is in policy_versions.
	waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.policy_versions", 2, 30*time.Second)
	vrows, err := ch.Conn(t).Query(context.Background(), "SELECT version, path, content FROM flowaudit.policy_versions FINAL ORDER BY loaded_at")
	if err != nil {
		t.Fatal(err)
	}
	var versions [][3]string
	for vrows.Next() {
		var v [3]string
		if err := vrows.Scan(&v[0], &v[1], &v[2]); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	vrows.Close()
	wantVersions := [][3]string{
		{schemas.PolicyVersionOf([]byte(testPolicy)), policyPath, testPolicy},
		{schemas.PolicyVersionOf([]byte(withSSH)), policyPath, withSSH},
	}
	if diff := cmp.Diff(versions, wantVersions); diff != "" {
		t.Errorf("policy_versions (-got +want):\n%s", diff)
	}
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

// TestIdentitySurvivesRestart logs a user in, restarts "flowaudit run",
// and checks the binding was rebuilt from the access topic before any
// flow was enriched.
func TestIdentitySurvivesRestart(t *testing.T) {
	ch, p, _ := startWithPolicy(t, "")
	syslog5424(t, p.SyslogUDP, "Accepted publickey for bob from 10.1.0.77 port 50000 ssh2")
	p.WaitMetric("flowaudit_enrich_access_events_total", 1, 30*time.Second)
	p.Stop()
	p.Start()
	if n := p.Metric("flowaudit_enrich_identity_bindings"); n != 1 {
		t.Errorf("identity bindings after restart = %v, want 1", n)
	}
	time.Sleep(20 * time.Millisecond)
	newFlowSender(t, p.NetFlowAddr).send("10.1.0.77", 40000, "10.2.0.10", 5432, 8)
	if got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE src_identity = 'bob'", 8, 30*time.Second); got != 8 {
		t.Errorf("flows attributed to bob after restart = %d, want 8", got)
	}
}

// TestPolicyReloadOnSIGHUP changes the policy with file polling far off:
// only SIGHUP can make the running pipeline apply it.
func TestPolicyReloadOnSIGHUP(t *testing.T) {
	ch, p, policyPath := startWithPolicy(t, "enrich:\n  policy_reload_interval: 1h\n")
	withSSH := replaceOnce(testPolicy, "default: deny\n", "") + `  - name: web-to-db-ssh
    from: [web]
    to: [db]
    ports: ["22/tcp"]
default: deny
`
	if err := os.WriteFile(policyPath, []byte(withSSH), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := p.Metric(`flowaudit_enrich_policy_reloads_total{outcome="ok"}`); n != 0 {
		t.Fatalf("reloaded without SIGHUP (%v)", n)
	}
	p.mu.Lock()
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.mu.Unlock()
	p.WaitMetric(`flowaudit_enrich_policy_reloads_total{outcome="ok"}`, 1, 30*time.Second)
	newFlowSender(t, p.NetFlowAddr).send("10.1.0.5", 51002, "10.2.0.10", 22, 4)
	if got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE rule = 'web-to-db-ssh'", 4, 30*time.Second); got != 4 {
		t.Errorf("flows allowed by the reloaded rule = %d, want 4", got)
	}
}
