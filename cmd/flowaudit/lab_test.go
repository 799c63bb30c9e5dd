package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/internal/testutil/netlab"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/probe"
)

// labPolicy is the declared policy of the lab: web is reachable from
// outside on 80 and 443, web talks to app on 8080, app to db on 5432 and
// 22; db holds cardholder data.
const labPolicy = `segments:
  - name: web
    cidrs: [10.71.1.0/24]
  - name: app
    cidrs: [10.71.2.0/24]
  - name: db
    cidrs: [10.71.3.0/24]
    tags: [pci-cde, sensitive]
inventory:
  - cidr: 10.71.1.10/32
    workload: web-1
  - cidr: 10.71.2.10/32
    workload: app-1
  - cidr: 10.71.3.10/32
    workload: orders-db
rules:
  - name: internet-to-web
    from: [external]
    to: [web]
    ports: ["80/tcp", "443/tcp"]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8080/tcp"]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: ["5432/tcp", "22/tcp"]
default: deny
`

func labSegments() []netlab.SegmentSpec {
	seg := func(name, third string) netlab.SegmentSpec {
		return netlab.SegmentSpec{Name: name, Prefix: netip.MustParsePrefix("10.71." + third + ".0/24"),
			Host: netip.MustParseAddr("10.71." + third + ".10"), Router: netip.MustParseAddr("10.71." + third + ".1")}
	}
	outside := netlab.SegmentSpec{Name: "outside", Prefix: netip.MustParsePrefix("198.51.100.0/24"),
		Host: netip.MustParseAddr("198.51.100.10"), Router: netip.MustParseAddr("198.51.100.1")}
	return []netlab.SegmentSpec{seg("web", "1"), seg("app", "2"), seg("db", "3"), outside}
}

// What the lab runs and what its policy allows, written out by hand: the
// expected matrix the probe results are compared with, independent of
// the probe's own planning.
var (
	labListening = map[string]bool{"10.71.1.10:80/tcp": true, "10.71.2.10:8080/tcp": true, "10.71.3.10:22/tcp": true}
	labAllowed   = map[string]map[string]string{ // source segment -> target -> rule
		"web":      {"10.71.2.10:8080/tcp": "web-to-app"},
		"app":      {"10.71.3.10:5432/tcp": "app-to-db", "10.71.3.10:22/tcp": "app-to-db"},
		"external": {"10.71.1.10:80/tcp": "internet-to-web", "10.71.1.10:443/tcp": "internet-to-web"},
	}
)

func resultKey(r probe.JSONResult) string {
	if r.Proto == "icmp" || r.Proto == "icmpv6" {
		return r.DstAddr + ":" + r.Proto
	}
	return fmt.Sprintf("%s:%d/%s", r.DstAddr, r.DstPort, r.Proto)
}

// wantResult is the hand-made expectation of one attempt from src;
// holes are targets a test opened in the router against the policy.
func wantResult(src string, r probe.JSONResult, holes map[string]bool) (probe.Expectation, probe.Observation, probe.Outcome, string) {
	k := resultKey(r)
	if rule, ok := labAllowed[src][k]; ok {
		if labListening[k] {
			return probe.ExpectAllow, probe.ObservedOpen, probe.OutcomePass, rule
		}
		return probe.ExpectAllow, probe.ObservedClosed, probe.OutcomePass, rule
	}
	if holes[k] {
		if labListening[k] {
			return probe.ExpectDeny, probe.ObservedOpen, probe.OutcomeBreach, ""
		}
		return probe.ExpectDeny, probe.ObservedClosed, probe.OutcomePass, ""
	}
	return probe.ExpectDeny, probe.ObservedFiltered, probe.OutcomePass, ""
}

// labRuleset is the router's ruleset: the policy as `flowaudit policy
// export --format nftables` writes it, loaded as a user would.
func labRuleset(t *testing.T, policyFile string) string {
	t.Helper()
	out, err := exec.Command(binary, "policy", "export", "--format", "nftables", policyFile).Output()
	if err != nil || len(out) == 0 {
		var stderr []byte
		if exit, ok := err.(*exec.ExitError); ok {
			stderr = exit.Stderr
		}
		t.Fatalf("flowaudit policy export --format nftables: %v\n%s", err, stderr)
	}
	return string(out)
}

type probeRun struct {
	code   int
	report probe.JSONReport
	stderr string
}

func runProbe(t *testing.T, l *netlab.Lab, segment string, args ...string) probeRun {
	t.Helper()
	cmd := l.Command(l.Hosts[segment].NS, binary, append([]string{"probe", "--format", "json"}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	run := probeRun{stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		run.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("flowaudit probe in %s: %v", segment, err)
	}
	if err := json.Unmarshal([]byte(stdout.String()), &run.report); err != nil {
		t.Fatalf("flowaudit probe in %s: exit %d, output is not JSON (%v):\n%s\nstderr:\n%s", segment, run.code, err, stdout.String(), run.stderr)
	}
	return run
}

// checkMatrix compares every result of a run with the hand-made matrix.
func checkMatrix(t *testing.T, src string, run probeRun, holes map[string]bool) {
	t.Helper()
	type row struct {
		Expected probe.Expectation
		Observed probe.Observation
		Result   probe.Outcome
		Rule     string
	}
	got, want := map[string]row{}, map[string]row{}
	for _, r := range run.report.Results {
		got[resultKey(r)] = row{r.Expected, r.Observed, r.Result, r.Rule}
		e, o, res, rule := wantResult(src, r, holes)
		want[resultKey(r)] = row{e, o, res, rule}
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("probe from %s vs the lab's matrix (-got +want):\n%s", src, diff)
	}
	// Every target of another declared segment is probed, on at least the
	// attacker ports; nothing outside the declared segments.
	targets := map[string]int{}
	for _, r := range run.report.Results {
		targets[r.DstAddr]++
	}
	wantTargets := map[string]bool{"10.71.1.10": true, "10.71.2.10": true, "10.71.3.10": true}
	delete(wantTargets, map[string]string{"web": "10.71.1.10", "app": "10.71.2.10", "db": "10.71.3.10"}[src])
	for a := range targets {
		if !wantTargets[a] {
			t.Errorf("probe from %s targeted %s", src, a)
		}
	}
	for a := range wantTargets {
		if targets[a] < len(probe.AttackerTCPPorts) {
			t.Errorf("probe from %s: %d attempts on %s, want at least the %d attacker ports", src, targets[a], a, len(probe.AttackerTCPPorts))
		}
	}
}

// TestLabSegmentation runs the product against a real segmented network:
// namespaces web, app, db and outside behind a router enforcing the
// policy with nftables, real nginx and sshd, softflowd on the router
// exporting IPFIX to `flowaudit run`.
//
//   - enforced = declared: probes from web and from outside pass every
//     check, and match the hand-made matrix;
//   - drift: an accept for web -> db:22 inserted in the router makes the
//     next run exit 1 with exactly one breach, one probe_results row with
//     result breach and one critical segmentation_breach alert;
//   - the probes' flows, exported by softflowd, reach ClickHouse with the
//     policy's verdicts: allowed for what the policy allows, violation for
//     everything else, the hole included.
func TestLabSegmentation(t *testing.T) {
	l := netlab.New(t, labSegments())
	ch := testutil.StartClickHouse(t)
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(labPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, ch, pipelineOptions{extraYAML: "policy:\n  file: " + policyFile + "\n"})
	p.Start()

	if err := l.LoadRuleset(labRuleset(t, policyFile)); err != nil {
		t.Fatal(err)
	}
	for _, start := range []func() error{
		func() error { return l.StartNginx("web", 80) },
		func() error { return l.StartNginx("app", 8080) },
		func() error { return l.StartSSHD("db", 22) },
	} {
		if err := start(); err != nil {
			if testutil.RequireExternal() {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
	sfd, err := l.StartSoftflowd("web", p.NetFlowAddr)
	if err != nil {
		if testutil.RequireExternal() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	chRelay, err := l.RelayTCP(l.Hosts["web"].NS, ch.Addr)
	if err != nil {
		t.Fatal(err)
	}
	probeConfig := filepath.Join(dir, "probe.yaml")
	if err := os.WriteFile(probeConfig, []byte(fmt.Sprintf(`clickhouse:
  addr: %s
policy:
  file: %s
probe:
  rate: 200
  timeout: 1s
  targets_per_segment: 1
  denied_sample: 2
log:
  level: warn
`, chRelay, policyFile)), 0o644); err != nil {
		t.Fatal(err)
	}

	// Enforced = declared.
	first := runProbe(t, l, "web", "--config", probeConfig)
	if first.code != 0 || first.report.Summary.Breach != 0 || first.report.Summary.Blocked != 0 || first.report.Summary.Skipped != 0 {
		t.Fatalf("probe from web: exit %d, summary %+v; stderr:\n%s", first.code, first.report.Summary, first.stderr)
	}
	checkMatrix(t, "web", first, nil)
	outside := runProbe(t, l, "outside", "--store=false", "--config", probeConfig)
	if outside.code != 0 || outside.report.SrcSegment != policy.External {
		t.Errorf("probe from outside: exit %d, source %q, summary %+v; stderr:\n%s", outside.code, outside.report.SrcSegment,
			outside.report.Summary, outside.stderr)
	}
	checkMatrix(t, "external", outside, nil)
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.probe_results WHERE run_id = '"+first.report.RunID+"'"); got != uint64(len(first.report.Results)) {
		t.Errorf("probe_results has %d rows of run %s, want %d", got, first.report.RunID, len(first.report.Results))
	}
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.probe_results WHERE run_id = '"+outside.report.RunID+"'"); got != 0 {
		t.Errorf("--store=false stored %d rows", got)
	}

	// Drift: a hand-inserted accept opens db:22 to web.
	if err := l.InsertRule("ip saddr 10.71.1.0/24 ip daddr 10.71.3.0/24 tcp dport 22 accept"); err != nil {
		t.Fatal(err)
	}
	second := runProbe(t, l, "web", "--config", probeConfig)
	if second.code != 1 || second.report.Summary.Breach != 1 {
		t.Fatalf("probe from web after the hole: exit %d, summary %+v, want exit 1 and one breach; stderr:\n%s",
			second.code, second.report.Summary, second.stderr)
	}
	checkMatrix(t, "web", second, map[string]bool{"10.71.3.10:22/tcp": true})
	run := second.report.RunID
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.probe_results WHERE run_id = '"+run+
		"' AND result = 'breach' AND IPv6NumToString(dst_addr) = '::ffff:10.71.3.10' AND dst_port = 22 AND proto = 6"); got != 1 {
		t.Errorf("probe_results: %d breach rows for db:22, want 1", got)
	}
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.probe_results WHERE result = 'breach'"); got != 1 {
		t.Errorf("probe_results: %d breach rows in all, want 1", got)
	}
	if got := ch.QueryUint64(t, `SELECT toUInt64(count()) FROM flowaudit.alerts FINAL WHERE kind = 'segmentation_breach'
		AND severity = 'critical' AND src_segment = 'web' AND dst_segment = 'db' AND dst_port = 22
		AND IPv6NumToString(src_addr) = '::ffff:10.71.1.10' AND IPv6NumToString(dst_addr) = '::ffff:10.71.3.10'`); got != 1 {
		t.Errorf("alerts: %d critical segmentation_breach alerts for web -> db:22, want 1", got)
	}
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.alerts FINAL WHERE kind = 'segmentation_breach'"); got != 1 {
		t.Errorf("alerts: %d segmentation_breach alerts in all, want 1", got)
	}

	// The probes as flows: softflowd on the router's web interface saw
	// every TCP attempt from web, forwarded or dropped; each reaches
	// ClickHouse with the policy's verdict. (softflowd exports no
	// forwardingStatus, so fw_action stays ''.)
	if err := sfd.ExpireAll(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, r := range append(first.report.Results, second.report.Results...) {
		if r.Proto != "tcp" {
			continue
		}
		verdict := "violation"
		if r.Expected == probe.ExpectAllow {
			verdict = "allowed"
		}
		want[resultKey(r)] = verdict
	}
	waitCount(t, ch, `SELECT toUInt64(count()) FROM (SELECT DISTINCT dst_addr, dst_port FROM flowaudit.flows
		WHERE IPv6NumToString(src_addr) = '::ffff:10.71.1.10' AND proto = 6 AND flow_type = 'ipfix' AND dst_segment != 'external')`, uint64(len(want)), 60*time.Second)
	got := map[string]string{}
	conn := ch.Conn(t)
	rows, err := conn.Query(t.Context(), `SELECT DISTINCT IPv6NumToString(dst_addr), dst_port, verdict, src_segment, dst_segment
		FROM flowaudit.flows WHERE IPv6NumToString(src_addr) = '::ffff:10.71.1.10' AND proto = 6 AND flow_type = 'ipfix'
		AND dst_segment != 'external'`) // not nginx's replies to the prober outside
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var dst, verdict, srcSeg, dstSeg string
		var port uint16
		if err := rows.Scan(&dst, &port, &verdict, &srcSeg, &dstSeg); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s:%d/tcp", strings.TrimPrefix(dst, "::ffff:"), port)
		if prev, ok := got[k]; ok && prev != verdict {
			t.Errorf("flows to %s carry verdicts %s and %s", k, prev, verdict)
		}
		got[k] = verdict
		if srcSeg != "web" || (dstSeg != "app" && dstSeg != "db") {
			t.Errorf("flow to %s: segments %s -> %s", k, srcSeg, dstSeg)
		}
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("probe flows in ClickHouse: verdict per target (-got +want):\n%s", diff)
	}
	t.Logf("collection coverage: %d of %d TCP probe targets from web seen as flows", len(got), len(want))

	// The same, as the product reports it: every TCP and UDP attempt of
	// the first run from web shows as a flow, per segment pair.
	rootConfig := filepath.Join(dir, "root.yaml")
	if err := os.WriteFile(rootConfig, []byte("clickhouse:\n  addr: "+ch.Addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sent := map[string]uint64{}
	for _, r := range first.report.Results {
		if r.Proto == "tcp" || r.Proto == "udp" {
			sent[r.SrcSegment+">"+r.DstSegment]++
		}
	}
	var cov struct {
		RunID string `json:"run_id"`
		Pairs []struct {
			SrcSegment string `json:"src_segment"`
			DstSegment string `json:"dst_segment"`
			Sent, Seen uint64
		} `json:"pairs"`
	}
	wantCov := map[string][2]uint64{}
	for k, n := range sent {
		wantCov[k] = [2]uint64{n, n}
	}
	var gotCov map[string][2]uint64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		res := runCLI(t, "probe", "coverage", "--run", first.report.RunID, "--format", "json", "--config", rootConfig)
		if res.code != 0 {
			t.Fatalf("probe coverage: exit %d: %s", res.code, res.stderr)
		}
		if err := json.Unmarshal([]byte(res.stdout), &cov); err != nil {
			t.Fatalf("probe coverage: %v\n%s", err, res.stdout)
		}
		gotCov = map[string][2]uint64{}
		for _, p := range cov.Pairs {
			gotCov[p.SrcSegment+">"+p.DstSegment] = [2]uint64{p.Sent, p.Seen}
		}
		if cmp.Equal(gotCov, wantCov) || time.Now().After(deadline) {
			break
		}
	}
	if diff := cmp.Diff(gotCov, wantCov); diff != "" {
		t.Errorf("probe coverage of run %s, [sent seen] per pair (-got +want):\n%s", first.report.RunID, diff)
	}
}

// TestLabScheduledProbe runs `flowaudit run` on a host of web with
// probe.schedule set: its runs land in probe_results, and the breach a
// hole in the router makes reaches the alerts table once per run, both
// through the alerts topic (the sink) and directly, under one id.
func TestLabScheduledProbe(t *testing.T) {
	l := netlab.New(t, labSegments())
	ch := testutil.StartClickHouse(t)
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(labPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.LoadRuleset(labRuleset(t, policyFile)); err != nil {
		t.Fatal(err)
	}
	if err := l.InsertRule("ip saddr 10.71.1.0/24 ip daddr 10.71.3.0/24 tcp dport 22 accept"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartSSHD("db", 22); err != nil {
		if testutil.RequireExternal() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	web := l.Hosts["web"].NS
	chRelay, err := l.RelayTCP(web, ch.Addr)
	if err != nil {
		t.Fatal(err)
	}
	// Inside web's namespace every loopback port is free.
	cfg := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`data_dir: %s
kafka:
  embedded_listen: 127.0.0.1:19092
  partitions: 1
clickhouse:
  addr: %s
ingest:
  flows:
    listen: ["netflow://127.0.0.1:12055"]
  access:
    syslog_listen: ["udp://127.0.0.1:15514"]
    http_listen: ""
sink:
  batch_interval: 200ms
policy:
  file: %s
probe:
  schedule: "@every 2s"
  timeout: 500ms
  targets_per_segment: 1
  denied_sample: 0
  icmp: false
metrics:
  listen: 127.0.0.1:19464
`, filepath.Join(dir, "var"), chRelay, policyFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := l.Command(web, binary, "run", "--config", cfg)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: &logs}, &lockedWriter{w: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("flowaudit run in web:\n%s", logs.String())
		}
	})
	// Two runs stored, each with exactly one breach row; and for each an
	// alert, one after FINAL though written twice.
	if got := waitCount(t, ch, "SELECT toUInt64(uniqExact(run_id)) FROM flowaudit.probe_results", 2, 90*time.Second); got < 2 {
		t.Fatalf("%d scheduled runs stored after 90 s, want 2", got)
	}
	runs := ch.QueryUint64(t, "SELECT toUInt64(uniqExact(run_id)) FROM flowaudit.probe_results")
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.probe_results WHERE result = 'breach'"); got < runs || got > runs+1 {
		t.Errorf("%d breach rows for %d runs, want one per run", got, runs)
	}
	if got := ch.QueryUint64(t, "SELECT toUInt64(countIf(result != 'breach' AND result != 'pass')) FROM flowaudit.probe_results"); got != 0 {
		t.Errorf("%d results neither pass nor breach", got)
	}
	// The sink writes the topic's copy a moment after the direct insert.
	want := uint64(2)
	if got := waitCount(t, ch, `SELECT toUInt64(count()) FROM flowaudit.alerts WHERE kind = 'segmentation_breach'
		AND alert_id IN (SELECT alert_id FROM flowaudit.alerts WHERE kind = 'segmentation_breach' GROUP BY alert_id HAVING count() >= 2)`,
		want, 30*time.Second); got < want {
		t.Errorf("no breach alert arrived both through the topic and directly (%d rows)", got)
	}
	if got, distinct := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.alerts FINAL WHERE kind = 'segmentation_breach'"),
		ch.QueryUint64(t, "SELECT toUInt64(uniqExact(alert_id)) FROM flowaudit.alerts WHERE kind = 'segmentation_breach'"); got != distinct {
		t.Errorf("alerts FINAL: %d segmentation_breach rows for %d ids", got, distinct)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestLabProbeStaysInScope: with a policy that names only db, a prober in
// web (external to that policy) sends packets to db and nowhere else,
// counted by the router's own nftables counters on everything it
// forwards or receives.
func TestLabProbeStaysInScope(t *testing.T) {
	l := netlab.New(t, labSegments())
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(`segments:
  - name: db
    cidrs: [10.71.3.0/24]
inventory:
  - cidr: 10.71.3.10/32
    workload: orders-db
rules:
  - name: outside-to-db
    from: [external]
    to: [db]
    ports: ["5432/tcp"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.LoadRuleset(`table inet scope {
  counter inscope {}
  counter outscope {}
  chain forward {
    type filter hook forward priority 0; policy drop;
    ip daddr 10.71.3.0/24 counter name inscope
    ip daddr != 10.71.3.0/24 ip saddr 10.71.1.0/24 counter name outscope
  }
  chain input {
    type filter hook input priority 0; policy accept;
    ip daddr 10.71.3.0/24 counter name inscope
    ip daddr != 10.71.3.0/24 ip saddr 10.71.1.0/24 counter name outscope
  }
}
`); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "probe.yaml")
	if err := os.WriteFile(cfg, []byte("policy:\n  file: "+policyFile+"\nprobe:\n  timeout: 500ms\n  rate: 500\n  targets_per_segment: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := runProbe(t, l, "web", "--store=false", "--config", cfg)
	if run.code != 0 || run.report.SrcSegment != policy.External || len(run.report.Results) == 0 {
		t.Fatalf("probe: exit %d, source %q, %d results; stderr:\n%s", run.code, run.report.SrcSegment, len(run.report.Results), run.stderr)
	}
	packets := func(name string) int {
		out, err := l.Exec(l.Router, "nft", "list", "counter", "inet", "scope", name)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if i := strings.Index(out, "packets "); i < 0 {
			t.Fatalf("no packet count in %q", out)
		} else if _, err := fmt.Sscanf(out[i:], "packets %d", &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if in, out := packets("inscope"), packets("outscope"); in < len(run.report.Results) || out != 0 {
		t.Errorf("router counted %d packets to db and %d elsewhere for %d attempts; want >= %d and 0",
			in, out, len(run.report.Results), len(run.report.Results))
	}
}
