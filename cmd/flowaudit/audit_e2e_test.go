package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/policy/enforce"
	"github.com/flowaudit/flowaudit/schemas"
	k8syaml "sigs.k8s.io/yaml"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files under testdata/")

// segmentsOnlyPolicy writes the scenario's policy without its rules: the
// starting point of a segmentation project.
func segmentsOnlyPolicy(t *testing.T) string {
	data, err := os.ReadFile(scenarioPolicyPath(t))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "\nrules:")
	if i < 0 {
		t.Fatal("scenario policy has no rules section")
	}
	path := filepath.Join(t.TempDir(), "segments-only.yaml")
	if err := os.WriteFile(path, []byte(text[:i+1]+"default: deny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// withReplies adds, after every normal TCP and UDP datagram of s, a
// datagram of the servers' replies (ports swapped, a few small packets,
// none for an unanswered SYN), so recommendations and
// simulations see both directions as exporters report them. Scenarios
// that already carry replies are left alone.
func withReplies(s *simulate.Scenario) {
	var out []simulate.ScenarioEvent
	for _, e := range s.Events {
		out = append(out, e)
		if e.Label != "" || len(e.Flows) == 0 {
			continue
		}
		var rep []schemas.Flow
		for _, f := range e.Flows {
			if (f.Proto != 6 && f.Proto != 17) || f.SrcPort < f.DstPort {
				continue
			}
			if f.Proto == 6 && f.TCPFlags&0x12 == 0x02 {
				continue // an unanswered SYN has no reply
			}
			r := f
			r.SrcAddr, r.DstAddr, r.SrcPort, r.DstPort = f.DstAddr, f.SrcAddr, f.DstPort, f.SrcPort
			r.InIf, r.OutIf = f.OutIf, f.InIf
			if f.Proto == 6 {
				r.TCPFlags = f.TCPFlags | 0x10 // the responder acknowledges
			}
			// Small, steady replies (acknowledgements), so the segment
			// pairs they land on keep the scenario's shaped volumes.
			r.Packets = min(f.Packets, 10)
			r.Bytes = r.Packets * 40
			if f.EtherType == 0x86dd {
				r.Bytes = r.Packets * 60
			}
			rep = append(rep, r)
		}
		if len(rep) > 0 {
			out = append(out, simulate.ScenarioEvent{At: e.At, Flows: rep})
		}
	}
	s.Events = out
}

type auditScenario struct {
	ch      *testutil.ClickHouseServer
	p       *pipeline
	sc      *simulate.Scenario
	tot     simulate.ScenarioTotals
	until   string
	cfgPath string
}

// runAuditScenario replays the labelled scenario (with replies) through
// "flowaudit run" enriching with policyPath, and waits until every flow is
// in ClickHouse and, when waitAlerts, every expected alert.
func runAuditScenario(t *testing.T, policyPath string, cfg simulate.ScenarioConfig, scale float64, waitAlerts bool) *auditScenario {
	t.Helper()
	return runAuditScenarioWith(t, policyPath, "", cfg, scale, waitAlerts)
}

// runAuditScenarioWith is runAuditScenario with extraYAML appended to the
// pipeline's configuration.
func runAuditScenarioWith(t *testing.T, policyPath, extraYAML string, cfg simulate.ScenarioConfig, scale float64, waitAlerts bool) *auditScenario {
	t.Helper()
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{extraYAML: fmt.Sprintf(`policy:
  file: %s
detect:
  checkpoint_interval: 1s
  new_edge:
    learning: 10m
  volume_spike:
    sustain: 1
    min_bytes: 1000000
`, policyPath) + extraYAML})
	p.Start()
	sc := simulate.NewScenario(cfg)
	withReplies(sc)
	tot, err := simulate.RunScenario(context.Background(), sc, p.NetFlowAddr, p.SyslogUDP, scale)
	if err != nil {
		t.Fatalf("scenario: %v", err)
	}
	t.Logf("scenario sent %s", tot)
	if got := waitFlows(t, ch, tot.Flows, 120*time.Second); got != tot.Flows {
		t.Fatalf("flows in ClickHouse = %d, want %d", got, tot.Flows)
	}
	if waitAlerts {
		var got map[string]int
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
			got = alertsByKind(t, ch)
			done := true
			for kind, n := range sc.Expected {
				if kind != schemas.AlertPolicyViolation && got[kind] < n {
					done = false
				}
			}
			if done {
				break
			}
		}
		t.Logf("alerts by kind: %v", got)
	}
	return &auditScenario{ch: ch, p: p, sc: sc, tot: tot, cfgPath: p.config,
		// Event times run ahead of the wall clock (Start is now, replayed at
		// scale): the window ends after the last of them.
		until: sc.Start.Add(sc.Duration + 2*time.Minute).UTC().Format(time.RFC3339)}
}

func (a *auditScenario) run(t *testing.T, args ...string) cliResult {
	t.Helper()
	args = append(args, "--config", a.cfgPath, "--since", "1d", "--until", a.until)
	res := runCLI(t, args...)
	if res.code != 0 {
		t.Fatalf("flowaudit %s: exit %d\n%s", strings.Join(args, " "), res.code, res.stderr)
	}
	return res
}

func mustMatcher(t *testing.T, path string) *policy.Matcher {
	t.Helper()
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var rfc3339RE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

// TestAuditRecommendScenario is the acceptance test of audit recommend:
// from the scenario's traffic under a policy with segments and no rules,
// the recommended policy allows every normal flow (replies included) and
// blocks nothing, names no ephemeral port, holds every attack edge, and
// equals the golden file; simulate of it agrees.
func TestAuditRecommendScenario(t *testing.T) {
	segOnly := segmentsOnlyPolicy(t)
	a := runAuditScenario(t, segOnly, simulate.ScenarioConfig{Seed: 7, Start: time.Now()}, 0, true)

	res := a.run(t, "audit", "recommend", "--format", "policy")
	again := a.run(t, "audit", "recommend", "--format", "policy")
	if res.stdout != again.stdout {
		t.Errorf("two runs of audit recommend differ:\n%s\n----\n%s", res.stdout, again.stdout)
	}
	draftPath := filepath.Join(t.TempDir(), "recommended.yaml")
	if err := os.WriteFile(draftPath, []byte(res.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := runCLI(t, "policy", "validate", draftPath); v.code != 0 {
		t.Fatalf("policy validate of the recommendation: exit %d: %s%s", v.code, v.stderr, res.stdout)
	}
	golden := filepath.Join("testdata", "audit-recommend-scenario.yaml")
	// The rules, times aside, are the golden part; held edges (named by
	// alert ids, which hash event-time windows) are checked below.
	rulesPart, _, _ := strings.Cut(res.stdout, "\n# Held for review")
	normalized := rfc3339RE.ReplaceAllString(rulesPart, "TIME")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(normalized), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if normalized != string(want) {
		t.Errorf("recommendation differs from %s (times replaced by TIME; -update rewrites it):\n%s", golden, normalized)
	}

	// The same rules through the policy exporter.
	nft := a.run(t, "audit", "recommend", "--format", "nftables")
	if !strings.Contains(nft.stdout, "table inet") || !strings.Contains(nft.stdout, "app-to-db-as-svc-app") {
		t.Errorf("recommend --format nftables: no ruleset naming the rules:\n%s", nft.stdout)
	}

	// And as Kubernetes objects: each decodes strictly into its API type,
	// and the documents, times aside, equal their golden files.
	np := a.run(t, "audit", "recommend", "--format", "networkpolicy")
	nps, err := enforce.DecodeNetworkPolicies([]byte(np.stdout), "recommend")
	if err != nil || len(nps) == 0 {
		t.Errorf("recommend --format networkpolicy: %d policies, %v:\n%s", len(nps), err, np.stdout)
	}
	cil := a.run(t, "audit", "recommend", "--format", "cilium")
	var cilDocs int
	for _, doc := range strings.Split(cil.stdout, "\n---\n") {
		if strings.TrimSpace(doc) == "" || strings.TrimSpace(doc) == "---" {
			continue
		}
		var c enforce.CiliumNetworkPolicy
		if err := k8syaml.UnmarshalStrict([]byte(doc), &c); err != nil {
			t.Errorf("recommend --format cilium: a document does not decode strictly: %v\n%s", err, doc)
		}
		cilDocs++
	}
	if cilDocs == 0 {
		t.Errorf("recommend --format cilium: no policies:\n%s", cil.stdout)
	}
	for name, text := range map[string]string{
		"audit-recommend-scenario.networkpolicy.yaml": np.stdout,
		"audit-recommend-scenario.cilium.yaml":        cil.stdout,
	} {
		path := filepath.Join("testdata", name)
		text = rfc3339RE.ReplaceAllString(text, "TIME")
		if *updateGolden {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if text != string(want) {
			t.Errorf("recommend output differs from %s (-update rewrites it):\n%s", path, text)
		}
	}

	draft := mustMatcher(t, draftPath)
	base := mustMatcher(t, segOnly)
	// No rule names an ephemeral port.
	for _, r := range draft.Policy().Rules {
		for _, s := range r.Ports {
			if s.Proto != policy.ProtoICMP && s.Proto != policy.ProtoICMPv6 && s.Hi >= 32768 {
				t.Errorf("rule %s names port %s, an ephemeral port", r.Name, s)
			}
		}
	}

	// Every normal flow, replies included, passes under the draft.
	var normalCross, attackCross uint64
	failed := map[string]uint64{}
	for _, e := range a.sc.Events {
		for i := range e.Flows {
			f := &e.Flows[i]
			bs, bd := base.Lookup(f.SrcAddr), base.Lookup(f.DstAddr)
			if bs.Segment == bd.Segment {
				continue
			}
			if e.Label != "" {
				attackCross++
				continue
			}
			normalCross++
			src, dst := draft.Lookup(f.SrcAddr), draft.Lookup(f.DstAddr)
			k := policy.FlowKey{Src: src, Dst: dst, SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto,
				SrcIdentity: src.ServiceAccount, DstIdentity: dst.ServiceAccount}
			if v, _ := draft.Decide(&k); v != policy.VerdictAllowed {
				failed[fmt.Sprintf("%s -> %s %d/%d", src.Segment, dst.Segment, f.DstPort, f.Proto)]++
			}
		}
	}
	if len(failed) > 0 {
		t.Errorf("normal flows the recommended policy does not allow (edge: flows): %v", failed)
	}

	// simulate agrees: everything normal turns from violation to allowed,
	// nothing is blocked.
	sres := a.run(t, "audit", "simulate", draftPath, "--format", "json")
	var sim audit.Simulation
	if err := json.Unmarshal([]byte(sres.stdout), &sim); err != nil {
		t.Fatalf("simulate JSON: %v\n%s", err, sres.stdout)
	}
	s := sim.Summary
	t.Logf("simulate of the recommendation: %+v (normal cross-segment flows %d, attack %d)", s, normalCross, attackCross)
	if s.NewlyBlocked != 0 || s.Uncertain != 0 {
		t.Errorf("simulate: %d newly blocked, %d uncertain; want 0 and 0", s.NewlyBlocked, s.Uncertain)
	}
	if s.NewlyAllowed < normalCross || s.NewlyAllowed > normalCross+attackCross {
		t.Errorf("simulate: %d newly allowed, want every normal cross-segment flow (%d) and at most the %d attack flows besides",
			s.NewlyAllowed, normalCross, attackCross)
	}
	if total := s.NewlyBlocked + s.NewlyAllowed + s.Unchanged + s.Uncertain; total != a.tot.Flows {
		t.Errorf("simulate counted %d flows, the scenario sent %d", total, a.tot.Flows)
	}

	// Every cross-segment attack edge is held.
	jres := a.run(t, "audit", "recommend", "--format", "json")
	var rec audit.Recommendation
	if err := json.Unmarshal([]byte(jres.stdout), &rec); err != nil {
		t.Fatalf("recommend JSON: %v\n%s", err, jres.stdout)
	}
	type attackEdge struct {
		label, src, dst, port string
	}
	edges := map[attackEdge]bool{}
	for _, e := range a.sc.Events {
		for _, f := range e.Flows {
			if e.Label == "" || base.Lookup(f.SrcAddr).Segment == base.Lookup(f.DstAddr).Segment {
				continue
			}
			edges[attackEdge{e.Label, f.SrcAddr.Netip().Unmap().String(), f.DstAddr.Netip().Unmap().String(), fmt.Sprintf("%d/tcp", f.DstPort)}] = true
		}
	}
	var missing []string
	for e := range edges {
		found := false
		for _, h := range rec.Held {
			if h.Port == e.port && contains(h.Sources, e.src) && contains(h.Targets, e.dst) {
				found = true
			}
		}
		if !found {
			missing = append(missing, fmt.Sprintf("%s %s -> %s %s", e.label, e.src, e.dst, e.port))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		rows, err := a.ch.Conn(t).Query(context.Background(), "SELECT alert_id, src_segment, dst_segment, toString(first_seen), toString(last_seen), summary FROM flowaudit.alerts FINAL WHERE kind = 'volume_spike'")
		if err == nil {
			for rows.Next() {
				var id, s, d, f, l, sum string
				_ = rows.Scan(&id, &s, &d, &f, &l, &sum)
				t.Logf("volume_spike %s %s->%s %s..%s %s", id, s, d, f, l, sum)
			}
			rows.Close()
		}
		t.Errorf("attack edges not held (%d of %d):\n  %s\nheld: %+v", len(missing), len(edges), strings.Join(missing, "\n  "), rec.Held)
	}
	for _, r := range rec.Rules {
		for _, src := range r.Evidence.TopSources {
			if ip := netip.MustParseAddr(src.Value); isAttacker(a.sc, ip) {
				t.Errorf("rule %s draws on attack source %s", r.Name, ip)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// isAttacker reports whether ip sends attack flows and no normal ones.
func isAttacker(sc *simulate.Scenario, ip netip.Addr) bool {
	attack, normal := false, false
	for _, e := range sc.Events {
		for _, f := range e.Flows {
			if f.SrcAddr.Netip().Unmap() == ip {
				if e.Label == "" {
					normal = true
				} else {
					attack = true
				}
			}
		}
	}
	return attack && !normal
}

// TestAuditSimulateScenario: with the scenario enriched under its full
// policy, simulate of that policy changes nothing, and a draft without
// rule app-to-db blocks exactly that rule's hits as ClickHouse counts them.
func TestAuditSimulateScenario(t *testing.T) {
	path := scenarioPolicyPath(t)
	a := runAuditScenario(t, path, simulate.ScenarioConfig{Seed: 3, Start: time.Now(), NormalRate: 50}, 240, false)

	var sim audit.Simulation
	res := a.run(t, "audit", "simulate", "--format", "json", path)
	if err := json.Unmarshal([]byte(res.stdout), &sim); err != nil {
		t.Fatal(err)
	}
	if s := sim.Summary; s.NewlyBlocked+s.NewlyAllowed+s.Uncertain != 0 || len(sim.Changes) != 0 || s.Unchanged != a.tot.Flows {
		t.Errorf("simulate of the active policy: %+v, %d changes; want %d flows unchanged and nothing else\n%s",
			s, len(sim.Changes), a.tot.Flows, res.stdout)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "  - name: app-to-db\n")
	j := strings.Index(text[i+1:], "  - name:")
	if i < 0 || j < 0 {
		t.Fatal("rule app-to-db not found in the scenario policy")
	}
	draftPath := filepath.Join(t.TempDir(), "without-app-to-db.yaml")
	if err := os.WriteFile(draftPath, []byte(text[:i]+text[i+1+j:]), 0o644); err != nil {
		t.Fatal(err)
	}
	hits := a.ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE rule = 'app-to-db'")
	res = a.run(t, "audit", "simulate", draftPath, "--format", "json")
	sim = audit.Simulation{}
	if err := json.Unmarshal([]byte(res.stdout), &sim); err != nil {
		t.Fatal(err)
	}
	if s := sim.Summary; hits == 0 || s.NewlyBlocked != hits || s.NewlyAllowed != 0 || s.Uncertain != 0 {
		t.Errorf("draft without app-to-db: %+v; want exactly the rule's %d hits newly blocked", s, hits)
	}
	for _, c := range sim.Changes {
		if c.Outcome != audit.NewlyBlocked || c.BeforeRule != "app-to-db" || c.SrcSegment != "app" || c.DstSegment != "db" {
			t.Errorf("unexpected change %+v", c)
		}
	}
	// The table names the change too, and --fail-on newly_blocked exits 1.
	args := []string{"audit", "simulate", draftPath, "--config", a.cfgPath, "--since", "1d", "--until", a.until, "--fail-on", "newly_blocked"}
	tres := runCLI(t, args...)
	if tres.code != 1 || !bytes.Contains([]byte(tres.stdout), []byte("newly_blocked")) {
		t.Errorf("simulate --fail-on newly_blocked: exit %d, output:\n%s%s", tres.code, tres.stdout, tres.stderr)
	}
}
